//! The conformance cases. Each takes a fresh, empty store.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use davrepl_store::{
    ByteRange, ByteStream, ChangeKind, ChangesQuery, Condition, DeadProp, Depth, EntityMatch,
    ErrorKind, GetOptions, IfTerm, ListOptions, Meta, PropName, PropPatch, PutOptions, ReplStore,
    StoreError, TransferOptions,
};

use crate::helpers::*;

fn kind_of<T: std::fmt::Debug>(r: Result<T, StoreError>) -> ErrorKind {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.kind(),
    }
}

mod conditions;
mod content;
mod content_meta;
mod locks;
mod log;
mod races;
mod subscriptions;
mod tree;

pub use conditions::*;
pub use content::*;
pub use content_meta::*;
pub use locks::*;
pub use log::*;
pub use races::*;
pub use subscriptions::*;
pub use tree::*;
