//! Live properties: computed from [`Meta`], never stored.

use davrepl_proto::dates;
use davrepl_proto::xml::XmlWriter;
use davrepl_store::{Meta, PropName};

/// The replication namespace as real clients spell it.
pub(crate) const REPL_NS: &str = "http://schemas.microsoft.com/repl/";
/// The spelling used by the learn.microsoft.com copies of the SDK.
pub(crate) const REPL_NS_HTTPS: &str = "https://schemas.microsoft.com/repl/";

const DAV_LIVE: &[&str] = &[
    "creationdate",
    "displayname",
    "getcontentlength",
    "getcontenttype",
    "getetag",
    "getlastmodified",
    "resourcetype",
    "supportedlock",
    "lockdiscovery",
];

const REPL_LIVE: &[&str] = &["resourcetag", "repl-uid", "contenttag"];

pub(crate) fn is_repl_ns(ns: &str) -> bool {
    let t = ns.trim_end_matches('/');
    t.eq_ignore_ascii_case(REPL_NS.trim_end_matches('/'))
        || t.eq_ignore_ascii_case(REPL_NS_HTTPS.trim_end_matches('/'))
}

/// Whether `name` is a live property the server computes (and clients may not set).
pub(crate) fn is_protected(name: &PropName) -> bool {
    (name.ns == "DAV:" && DAV_LIVE.contains(&name.local.as_str()) && name.local != "displayname")
        || (is_repl_ns(&name.ns)
            && REPL_LIVE
                .iter()
                .any(|l| l.eq_ignore_ascii_case(&name.local)))
}

/// The live property names `meta` has, for allprop and propname.
pub(crate) fn names(meta: &Meta) -> Vec<PropName> {
    let mut out: Vec<PropName> = [
        "creationdate",
        "getetag",
        "getlastmodified",
        "resourcetype",
        "supportedlock",
    ]
    .iter()
    .map(|l| PropName::new("DAV:", *l))
    .collect();
    if !meta.is_collection() {
        out.push(PropName::new("DAV:", "getcontentlength"));
        out.push(PropName::new("DAV:", "getcontenttype"));
    }
    out.push(PropName::new(REPL_NS, "resourcetag"));
    out.push(PropName::new(REPL_NS, "repl-uid"));
    if meta.is_collection() {
        out.push(PropName::new(REPL_NS, "contenttag"));
    }
    out
}

/// Writes the live property `name` of `meta`, returning false if it has no such property.
pub(crate) fn write(w: &mut XmlWriter, meta: &Meta, name: &PropName) -> bool {
    let text = if name.ns == "DAV:" {
        match name.local.as_str() {
            "creationdate" => dates::rfc3339(meta.created),
            "getlastmodified" => dates::http_date(meta.modified),
            "getetag" => meta.etag(),
            "getcontentlength" if !meta.is_collection() => meta.len.to_string(),
            "getcontenttype" if !meta.is_collection() => meta
                .content_type
                .clone()
                .unwrap_or_else(|| "application/octet-stream".into()),
            "resourcetype" => {
                w.start("D:resourcetype", &[]);
                if meta.is_collection() {
                    w.empty("D:collection", &[]);
                }
                w.end("D:resourcetype");
                return true;
            }
            "supportedlock" => {
                w.empty("D:supportedlock", &[]);
                return true;
            }
            _ => return false,
        }
    } else if is_repl_ns(&name.ns) {
        match name.local.to_ascii_lowercase().as_str() {
            "resourcetag" => meta.resource_tag(),
            "repl-uid" => meta.repl_uid(),
            "contenttag" => match meta.content_tag() {
                Some(t) => t,
                None => return false,
            },
            _ => return false,
        }
    } else {
        return false;
    };
    w.start_prop(name, false).text(&text).end_prop(name);
    true
}

/// The `displayname` default: the last path segment.
pub(crate) fn display_name(meta: &Meta) -> &str {
    meta.path.name()
}
