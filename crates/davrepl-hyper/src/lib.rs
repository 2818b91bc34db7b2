//! Serve a tower service — typically a [`davrepl`] `ReplService` — over TCP with hyper.
//!
//! [`serve`] accepts connections until `shutdown` completes, speaks HTTP/1.1 and HTTP/2 on
//! the same port (hyper-util's auto builder), and then waits for in-flight requests to finish.
//! Slow or idle clients cannot hold sockets forever: see [`ServeOptions`] for the header-read
//! timeout, the inactivity timeout and the connection cap ([`serve_with`] sets them).
//!
//! [`davrepl`]: https://docs.rs/davrepl

mod activity;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use activity::{Activity, ActivityIo};

use http::{Request, Response};
use http_body::Body;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower_service::Service;

/// The request body type hyper hands to services.
pub use hyper::body::Incoming;

/// The boxed error type services and bodies may use.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// How long [`serve`] waits for open connections after `shutdown` before giving up on them.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Connection limits of [`serve_with`]. The defaults suit a server on an untrusted network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServeOptions {
    /// Longest time a client may take to send a request's headers (HTTP/1). Default 30 s.
    pub header_read_timeout: Duration,
    /// A connection on which no byte was read or written for this long is closed: an idle
    /// keep-alive connection, a body that stopped arriving, a client that stopped reading the
    /// answer. (It is checked every quarter of this time, so the close comes up to a quarter
    /// later.) Default 60 s.
    pub idle_timeout: Duration,
    /// Most connections open at once; further clients wait in the listen backlog until one
    /// closes. Default 1,024.
    pub max_connections: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

/// Serves `service` on `listener` with the default [`ServeOptions`] until `shutdown`
/// resolves, then drains open connections (for at most [`DRAIN_TIMEOUT`]).
///
/// Errors on individual connections are logged and do not stop the server; an error from
/// `accept` that is not transient is returned.
pub async fn serve<S, B>(
    listener: TcpListener,
    service: S,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    serve_with(listener, service, shutdown, ServeOptions::default()).await
}

/// [`serve`] with explicit connection limits.
pub async fn serve_with<S, B>(
    listener: TcpListener,
    service: S,
    shutdown: impl Future<Output = ()>,
    opts: ServeOptions,
) -> std::io::Result<()>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(opts.max_connections.max(1)));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // At the cap, stop accepting until a connection closes (the kernel queues the rest).
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) if is_transient(&e) => {
                    tracing::warn!(error = %e, "accept failed; continuing");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => return Err(e),
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let activity = Activity::new();
        let conn = builder.serve_connection_with_upgrades(
            TokioIo::new(ActivityIo::new(stream, activity.clone())),
            TowerToHyperService::new(service.clone()),
        );
        let conn = graceful.watch(conn.into_owned());
        let idle = opts.idle_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                },
                () = activity.idle_for(idle) => {
                    tracing::debug!(%peer, "connection idle too long; closed");
                }
            }
        });
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("open connections did not finish in time; closing them");
        }
    }
    Ok(())
}

fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    ) || e.raw_os_error() == Some(24) // EMFILE: too many open files; wait and retry
}
