//! REPORT bodies (RFC 3253 §3.6): which report is asked for, and the one davrepl serves,
//! RFC 6578 `DAV:sync-collection`.

use davrepl_store::PropName;

use super::{Element, XmlError, XmlLimits, child_elements, is_dav, parse_document, prop_name};

/// How deep a `sync-collection` reports (RFC 6578 §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncLevel {
    /// `1`: the collection's direct members.
    One,
    /// `infinite`: every resource below the collection, at any depth.
    Infinite,
}

impl SyncLevel {
    /// The level as written in a request.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::One => "1",
            Self::Infinite => "infinite",
        }
    }
}

/// A parsed `DAV:sync-collection` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncCollection {
    /// The client's token; `None` for an initial sync (an empty or absent `sync-token`).
    pub token: Option<String>,
    /// `sync-level`. RFC 6578 makes the element mandatory; a request without it is read as
    /// level `1`, which is what clients written before the RFC mean.
    pub level: SyncLevel,
    /// Properties to report for each changed member (empty: hrefs only).
    pub props: Vec<PropName>,
    /// `limit/nresults`: at most this many members (at least 1).
    pub limit: Option<u64>,
}

/// A REPORT request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// RFC 6578 `DAV:sync-collection`.
    SyncCollection(SyncCollection),
    /// Any other report, by its root element's name.
    Other(PropName),
}

/// Parses a REPORT body.
pub fn parse_report(body: &[u8], limits: &XmlLimits) -> Result<Report, XmlError> {
    let root = parse_document(body, limits)?;
    if !is_dav(&root, "sync-collection") {
        return Ok(Report::Other(prop_name(&root)));
    }
    sync_collection(&root).map(Report::SyncCollection)
}

fn text_of(e: &Element) -> String {
    e.text().map(|t| t.trim().to_owned()).unwrap_or_default()
}

fn sync_collection(root: &Element) -> Result<SyncCollection, XmlError> {
    let unexpected = |why: String| Err(XmlError::Unexpected(why));
    let mut out = SyncCollection {
        token: None,
        level: SyncLevel::One,
        props: Vec::new(),
        limit: None,
    };
    let (mut token, mut level, mut prop, mut limit) = (false, false, false, false);
    for c in child_elements(root).filter(|c| c.namespace.as_deref() == Some(crate::DAV_NS)) {
        let seen = match c.name.as_str() {
            "sync-token" => &mut token,
            "sync-level" => &mut level,
            "prop" => &mut prop,
            "limit" => &mut limit,
            _ => continue,
        };
        if std::mem::replace(seen, true) {
            return unexpected(format!("more than one DAV:{}", c.name));
        }
        match c.name.as_str() {
            "sync-token" => out.token = Some(text_of(c)).filter(|t| !t.is_empty()),
            "sync-level" => {
                out.level = match text_of(c).as_str() {
                    "1" => SyncLevel::One,
                    "infinite" | "infinity" => SyncLevel::Infinite,
                    other => return unexpected(format!("sync-level {other:?}")),
                }
            }
            "prop" => out.props = child_elements(c).map(prop_name).collect(),
            _ => {
                let n = child_elements(c)
                    .find(|n| is_dav(n, "nresults"))
                    .map(text_of)
                    .ok_or_else(|| XmlError::Unexpected("DAV:limit without nresults".into()))?;
                match n.parse::<u64>() {
                    Ok(n) if n > 0 => out.limit = Some(n),
                    _ => return unexpected(format!("nresults {n:?} is not a positive integer")),
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Report, XmlError> {
        parse_report(body.as_bytes(), &XmlLimits::default())
    }

    fn sync(body: &str) -> SyncCollection {
        match parse(body).unwrap() {
            Report::SyncCollection(s) => s,
            other => panic!("not a sync-collection: {other:?}"),
        }
    }

    #[test]
    fn a_full_request() {
        let s = sync(
            r#"<?xml version="1.0"?>
            <D:sync-collection xmlns:D="DAV:" xmlns:x="urn:x">
              <D:sync-token> urn:davrepl:sync:abc </D:sync-token>
              <D:sync-level>infinite</D:sync-level>
              <D:limit><D:nresults>25</D:nresults></D:limit>
              <D:prop><D:getetag/><x:color/></D:prop>
            </D:sync-collection>"#,
        );
        assert_eq!(s.token.as_deref(), Some("urn:davrepl:sync:abc"));
        assert_eq!(s.level, SyncLevel::Infinite);
        assert_eq!(s.limit, Some(25));
        assert_eq!(
            s.props,
            [
                PropName::new("DAV:", "getetag"),
                PropName::new("urn:x", "color")
            ]
        );
    }

    #[test]
    fn an_initial_sync_has_an_empty_or_no_token() {
        for body in [
            r#"<sync-collection xmlns="DAV:"><sync-token/><sync-level>1</sync-level><prop/></sync-collection>"#,
            r#"<sync-collection xmlns="DAV:"><sync-token>  </sync-token><sync-level>1</sync-level></sync-collection>"#,
            r#"<sync-collection xmlns="DAV:"><prop><getetag/></prop></sync-collection>"#,
        ] {
            let s = sync(body);
            assert_eq!(s.token, None, "{body}");
            assert_eq!(s.level, SyncLevel::One);
            assert_eq!(s.limit, None);
        }
    }

    #[test]
    fn bad_values_are_refused() {
        for body in [
            r#"<sync-collection xmlns="DAV:"><sync-level>2</sync-level></sync-collection>"#,
            r#"<sync-collection xmlns="DAV:"><limit><nresults>0</nresults></limit></sync-collection>"#,
            r#"<sync-collection xmlns="DAV:"><limit><nresults>-3</nresults></limit></sync-collection>"#,
            r#"<sync-collection xmlns="DAV:"><limit><nresults>ten</nresults></limit></sync-collection>"#,
            r#"<sync-collection xmlns="DAV:"><limit/></sync-collection>"#,
            r#"<sync-collection xmlns="DAV:"><sync-token>a</sync-token><sync-token>b</sync-token></sync-collection>"#,
        ] {
            assert!(
                matches!(parse(body), Err(XmlError::Unexpected(_))),
                "{body}"
            );
        }
    }

    #[test]
    fn other_reports_are_named() {
        let r = parse(r#"<C:calendar-multiget xmlns:C="urn:ietf:params:xml:ns:caldav"/>"#);
        assert_eq!(
            r.unwrap(),
            Report::Other(PropName::new(
                "urn:ietf:params:xml:ns:caldav",
                "calendar-multiget"
            ))
        );
    }
}
