//! Rendering: response columns, namespace prefixes and the XML of manifest and SEARCH rows.

use davrepl_proto::href::Mount;
use davrepl_proto::sql::{self, Expr, Query};
use davrepl_proto::xml::XmlWriter;
use davrepl_store::{DeadProp, Meta, ReplStore, ReplUid, ResourcePath, Seq};

use super::*;
use crate::error::{DavError, DavResult};
use crate::handlers::Ctx;
use crate::live;

/// Exchange's datatypes namespace, declared on every multistatus root (prefix `b`).
pub(super) const DATATYPES_NS: &str = "urn:uuid:c2f41010-65b3-11d1-a29f-00aa00c14882/";
/// Rows written per body chunk while streaming.
pub(super) const ROWS_PER_CHUNK: usize = 256;

/// One property column of the output.
#[derive(Debug, Clone)]
pub(super) struct OutCol {
    pub(super) ns: String,
    pub(super) local: String,
    /// Element name to write (`e:subject`, `d:resourcetag`, or a bare alias).
    pub(super) tag: String,
}

/// Which properties each row carries.
#[derive(Debug, Clone)]
pub(super) enum Columns {
    /// Named columns.
    Named(Vec<OutCol>),
    /// All properties (`SELECT *`, `allprop`).
    All,
    /// Property names only (`propname`).
    Names,
}

impl Columns {
    /// Whether `oc:checksums` is one of the columns.
    pub(super) fn has_checksums(&self) -> bool {
        matches!(self, Self::Named(cols) if cols.iter().any(|c| live::is_oc_checksums(&c.ns, &c.local)))
    }
}

/// Namespace prefixes of one response, Exchange-style: `a` DAV:, `b` datatypes, `d` the
/// replication namespace as the client spelled it, then `e`, `f`, … (spec §2.3 rule 5).
#[derive(Debug, Clone)]
pub(super) struct Prefixes {
    pub(super) repl_ns: String,
    pub(super) others: Vec<(String, String)>,
}

impl Prefixes {
    pub(super) fn new(repl_ns: &str) -> Self {
        Self {
            repl_ns: repl_ns.to_owned(),
            others: Vec::new(),
        }
    }

    pub(super) fn tag(&mut self, ns: &str, local: &str) -> String {
        if ns == "DAV:" {
            return format!("a:{local}");
        }
        if ns == self.repl_ns {
            return format!("d:{local}");
        }
        if let Some((p, _)) = self.others.iter().find(|(_, u)| u == ns) {
            return format!("{p}:{local}");
        }
        let idx = self.others.len();
        let p = if idx < 22 {
            ((b'e' + idx as u8) as char).to_string()
        } else {
            format!("n{idx}")
        };
        self.others.push((p.clone(), ns.to_owned()));
        format!("{p}:{local}")
    }

    pub(super) fn root_attrs(&self) -> Vec<(String, String)> {
        let mut v = vec![
            ("xmlns:a".to_owned(), "DAV:".to_owned()),
            ("xmlns:b".to_owned(), DATATYPES_NS.to_owned()),
            ("xmlns:d".to_owned(), self.repl_ns.clone()),
        ];
        v.extend(
            self.others
                .iter()
                .map(|(p, u)| (format!("xmlns:{p}"), u.clone())),
        );
        v
    }
}

/// How rows are written.
pub(super) struct Output {
    pub(super) columns: Columns,
    pub(super) prefixes: Prefixes,
    pub(super) brief: bool,
    /// `scheme://host` for absolute hrefs.
    pub(super) origin: String,
    /// Where the store is mounted (hrefs are rendered for the mount, not the store).
    pub(super) mount: Mount,
}

/// A manifest row.
#[derive(Debug)]
pub(super) enum Row {
    Change {
        seq: Seq,
        meta: Meta,
        props: Vec<DeadProp>,
    },
    Delete {
        seq: Seq,
        rid: ReplUid,
        path: ResourcePath,
        collection: bool,
    },
}

impl Row {
    pub(super) fn seq(&self) -> Seq {
        match self {
            Self::Change { seq, .. } | Self::Delete { seq, .. } => *seq,
        }
    }

    /// What a collblob records to mark the row seen: (repl-uid counter, sequence number).
    pub(super) fn key(&self) -> (u64, u64) {
        match self {
            Self::Change { meta, .. } => (meta.rid.counter(), meta.version),
            Self::Delete { rid, seq, .. } => (rid.counter(), *seq),
        }
    }
}

impl Output {
    pub(super) fn new<S: ReplStore>(
        ctx: &Ctx<S>,
        columns: Columns,
        prefixes: Prefixes,
    ) -> DavResult<Self> {
        Ok(Self {
            columns,
            prefixes,
            brief: ctx.head.brief,
            origin: origin(&ctx.parts),
            mount: ctx.shared.config.mount.clone(),
        })
    }

    pub(super) fn href(&self, path: &ResourcePath, collection: bool) -> String {
        format!("{}{}", self.origin, self.mount.href(path, collection))
    }

    pub(super) fn write_row(&self, w: &mut XmlWriter, row: &Row, changetype: bool) {
        w.start("a:response", &[]);
        match row {
            Row::Delete {
                rid,
                path,
                collection,
                ..
            } => {
                w.text_element("a:href", &self.href(path, *collection));
                w.start("a:propstat", &[])
                    .text_element("a:status", "HTTP/1.1 200 OK")
                    .start("a:prop", &[]);
                w.text_element("d:repl-uid", &rid.to_string());
                w.end("a:prop").end("a:propstat");
                if changetype {
                    w.text_element("d:changetype", "delete");
                }
            }
            Row::Change { meta, props, .. } => {
                let href = self.href(&meta.path, meta.is_collection());
                w.text_element("a:href", &href);
                let mut found = XmlWriter::new();
                let mut missing: Vec<&str> = Vec::new();
                match &self.columns {
                    Columns::Named(cols) => {
                        for c in cols {
                            let v = if c.ns == "DAV:" && c.local == "href" {
                                Some(live::PropValue::Text(href.clone()))
                            } else {
                                live::lookup(meta, props, &c.ns, &c.local)
                            };
                            match v {
                                Some(v) => live::write_value(&mut found, &c.tag, &[], &v),
                                None => missing.push(&c.tag),
                            }
                        }
                    }
                    Columns::All | Columns::Names => {
                        let names_only = matches!(self.columns, Columns::Names);
                        for n in live::names(meta) {
                            let tag = if n.ns == "DAV:" {
                                format!("a:{}", n.local)
                            } else {
                                format!("d:{}", n.local)
                            };
                            match live::live_value(meta, &n.ns, &n.local) {
                                Some(_) if names_only => {
                                    found.empty(&tag, &[]);
                                }
                                Some(v) => live::write_value(&mut found, &tag, &[], &v),
                                None => {}
                            }
                        }
                        if !props
                            .iter()
                            .any(|d| d.name.ns == "DAV:" && d.name.local == "displayname")
                        {
                            if names_only {
                                found.empty("a:displayname", &[]);
                            } else {
                                found.text_element("a:displayname", meta.path.name());
                            }
                        }
                        for d in props {
                            let attrs = [("xmlns", d.name.ns.as_str())];
                            if names_only || d.value.is_empty() {
                                found.empty(&d.name.local, &attrs);
                            } else {
                                found
                                    .start(&d.name.local, &attrs)
                                    .fragment(&d.value)
                                    .end(&d.name.local);
                            }
                        }
                    }
                }
                if !found.is_empty() {
                    w.start("a:propstat", &[])
                        .text_element("a:status", "HTTP/1.1 200 OK")
                        .start("a:prop", &[]);
                    w.fragment(std::str::from_utf8(&found.finish()).unwrap_or(""));
                    w.end("a:prop").end("a:propstat");
                }
                if !missing.is_empty() && !self.brief {
                    w.start("a:propstat", &[])
                        .text_element("a:status", "HTTP/1.1 404 Not Found")
                        .start("a:prop", &[]);
                    for tag in missing {
                        w.empty(tag, &[]);
                    }
                    w.end("a:prop").end("a:propstat");
                }
                if changetype {
                    w.text_element("d:changetype", "change");
                }
            }
        }
        w.end("a:response");
    }

    pub(super) fn open_root(&self, w: &mut XmlWriter) {
        let attrs = self.prefixes.root_attrs();
        let attrs: Vec<(&str, &str)> = attrs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        w.declaration().start("a:multistatus", &attrs);
    }
}

/// The response columns of a SQL query. Column names and aliases come from the client and
/// become element names, so each must be a valid XML name (400 otherwise).
pub(super) fn sql_columns(query: &Query, prefixes: &mut Prefixes) -> DavResult<Columns> {
    let Some(cols) = &query.columns else {
        return Ok(Columns::All);
    };
    let mut out = Vec::with_capacity(cols.len());
    for c in cols {
        let (ns, local) = sql::split_prop(&c.prop);
        if !davrepl_proto::xml::is_ncname(local) {
            return Err(DavError::bad_request(format!(
                "column {:?} does not end in a valid XML name",
                c.prop
            )));
        }
        let tag = match &c.alias {
            Some(a) if davrepl_proto::xml::is_ncname(a) => a.clone(),
            Some(a) => {
                return Err(DavError::bad_request(format!(
                    "alias {a:?} is not a valid XML name"
                )));
            }
            None => prefixes.tag(ns, local),
        };
        out.push(OutCol {
            ns: ns.to_owned(),
            local: local.to_owned(),
            tag,
        });
    }
    Ok(Columns::Named(out))
}

pub(super) fn needs_props(columns: &Columns, filter: Option<&Expr>) -> bool {
    filter.is_some()
        || match columns {
            Columns::All | Columns::Names => true,
            Columns::Named(cols) => cols.iter().any(|c| !live::is_computed(&c.ns, &c.local)),
        }
}

pub(super) fn write_repl(w: &mut XmlWriter, blob: &str, strict_empty: bool) {
    if strict_empty {
        w.start("d:repl", &[]).end("d:repl");
    } else {
        w.start("d:repl", &[])
            .text_element("d:collblob", blob)
            .end("d:repl");
    }
}
