//! Content a read step did not return itself: a content file, read piece by piece on the
//! blocking pool.
//!
//! A content file never changes once written, and an open file outlives the removal of its
//! name, so a stream that has opened its file sends one version whole even if the resource
//! is replaced meanwhile. A stream that finds the name already gone ends with an error
//! (the resource changed between the read step and the open).

use std::fs::File;
use std::os::unix::fs::FileExt;

use bytes::{Bytes, BytesMut};
use davrepl_store::{ByteStream, ErrorKind, ResourcePath, StoreError, StoreResult};

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

/// One piece of a file: `len` bytes at `at`.
fn piece(file: &File, at: u64, len: usize) -> std::io::Result<Bytes> {
    let mut buf = BytesMut::zeroed(len);
    file.read_exact_at(&mut buf, at)?;
    Ok(buf.freeze())
}

fn file(store: &Sqlite, id: i64, start: u64, end: u64) -> ByteStream {
    let files = store.inner.files.clone();
    let state = (None::<File>, start);
    Box::pin(futures_util::stream::unfold(Some(state), move |state| {
        let files = files.clone();
        async move {
            let (open, at) = state?;
            if at > end {
                return None;
            }
            let len = usize::try_from((end - at + 1).min(CHUNK as u64)).unwrap_or(CHUNK);
            let read: StoreResult<(File, Bytes)> = blocking(move || {
                let f = match open {
                    Some(f) => f,
                    None => File::open(files.path(id))?,
                };
                let bytes = piece(&f, at, len)?;
                Ok((f, bytes))
            })
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => changed(),
                _ => io_err("cannot read a content file", e),
            });
            match read {
                Ok((f, bytes)) => Some((Ok(bytes), Some((Some(f), at + len as u64)))),
                Err(e) => Some((Err(e), None)),
            }
        }
    }))
}
