//! Sans-IO protocol pieces of davrepl: no async runtime, no I/O.
//!
//! - [`href`]: request paths and hrefs under a mount prefix (percent-decoding, normalising).
//! - [`headers`]: typed parsers for `Depth`, `Overwrite`, `Destination`, byte `Range` and the
//!   RFC 4918 `If` header.
//! - [`xml`]: request bodies (PROPFIND, PROPPATCH) parsed with `xmltree`, and
//!   [`xml::XmlWriter`], the escaping writer every response body goes through.
//! - [`dates`]: HTTP and RFC 3339 dates for live properties.
//!
//! Everything here can be fuzzed and property-tested without a runtime.

pub mod collblob;
pub mod dates;
pub mod headers;
pub mod href;
pub mod rows;
pub mod sql;
pub mod xml;

/// The `DAV:` namespace.
pub const DAV_NS: &str = "DAV:";

/// The replication namespace as real clients spell it (the default in responses).
pub const REPL_NS: &str = "http://schemas.microsoft.com/repl/";

/// Whether `ns` is one of the accepted spellings of the replication namespace: `http` or
/// `https`, with or without the trailing slash, any case (spec A1).
pub fn is_repl_ns(ns: &str) -> bool {
    let t = ns.trim_end_matches('/');
    let t = t
        .strip_prefix("http://")
        .or_else(|| t.strip_prefix("https://"))
        .unwrap_or("");
    t.eq_ignore_ascii_case("schemas.microsoft.com/repl")
}
