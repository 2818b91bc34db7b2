//! Wake-ups across nodes: every write transaction sends `NOTIFY davrepl_changes` (delivered by
//! PostgreSQL when it commits), and every node keeps one connection `LISTEN`ing on it that
//! fires the engine's [`ChangeSignal`]. The notification carries nothing: readers re-read the
//! log. A lost connection is re-opened, and the signal fires once then, since a notification
//! may have been missed meanwhile.

use std::time::Duration;

use davrepl_store::ChangeSignal;
use futures_util::StreamExt;
use futures_util::future::{Either, select};
use tokio_postgres::{AsyncMessage, NoTls};

/// The notification channel.
pub(crate) const CHANNEL: &str = "davrepl_changes";

/// The statement a write sends inside its transaction; `$1` names the paths it changed, one
/// per line (empty: anything may have changed).
pub(crate) const NOTIFY: &str = "SELECT pg_notify('davrepl_changes', $1)";

/// The longest payload sent; above it the notification names no paths (PostgreSQL allows
/// 8,000 bytes).
const MAX_PAYLOAD: usize = 7000;

/// The payload naming `paths`, or an empty one when they do not fit.
pub(crate) fn payload<'a>(paths: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for p in paths {
        if out.len() + p.len() + 1 > MAX_PAYLOAD {
            return String::new();
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(p);
    }
    out
}

/// Fires `signal` for a payload: for the paths it names, or for anything.
fn fire(signal: &ChangeSignal, payload: &str) {
    let paths: Option<Vec<_>> = (!payload.is_empty())
        .then(|| {
            payload
                .lines()
                .map(|l| davrepl_store::ResourcePath::parse(l).ok())
                .collect()
        })
        .flatten();
    match paths {
        Some(p) => signal.notify_paths(p),
        None => signal.notify(),
    }
}

/// The listener task of one store handle; stopped when dropped.
#[derive(Debug)]
pub(crate) struct Listener(tokio::task::JoinHandle<()>);

impl Drop for Listener {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts listening with `config`, firing `signal` on every notification.
pub(crate) fn spawn(config: tokio_postgres::Config, signal: ChangeSignal) -> Listener {
    Listener(tokio::spawn(async move {
        loop {
            if let Err(e) = listen_once(&config, &signal).await {
                tracing::warn!(error = %e, "the change listener lost its connection; reconnecting");
            }
            signal.notify();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }))
}

async fn listen_once(
    config: &tokio_postgres::Config,
    signal: &ChangeSignal,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    let drive = Box::pin(async {
        let mut messages = messages;
        while let Some(m) = messages.next().await {
            if let AsyncMessage::Notification(n) = m? {
                fire(signal, n.payload());
            }
        }
        Ok::<(), tokio_postgres::Error>(())
    });
    let listen = Box::pin(async {
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        // Anything committed before the LISTEN took effect was not notified here.
        signal.notify();
        std::future::pending::<Result<(), tokio_postgres::Error>>().await
    });
    match select(drive, listen).await {
        Either::Left((r, _)) | Either::Right((r, _)) => r,
    }
}
