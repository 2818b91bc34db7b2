//! What a layer is configured with: limits, the authorizer and its vocabulary ([`Access`],
//! [`Principal`]), and the state every request of one layer shares.

use std::sync::Arc;

use davrepl_proto::href::Mount;
use davrepl_proto::xml::XmlLimits;
use davrepl_store::ResourcePath;

/// What a request wants to do to a resource, as an authorizer sees it.
///
/// The `…Tree` variants ask about a path **and everything below it**: a recursive request acts
/// on every descendant, so allowing it must mean the principal may act on each of them (an
/// authorizer that keeps users in `/users/<name>/` must refuse `WriteTree` on `/users/`, or bob
/// could delete alice's home with `DELETE /users/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Access {
    /// One resource is read: GET, HEAD, OPTIONS, PROPFIND `Depth: 0`, the Request-URI of a
    /// SEARCH, COPY `Depth: 0` of its source, a resource named in a tagged `If` list.
    Read,
    /// One resource is written: PUT, POST, MKCOL, PROPPATCH.
    Write,
    /// The path and everything below it are read: PROPFIND `Depth: 1`/`infinity`, the scope of
    /// a SEARCH or manifest, the source of a recursive COPY.
    ReadTree,
    /// The path and everything below it are written or removed: DELETE, the source of MOVE,
    /// the destination of COPY and MOVE (an existing tree there may be replaced).
    WriteTree,
}

impl Access {
    /// Whether this access writes.
    pub fn is_write(self) -> bool {
        matches!(self, Self::Write | Self::WriteTree)
    }

    /// Whether this access covers everything below the path too.
    pub fn is_tree(self) -> bool {
        matches!(self, Self::ReadTree | Self::WriteTree)
    }
}

/// Decides whether a principal (`None` = anonymous) may access a path. Denied requests get
/// `403 Forbidden` and touch nothing. See [`Access`] for what each request asks.
pub type Authorizer = Arc<dyn Fn(Option<&Principal>, Access, &ResourcePath) -> bool + Send + Sync>;

/// The authenticated principal of a request. An application's auth layer inserts it into the
/// request extensions; the layer binds it into collblobs and hands it to the store. Absent
/// means anonymous.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal(pub String);

/// Request limits. Every limit has a safe default; exceeding one gives a 4xx with a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// XML request bodies (PROPFIND, PROPPATCH): size, depth and element count.
    pub xml: XmlLimits,
    /// Largest PUT body in bytes (`413` above it). Default 1 GiB.
    pub max_put_bytes: u64,
    /// Longest request path in bytes (`414` above it). Default 4096.
    pub max_path_bytes: usize,
    /// Most segments in a request path (`414` above it). Default 64.
    pub max_path_segments: usize,
    /// Longest `If` header in bytes (`400` above it). Default 8192.
    pub max_if_bytes: usize,
    /// Most conditions in one `If` header. Default 64.
    pub max_if_conditions: usize,
    /// Most properties named in one PROPFIND or PROPPATCH. Default 1000.
    pub max_props: usize,
    /// Whether PROPFIND `Depth: infinity` is served (`403 propfind-finite-depth` if not).
    /// Default true.
    pub allow_depth_infinity: bool,
    /// Resources listed per store page while streaming a multistatus. Default 256.
    pub page_size: usize,
    /// Most rows in one ranged manifest or SEARCH response (`Range: rows=` asking for more is
    /// cut to this; `Content-Range` says what was sent). Default 10,000.
    pub max_rows_per_response: u64,
    /// Most members one RFC 6578 `sync-collection` report lists; beyond it the report is
    /// truncated (a `507` response for the collection and a token for the partial state, RFC
    /// 6578 §3.6), and the client continues from there. Default 10,000.
    pub max_sync_results: u64,
    /// Most results a plain (non-replication) SEARCH materialises for sorting and ranges
    /// (`422` above it). Default 100,000.
    pub max_search_results: usize,
    /// Most row ranges in one `Range: rows=` header. Default 16.
    pub max_row_ranges: usize,
    /// SQL text length and expression depth.
    pub sql: davrepl_proto::sql::SqlLimits,
    /// The longest timeout a LOCK or refresh is granted (a request for more, or for
    /// `Infinite`, gets this). Default one day.
    pub max_lock_timeout: std::time::Duration,
    /// The timeout of a LOCK that asks for none (capped by `max_lock_timeout`). Default one
    /// hour.
    pub default_lock_timeout: std::time::Duration,
    /// The most bytes of content the store may hold: a PUT or COPY that would go over is
    /// refused with `507` and writes nothing; `DAV:quota-available-bytes` reports what is
    /// left (RFC 4331). Default: no quota.
    pub quota_bytes: Option<u64>,
    /// Event streams (`Accept: text/event-stream`) open at once on this layer; more get
    /// `429`. Default 1,024.
    pub max_event_streams: usize,
    /// Event streams one principal (or the anonymous one) may hold open. Default 32.
    pub max_event_streams_per_principal: usize,
    /// How often an idle event stream sends a comment line, so proxies and clients see the
    /// connection is alive. Default 15 s.
    pub event_heartbeat: std::time::Duration,
    /// The longest a manifest or `sync-collection` report with `Prefer: wait=N` is held while
    /// it would be empty. Default 60 s.
    pub max_prefer_wait: std::time::Duration,
    /// The longest lifetime a subscription is granted (SUBSCRIBE's `Subscription-Lifetime`;
    /// a POLL or renewal extends it again). Default one day.
    pub max_subscription_lifetime: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            xml: XmlLimits::default(),
            max_put_bytes: 1 << 30,
            max_path_bytes: 4096,
            max_path_segments: 64,
            max_if_bytes: 8192,
            max_if_conditions: 64,
            max_props: 1000,
            allow_depth_infinity: true,
            page_size: 256,
            max_rows_per_response: 10_000,
            max_sync_results: 10_000,
            max_search_results: 100_000,
            max_row_ranges: 16,
            sql: davrepl_proto::sql::SqlLimits::default(),
            max_lock_timeout: std::time::Duration::from_secs(24 * 3600),
            default_lock_timeout: std::time::Duration::from_secs(3600),
            quota_bytes: None,
            max_event_streams: 1024,
            max_event_streams_per_principal: 32,
            event_heartbeat: std::time::Duration::from_secs(15),
            max_prefer_wait: std::time::Duration::from_secs(60),
            max_subscription_lifetime: std::time::Duration::from_secs(24 * 3600),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) mount: Mount,
    pub(crate) limits: Limits,
    /// Answer a manifest with no changes with a literal empty `repl` element (the SDK's
    /// wording) instead of `repl` holding an equivalent collblob (spec A5).
    pub(crate) strict_empty_repl: bool,
    /// Clients may set an item's modification time (`X-OC-Mtime`, PROPPATCH of
    /// `getlastmodified`, `lastmodified` or `Win32LastModifiedTime`).
    pub(crate) client_times: bool,
    pub(crate) authorizer: Option<Authorizer>,
    /// Event streams open through this layer, in total and by principal.
    pub(crate) streams: Arc<StreamCounts>,
}

/// Event streams open, in total and by principal (`None` for anonymous).
#[derive(Debug, Default)]
pub(crate) struct StreamCounts {
    by_principal: std::sync::Mutex<std::collections::HashMap<Option<String>, usize>>,
}

/// One open stream's place in [`StreamCounts`], given back when dropped.
#[derive(Debug)]
pub(crate) struct StreamPermit {
    counts: Arc<StreamCounts>,
    principal: Option<String>,
}

impl StreamCounts {
    /// A place for a new stream of `principal`, unless a limit is reached.
    pub(crate) fn admit(
        self: &Arc<Self>,
        principal: Option<String>,
        limits: &Limits,
    ) -> Option<StreamPermit> {
        let mut by = self.by_principal.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = by.values().sum();
        let mine = by.get(&principal).copied().unwrap_or(0);
        if total >= limits.max_event_streams || mine >= limits.max_event_streams_per_principal {
            return None;
        }
        *by.entry(principal.clone()).or_default() += 1;
        Some(StreamPermit {
            counts: self.clone(),
            principal,
        })
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut by = self
            .counts
            .by_principal
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = by.get_mut(&self.principal) {
            *n -= 1;
            if *n == 0 {
                by.remove(&self.principal);
            }
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("mount", &self.mount)
            .field("limits", &self.limits)
            .field("strict_empty_repl", &self.strict_empty_repl)
            .field("client_times", &self.client_times)
            .field("authorizer", &self.authorizer.is_some())
            .finish()
    }
}

pub(crate) struct Shared<S> {
    pub(crate) store: Arc<S>,
    pub(crate) config: Config,
}
