//! Live properties (computed from [`Meta`], never stored) and property lookup shared by
//! PROPFIND, SEARCH and manifests.

use davrepl_proto::sql::Value;
use davrepl_proto::xml::XmlWriter;
use davrepl_proto::{REPL_NS, dates, is_repl_ns};
use davrepl_store::{DeadProp, ErrorKind, Meta, PropName, ReplStore, StoreError};

const DAV_PROTECTED: &[&str] = &[
    "creationdate",
    "getcontentlength",
    "getcontenttype",
    "getetag",
    "getlastmodified",
    "resourcetype",
    "supportedlock",
    "lockdiscovery",
    "isfolder",
    "iscollection",
    "ishidden",
    "href",
    "sync-token",
    "supported-report-set",
    "quota-used-bytes",
    "quota-available-bytes",
];

/// `DAV:supported-report-set` of a collection: RFC 6578 `sync-collection`. Self-contained
/// (declares its own namespace), so it can be written under any prefix.
const COLLECTION_REPORTS: &str =
    "<supported-report xmlns=\"DAV:\"><report><sync-collection/></report></supported-report>";

const REPL_LIVE: &[&str] = &["resourcetag", "repl-uid", "contenttag"];

/// ownCloud's namespace: `oc:checksums` is computed from the content's digests.
pub(crate) const OC_NS: &str = "http://owncloud.org/ns";

/// Whether `name` is ownCloud's `oc:checksums`.
pub(crate) fn is_checksums(name: &PropName) -> bool {
    is_oc_checksums(&name.ns, &name.local)
}

/// Whether (`ns`, `local`) is ownCloud's `oc:checksums`. The namespace is also taken with a
/// trailing `/`: a manifest's SQL names a property as its namespace and local name run
/// together, and `"http://owncloud.org/ns/checksums"` is how that splits.
pub(crate) fn is_oc_checksums(ns: &str, local: &str) -> bool {
    ns.strip_suffix('/').unwrap_or(ns) == OC_NS && local == "checksums"
}

/// Completes the digests of `meta` for `oc:checksums`. A PUT computes only the digest its
/// checksum names, so the others are computed here from the content the first time a client
/// asks, and the store records them: each content is read and hashed once. If the item has
/// changed since `meta` was read, `meta` keeps what it had (the response describes that
/// version).
pub(crate) async fn fill_digests<S: ReplStore>(
    store: &S,
    meta: &mut Meta,
) -> Result<(), StoreError> {
    fill_all_digests(store, [meta]).await
}

/// Items at most this long have their digests completed ahead of their turn in a change
/// feed, batched with the one at hand ([`ahead`]): hashing one costs well under the write
/// that records it, and one a reader then skips wastes little.
const AHEAD_MAX_LEN: u64 = 64 * 1024;

/// Whether `meta`'s digests may be completed ahead of its turn (see [`AHEAD_MAX_LEN`]).
pub(crate) fn ahead(meta: &Meta) -> bool {
    meta.len <= AHEAD_MAX_LEN
}

/// Whether `meta` is an item whose digests are not all known yet.
pub(crate) fn lacks_digests(meta: &Meta) -> bool {
    !meta.is_collection() && !meta.digests.is_some_and(|d| d.is_complete())
}

/// [`fill_digests`] for every item of a page, recorded by the store in one write.
pub(crate) async fn fill_all_digests<'a, S: ReplStore>(
    store: &S,
    metas: impl IntoIterator<Item = &'a mut Meta>,
) -> Result<(), StoreError> {
    /// Items recorded per write: a page's worth, so one write never grows with the request.
    const BATCH: usize = 256;
    let mut wanted: Vec<&mut Meta> = metas.into_iter().filter(|m| lacks_digests(m)).collect();
    for batch in wanted.chunks_mut(BATCH) {
        let paths: Vec<_> = batch.iter().map(|m| m.path.clone()).collect();
        let found = store.digests_many(&paths).await?;
        for (meta, now) in batch.iter_mut().zip(found) {
            match now {
                Ok(now) if now.rid == meta.rid && now.content_version == meta.content_version => {
                    meta.digests = now.digests;
                }
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::IsCollection) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Whether `name` is a live property the server computes (and clients may not set).
pub(crate) fn is_protected(name: &PropName) -> bool {
    is_computed(&name.ns, &name.local)
}

/// Whether the property is computed from metadata alone (no dead properties needed).
pub(crate) fn is_computed(ns: &str, local: &str) -> bool {
    (ns == "DAV:" && DAV_PROTECTED.contains(&local))
        || (is_repl_ns(ns) && REPL_LIVE.iter().any(|l| l.eq_ignore_ascii_case(local)))
        || is_oc_checksums(ns, local)
}

/// The live property names `meta` has, for allprop and propname.
pub(crate) fn names(meta: &Meta) -> Vec<PropName> {
    let mut out: Vec<PropName> = [
        "creationdate",
        "getetag",
        "getlastmodified",
        "resourcetype",
        "supportedlock",
        "lockdiscovery",
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

/// A property's value, ready to write.
#[derive(Debug)]
pub(crate) enum PropValue<'a> {
    /// Text (escaped on output).
    Text(String),
    /// A stored XML fragment.
    Xml(&'a str),
    /// A computed XML fragment.
    Fragment(String),
    /// `DAV:resourcetype` (collection or not).
    ResourceType(bool),
    /// An empty element.
    Empty,
}

/// The value of a computed property, if `meta` has it. `DAV:displayname` is not included:
/// it is a dead property with a default (see [`lookup`]).
pub(crate) fn live_value(meta: &Meta, ns: &str, local: &str) -> Option<PropValue<'static>> {
    if ns == "DAV:" {
        let flag = |b: bool| PropValue::Text((if b { "1" } else { "0" }).to_owned());
        return Some(match local {
            "creationdate" => PropValue::Text(dates::rfc3339(meta.created)),
            "getlastmodified" => PropValue::Text(dates::http_date(meta.modified)),
            "getetag" => PropValue::Text(meta.etag()),
            "getcontentlength" if !meta.is_collection() => PropValue::Text(meta.len.to_string()),
            "getcontenttype" if !meta.is_collection() => PropValue::Text(
                meta.content_type
                    .clone()
                    .unwrap_or_else(|| "application/octet-stream".into()),
            ),
            "resourcetype" => PropValue::ResourceType(meta.is_collection()),
            "supportedlock" => PropValue::Empty,
            "supported-report-set" if meta.is_collection() => PropValue::Xml(COLLECTION_REPORTS),
            "supported-report-set" => PropValue::Empty,
            "isfolder" | "iscollection" => flag(meta.is_collection()),
            "ishidden" => flag(false),
            _ => return None,
        });
    }
    if is_oc_checksums(ns, local) {
        // ownCloud's form, which rclone reads: one `checksum` element, space-separated. The
        // handlers fill in the missing digests first (`fill_digests`); whatever is still
        // unknown (the item changed meanwhile) is left out.
        let d = meta.digests?;
        let known = [
            ("SHA1", d.sha1.as_ref().map(|v| &v[..])),
            ("MD5", d.md5.as_ref().map(|v| &v[..])),
            ("SHA256", d.sha256.as_ref().map(|v| &v[..])),
        ];
        let list: Vec<String> = known
            .iter()
            .filter_map(|(name, v)| v.map(|v| format!("{name}:{}", davrepl_store::hex(v))))
            .collect();
        return Some(PropValue::Fragment(format!(
            "<checksum xmlns=\"{OC_NS}\">{}</checksum>",
            list.join(" ")
        )));
    }
    if is_repl_ns(ns) {
        return match local.to_ascii_lowercase().as_str() {
            "resourcetag" => Some(PropValue::Text(meta.resource_tag())),
            "repl-uid" => Some(PropValue::Text(meta.repl_uid())),
            "contenttag" => meta.content_tag().map(PropValue::Text),
            _ => None,
        };
    }
    None
}

/// A property of a resource by namespace and local name: dead properties first (so a client
/// can set `displayname`), then computed ones, then the default display name.
pub(crate) fn lookup<'a>(
    meta: &Meta,
    dead: &'a [DeadProp],
    ns: &str,
    local: &str,
) -> Option<PropValue<'a>> {
    if let Some(d) = dead
        .iter()
        .find(|d| d.name.ns == ns && d.name.local == local)
    {
        return Some(if d.value.is_empty() {
            PropValue::Empty
        } else {
            PropValue::Xml(&d.value)
        });
    }
    if let Some(v) = live_value(meta, ns, local) {
        return Some(v);
    }
    (ns == "DAV:" && local == "displayname").then(|| PropValue::Text(meta.path.name().to_owned()))
}

/// The value as seen by a SQL `WHERE` clause.
pub(crate) fn sql_value(v: PropValue<'_>) -> Value {
    match v {
        PropValue::Text(t) => Value::Str(t),
        PropValue::Xml(x) => Value::Str(unescape(x)),
        PropValue::Fragment(x) => Value::Str(unescape(&x)),
        PropValue::ResourceType(c) => Value::Str((if c { "collection" } else { "" }).into()),
        PropValue::Empty => Value::Str(String::new()),
    }
}

/// Text of a stored fragment: entities resolved, markup dropped.
fn unescape(x: &str) -> String {
    let mut out = String::with_capacity(x.len());
    let mut in_tag = false;
    for c in x.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#13;", "\r")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

/// Writes `<tag attrs>value</tag>`.
pub(crate) fn write_value(w: &mut XmlWriter, tag: &str, attrs: &[(&str, &str)], v: &PropValue<'_>) {
    match v {
        PropValue::Text(t) => {
            w.start(tag, attrs).text(t).end(tag);
        }
        PropValue::Xml(x) => {
            w.start(tag, attrs).fragment(x).end(tag);
        }
        PropValue::Fragment(x) => {
            w.start(tag, attrs).fragment(x).end(tag);
        }
        PropValue::ResourceType(coll) => {
            w.start(tag, attrs);
            if *coll {
                w.empty("D:collection", &[("xmlns:D", "DAV:")]);
            }
            w.end(tag);
        }
        PropValue::Empty => {
            w.empty(tag, attrs);
        }
    }
}

/// Writes the live property `name` of `meta` in PROPFIND form, returning false if it has no
/// such property.
pub(crate) fn write(w: &mut XmlWriter, meta: &Meta, name: &PropName) -> bool {
    let Some(v) = live_value(meta, &name.ns, &name.local) else {
        return false;
    };
    if name.ns == "DAV:" {
        if let PropValue::ResourceType(coll) = v {
            w.start("D:resourcetype", &[]);
            if coll {
                w.empty("D:collection", &[]);
            }
            w.end("D:resourcetype");
            return true;
        }
        write_value(w, &format!("D:{}", name.local), &[], &v);
    } else {
        write_value(w, &name.local, &[("xmlns", name.ns.as_str())], &v);
    }
    true
}

/// The `displayname` default: the last path segment.
pub(crate) fn display_name(meta: &Meta) -> &str {
    meta.path.name()
}
