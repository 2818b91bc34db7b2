//! Request bodies and the reading of multistatus answers (manifests and PROPFIND).

use std::time::SystemTime;

use davrepl_proto::xml::{Element, XmlLimits, escape_into, parse_document};
use davrepl_proto::{DAV_NS, is_repl_ns};

use crate::Error;
use crate::paths::relative;

const OC_NS: &str = "http://owncloud.org/ns";

/// A resource as a manifest row or PROPFIND entry describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Item {
    /// Its path below the client's base collection, decoded, without a trailing `/`
    /// (`""` is the base collection itself).
    pub path: String,
    /// Whether it is a collection.
    pub is_collection: bool,
    /// Its repl-uid (`rid:…`).
    pub rid: Option<String>,
    /// Its resourcetag (`rt:…`).
    pub tag: Option<String>,
    /// Its content length (not for collections).
    pub len: Option<u64>,
    /// Its modification time (whole seconds).
    pub modified: Option<SystemTime>,
    /// The SHA-256 of its content in lowercase hex, when the server reports checksums.
    pub sha256: Option<String>,
}

/// One manifest row.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Row {
    /// Created or changed (including moved here: the repl-uid says which resource it is).
    Change(Item),
    /// Gone from this path (deleted, or moved away when a `Change` with the same repl-uid
    /// follows).
    Delete {
        /// The last path the resource had.
        path: String,
        /// Its repl-uid.
        rid: String,
    },
}

/// A manifest answer: rows in the server's order and the collblob that covers them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ManifestPage {
    /// The collblob to send next time (covers exactly the rows delivered).
    pub collblob: String,
    /// The rows.
    pub rows: Vec<Row>,
    /// How many rows the whole manifest had (`Content-Range: …; total=N`), when paged.
    pub total: Option<usize>,
}

fn limits() -> XmlLimits {
    let mut l = XmlLimits::default();
    // The body was bounded while it was read (`ClientBuilder::max_response_bytes`).
    l.max_bytes = usize::MAX;
    l.max_elements = 50_000_000;
    l
}

const PROPS: &str = "<D:prop><R:resourcetag/><R:repl-uid/><D:resourcetype/>\
<D:getcontentlength/><D:getlastmodified/><O:checksums/></D:prop>";

/// A PROPFIND body asking for the properties an [`Item`] has; with `Some(collblob)` it is a
/// replication manifest request.
pub(crate) fn propfind_body(collblob: Option<&str>) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<D:propfind xmlns:D=\"DAV:\" \
         xmlns:R=\"http://schemas.microsoft.com/repl/\" xmlns:O=\"http://owncloud.org/ns\">",
    );
    if let Some(blob) = collblob {
        out.push_str("<R:repl><R:collblob>");
        escape_into(&mut out, blob, false);
        out.push_str("</R:collblob></R:repl>");
    }
    out.push_str(PROPS);
    out.push_str("</D:propfind>");
    out
}

/// A PROPPATCH body setting each (namespace, name, value).
pub(crate) fn proppatch_body(set: &[(&str, &str, &str)]) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<D:propertyupdate xmlns:D=\"DAV:\"><D:set><D:prop>",
    );
    for (ns, name, value) in set {
        out.push_str("<p:");
        out.push_str(name);
        out.push_str(" xmlns:p=\"");
        escape_into(&mut out, ns, true);
        out.push_str("\">");
        escape_into(&mut out, value, false);
        out.push_str("</p:");
        out.push_str(name);
        out.push('>');
    }
    out.push_str("</D:prop></D:set></D:propertyupdate>");
    out
}

fn is(e: &Element, ns: &str, local: &str) -> bool {
    e.namespace.as_deref() == Some(ns) && e.name == local
}

fn is_repl(e: &Element, local: &str) -> bool {
    e.namespace.as_deref().is_some_and(is_repl_ns) && e.name.eq_ignore_ascii_case(local)
}

fn text(e: &Element) -> String {
    e.text().map(|t| t.trim().to_owned()).unwrap_or_default()
}

fn status_ok(propstat: &Element) -> bool {
    propstat
        .child_elements()
        .find(|c| is(c, DAV_NS, "status"))
        .map(text)
        .is_some_and(|s| s.split_whitespace().nth(1) == Some("200"))
}

fn multistatus(body: &[u8]) -> Result<Element, Error> {
    let root = parse_document(body, &limits())
        .map_err(|e| Error::protocol(format!("multistatus: {e}")))?;
    if !is(&root, DAV_NS, "multistatus") {
        return Err(Error::protocol("the answer is not a DAV:multistatus"));
    }
    Ok(root)
}

/// `total` from `Content-Range: rows 0-99; total=N`.
pub(crate) fn content_range_total(v: &str) -> Option<usize> {
    let (_, rest) = v.split_once("total=")?;
    rest.trim().parse().ok()
}

/// Reads a manifest (or a plain PROPFIND answer when `manifest` is false).
pub(crate) fn parse(body: &[u8], base: &str, manifest: bool) -> Result<ManifestPage, Error> {
    let root = multistatus(body)?;
    let mut page = ManifestPage::default();
    for child in root.child_elements() {
        if is_repl(child, "repl") {
            if let Some(b) = child.child_elements().find(|c| is_repl(c, "collblob")) {
                page.collblob = text(b);
            }
            continue;
        }
        if !is(child, DAV_NS, "response") {
            continue;
        }
        let href = child
            .child_elements()
            .find(|c| is(c, DAV_NS, "href"))
            .map(text)
            .ok_or_else(|| Error::protocol("a response without href"))?;
        let Some(path) = relative(&href, base)? else {
            return Err(Error::protocol(format!(
                "{href} lies outside the requested collection"
            )));
        };
        let delete = child
            .child_elements()
            .find(|c| is_repl(c, "changetype"))
            .is_some_and(|c| text(c).eq_ignore_ascii_case("delete"));
        let mut item = Item {
            is_collection: href.ends_with('/'),
            path,
            ..Item::default()
        };
        for ps in child.child_elements().filter(|c| is(c, DAV_NS, "propstat")) {
            if !status_ok(ps) {
                continue;
            }
            for prop in ps.child_elements().filter(|c| is(c, DAV_NS, "prop")) {
                for p in prop.child_elements() {
                    read_prop(&mut item, p);
                }
            }
        }
        if manifest && delete {
            let rid = item
                .rid
                .ok_or_else(|| Error::protocol(format!("delete row {href} without repl-uid")))?;
            page.rows.push(Row::Delete {
                path: item.path,
                rid,
            });
        } else {
            page.rows.push(Row::Change(item));
        }
    }
    Ok(page)
}

fn read_prop(item: &mut Item, p: &Element) {
    if is_repl(p, "resourcetag") {
        item.tag = Some(text(p));
    } else if is_repl(p, "repl-uid") {
        item.rid = Some(text(p));
    } else if is(p, DAV_NS, "resourcetype") {
        item.is_collection = p.child_elements().any(|c| is(c, DAV_NS, "collection"));
    } else if is(p, DAV_NS, "getcontentlength") {
        item.len = text(p).parse().ok();
    } else if is(p, DAV_NS, "getlastmodified") {
        item.modified = httpdate::parse_http_date(&text(p)).ok();
    } else if is(p, OC_NS, "checksums") {
        let all: String = p.child_elements().map(text).collect::<Vec<_>>().join(" ");
        item.sha256 = all.split_whitespace().find_map(|c| {
            let (alg, hex) = c.split_once(':')?;
            alg.eq_ignore_ascii_case("SHA256")
                .then(|| hex.to_ascii_lowercase())
        });
    }
}

/// A PROPPATCH answer with any property not at `200` is an error.
pub(crate) fn check_proppatch(body: &[u8]) -> Result<(), Error> {
    if body.is_empty() {
        return Ok(());
    }
    let root = multistatus(body)?;
    for r in root.child_elements().filter(|c| is(c, DAV_NS, "response")) {
        for ps in r.child_elements().filter(|c| is(c, DAV_NS, "propstat")) {
            if !status_ok(ps) {
                let status = ps
                    .child_elements()
                    .find(|c| is(c, DAV_NS, "status"))
                    .map(text)
                    .unwrap_or_default();
                return Err(Error::new(
                    crate::ErrorKind::Status,
                    format!("PROPPATCH refused a property: {status}"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_change_and_delete_rows() {
        let body = r#"<?xml version="1.0"?>
<a:multistatus xmlns:a="DAV:" xmlns:d="http://schemas.microsoft.com/repl/" xmlns:o="http://owncloud.org/ns">
 <d:repl><d:collblob>BLOB</d:collblob></d:repl>
 <a:response><a:href>http://h/dav/n%20b/x.txt</a:href>
  <a:propstat><a:status>HTTP/1.1 200 OK</a:status><a:prop>
   <d:resourcetag>rt:1</d:resourcetag><d:repl-uid>rid:1</d:repl-uid><a:resourcetype/>
   <a:getcontentlength>5</a:getcontentlength>
   <o:checksums><o:checksum>SHA1:aa MD5:bb SHA256:CC</o:checksum></o:checksums>
  </a:prop></a:propstat><d:changetype>change</d:changetype></a:response>
 <a:response><a:href>http://h/dav/n%20b/</a:href>
  <a:propstat><a:status>HTTP/1.1 200 OK</a:status><a:prop><d:repl-uid>rid:2</d:repl-uid></a:prop></a:propstat>
  <d:changetype>delete</d:changetype></a:response>
</a:multistatus>"#;
        let page = parse(body.as_bytes(), "/dav/", true).unwrap();
        assert_eq!(page.collblob, "BLOB");
        let Row::Change(item) = &page.rows[0] else {
            panic!("{:?}", page.rows[0])
        };
        assert_eq!(item.path, "n b/x.txt");
        assert_eq!(item.len, Some(5));
        assert_eq!(item.sha256.as_deref(), Some("cc"));
        assert!(!item.is_collection);
        assert_eq!(
            page.rows[1],
            Row::Delete {
                path: "n b".into(),
                rid: "rid:2".into()
            }
        );
        assert!(parse(b"<x/>", "/dav/", true).is_err());
        assert_eq!(content_range_total("rows 0-9; total=42"), Some(42));
    }
}
