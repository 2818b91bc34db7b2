//! Inactivity detection for a connection: the socket is wrapped so that every byte read or
//! written marks the connection as active, and a watchdog future completes once nothing moved
//! for long enough.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Whether a connection moved a byte since its watchdog last looked, shared by its socket
/// wrapper and its watchdog. The socket side is one relaxed store, no clock: reading the
/// clock twice per request cost more than the rest of the wrapper.
#[derive(Debug, Clone)]
pub(crate) struct Activity {
    moved: Arc<AtomicBool>,
}

/// The watchdog looks this many times per limit.
const CHECKS: u32 = 4;

impl Activity {
    pub(crate) fn new() -> Self {
        Self {
            moved: Arc::new(AtomicBool::new(false)),
        }
    }

    fn touch(&self) {
        self.moved.store(true, Ordering::Relaxed);
    }

    /// Completes once no byte has moved for `limit`: [`CHECKS`] looks in a row, a quarter of
    /// the limit apart, saw nothing move, so a connection is closed between `limit` and
    /// 1.25 × `limit` after its last byte.
    pub(crate) async fn idle_for(&self, limit: Duration) {
        let every = (limit / CHECKS).max(Duration::from_millis(1));
        let mut quiet = 0;
        while quiet < CHECKS {
            tokio::time::sleep(every).await;
            if self.moved.swap(false, Ordering::Relaxed) {
                quiet = 0;
            } else {
                quiet += 1;
            }
        }
    }
}

/// A socket that stamps its [`Activity`] on every successful read or write.
#[derive(Debug)]
pub(crate) struct ActivityIo<T> {
    inner: T,
    activity: Activity,
}

impl<T> ActivityIo<T> {
    pub(crate) fn new(inner: T, activity: Activity) -> Self {
        Self { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ActivityIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ActivityIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
