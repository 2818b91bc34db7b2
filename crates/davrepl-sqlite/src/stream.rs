//! Content a read step did not return itself: a content file, read piece by piece on the
//! blocking pool.
//!
//! A content file never changes once written, and an open file outlives the removal of its
//! name, so a stream that has opened its file sends one version whole even if the resource
//! is replaced meanwhile. A stream that finds the name already gone ends with an error
//! (the resource changed between the read step and the open).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use bytes::Bytes;
use davrepl_store::{ByteStream, ErrorKind, ResourcePath, StoreError};

use crate::files::{Content, io_err};
use crate::{CHUNK, Sqlite, blocking};

/// Bytes `start..=end` of `content` (the content of `path`).
pub(crate) fn stream(
    store: Sqlite,
    path: ResourcePath,
    content: Option<Content>,
    (start, end): (u64, u64),
) -> ByteStream {
    match content {
        Some(Content::File(id)) => file(&store, id, start, end),
        Some(Content::Row(id)) => {
            // Short content is normally read inside the step; read it now if it was not.
            Box::pin(futures_util::stream::once(async move {
                store
                    .read(move |t| {
                        if t.node(&path)?.and_then(|c| c.blob) != Some(Content::Row(id).column()) {
                            return Err(changed());
                        }
                        t.short_content(id, start, end)
                    })
                    .await
            }))
        }
        None => Box::pin(futures_util::stream::empty()),
    }
}

fn changed() -> StoreError {
    StoreError::new(
        ErrorKind::Unavailable,
        "the resource changed while it was being read",
    )
}

/// Bytes `start..=end` of a whole file's content (nothing if the range lies beyond it).
fn slice(whole: &Bytes, start: u64, end: u64) -> Option<Bytes> {
    let to = usize::try_from(end.saturating_add(1))
        .unwrap_or(usize::MAX)
        .min(whole.len());
    let from = usize::try_from(start).unwrap_or(usize::MAX).min(to);
    (from < to).then(|| whole.slice(from..to))
}

/// Bytes are handed out in pieces of this size: under the allocator's threshold for mapping
/// fresh pages (a 256 KiB buffer was mapped, faulted in, zeroed by the kernel and unmapped on
/// every read).
const PIECE: usize = 64 * 1024;

/// Reads the next `len` bytes of `file` (from its current position) as pieces of at most
/// [`PIECE`] bytes, without zeroing the buffers first.
fn pieces(file: &File, len: u64) -> std::io::Result<VecDeque<Bytes>> {
    let mut out = VecDeque::new();
    let mut left = len;
    while left > 0 {
        let n = left.min(PIECE as u64);
        let mut buf = Vec::with_capacity(n as usize);
        let got = file.take(n).read_to_end(&mut buf)?;
        if got as u64 != n {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the content file is shorter than its item",
            ));
        }
        out.push_back(Bytes::from(buf));
        left -= n;
    }
    Ok(out)
}

/// A file's bytes `start..=end`: the file is opened (and positioned) at the first read, then
/// read [`CHUNK`] bytes per hop to the blocking pool.
fn file(store: &Sqlite, id: i64, start: u64, end: u64) -> ByteStream {
    struct State {
        file: Option<File>,
        ready: VecDeque<Bytes>,
        at: u64,
    }
    let files = store.inner.files.clone();
    let state = State {
        file: None,
        ready: VecDeque::new(),
        at: start,
    };
    if let Some(whole) = store.inner.files.cache.get(id) {
        return Box::pin(futures_util::stream::iter(
            slice(&whole, start, end).map(Ok),
        ));
    }
    Box::pin(futures_util::stream::unfold(Some(state), move |state| {
        let files = files.clone();
        async move {
            let mut st = state?;
            if let Some(b) = st.ready.pop_front() {
                return Some((Ok(b), Some(st)));
            }
            if st.at > end {
                return None;
            }
            let len = (end - st.at + 1).min(CHUNK as u64);
            let (open, at) = (st.file.take(), st.at);
            let read = blocking(move || {
                let f = match open {
                    Some(f) => f,
                    None => {
                        let mut f = File::open(files.path(id))?;
                        // A file the cache takes is read whole, kept, and served from there.
                        let total = f.metadata()?.len();
                        if files.cache.admits(total) {
                            let mut buf = Vec::with_capacity(total as usize);
                            (&f).take(total).read_to_end(&mut buf)?;
                            let whole = Bytes::from(buf);
                            files.cache.insert(id, whole.clone());
                            return Ok((f, slice(&whole, at, end).into_iter().collect(), u64::MAX));
                        }
                        f.seek(SeekFrom::Start(at))?;
                        f
                    }
                };
                let got = pieces(&f, len)?;
                Ok((f, got, at + len))
            })
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => changed(),
                _ => io_err("cannot read a content file", e),
            });
            match read {
                Ok((f, mut ready, next_at)) => {
                    let first = ready.pop_front().unwrap_or_default();
                    let next = State {
                        file: Some(f),
                        ready,
                        at: next_at,
                    };
                    Some((Ok(first), Some(next)))
                }
                Err(e) => Some((Err(e), None)),
            }
        }
    }))
}
