//! `davrepl-server`: the reference WebDAV replication server.
//!
//! ```text
//! davrepl-server --listen 127.0.0.1:8080 --store memory --prefix /
//! davrepl-server --hash-password < pw.txt        # prints an Argon2 hash for a users file
//! davrepl-server --users-file users.txt --homes --listen 0.0.0.0:8080
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;

use bytes::Bytes;
use clap::Parser;
use davrepl::{MemStore, ReplLayer, ReplStore};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tokio::net::TcpListener;
use tower::Layer;

/// jemalloc, not the system allocator: requests move between the runtime's worker threads, so
/// memory is often freed on another thread than the one that allocated it, and glibc's malloc
/// then waits on the other thread's arena lock (measured under a GET load: a futex call every
/// seven requests, 13.3 µs of CPU per request against 10.2 µs with this allocator). mimalloc
/// was as fast but let the server's peak memory under hostile load grow four times as much.
/// The library itself leaves the allocator to the application that embeds it.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Command-line options.
#[derive(Debug, Parser)]
#[command(
    name = "davrepl-server",
    version,
    about = "WebDAV server with Exchange-style replication"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Where data lives: `sqlite:PATH` (created on first start), `memory`, or `postgres://…`.
    #[arg(long, default_value = "sqlite:./davrepl-data/store.db")]
    store: StoreSpec,
    /// URL path prefix the WebDAV namespace is mounted at.
    #[arg(long, default_value = "/")]
    prefix: String,
    /// A password file: one `NAME:HASH` per line, HASH an Argon2 hash from `--hash-password`.
    /// With it, HTTP Basic authentication is required and each user's collblobs are bound to
    /// them.
    #[arg(long, value_name = "FILE")]
    users_file: Option<std::path::PathBuf>,
    /// Give each user of `--users-file` a home `/<name>/` under the prefix (created at start):
    /// they read and write only there; anything else is 403.
    #[arg(long, requires = "users_file")]
    homes: bool,
    /// Serve without authentication on an address other than loopback (refused otherwise:
    /// anyone who can connect could read and change everything).
    #[arg(long)]
    allow_anonymous: bool,
    /// Start a new store generation (SQLite or PostgreSQL): every collblob issued before is
    /// refused with 475 and clients resynchronise. Give it once, on the first start after
    /// restoring the store from a backup (with PostgreSQL: on one node, the others stopped).
    #[arg(long)]
    after_restore: bool,
    /// Read a password from standard input, print its Argon2 hash for `--users-file`, and exit.
    #[arg(long, exclusive = true)]
    hash_password: bool,
    /// Refuse PROPFIND with `Depth: infinity` (403).
    #[arg(long)]
    no_depth_infinity: bool,
    /// Most members one RFC 6578 sync-collection report lists; a longer one is truncated
    /// with a `507` and a token to continue from (RFC 6578 §3.6).
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    max_sync_results: u64,
    /// The longest a WebDAV lock is granted for, in seconds (a LOCK asking for more, or for
    /// `Infinite`, gets this).
    #[arg(long, default_value_t = 86_400, value_name = "SECONDS")]
    max_lock_timeout: u64,
    /// The most bytes of content the store may hold (RFC 4331 quota): writes that would go
    /// over get `507`, and `DAV:quota-available-bytes` reports what is left. No quota when
    /// absent.
    #[arg(long, value_name = "BYTES")]
    quota_bytes: Option<u64>,
    /// PostgreSQL: bytes of memory for the items this node read recently (rows, and content up
    /// to 64 KiB), used only after a shared check shows nothing committed in the cluster
    /// since they were read. `0` turns the cache off.
    #[arg(long, default_value_t = davrepl_postgres::PgOptions::default().hot_items, value_name = "BYTES")]
    pg_hot_items: u64,
    /// Ignore modification times clients send (`X-OC-Mtime`) and keep `getlastmodified`
    /// protected, as RFC 4918 has it.
    #[arg(long)]
    no_client_times: bool,
    /// Days tombstones are kept; older ones are purged hourly, and collblobs older than the
    /// purge get `475` (the client does a first sync). 0 keeps them forever.
    #[arg(long, default_value_t = 30)]
    retention_days: u64,
    /// Seconds a client may take to send a request's headers.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    header_timeout: u64,
    /// Seconds without a byte read or written after which a connection is closed.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    idle_timeout: u64,
    /// Most connections open at once (more wait in the listen backlog).
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
}

/// A parsed `--store` value.
#[derive(Debug, Clone)]
enum StoreSpec {
    Memory,
    Sqlite(String),
    Postgres(String),
}

impl std::str::FromStr for StoreSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "memory" {
            Ok(Self::Memory)
        } else if let Some(path) = s.strip_prefix("sqlite:") {
            if path.is_empty() {
                return Err(
                    "sqlite: needs a file path, e.g. sqlite:./davrepl-data/store.db".into(),
                );
            }
            Ok(Self::Sqlite(path.to_owned()))
        } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Ok(Self::Postgres(s.to_owned()))
        } else {
            Err(format!(
                "unknown store {s:?}: use memory, sqlite:PATH or postgres://USER:PW@HOST/DB"
            ))
        }
    }
}

/// The `--homes` rule: a user reads and writes only in `/<name>/` and below; the root itself
/// may be looked at (a client opening the server), not listed.
fn home_only(
    principal: Option<&davrepl::Principal>,
    access: davrepl::Access,
    path: &davrepl::ResourcePath,
) -> bool {
    let Some(user) = principal else { return false };
    match path.segments().next() {
        Some(first) => first == user.0,
        None => access == davrepl::Access::Read,
    }
}

/// Whether a `Host` header names this machine's loopback interface (with or without a port).
/// An anonymous server on loopback answers only those, so a web page cannot reach it through
/// a DNS name rebound to 127.0.0.1.
fn is_loopback_host(host: &str) -> bool {
    // On every request: bytes, not a generic pattern search.
    let b = host.as_bytes();
    let name = match b.strip_prefix(b"[") {
        // A bracketed address must be closed.
        Some(rest) => match rest.iter().position(|&c| c == b']') {
            Some(i) => &rest[..i],
            None => return false,
        },
        None => b.iter().rposition(|&c| c == b':').map_or(b, |i| &b[..i]),
    };
    // The usual names first, before parsing an address.
    name == b"127.0.0.1"
        || name.eq_ignore_ascii_case(b"localhost")
        || std::str::from_utf8(name)
            .ok()
            .and_then(|n| n.parse::<std::net::IpAddr>().ok())
            .is_some_and(|ip| ip.is_loopback())
}

/// Refuses (403) a request to an anonymous loopback server whose `Host` is not loopback.
/// (The error type is tower-http's: the whole response.)
#[allow(clippy::result_large_err)]
fn loopback_host_only(
    req: &mut Request<davrepl_hyper::Incoming>,
) -> Result<(), Response<davrepl::ReplBody<Full<Bytes>>>> {
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    if host.is_some_and(is_loopback_host) {
        return Ok(());
    }
    let mut r = Response::new(davrepl::ReplBody::default());
    *r.status_mut() = StatusCode::FORBIDDEN;
    Err(r)
}

fn read_password_from_stdin() -> Result<String, String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the password: {e}"))?;
    let pw = line.trim_end_matches(['\r', '\n']);
    if pw.is_empty() {
        return Err("the password is empty".into());
    }
    davrepl_auth::hash_password(pw)
}

fn not_found() -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(b"not found\n")));
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}

/// Purges tombstones older than `days` once an hour, for as long as the server runs. With
/// several nodes on one database every node may do it: purges are idempotent.
fn spawn_retention<S: ReplStore + Clone>(store: &S, days: u64) {
    if days == 0 {
        return;
    }
    let store = store.clone();
    let window = std::time::Duration::from_secs(days.saturating_mul(86_400));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let Some(before) = std::time::SystemTime::now().checked_sub(window) else {
                continue;
            };
            match store.purge(before).await {
                Ok(r) if r.removed > 0 => {
                    tracing::info!(
                        removed = r.removed,
                        low_water = r.low_water,
                        "purged tombstones"
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "purging tombstones failed; retrying in an hour");
                }
            }
        }
    });
}

/// The users of `--users-file`, if given.
fn users(
    args: &Args,
) -> Result<Option<davrepl_auth::BasicAuth<davrepl::ReplBody<Full<Bytes>>>>, String> {
    let Some(file) = &args.users_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read the users file {}: {e}", file.display()))?;
    davrepl_auth::BasicAuth::from_password_file(&text)
        .map(Some)
        .map_err(|e| format!("users file {}: {e}", file.display()))
}

/// Creates `/<name>/` for every user that has none yet.
async fn make_homes<S: ReplStore>(store: &S, names: &[String]) -> Result<(), String> {
    for name in names {
        let home = davrepl::ResourcePath::root()
            .join(name)
            .map_err(|e| format!("user name {name:?} cannot be a home collection: {e}"))?;
        match store.create_collection(&home, Default::default()).await {
            Ok(_) => tracing::info!(%home, "created home collection"),
            Err(e) if e.kind() == davrepl::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create the home of {name}: {e}")),
        }
    }
    Ok(())
}

/// Opens the store `--store` names.
async fn open_store(args: &Args) -> Result<davrepl::DynStore, String> {
    match &args.store {
        StoreSpec::Memory if args.after_restore => {
            Err("--after-restore: a memory store has nothing to restore".to_owned())
        }
        StoreSpec::Memory => Ok(davrepl::DynStore::new(MemStore::new())),
        StoreSpec::Sqlite(path) => {
            let mut o = davrepl_sqlite::SqliteOptions::default();
            o.new_generation = args.after_restore;
            let store = davrepl_sqlite::SqliteStore::open_with(path, o)
                .await
                .map_err(|e| format!("cannot open the SQLite store at {path}: {e}"))?;
            tracing::info!(path = %path, "opened SQLite store");
            Ok(davrepl::DynStore::new(store))
        }
        StoreSpec::Postgres(url) => {
            let mut o = davrepl_postgres::PgOptions::default();
            o.new_generation = args.after_restore;
            o.hot_items = args.pg_hot_items;
            let store = davrepl_postgres::PgStore::connect_with(url, o)
                .await
                .map_err(|e| format!("cannot open the PostgreSQL store: {e}"))?;
            tracing::info!(store = ?store, "connected to the PostgreSQL store");
            Ok(davrepl::DynStore::new(store))
        }
    }
}

async fn run<S: ReplStore + Clone>(args: &Args, store: S) -> Result<(), String> {
    let auth = users(args)?;
    if auth.is_none() && !args.listen.ip().is_loopback() && !args.allow_anonymous {
        return Err(format!(
            "refusing to serve {} without users: anyone who can connect could read and change \
             everything. Give --users-file, listen on 127.0.0.1, or pass --allow-anonymous",
            args.listen
        ));
    }
    let mut limits = davrepl::Limits::default();
    limits.max_sync_results = args.max_sync_results.max(1);
    limits.max_lock_timeout = std::time::Duration::from_secs(args.max_lock_timeout.max(1));
    limits.quota_bytes = args.quota_bytes;
    let mut layer = ReplLayer::new(store.clone())
        .mount(&args.prefix)
        .limits(limits)
        .allow_depth_infinity(!args.no_depth_infinity)
        .client_times(!args.no_client_times);
    if args.homes {
        let mut names: Vec<String> = auth
            .iter()
            .flat_map(|a| a.user_names().map(str::to_owned))
            .collect();
        names.sort();
        make_homes(&store, &names).await?;
        layer = layer.authorize(home_only);
    }
    spawn_retention(&store, args.retention_days);
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let fallback = tower::service_fn(|_req: Request<davrepl_hyper::Incoming>| async {
        Ok::<_, Infallible>(not_found())
    });
    let service = layer.layer(fallback);
    let service = match auth {
        Some(auth) => tower::util::Either::Left(
            tower_http::auth::AsyncRequireAuthorizationLayer::new(auth).layer(service),
        ),
        None if args.listen.ip().is_loopback() => {
            tower::util::Either::Right(tower::util::Either::Left(
                tower_http::validate_request::ValidateRequestHeaderLayer::custom(
                    loopback_host_only,
                )
                .layer(service),
            ))
        }
        None => tower::util::Either::Right(tower::util::Either::Right(service)),
    };
    let prefix = args.prefix.trim_matches('/');
    #[allow(clippy::print_stdout)]
    {
        println!("listening on http://{addr}/{prefix}");
    }
    tracing::info!(%addr, prefix = %args.prefix, "listening");
    let mut opts = davrepl_hyper::ServeOptions::default();
    opts.header_read_timeout = std::time::Duration::from_secs(args.header_timeout.max(1));
    opts.idle_timeout = std::time::Duration::from_secs(args.idle_timeout.max(1));
    opts.max_connections = args.max_connections.max(1);
    davrepl_hyper::serve_with(listener, service, shutdown_signal(), opts)
        .await
        .map_err(|e| format!("server failed: {e}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DAVREPL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    if args.hash_password {
        return match read_password_from_stdin() {
            Ok(hash) => {
                #[allow(clippy::print_stdout)]
                {
                    println!("{hash}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("davrepl-server: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // One request path for every backend: the store's type is erased once, here.
    let result = match open_store(&args).await {
        Ok(store) => run(&args, store).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("davrepl-server: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_loopback_host;

    #[test]
    fn loopback_hosts() {
        for host in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "localhost",
            "LocalHost:80",
            "127.3.4.5:1",
            "[::1]",
            "[::1]:8080",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "",
            ":80",
            "example.org",
            "example.org:8080",
            "10.0.0.1:80",
            "localhost.example.org",
            "[::2]:80",
            "[::1",
            "127.0.0.1.evil:80",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}
