//! **davrepl** gives any Rust HTTP service a WebDAV namespace with Microsoft Exchange-style
//! WebDAV replication, as a [tower](https://docs.rs/tower) [`Layer`](tower_layer::Layer) over a pluggable
//! [`ReplStore`].
//!
//! Requests under the mount prefix are answered by the layer; everything else goes to the
//! wrapped service untouched.
//!
//! ```
//! use axum::{Router, routing::get};
//! use davrepl::{MemStore, ReplLayer};
//!
//! let router: Router = Router::new().route("/health", get(|| async { "ok" }));
//! // Wrap the whole router, outside its routing: WebDAV methods never match an axum route.
//! let app = ReplLayer::new(MemStore::new()).mount("/dav").service(router);
//! # let _ = app;
//! ```
//!
//! Serve `app` with `davrepl_hyper::serve`, or with `axum::serve` through the
//! `davrepl-axum` helpers (`wrap`, `nest`, `nested`), which also cover nesting under
//! `Router::nest_service`. Do not use `Router::layer` or `Router::route_layer`: they run after
//! routing, so they miss unknown paths or blur the mount boundary (see `docs/mounting.md`).

//! The store decides where data lives: [`MemStore`] here, `davrepl-sqlite` for an embedded
//! database. Every write is compare-and-swap in the store: a request's `If`, `If-Match` and
//! `If-None-Match` headers are evaluated atomically with the write, so two clients racing on
//! the same resourcetag get exactly one success and one `412`.

mod body;
mod config;
mod error;
mod handlers;
mod layer;
mod live;
mod service;

pub use body::ReplBody;
pub use config::{Access, Authorizer, Limits, Principal};
pub use davrepl_proto::xml::XmlLimits;
pub use davrepl_store::{
    ByteStream, Condition, CreateOptions, DeleteOptions, DynStore, ErrorKind, GetOptions, MemStore,
    Meta, PatchOptions, PutOptions, ReplStore, ResourcePath, StoreError, StoreId,
};
pub use layer::ReplLayer;
pub use service::{ReplService, ResponseFuture};

/// The boxed error type of [`ReplBody`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
