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

pub mod dates;
pub mod headers;
pub mod href;
pub mod xml;

/// The `DAV:` namespace.
pub const DAV_NS: &str = "DAV:";
