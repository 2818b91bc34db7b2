//! `davrepl sync`: a two-way sync of a local folder with a davrepl (Exchange-style WebDAV
//! replication) collection that never loses an edit.
//!
//! The binary is a thin shell over [`Syncer`]; tests drive it directly. How it decides is in
//! [`plan`]; what it records is in [`journal`].

// A command-line tool: it reports on stdout and stderr by design.
#![allow(clippy::print_stdout, clippy::print_stderr)]

pub mod journal;
pub mod plan;
pub mod progress;
pub mod scan;
pub mod sync;
pub mod watch;

pub use sync::{Fatal, Options, Summary, Syncer};
