//! XML request parsing and the escaping response writer.
//!
//! Requests are read by [`parse_document`] (module `reader`): a streaming reader that checks
//! every limit event by event and builds a small element tree only from what passed. Any
//! document type declaration is refused, so no entity is ever defined, expanded or fetched.
//! Responses are written through [`XmlWriter`], never with `format!`, so escaping is
//! structural.

mod reader;
mod report;

use bytes::{Bytes, BytesMut};
use davrepl_store::PropName;

pub use reader::{Element, Node, parse_document};
pub use report::{Report, SyncCollection, SyncLevel, parse_report};

use crate::DAV_NS;

/// Limits applied while reading a request body; each is checked as the body is read, before
/// the part that breaks it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct XmlLimits {
    /// Largest body in bytes (this also bounds every text node).
    pub max_bytes: usize,
    /// Deepest element nesting.
    pub max_depth: usize,
    /// Most elements in one document.
    pub max_elements: usize,
    /// Most attributes (namespace declarations included) on one element.
    pub max_attributes: usize,
    /// Most namespace bindings in scope at once.
    pub max_namespaces: usize,
}

impl Default for XmlLimits {
    fn default() -> Self {
        Self {
            max_bytes: 1 << 20,
            max_depth: 64,
            max_elements: 10_000,
            max_attributes: 64,
            max_namespaces: 256,
        }
    }
}

/// Why a request body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum XmlError {
    /// Not well-formed (or not namespace-well-formed) XML.
    #[error("malformed XML: {0}")]
    Malformed(String),
    /// A document type declaration; never accepted (entity attacks).
    #[error("document type declarations are not allowed")]
    Doctype,
    /// Over [`XmlLimits::max_bytes`].
    #[error("XML body larger than {0} bytes")]
    TooLarge(usize),
    /// Over [`XmlLimits::max_depth`] or [`XmlLimits::max_elements`].
    #[error("XML body too complex: {0}")]
    TooComplex(String),
    /// Well-formed, but not the expected document.
    #[error("unexpected XML: {0}")]
    Unexpected(String),
}

fn is_dav(e: &Element, local: &str) -> bool {
    e.namespace.as_deref() == Some(DAV_NS) && e.name == local
}

fn child_elements(e: &Element) -> impl Iterator<Item = &Element> {
    e.child_elements()
}

/// The name of an element as a property name.
pub fn prop_name(e: &Element) -> PropName {
    PropName::new(e.namespace.clone().unwrap_or_default(), e.name.clone())
}

/// What a PROPFIND asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropfindKind {
    /// `allprop` (also an empty body), with any `include`d names.
    AllProp(Vec<PropName>),
    /// `propname`.
    PropName,
    /// `prop` with these names.
    Prop(Vec<PropName>),
}

/// A parsed PROPFIND body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Propfind {
    /// What to report.
    pub kind: PropfindKind,
    /// The root element, for extensions (the replication `repl` child).
    pub root: Option<Element>,
}

/// Parses a PROPFIND body; an empty body means `allprop`.
pub fn parse_propfind(body: &[u8], limits: &XmlLimits) -> Result<Propfind, XmlError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Propfind {
            kind: PropfindKind::AllProp(Vec::new()),
            root: None,
        });
    }
    let root = parse_document(body, limits)?;
    if !is_dav(&root, "propfind") {
        return Err(XmlError::Unexpected(
            "root element must be DAV:propfind".into(),
        ));
    }
    let mut kind = None;
    let mut include = Vec::new();
    for c in child_elements(&root) {
        if c.namespace.as_deref() != Some(DAV_NS) {
            continue;
        }
        let k = match c.name.as_str() {
            "allprop" => PropfindKind::AllProp(Vec::new()),
            "propname" => PropfindKind::PropName,
            // `props` is a spelling slip in an Exchange SDK scenario; accept it (spec §3.10).
            "prop" | "props" => PropfindKind::Prop(child_elements(c).map(prop_name).collect()),
            "include" => {
                include.extend(child_elements(c).map(prop_name));
                continue;
            }
            _ => continue,
        };
        if kind.replace(k).is_some() {
            return Err(XmlError::Unexpected(
                "more than one of allprop, propname, prop".into(),
            ));
        }
    }
    let kind = match kind.unwrap_or(PropfindKind::AllProp(Vec::new())) {
        PropfindKind::AllProp(_) => PropfindKind::AllProp(include),
        k => k,
    };
    Ok(Propfind {
        kind,
        root: Some(root),
    })
}

/// The `repl` element of a manifest request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplRequest {
    /// The namespace spelling the client used on `repl` (echoed in the response).
    pub ns: String,
    /// The collblob text, trimmed; `None` or empty means a first sync.
    pub collblob: Option<String>,
    /// `resourcetaglist/resourcetag` values, normalised (trimmed, `<>` stripped, `rt:` added).
    pub resource_tags: Vec<String>,
}

/// Finds and reads a `repl` child of `root` (element names in the replication namespace are
/// matched case-insensitively; children in any order; the last of duplicates wins).
pub fn repl_of(root: &Element) -> Option<ReplRequest> {
    let repl = child_elements(root)
        .filter(|e| {
            e.namespace.as_deref().is_some_and(crate::is_repl_ns)
                && e.name.eq_ignore_ascii_case("repl")
        })
        .last()?;
    let mut out = ReplRequest {
        ns: repl.namespace.clone().unwrap_or_default(),
        collblob: None,
        resource_tags: Vec::new(),
    };
    for c in child_elements(repl) {
        if !c.namespace.as_deref().is_some_and(crate::is_repl_ns) {
            continue;
        }
        if c.name.eq_ignore_ascii_case("collblob") {
            out.collblob = Some(c.text().map(|t| t.trim().to_owned()).unwrap_or_default());
        } else if c.name.eq_ignore_ascii_case("resourcetaglist") {
            out.resource_tags = child_elements(c)
                .filter(|t| t.name.eq_ignore_ascii_case("resourcetag"))
                .filter_map(|t| t.text())
                .map(|t| normalise_tag(&t))
                .filter(|t| t.len() > 3)
                .collect();
        }
    }
    Some(out)
}

fn normalise_tag(t: &str) -> String {
    let t = t.trim();
    let t = t
        .strip_prefix('<')
        .and_then(|x| x.strip_suffix('>'))
        .unwrap_or(t)
        .trim();
    if t.starts_with("rt:") {
        t.to_owned()
    } else {
        format!("rt:{t}")
    }
}

/// A parsed SEARCH body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchRequest {
    /// The `repl` element, for a manifest request.
    pub repl: Option<ReplRequest>,
    /// The `DAV:sql` text.
    pub sql: Option<String>,
    /// A `DAV:basicsearch` (RFC 5323) was given instead of `sql`.
    pub basicsearch: bool,
}

/// Parses a `DAV:searchrequest` body.
pub fn parse_search(body: &[u8], limits: &XmlLimits) -> Result<SearchRequest, XmlError> {
    let root = parse_document(body, limits)?;
    if !is_dav(&root, "searchrequest") {
        return Err(XmlError::Unexpected(
            "root element must be DAV:searchrequest".into(),
        ));
    }
    let sql = child_elements(&root)
        .find(|e| is_dav(e, "sql"))
        .map(|e| e.text().map(|t| t.trim().to_owned()).unwrap_or_default());
    let basicsearch = child_elements(&root).any(|e| is_dav(e, "basicsearch"));
    Ok(SearchRequest {
        repl: repl_of(&root),
        sql,
        basicsearch,
    })
}

/// A parsed LOCK body (`DAV:lockinfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockInfo {
    /// `DAV:exclusive` (otherwise shared).
    pub exclusive: bool,
    /// The content of `DAV:owner` as a self-contained fragment, if given.
    pub owner: Option<String>,
}

/// Parses a LOCK body; only write locks exist (RFC 4918 §14.11).
pub fn parse_lockinfo(body: &[u8], limits: &XmlLimits) -> Result<LockInfo, XmlError> {
    let root = parse_document(body, limits)?;
    if !is_dav(&root, "lockinfo") {
        return Err(XmlError::Unexpected(
            "root element must be DAV:lockinfo".into(),
        ));
    }
    let mut exclusive = None;
    let mut write = false;
    let mut owner = None;
    for c in child_elements(&root) {
        if is_dav(c, "lockscope") {
            for s in child_elements(c) {
                if is_dav(s, "exclusive") {
                    exclusive = Some(true);
                } else if is_dav(s, "shared") {
                    exclusive = Some(false);
                }
            }
        } else if is_dav(c, "locktype") {
            write |= child_elements(c).any(|t| is_dav(t, "write"));
        } else if is_dav(c, "owner") {
            let mut value = String::new();
            write_children(&mut value, c);
            owner = Some(value);
        }
    }
    let exclusive = exclusive.ok_or_else(|| {
        XmlError::Unexpected("lockinfo needs lockscope exclusive or shared".into())
    })?;
    if !write {
        return Err(XmlError::Unexpected(
            "lockinfo needs locktype write (the only lock type)".into(),
        ));
    }
    Ok(LockInfo { exclusive, owner })
}

/// One instruction of a PROPPATCH, in document order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchInstruction {
    /// Set `name` to the XML fragment `value`.
    Set {
        /// Property name.
        name: PropName,
        /// The value as a self-contained XML fragment.
        value: String,
    },
    /// Remove `name`.
    Remove(PropName),
}

/// Parses a PROPPATCH body into instructions, in document order.
pub fn parse_proppatch(body: &[u8], limits: &XmlLimits) -> Result<Vec<PatchInstruction>, XmlError> {
    let root = parse_document(body, limits)?;
    if !is_dav(&root, "propertyupdate") {
        return Err(XmlError::Unexpected(
            "root element must be DAV:propertyupdate".into(),
        ));
    }
    let mut out = Vec::new();
    for op in child_elements(&root) {
        let set = if is_dav(op, "set") {
            true
        } else if is_dav(op, "remove") {
            false
        } else {
            continue;
        };
        for prop in child_elements(op).filter(|e| is_dav(e, "prop")) {
            for p in child_elements(prop) {
                let name = prop_name(p);
                if set {
                    let mut value = String::new();
                    write_children(&mut value, p);
                    out.push(PatchInstruction::Set { name, value });
                } else {
                    out.push(PatchInstruction::Remove(name));
                }
            }
        }
    }
    if out.is_empty() {
        return Err(XmlError::Unexpected(
            "propertyupdate names no property".into(),
        ));
    }
    Ok(out)
}

/// Serialises the children of `e` as a self-contained fragment: every element declares its
/// default namespace where it differs from its parent's, so the fragment can be embedded under
/// any element.
fn write_children(out: &mut String, e: &Element) {
    for node in &e.children {
        match node {
            Node::Element(c) => write_element(out, c, None),
            Node::Text(t) => escape_into(out, t, false),
        }
    }
}

fn write_element(out: &mut String, e: &Element, parent_ns: Option<&str>) {
    let ns = e.namespace.as_deref().unwrap_or("");
    out.push('<');
    out.push_str(&e.name);
    if parent_ns != Some(ns) {
        out.push_str(" xmlns=\"");
        escape_into(out, ns, true);
        out.push('"');
    }
    let mut attrs: Vec<_> = e.attributes.iter().collect();
    attrs.sort();
    for (k, v) in attrs {
        out.push(' ');
        out.push_str(k);
        out.push_str("=\"");
        escape_into(out, v, true);
        out.push('"');
    }
    if e.children.is_empty() {
        out.push_str("/>");
        return;
    }
    out.push('>');
    for node in &e.children {
        match node {
            Node::Element(c) => write_element(out, c, Some(ns)),
            Node::Text(t) => escape_into(out, t, false),
        }
    }
    out.push_str("</");
    out.push_str(&e.name);
    out.push('>');
}

/// Whether `s` can stand as an element's local name in a response (an XML `NCName`: a letter
/// or `_`, then letters, digits, `-`, `.`, `_`; no `:`). Names taken from a request (SQL column
/// names and aliases) are checked with this before they become tags.
pub fn is_ncname(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '-' | '.' | '_' | '\u{b7}'))
}

/// Appends `s` escaped for text (or, with `attr`, for a double-quoted attribute).
pub fn escape_into(out: &mut String, s: &str, attr: bool) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attr => out.push_str("&quot;"),
            '\t' if attr => out.push_str("&#9;"),
            '\n' if attr => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

/// An append-only XML writer over a byte buffer. Tags are written as given (callers use fixed
/// prefixes declared on the root); text and attribute values are always escaped.
#[derive(Debug, Default)]
pub struct XmlWriter {
    buf: String,
}

impl XmlWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes the XML declaration.
    pub fn declaration(&mut self) -> &mut Self {
        self.buf
            .push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
        self
    }

    /// `<tag a="v" …>`.
    pub fn start(&mut self, tag: &str, attrs: &[(&str, &str)]) -> &mut Self {
        self.open(tag, attrs);
        self.buf.push('>');
        self
    }

    /// `<tag a="v" …/>`.
    pub fn empty(&mut self, tag: &str, attrs: &[(&str, &str)]) -> &mut Self {
        self.open(tag, attrs);
        self.buf.push_str("/>");
        self
    }

    fn open(&mut self, tag: &str, attrs: &[(&str, &str)]) {
        self.buf.push('<');
        self.buf.push_str(tag);
        for (k, v) in attrs {
            self.buf.push(' ');
            self.buf.push_str(k);
            self.buf.push_str("=\"");
            escape_into(&mut self.buf, v, true);
            self.buf.push('"');
        }
    }

    /// `</tag>`.
    pub fn end(&mut self, tag: &str) -> &mut Self {
        self.buf.push_str("</");
        self.buf.push_str(tag);
        self.buf.push('>');
        self
    }

    /// Escaped text.
    pub fn text(&mut self, text: &str) -> &mut Self {
        escape_into(&mut self.buf, text, false);
        self
    }

    /// `<tag>text</tag>`.
    pub fn text_element(&mut self, tag: &str, text: &str) -> &mut Self {
        self.start(tag, &[]).text(text).end(tag)
    }

    /// A fragment produced by this crate's own serialiser (a stored dead-property value).
    pub fn fragment(&mut self, xml: &str) -> &mut Self {
        self.buf.push_str(xml);
        self
    }

    /// A property element in its own namespace: `<local xmlns="ns">` (or `xmlns=""`).
    pub fn start_prop(&mut self, name: &PropName, empty: bool) -> &mut Self {
        if name.ns == DAV_NS {
            let tag = format!("D:{}", name.local);
            return if empty {
                self.empty(&tag, &[])
            } else {
                self.start(&tag, &[])
            };
        }
        let attrs = [("xmlns", name.ns.as_str())];
        if empty {
            self.empty(&name.local, &attrs)
        } else {
            self.start(&name.local, &attrs)
        }
    }

    /// Closes a property opened with [`XmlWriter::start_prop`].
    pub fn end_prop(&mut self, name: &PropName) -> &mut Self {
        if name.ns == DAV_NS {
            let tag = format!("D:{}", name.local);
            return self.end(&tag);
        }
        self.end(&name.local)
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Takes what was written so far, leaving the writer empty (for streaming in chunks).
    pub fn take(&mut self) -> Bytes {
        let s = std::mem::take(&mut self.buf);
        Bytes::from(s)
    }

    /// Everything written, as bytes.
    pub fn finish(self) -> Bytes {
        BytesMut::from(self.buf.as_bytes()).freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: XmlLimits = XmlLimits {
        max_bytes: 4096,
        max_depth: 8,
        max_elements: 50,
        max_attributes: 8,
        max_namespaces: 16,
    };

    #[test]
    fn propfind_forms() {
        let p = parse_propfind(b"", &L).unwrap();
        assert_eq!(p.kind, PropfindKind::AllProp(vec![]));
        let p = parse_propfind(br#"<D:propfind xmlns:D="DAV:"><D:prop><D:getetag/><x:a xmlns:x="urn:x"/></D:prop></D:propfind>"#, &L).unwrap();
        assert_eq!(
            p.kind,
            PropfindKind::Prop(vec![
                PropName::new("DAV:", "getetag"),
                PropName::new("urn:x", "a")
            ])
        );
        let p = parse_propfind(br#"<propfind xmlns="DAV:"><propname/></propfind>"#, &L).unwrap();
        assert_eq!(p.kind, PropfindKind::PropName);
        assert!(matches!(
            parse_propfind(b"<propfind xmlns=\"DAV:\"><prop>", &L),
            Err(XmlError::Malformed(_))
        ));
        assert!(matches!(
            parse_propfind(b"<foo/>", &L),
            Err(XmlError::Unexpected(_))
        ));
        let bad_ns =
            br#"<D:propfind xmlns:D="DAV:"><D:prop><bar:foo xmlns:bar=""/></D:prop></D:propfind>"#;
        assert!(matches!(
            parse_propfind(bad_ns, &L),
            Err(XmlError::Malformed(_))
        ));
    }

    #[test]
    fn refuses_doctype_and_limits() {
        let bomb = br#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">]><D:propfind xmlns:D="DAV:">&lol;</D:propfind>"#;
        assert_eq!(parse_propfind(bomb, &L), Err(XmlError::Doctype));
        let deep = format!(
            "<D:propfind xmlns:D=\"DAV:\">{}{}</D:propfind>",
            "<a>".repeat(20),
            "</a>".repeat(20)
        );
        assert!(matches!(
            parse_propfind(deep.as_bytes(), &L),
            Err(XmlError::TooComplex(_))
        ));
        assert!(matches!(
            parse_propfind(
                &[b' '; 5000][..4100]
                    .iter()
                    .chain(b"<a/>")
                    .copied()
                    .collect::<Vec<_>>(),
                &L
            ),
            Err(XmlError::TooLarge(_))
        ));
        assert!(matches!(
            parse_propfind(b"<a>\xff</a>", &L),
            Err(XmlError::Malformed(_))
        ));
    }

    #[test]
    fn proppatch_values_are_self_contained() {
        let body = br#"<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="http://z/"><D:set><D:prop><Z:p>a &amp; <Z:b x="1">t</Z:b><c xmlns=""/></Z:p></D:prop></D:set><D:remove><D:prop><Z:q/></D:prop></D:remove></D:propertyupdate>"#;
        let ops = parse_proppatch(body, &L).unwrap();
        assert_eq!(
            ops,
            vec![
                PatchInstruction::Set {
                    name: PropName::new("http://z/", "p"),
                    value: r#"a &amp; <b xmlns="http://z/" x="1">t</b><c xmlns=""/>"#.into()
                },
                PatchInstruction::Remove(PropName::new("http://z/", "q")),
            ]
        );
    }

    #[test]
    fn search_bodies() {
        let body = br#"<?xml version="1.0"?><D:searchrequest xmlns:D = "DAV:" xmlns:R="https://schemas.microsoft.com/repl/"><R:repl><R:CollBlob> abc </R:CollBlob><R:resourcetaglist><R:resourcetag> &lt;rt:x&gt; </R:resourcetag><R:resourcetag>doc1-01</R:resourcetag></R:resourcetaglist></R:repl><D:sql>SELECT "a" FROM "/"</D:sql></D:searchrequest>"#;
        let s = parse_search(body, &L).unwrap();
        let r = s.repl.unwrap();
        assert_eq!(r.ns, "https://schemas.microsoft.com/repl/");
        assert_eq!(r.collblob.as_deref(), Some("abc"));
        assert_eq!(
            r.resource_tags,
            vec!["rt:x".to_owned(), "rt:doc1-01".to_owned()]
        );
        assert_eq!(s.sql.as_deref(), Some("SELECT \"a\" FROM \"/\""));
        let plain = parse_search(
            br#"<searchrequest xmlns="DAV:"><sql>x</sql></searchrequest>"#,
            &L,
        )
        .unwrap();
        assert!(plain.repl.is_none());
        assert!(crate::is_repl_ns("http://schemas.microsoft.com/repl"));
        assert!(!crate::is_repl_ns("http://example.com/repl/"));
    }

    #[test]
    fn writer_escapes() {
        let mut w = XmlWriter::new();
        w.start("D:a", &[("k", "\"<&")]).text("<&>").end("D:a");
        assert_eq!(
            &w.finish()[..],
            br#"<D:a k="&quot;&lt;&amp;">&lt;&amp;&gt;</D:a>"#
        );
    }
}
