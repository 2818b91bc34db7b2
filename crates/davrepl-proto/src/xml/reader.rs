//! The request reader: a small element tree built from `quick-xml` events, with every limit
//! checked event by event, before anything is allocated for the element that would break it.
//!
//! Why not a DOM crate: `xmltree` builds its tree recursively and only then lets the caller look
//! at depth (a deeply nested body overflows the stack first), and `xml-rs`, under it, hands out
//! a full copy of the namespace map with every element (500 declarations × 5,000 elements is
//! gigabytes). `quick-xml`'s namespace reader keeps one binding stack and resolves names
//! against it, so memory stays proportional to the body, and depth is our own loop counter.

use std::borrow::Cow;

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

use super::{XmlError, XmlLimits};

/// An element of a request body: its namespace, local name, attributes (local names, namespace
/// declarations left out) and children in document order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    /// The namespace URI, `None` when the element is in no namespace.
    pub namespace: Option<String>,
    /// The local name.
    pub name: String,
    /// Attributes as (local name, value), in document order.
    pub attributes: Vec<(String, String)>,
    /// Child elements and text.
    pub children: Vec<Node>,
}

/// A child of an [`Element`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A child element.
    Element(Element),
    /// Character data (text, references and CDATA sections, merged).
    Text(String),
}

impl Element {
    /// The child elements, in document order.
    pub fn child_elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The element's own text (its text children concatenated), `None` when it has none.
    pub fn text(&self) -> Option<Cow<'_, str>> {
        let mut texts = self.children.iter().filter_map(|n| match n {
            Node::Text(t) => Some(t.as_str()),
            Node::Element(_) => None,
        });
        let first = texts.next()?;
        match texts.next() {
            None => Some(Cow::Borrowed(first)),
            Some(second) => {
                let mut all = format!("{first}{second}");
                texts.for_each(|t| all.push_str(t));
                Some(Cow::Owned(all))
            }
        }
    }

    fn push_text(&mut self, text: &str) {
        if let Some(Node::Text(t)) = self.children.last_mut() {
            t.push_str(text);
        } else {
            self.children.push(Node::Text(text.to_owned()));
        }
    }
}

fn malformed(e: impl std::fmt::Display) -> XmlError {
    XmlError::Malformed(e.to_string())
}

/// Parses a request body into its root element, enforcing `limits` while reading. The document
/// must be well-formed and namespace-well-formed, with exactly one root element and nothing but
/// comments, processing instructions and white space around it. Any document type declaration
/// is refused, so no entity is ever defined, expanded or fetched.
pub fn parse_document(body: &[u8], limits: &XmlLimits) -> Result<Element, XmlError> {
    if body.len() > limits.max_bytes {
        return Err(XmlError::TooLarge(limits.max_bytes));
    }
    let text = std::str::from_utf8(body).map_err(|e| malformed(format!("invalid UTF-8: {e}")))?;
    let mut reader = NsReader::from_str(text);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.check_comments = true;
    config.trim_text(false);
    reader
        .resolver_mut()
        .set_max_namespace_bindings(limits.max_namespaces);
    let mut open: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut elements = 0usize;
    loop {
        let (resolved, event) = reader.read_resolved_event().map_err(|e| match e {
            quick_xml::Error::Namespace(n) => {
                XmlError::TooComplex(format!("namespace declarations: {n}"))
            }
            e => malformed(e),
        })?;
        let inside = !open.is_empty();
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                if root.is_some() {
                    return Err(malformed("content after the root element"));
                }
                elements += 1;
                if elements > limits.max_elements {
                    return Err(XmlError::TooComplex(format!(
                        "more than {} elements",
                        limits.max_elements
                    )));
                }
                if open.len() >= limits.max_depth {
                    return Err(XmlError::TooComplex(format!(
                        "nesting deeper than {}",
                        limits.max_depth
                    )));
                }
                let namespace = match resolved {
                    ResolveResult::Bound(ns) => Some(ns.0.to_owned()),
                    ResolveResult::Unbound => None,
                    ResolveResult::Unknown(p) => {
                        return Err(malformed(format!("undeclared namespace prefix {p:?}")));
                    }
                };
                let element = Element {
                    namespace,
                    name: e.local_name().as_ref().to_owned(),
                    attributes: attributes(e, limits)?,
                    children: Vec::new(),
                };
                if matches!(event, Event::Start(_)) {
                    open.push(element);
                } else {
                    close(element, &mut open, &mut root);
                }
            }
            Event::End(_) => {
                let element = open.pop().ok_or_else(|| malformed("unmatched end tag"))?;
                close(element, &mut open, &mut root);
            }
            Event::Text(t) => {
                let content = t.xml10_content();
                match open.last_mut() {
                    Some(top) => top.push_text(&content),
                    None if content.trim_matches([' ', '\t', '\r', '\n']).is_empty() => {}
                    None => return Err(malformed("text outside the root element")),
                }
            }
            Event::CData(c) => match open.last_mut() {
                Some(top) => top.push_text(&c.xml10_content()),
                None => return Err(malformed("CDATA outside the root element")),
            },
            Event::GeneralRef(r) => {
                let top = open
                    .last_mut()
                    .ok_or_else(|| malformed("reference outside the root element"))?;
                match r.resolve_char_ref().map_err(malformed)? {
                    Some(c) => top.push_text(c.encode_utf8(&mut [0; 4])),
                    None => {
                        let name: &str = &r;
                        let value = resolve_predefined_entity(name)
                            .ok_or_else(|| malformed(format!("undefined entity &{name};")))?;
                        top.push_text(value);
                    }
                }
            }
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::Decl(_) if inside || root.is_some() => {
                return Err(malformed("XML declaration inside the document"));
            }
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !open.is_empty() {
        return Err(malformed("unclosed element at the end of the body"));
    }
    root.ok_or_else(|| malformed("no root element"))
}

/// Attaches a finished element to its parent, or makes it the root.
fn close(element: Element, open: &mut [Element], root: &mut Option<Element>) {
    match open.last_mut() {
        Some(parent) => parent.children.push(Node::Element(element)),
        None => *root = Some(element),
    }
}

/// The attributes of a start tag, counted against the limit; namespace declarations are
/// checked (a prefix bound to the empty URI is not namespace-well-formed) and left out.
fn attributes(e: &BytesStart<'_>, limits: &XmlLimits) -> Result<Vec<(String, String)>, XmlError> {
    let mut out = Vec::new();
    for (i, a) in e.attributes().enumerate() {
        if i >= limits.max_attributes {
            return Err(XmlError::TooComplex(format!(
                "more than {} attributes on one element",
                limits.max_attributes
            )));
        }
        let a = a.map_err(malformed)?;
        let value = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(malformed)?;
        let key = a.key.as_ref();
        if key == "xmlns" {
            continue;
        }
        if key.starts_with("xmlns:") {
            if value.is_empty() {
                return Err(malformed("a namespace prefix is bound to the empty URI"));
            }
            continue;
        }
        out.push((a.key.local_name().as_ref().to_owned(), value.into_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Element, XmlError> {
        parse_document(s.as_bytes(), &XmlLimits::default())
    }

    #[test]
    fn tree_text_and_references() {
        let e = parse(
            r#"<?xml version="1.0"?><!-- hi --><a:r xmlns:a="urn:a" x="1" xmlns="urn:d"><b>t&amp;u&#x41;<![CDATA[<c>]]></b><c/></a:r>"#,
        )
        .unwrap();
        assert_eq!(e.namespace.as_deref(), Some("urn:a"));
        assert_eq!(e.name, "r");
        assert_eq!(e.attributes, vec![("x".to_owned(), "1".to_owned())]);
        let kids: Vec<_> = e.child_elements().collect();
        assert_eq!(kids.len(), 2);
        assert_eq!(kids[0].namespace.as_deref(), Some("urn:d"));
        assert_eq!(kids[0].text().as_deref(), Some("t&uA<c>"));
        assert_eq!(kids[1].text(), None);
    }

    #[test]
    fn strict_well_formedness() {
        for bad in [
            "<a/><b/>",
            "<a/>trailing text",
            "text<a/>",
            "<a>",
            "<a></b>",
            "</a>",
            "",
            "<a>&custom;</a>",
            "<p:a/>",
            r#"<a xmlns:p=""/>"#,
            "<a x='1' x='2'/>",
            "<a/><?xml version='1.0'?>",
        ] {
            assert!(
                matches!(parse(bad), Err(XmlError::Malformed(_))),
                "{bad:?} gave {:?}",
                parse(bad)
            );
        }
        assert!(parse("<a/>\n  <!-- after -->\n").is_ok());
        assert_eq!(
            parse(r#"<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>"#),
            Err(XmlError::Doctype)
        );
    }

    #[test]
    fn limits_hold_while_reading() {
        // 20,000 levels, closed or not: refused at the limit without building them.
        for tail in ["", "</a>"] {
            let deep = format!("<r>{}{}</r>", "<a>".repeat(20_000), tail.repeat(20_000));
            assert!(matches!(parse(&deep), Err(XmlError::TooComplex(_))));
        }
        let wide = format!("<r>{}</r>", "<a/>".repeat(20_000));
        assert!(matches!(parse(&wide), Err(XmlError::TooComplex(_))));
        let decls: String = (0..500)
            .map(|i| format!(" xmlns:p{i}=\"urn:{i}\""))
            .collect();
        let blowup = format!("<r{decls}>{}</r>", "<a/>".repeat(5000));
        assert!(matches!(parse(&blowup), Err(XmlError::TooComplex(_))));
        let attrs: String = (0..100).map(|i| format!(" a{i}=\"v\"")).collect();
        assert!(matches!(
            parse(&format!("<r{attrs}/>")),
            Err(XmlError::TooComplex(_))
        ));
        let l = XmlLimits {
            max_bytes: 10,
            ..XmlLimits::default()
        };
        assert_eq!(
            parse_document(b"<a>0123456789</a>", &l),
            Err(XmlError::TooLarge(10))
        );
    }
}
