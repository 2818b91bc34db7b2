//! Replication manifests (SEARCH and PROPFIND variants, spec §2) and plain SEARCH.
//!
//! A manifest is the list of changes in a scope since the state a client's collblob records.
//! The rows come from the store's change log in sequence order ([`Engine`]), so the cost
//! follows the number of changes, not the size of the collection. Rules applied on top:
//!
//! - rows the collblob already covers (watermark, or listed as seen) are skipped;
//! - a changed item that no longer matches `WHERE` becomes a `delete` row;
//! - items acknowledged in `resourcetaglist` at their current version are skipped and recorded;
//! - in deep scopes an ancestor that changed later than a member is pulled forward so parents
//!   come before children; a move's tombstone precedes its upsert (I10);
//! - `Range: rows=` pages the list; the new collblob covers only the delivered rows (I6).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use davrepl_proto::collblob::{self, BlobKind, CollBlob};
use davrepl_proto::href::split_absolute;
use davrepl_proto::rows::{self, RowSpec};
use davrepl_proto::sql::{self, Expr, Query, SqlError, Traversal};
use davrepl_proto::xml::{PropfindKind, ReplRequest, XmlWriter, parse_search};
use davrepl_proto::{REPL_NS, is_repl_ns};
use davrepl_store::{
    self as store, Change, ChangeKind, ChangesQuery, DeadProp, Entry, ErrorKind, ListOptions, Meta,
    ReplStore, ReplUid, ResourcePath, Seq, StoreError, tags,
};
use futures_util::stream;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, StreamBody};

use super::{Ctx, read_small_body};
use crate::body::{self, DavBody};
use crate::error::{DavError, DavResult};
use crate::layer::{Principal, Shared};
use crate::{BoxError, live};

/// Exchange's datatypes namespace, declared on every multistatus root (prefix `b`).
const DATATYPES_NS: &str = "urn:uuid:c2f41010-65b3-11d1-a29f-00aa00c14882/";
/// Rows fetched from the store per page while computing a manifest.
const CHANGE_PAGE: usize = 512;
/// Rows written per body chunk while streaming.
const ROWS_PER_CHUNK: usize = 256;

fn invalid_collblob(why: &str) -> DavError {
    DavError::new(
        StatusCode::from_u16(475).unwrap_or(StatusCode::BAD_REQUEST),
        format!("Invalid collblob: {why}"),
    )
}

impl From<SqlError> for DavError {
    fn from(e: SqlError) -> Self {
        match e {
            SqlError::Unsupported(_) => {
                DavError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            SqlError::TooComplex(_) => {
                DavError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            SqlError::Syntax { .. } => DavError::bad_request(e.to_string()),
        }
    }
}

/// One property column of the output.
#[derive(Debug, Clone)]
struct OutCol {
    ns: String,
    local: String,
    /// Element name to write (`e:subject`, `d:resourcetag`, or a bare alias).
    tag: String,
}

/// Which properties each row carries.
#[derive(Debug, Clone)]
enum Columns {
    /// Named columns.
    Named(Vec<OutCol>),
    /// All properties (`SELECT *`, `allprop`).
    All,
    /// Property names only (`propname`).
    Names,
}

/// Namespace prefixes of one response, Exchange-style: `a` DAV:, `b` datatypes, `d` the
/// replication namespace as the client spelled it, then `e`, `f`, … (spec §2.3 rule 5).
#[derive(Debug, Clone)]
struct Prefixes {
    repl_ns: String,
    others: Vec<(String, String)>,
}

impl Prefixes {
    fn new(repl_ns: &str) -> Self {
        Self {
            repl_ns: repl_ns.to_owned(),
            others: Vec::new(),
        }
    }

    fn tag(&mut self, ns: &str, local: &str) -> String {
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

    fn root_attrs(&self) -> Vec<(String, String)> {
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
struct Output {
    columns: Columns,
    prefixes: Prefixes,
    brief: bool,
    /// `scheme://host` for absolute hrefs.
    origin: String,
}

/// A manifest row.
#[derive(Debug)]
enum Row {
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
    fn seq(&self) -> Seq {
        match self {
            Self::Change { seq, .. } | Self::Delete { seq, .. } => *seq,
        }
    }

    /// What a collblob records to mark the row seen: (repl-uid counter, sequence number).
    fn key(&self) -> (u64, u64) {
        match self {
            Self::Change { meta, .. } => (meta.rid.counter(), meta.version),
            Self::Delete { rid, seq, .. } => (rid.counter(), *seq),
        }
    }
}

impl Output {
    fn new<S: ReplStore>(ctx: &Ctx<S>, columns: Columns, prefixes: Prefixes) -> DavResult<Self> {
        Ok(Self {
            columns,
            prefixes,
            brief: brief(ctx)?,
            origin: origin(ctx),
        })
    }

    fn href<S>(&self, shared: &Shared<S>, path: &ResourcePath, collection: bool) -> String {
        format!(
            "{}{}",
            self.origin,
            shared.config.mount.href(path, collection)
        )
    }

    fn write_row<S>(&self, shared: &Shared<S>, w: &mut XmlWriter, row: &Row, changetype: bool) {
        w.start("a:response", &[]);
        match row {
            Row::Delete {
                rid,
                path,
                collection,
                ..
            } => {
                w.text_element("a:href", &self.href(shared, path, *collection));
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
                let href = self.href(shared, &meta.path, meta.is_collection());
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

    fn open_root(&self, w: &mut XmlWriter) {
        let attrs = self.prefixes.root_attrs();
        let attrs: Vec<(&str, &str)> = attrs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        w.declaration().start("a:multistatus", &attrs);
    }
}

/// What a manifest covers and what the client has seen.
struct Plan {
    scope: ResourcePath,
    depth: store::Depth,
    include_scope: bool,
    collections_only: bool,
    filter: Filter,
    needs_props: bool,
    first_sync: bool,
    watermark: Seq,
    seen: HashSet<(u64, u64)>,
    acks: HashSet<(u64, u64)>,
}

/// A request's `WHERE` condition with the work it may still do.
struct Filter {
    expr: Option<Expr>,
    budget: sql::Budget,
}

impl Filter {
    fn new(expr: Option<Expr>, limits: &crate::Limits) -> Self {
        Self {
            expr,
            budget: sql::Budget::new(limits.sql.max_eval_steps),
        }
    }
}

impl Plan {
    /// Whether a resource passes the filter; an error once the request's evaluation budget is
    /// spent (the request ends instead of occupying a runtime thread).
    fn matches(&self, meta: &Meta, props: &[DeadProp]) -> Result<bool, StoreError> {
        let Some(f) = &self.filter.expr else {
            return Ok(true);
        };
        sql::eval_within(
            f,
            &|full: &str| {
                let (ns, local) = sql::split_prop(full);
                live::lookup(meta, props, ns, local).map(live::sql_value)
            },
            &self.filter.budget,
        )
        .map_err(|e| StoreError::new(ErrorKind::InvalidInput, e.to_string()))
    }
}

/// Produces manifest rows in order from the store's change log.
struct Engine<S> {
    shared: Arc<Shared<S>>,
    plan: Arc<Plan>,
    since: Seq,
    upper: Seq,
    more: bool,
    low_water: Seq,
    buf: VecDeque<Change>,
    pending: VecDeque<Row>,
    pulled: HashSet<(u64, u64)>,
    ancestors: HashMap<ResourcePath, Option<Entry>>,
}

impl<S: ReplStore> Engine<S> {
    fn new(shared: Arc<Shared<S>>, plan: Arc<Plan>, upper: Seq) -> Self {
        let since = plan.watermark;
        Self {
            shared,
            plan,
            since,
            upper,
            more: true,
            low_water: 0,
            buf: VecDeque::new(),
            pending: VecDeque::new(),
            pulled: HashSet::new(),
            ancestors: HashMap::new(),
        }
    }

    async fn fetch(&mut self) -> Result<(), StoreError> {
        let p = &self.plan;
        let mut q = ChangesQuery::new(p.scope.clone(), p.depth, self.since, CHANGE_PAGE);
        q.include_scope = p.include_scope;
        q.include_removed = !p.first_sync;
        q.with_props = p.needs_props;
        let page = self.shared.store.changes(q).await?;
        self.since = page.watermark;
        self.more = page.more;
        self.low_water = page.low_water;
        self.buf.extend(page.changes);
        Ok(())
    }

    async fn next_change(&mut self) -> Result<Option<Change>, StoreError> {
        loop {
            if let Some(c) = self.buf.pop_front() {
                if c.seq > self.upper {
                    self.buf.clear();
                    self.more = false;
                    return Ok(None);
                }
                return Ok(Some(c));
            }
            if !self.more {
                return Ok(None);
            }
            self.fetch().await?;
        }
    }

    async fn next(&mut self) -> Result<Option<Row>, StoreError> {
        loop {
            if let Some(r) = self.pending.pop_front() {
                return Ok(Some(r));
            }
            let Some(c) = self.next_change().await? else {
                return Ok(None);
            };
            self.classify(c).await?;
        }
    }

    async fn classify(&mut self, c: Change) -> Result<(), StoreError> {
        let plan = self.plan.clone();
        match c.kind {
            ChangeKind::Upsert(meta) => {
                let key = (meta.rid.counter(), meta.version);
                if plan.seen.contains(&key) || self.pulled.contains(&key) {
                    return Ok(());
                }
                if plan.collections_only && !meta.is_collection() {
                    return Ok(());
                }
                if !plan.matches(&meta, &c.props)? {
                    if !plan.first_sync {
                        let collection = meta.is_collection();
                        self.pending.push_back(Row::Delete {
                            seq: c.seq,
                            rid: meta.rid,
                            path: meta.path,
                            collection,
                        });
                    }
                    return Ok(());
                }
                if plan.acks.contains(&key) {
                    return Ok(());
                }
                self.pull_ancestors(&meta.path, c.seq).await?;
                self.pending.push_back(Row::Change {
                    seq: c.seq,
                    meta,
                    props: c.props,
                });
            }
            ChangeKind::Removed { rid, path, kind } => {
                if plan.seen.contains(&(rid.counter(), c.seq)) {
                    return Ok(());
                }
                let collection = kind == store::ResourceKind::Collection;
                if plan.collections_only && !collection {
                    return Ok(());
                }
                self.pending.push_back(Row::Delete {
                    seq: c.seq,
                    rid,
                    path,
                    collection,
                });
            }
        }
        Ok(())
    }

    /// Emits, before a member, every ancestor inside the scope whose own change comes later
    /// in the log (parents before children).
    async fn pull_ancestors(&mut self, path: &ResourcePath, seq: Seq) -> Result<(), StoreError> {
        let plan = self.plan.clone();
        let mut chain = Vec::new();
        let mut p = path.parent();
        while let Some(a) = p {
            if a == plan.scope {
                if plan.include_scope {
                    chain.push(a);
                }
                break;
            }
            if !a.is_strictly_within(&plan.scope) {
                break;
            }
            p = a.parent();
            chain.push(a);
        }
        for a in chain.into_iter().rev() {
            if !self.ancestors.contains_key(&a) {
                let e = match self.shared.store.props(&a).await {
                    Ok(e) => Some(e),
                    Err(e) if e.kind() == ErrorKind::NotFound => None,
                    Err(e) => return Err(e),
                };
                self.ancestors.insert(a.clone(), e);
            }
            let Some(Some(e)) = self.ancestors.get(&a) else {
                continue;
            };
            let key = (e.meta.rid.counter(), e.meta.version);
            let v = e.meta.version;
            if v > seq
                && v <= self.upper
                && v > plan.watermark
                && !plan.seen.contains(&key)
                && !self.pulled.contains(&key)
                && !plan.acks.contains(&key)
                && plan.matches(&e.meta, &e.props)?
            {
                self.pulled.insert(key);
                self.pending.push_back(Row::Change {
                    seq: v,
                    meta: e.meta.clone(),
                    props: e.props.clone(),
                });
            }
        }
        Ok(())
    }
}

/// What the client has seen, from its collblob and `resourcetaglist`.
struct ClientState {
    first_sync: bool,
    watermark: Seq,
    seen: HashSet<(u64, u64)>,
    acks: HashSet<(u64, u64)>,
}

impl ClientState {
    fn new(store: store::StoreId, blob: Option<&CollBlob>, repl: &ReplRequest) -> Self {
        Self {
            first_sync: blob.is_none(),
            watermark: blob.map_or(0, |b| b.watermark),
            seen: blob
                .map(|b| b.seen.iter().copied().collect())
                .unwrap_or_default(),
            acks: ack_keys(store, &repl.resource_tags),
        }
    }

    /// A plan over `scope` for this client.
    fn plan(
        self,
        scope: ResourcePath,
        depth: store::Depth,
        include_scope: bool,
        collections_only: bool,
        filter: Filter,
        needs_props: bool,
    ) -> Plan {
        Plan {
            scope,
            depth,
            include_scope,
            collections_only,
            filter,
            needs_props,
            first_sync: self.first_sync,
            watermark: self.watermark,
            seen: self.seen,
            acks: self.acks,
        }
    }
}

/// Gives other tasks a turn once (runtime-agnostic: the layer does not depend on tokio).
async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return std::task::Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await;
}

/// The store depth of a SQL traversal, and whether only collections count.
fn traversal_depth(t: Traversal) -> (store::Depth, bool) {
    match t {
        Traversal::Shallow => (store::Depth::One, false),
        Traversal::Deep => (store::Depth::Infinity, false),
        Traversal::Hierarchical => (store::Depth::Infinity, true),
    }
}

/// Everything needed to issue a collblob.
struct BlobBase {
    store: [u8; 16],
    kind: BlobKind,
    scope_rid: [u8; 22],
    binding: [u8; 32],
    principal: [u8; 32],
    query: String,
    secret: [u8; 32],
}

impl BlobBase {
    fn new<S: ReplStore>(
        ctx: &Ctx<S>,
        kind: BlobKind,
        scope_rid: ReplUid,
        binding: [u8; 32],
        query: String,
        secret: [u8; 32],
    ) -> Self {
        Self {
            store: ctx.store().store_id().0,
            kind,
            scope_rid: scope_rid.0,
            binding,
            principal: principal_of(ctx, &secret),
            query,
            secret,
        }
    }

    fn issue(&self, watermark: Seq, seen: Vec<(u64, u64)>) -> String {
        let issued = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        CollBlob {
            store: self.store,
            kind: self.kind,
            scope_rid: self.scope_rid,
            binding: self.binding,
            principal: self.principal,
            watermark,
            issued,
            query: self.query.clone(),
            seen,
        }
        .encode(&self.secret)
    }
}

/// A manifest request after parsing, before the rows are computed.
struct Manifest {
    plan: Plan,
    base: BlobBase,
    output: Output,
    /// The collblob the client sent (returned unchanged by a count-only request).
    input_blob: Option<String>,
}

fn origin<S: ReplStore>(ctx: &Ctx<S>) -> String {
    let scheme = ctx.parts.uri.scheme_str().unwrap_or("http");
    let host = ctx
        .parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| ctx.parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".into());
    format!("{scheme}://{host}")
}

fn principal_of<S: ReplStore>(ctx: &Ctx<S>, secret: &[u8]) -> [u8; 32] {
    collblob::principal_hash(
        secret,
        ctx.parts
            .extensions
            .get::<Principal>()
            .map(|p| p.0.as_str()),
    )
}

/// Decodes and checks the client's collblob against everything it is bound to.
fn check_blob<S: ReplStore>(
    ctx: &Ctx<S>,
    text: &str,
    secret: &[u8; 32],
    kind: BlobKind,
) -> DavResult<CollBlob> {
    let blob = CollBlob::decode(text, secret).map_err(|e| invalid_collblob(&e.to_string()))?;
    if blob.store != ctx.store().store_id().0 {
        return Err(invalid_collblob("issued by another store"));
    }
    if blob.kind != kind {
        return Err(invalid_collblob("issued for another kind of request"));
    }
    if blob.principal != principal_of(ctx, secret) {
        return Err(invalid_collblob("issued to another user"));
    }
    Ok(blob)
}

/// Resolves the scope URL of a query against the request.
/// The scope of a SEARCH (manifest or plain): it must lie inside the Request-URI, and the
/// principal must be allowed to read it, like any path the request touches.
fn checked_scope<S: ReplStore>(ctx: &Ctx<S>, url: &str) -> DavResult<ResourcePath> {
    let scope = resolve_scope(ctx, url)?;
    if !scope.is_within(&ctx.path) {
        return Err(DavError::new(
            StatusCode::FORBIDDEN,
            "the scope lies outside the Request-URI",
        ));
    }
    ctx.authorize(crate::layer::Access::ReadTree, &scope)?;
    Ok(scope)
}

fn resolve_scope<S: ReplStore>(ctx: &Ctx<S>, url: &str) -> DavResult<ResourcePath> {
    if url.is_empty() {
        return Ok(ctx.path.clone());
    }
    let path_part = match split_absolute(url) {
        Some((authority, path)) => {
            if !ctx.same_authority(authority) {
                return Err(DavError::new(
                    StatusCode::FORBIDDEN,
                    "the scope is on another server",
                ));
            }
            path
        }
        None if url.starts_with('/') => url,
        None => {
            // Relative to the Request-URI.
            let base = ctx.href(&ctx.path, true);
            return resolve_scope(ctx, &format!("{base}{url}"));
        }
    };
    let mount = &ctx.shared.config.mount;
    if !mount.contains_public(path_part) {
        return Err(DavError::new(
            StatusCode::FORBIDDEN,
            "the scope is outside this WebDAV namespace",
        ));
    }
    Ok(mount.resolve_public(path_part)?)
}

/// Splits the client's acknowledged resourcetags into (repl-uid counter, version) keys of this
/// store; foreign or malformed tags are ignored (spec §2.5).
fn ack_keys(store_id: store::StoreId, tags_in: &[String]) -> HashSet<(u64, u64)> {
    tags_in
        .iter()
        .filter_map(|t| tags::parse_resource_tag(t))
        .filter(|(rid, store, _)| *store == store_id && rid.0[..16] == store_id.0)
        .map(|(rid, _, v)| (rid.counter(), v))
        .collect()
}

/// The response columns of a SQL query. Column names and aliases come from the client and
/// become element names, so each must be a valid XML name (400 otherwise).
fn sql_columns(query: &Query, prefixes: &mut Prefixes) -> DavResult<Columns> {
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

fn needs_props(columns: &Columns, filter: Option<&Expr>) -> bool {
    filter.is_some()
        || match columns {
            Columns::All | Columns::Names => true,
            Columns::Named(cols) => cols.iter().any(|c| !live::is_computed(&c.ns, &c.local)),
        }
}

/// Evaluates `If` against the request collection (SEARCH and PROPFIND manifests read state,
/// so a false condition is `412` with nothing issued).
async fn check_if<S: ReplStore>(ctx: &Ctx<S>, meta: &Meta) -> DavResult<()> {
    ctx.check_read(&ctx.condition()?, meta).await
}

fn brief<S: ReplStore>(ctx: &Ctx<S>) -> DavResult<bool> {
    Ok(ctx
        .header("brief")?
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("t")))
}

fn row_specs<S: ReplStore>(ctx: &Ctx<S>) -> DavResult<Option<Vec<RowSpec>>> {
    match ctx.header("range")? {
        Some(v) => Ok(rows::parse(v, ctx.shared.config.limits.max_row_ranges)?),
        None => Ok(None),
    }
}

/// `SEARCH`: a manifest when the body has `repl`, a plain query otherwise.
pub(crate) async fn search<S, B>(ctx: &Ctx<S>, body: B) -> DavResult<Response<DavBody>>
where
    S: ReplStore,
    B: Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    let limits = ctx.shared.config.limits;
    let bytes = read_small_body(body, limits.xml.max_bytes).await?;
    let req = parse_search(&bytes, &limits.xml)?;
    if req.basicsearch && req.sql.is_none() {
        return Err(DavError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "DAV:basicsearch is not supported; use DAV:sql",
        ));
    }
    let target = ctx.store().head(&ctx.path).await?;
    check_if(ctx, &target).await?;
    match req.repl {
        Some(repl) => search_manifest(ctx, repl, req.sql).await,
        None => {
            let text = req
                .sql
                .ok_or_else(|| DavError::bad_request("SEARCH needs a DAV:sql query"))?;
            plain_search(ctx, &text).await
        }
    }
}

async fn search_manifest<S: ReplStore>(
    ctx: &Ctx<S>,
    repl: ReplRequest,
    sql_text: Option<String>,
) -> DavResult<Response<DavBody>> {
    let limits = ctx.shared.config.limits;
    let secret = ctx.store().secret().await?;
    let blob_text = repl.collblob.clone().filter(|t| !t.trim().is_empty());
    let blob = match &blob_text {
        Some(t) => Some(check_blob(ctx, t, &secret, BlobKind::Search)?),
        None => None,
    };
    let query_text = match (&sql_text, &blob) {
        (Some(q), _) if !q.trim().is_empty() => q.clone(),
        (_, Some(b)) => b.query.clone(),
        _ => {
            return Err(DavError::bad_request(
                "a first-sync manifest needs a DAV:sql query",
            ));
        }
    };
    let query = sql::parse(&query_text, &limits.sql).map_err(|e| match (&sql_text, e) {
        (None, _) => invalid_collblob("its stored query no longer parses"),
        (Some(_), e) => e.into(),
    })?;
    let scope = checked_scope(ctx, &query.scope.url)?;
    let scope_meta = ctx.store().head(&scope).await?;
    if !scope_meta.is_collection() {
        return Err(DavError::bad_request("the scope is not a collection"));
    }
    let binding = collblob::digest(query.binding(scope.as_str()).as_bytes());
    if let Some(b) = &blob {
        if b.binding != binding {
            return Err(invalid_collblob(
                "the query differs from the one it was issued for",
            ));
        }
        if b.scope_rid != scope_meta.rid.0 {
            return Err(invalid_collblob(
                "the scope collection was deleted and re-created",
            ));
        }
    }
    let mut prefixes = Prefixes::new(&repl.ns);
    let columns = sql_columns(&query, &mut prefixes)?;
    let (depth, collections_only) = traversal_depth(query.scope.traversal);
    let needs = needs_props(&columns, query.filter.as_ref());
    let client = ClientState::new(ctx.store().store_id(), blob.as_ref(), &repl);
    let manifest = Manifest {
        plan: client.plan(
            scope,
            depth,
            false,
            collections_only,
            Filter::new(query.filter.clone(), &ctx.shared.config.limits),
            needs,
        ),
        base: BlobBase::new(
            ctx,
            BlobKind::Search,
            scope_meta.rid,
            binding,
            query_text,
            secret,
        ),
        output: Output::new(ctx, columns, prefixes)?,
        input_blob: blob_text,
    };
    respond(ctx, manifest).await
}

/// PROPFIND with a `repl` child (spec §2.2): the Depth header chooses the scope.
pub(crate) async fn propfind_manifest<S: ReplStore>(
    ctx: &Ctx<S>,
    repl: ReplRequest,
    kind: PropfindKind,
    depth: davrepl_proto::headers::Depth,
    root: Meta,
) -> DavResult<Response<DavBody>> {
    use davrepl_proto::headers::Depth as D;
    check_if(ctx, &root).await?;
    let secret = ctx.store().secret().await?;
    let blob_text = repl.collblob.clone().filter(|t| !t.trim().is_empty());
    let blob = match &blob_text {
        Some(t) => Some(check_blob(ctx, t, &secret, BlobKind::Propfind)?),
        None => None,
    };
    let (store_depth, include_scope, label) = match depth {
        D::Zero => (store::Depth::Zero, true, "0"),
        D::One => (store::Depth::One, true, "1"),
        D::OneNoRoot => (store::Depth::One, false, "1,noroot"),
        D::Infinity => (store::Depth::Infinity, true, "infinity"),
        D::InfinityNoRoot => (store::Depth::Infinity, false, "infinity,noroot"),
    };
    let binding = collblob::digest(format!("PROPFIND {label} {}", ctx.path).as_bytes());
    if let Some(b) = &blob {
        if b.binding != binding {
            return Err(invalid_collblob(
                "the Request-URI or Depth differs from the one it was issued for",
            ));
        }
        if b.scope_rid != root.rid.0 {
            return Err(invalid_collblob(
                "the collection was deleted and re-created",
            ));
        }
    }
    let mut prefixes = Prefixes::new(&repl.ns);
    let columns = match kind {
        PropfindKind::AllProp(_) => Columns::All,
        PropfindKind::PropName => Columns::Names,
        PropfindKind::Prop(names) => Columns::Named(
            names
                .into_iter()
                .map(|n| {
                    let ns = if is_repl_ns(&n.ns) {
                        repl.ns.clone()
                    } else {
                        n.ns.clone()
                    };
                    let tag = prefixes.tag(&ns, &n.local);
                    OutCol {
                        ns: n.ns,
                        local: n.local,
                        tag,
                    }
                })
                .collect(),
        ),
    };
    let needs = needs_props(&columns, None);
    let client = ClientState::new(ctx.store().store_id(), blob.as_ref(), &repl);
    let manifest = Manifest {
        plan: client.plan(
            ctx.path.clone(),
            store_depth,
            include_scope,
            false,
            Filter::new(None, &ctx.shared.config.limits),
            needs,
        ),
        base: BlobBase::new(
            ctx,
            BlobKind::Propfind,
            root.rid,
            binding,
            String::new(),
            secret,
        ),
        output: Output::new(ctx, columns, prefixes)?,
        input_blob: blob_text,
    };
    respond(ctx, manifest).await
}

fn manifest_response(body: DavBody, content_range: Option<String>) -> Response<DavBody> {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::MULTI_STATUS;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/xml; charset=\"utf-8\""),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("rows"));
    if let Some(cr) = content_range.and_then(|v| HeaderValue::from_str(&v).ok()) {
        h.insert(header::CONTENT_RANGE, cr);
    }
    r
}

/// Computes and sends the manifest: streamed when unranged, two passes when ranged.
async fn respond<S: ReplStore>(ctx: &Ctx<S>, m: Manifest) -> DavResult<Response<DavBody>> {
    let upper = ctx.store().watermark().await?;
    // A collblob that has seen changes the store does not have comes from the store's future:
    // the store was restored from a backup or lost its last writes. Its sequence numbers will
    // be handed out again to other changes, so the client must start over, never skip them.
    let max_seen = m.plan.seen.iter().map(|&(_, v)| v).max().unwrap_or(0);
    if m.plan.watermark.max(max_seen) > upper {
        return Err(invalid_collblob(
            "it is newer than the store (was the store restored from a backup?)",
        ));
    }
    let specs = row_specs(ctx)?;
    let plan = Arc::new(m.plan);
    let mut engine = Engine::new(ctx.shared.clone(), plan.clone(), upper);
    engine.fetch().await?;
    if !plan.first_sync && plan.watermark < engine.low_water {
        return Err(invalid_collblob(
            "it is older than the retained change history",
        ));
    }
    let Some(specs) = specs else {
        // Unranged: every row up to `upper` is delivered, so the new collblob is known before
        // the first byte is written and the rows can stream.
        let acks_above: Vec<(u64, u64)> = Vec::new();
        let blob = m.base.issue(upper, acks_above);
        return Ok(manifest_response(
            stream_rows(
                ctx.shared.clone(),
                engine,
                m.output,
                blob,
                ctx.shared.config.strict_empty_repl,
            ),
            None,
        ));
    };
    // Pass 1: count.
    let mut total: u64 = 0;
    while engine.next().await?.is_some() {
        total += 1;
    }
    let Ok(mut ranges) = rows::resolve(&specs, total) else {
        return Ok(super::range_not_satisfiable("rows", total));
    };
    cap_ranges(&mut ranges, ctx.shared.config.limits.max_rows_per_response);
    let in_range = |i: u64| ranges.iter().any(|(a, b)| (*a..=*b).contains(&i));
    let blob = if ranges.is_empty() {
        // Count-only (`rows=-0`) or nothing to deliver: nothing is marked seen.
        match &m.input_blob {
            Some(t) if !plan.first_sync => t.clone(),
            _ => m
                .base
                .issue(plan.watermark, plan.seen.iter().copied().collect()),
        }
    } else {
        String::new()
    };
    // Pass 2: collect the delivered rows (bounded by the per-response cap).
    let mut delivered = Vec::new();
    let mut first_undelivered: Option<Seq> = None;
    if !ranges.is_empty() {
        let mut engine = Engine::new(ctx.shared.clone(), plan.clone(), upper);
        let mut i = 0u64;
        while let Some(row) = engine.next().await? {
            if in_range(i) {
                delivered.push(row);
            } else {
                let s = row.seq();
                first_undelivered = Some(first_undelivered.map_or(s, |f| f.min(s)));
            }
            i += 1;
        }
    }
    let blob = if ranges.is_empty() {
        blob
    } else {
        let new_mark = first_undelivered
            .map_or(upper, |f| upper.min(f.saturating_sub(1)))
            .max(plan.watermark);
        let mut seen: Vec<(u64, u64)> = plan
            .seen
            .iter()
            .copied()
            .chain(plan.acks.iter().copied())
            .chain(delivered.iter().map(Row::key))
            .filter(|(_, v)| *v > new_mark)
            .collect();
        seen.sort_unstable();
        seen.dedup();
        m.base.issue(new_mark, seen)
    };
    let mut w = XmlWriter::new();
    m.output.open_root(&mut w);
    write_repl(
        &mut w,
        &blob,
        delivered.is_empty() && ctx.shared.config.strict_empty_repl,
    );
    for row in &delivered {
        m.output.write_row(&ctx.shared, &mut w, row, true);
    }
    w.end("a:multistatus");
    let cr = rows::content_range(&ranges, total);
    Ok(manifest_response(body::full(w.finish()), Some(cr)))
}

fn cap_ranges(ranges: &mut Vec<(u64, u64)>, cap: u64) {
    let mut left = cap;
    ranges.retain_mut(|(a, b)| {
        if left == 0 {
            return false;
        }
        let n = *b - *a + 1;
        if n > left {
            *b = *a + left - 1;
            left = 0;
        } else {
            left -= n;
        }
        true
    });
}

fn write_repl(w: &mut XmlWriter, blob: &str, strict_empty: bool) {
    if strict_empty {
        w.start("d:repl", &[]).end("d:repl");
    } else {
        w.start("d:repl", &[])
            .text_element("d:collblob", blob)
            .end("d:repl");
    }
}

enum Phase {
    Head,
    Rows,
    Done,
}

/// Streams an unranged manifest: the collblob first, then the rows a chunk at a time.
fn stream_rows<S: ReplStore>(
    shared: Arc<Shared<S>>,
    engine: Engine<S>,
    output: Output,
    blob: String,
    strict_empty: bool,
) -> DavBody {
    let state = (Phase::Head, engine, output, shared, blob);
    let chunks = stream::unfold(
        state,
        move |(phase, mut engine, output, shared, blob)| async move {
            match phase {
                Phase::Head => {
                    let mut w = XmlWriter::new();
                    output.open_root(&mut w);
                    // With the strict switch, an empty repl is sent only when there are no rows.
                    let first = match engine.next().await {
                        Ok(r) => r,
                        Err(e) => {
                            return Some((
                                Err(stream_error(e)),
                                (Phase::Done, engine, output, shared, blob),
                            ));
                        }
                    };
                    write_repl(&mut w, &blob, strict_empty && first.is_none());
                    if let Some(row) = &first {
                        output.write_row(&shared, &mut w, row, true);
                        Some((Ok(w.take()), (Phase::Rows, engine, output, shared, blob)))
                    } else {
                        w.end("a:multistatus");
                        Some((Ok(w.take()), (Phase::Done, engine, output, shared, blob)))
                    }
                }
                Phase::Rows => {
                    let mut w = XmlWriter::new();
                    for _ in 0..ROWS_PER_CHUNK {
                        match engine.next().await {
                            Ok(Some(row)) => output.write_row(&shared, &mut w, &row, true),
                            Ok(None) => {
                                w.end("a:multistatus");
                                return Some((
                                    Ok(w.take()),
                                    (Phase::Done, engine, output, shared, blob),
                                ));
                            }
                            Err(e) => {
                                return Some((
                                    Err(stream_error(e)),
                                    (Phase::Done, engine, output, shared, blob),
                                ));
                            }
                        }
                    }
                    Some((Ok(w.take()), (Phase::Rows, engine, output, shared, blob)))
                }
                Phase::Done => None,
            }
        },
    );
    StreamBody::new(futures_util::StreamExt::map(
        chunks,
        |r: Result<Bytes, BoxError>| r.map(Frame::data),
    ))
    .boxed_unsync()
}

fn stream_error(e: StoreError) -> BoxError {
    tracing::error!(error = %e, "store failed while streaming a manifest");
    Box::new(e)
}

/// Plain SEARCH (no `repl`): the query's matches, optionally sorted and ranged.
async fn plain_search<S: ReplStore>(ctx: &Ctx<S>, text: &str) -> DavResult<Response<DavBody>> {
    let limits = ctx.shared.config.limits;
    let query = sql::parse(text, &limits.sql)?;
    let scope = checked_scope(ctx, &query.scope.url)?;
    let scope_meta = ctx.store().head(&scope).await?;
    if !scope_meta.is_collection() {
        return Err(DavError::bad_request("the scope is not a collection"));
    }
    let mut prefixes = Prefixes::new(REPL_NS);
    let columns = sql_columns(&query, &mut prefixes)?;
    let (depth, collections_only) = traversal_depth(query.scope.traversal);
    let with_props = needs_props(&columns, query.filter.as_ref()) || !query.order_by.is_empty();
    let plan = Plan {
        scope: scope.clone(),
        depth,
        include_scope: false,
        collections_only,
        needs_props: with_props,
        filter: Filter::new(query.filter.clone(), &limits),
        first_sync: true,
        watermark: 0,
        seen: HashSet::new(),
        acks: HashSet::new(),
    };
    let mut results: Vec<Entry> = Vec::new();
    let mut after = None;
    loop {
        let page = ctx
            .store()
            .list(
                &scope,
                ListOptions::new(depth, limits.page_size)
                    .after(after)
                    .with_props(with_props),
            )
            .await?;
        for e in page.entries {
            if collections_only && !e.meta.is_collection() {
                continue;
            }
            let passes = plan.matches(&e.meta, &e.props).map_err(|e| {
                DavError::new(StatusCode::UNPROCESSABLE_ENTITY, e.message().to_owned())
            })?;
            if !passes {
                continue;
            }
            if results.len() == limits.max_search_results {
                return Err(DavError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "more than {} results; narrow the query",
                        limits.max_search_results
                    ),
                ));
            }
            results.push(e);
        }
        // Filtering is CPU work: let other requests run between pages.
        yield_now().await;
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    if !query.order_by.is_empty() {
        // Keys computed once per result, compared under a total order (mixed numbers and
        // text never make the sort inconsistent).
        let mut keyed: Vec<(Vec<sql::SortKey>, Entry)> = results
            .into_iter()
            .map(|e| {
                let keys = query
                    .order_by
                    .iter()
                    .map(|(prop, _)| {
                        let (ns, local) = sql::split_prop(prop);
                        sql::SortKey::of(
                            live::lookup(&e.meta, &e.props, ns, local).map(live::sql_value),
                        )
                    })
                    .collect();
                (keys, e)
            })
            .collect();
        keyed.sort_by(|(x, _), (y, _)| {
            for ((a, b), (_, asc)) in x.iter().zip(y).zip(&query.order_by) {
                let ord = if *asc { a.cmp(b) } else { b.cmp(a) };
                if ord.is_ne() {
                    return ord;
                }
            }
            std::cmp::Ordering::Equal
        });
        results = keyed.into_iter().map(|(_, e)| e).collect();
    }
    let total = results.len() as u64;
    let (selected, content_range) = match row_specs(ctx)? {
        None => ((0..total).collect::<Vec<_>>(), None),
        Some(specs) => {
            let Ok(mut ranges) = rows::resolve(&specs, total) else {
                return Ok(super::range_not_satisfiable("rows", total));
            };
            cap_ranges(&mut ranges, limits.max_rows_per_response);
            let sel = ranges.iter().flat_map(|(a, b)| *a..=*b).collect();
            (sel, Some(rows::content_range(&ranges, total)))
        }
    };
    let output = Output::new(ctx, columns, prefixes)?;
    let mut w = XmlWriter::new();
    output.open_root(&mut w);
    for i in selected {
        let e = &results[i as usize];
        let row = Row::Change {
            seq: e.meta.version,
            meta: e.meta.clone(),
            props: e.props.clone(),
        };
        output.write_row(&ctx.shared, &mut w, &row, false);
    }
    w.end("a:multistatus");
    Ok(manifest_response(body::full(w.finish()), content_range))
}
