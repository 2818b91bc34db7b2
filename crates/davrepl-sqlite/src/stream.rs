//! Large content, streamed chunk by chunk after the read step.

use davrepl_store::chunks::slice_chunk;
use davrepl_store::engine::sql;
use davrepl_store::{ByteStream, ErrorKind, ResourcePath, StoreError};

use crate::{CHUNK, Sqlite, db_err};

/// Bytes `start..=end` of blob `blob` (the content of `path`), one chunk per read step. Each
/// step checks that `path` still has that blob, so a concurrent replacement ends the stream
/// with an error instead of mixing two versions.
pub(crate) fn stream(
    store: Sqlite,
    path: ResourcePath,
    blob: Option<i64>,
    (start, end): (u64, u64),
) -> ByteStream {
    let (first, last) = sql::chunk_span(start, end, CHUNK);
    Box::pin(futures_util::stream::unfold(first, move |n| {
        let (store, path) = (store.clone(), path.clone());
        async move {
            if n > last {
                return None;
            }
            let res = store
                .read(move |t| {
                    if t.node(&path)?.and_then(|x| x.blob) != blob {
                        return Err(StoreError::new(
                            ErrorKind::Unavailable,
                            "the resource changed while it was being read",
                        ));
                    }
                    t.tx.query_row(
                        "SELECT data FROM davrepl_chunks WHERE blob = ?1 AND n = ?2",
                        rusqlite::params![blob, n],
                        |r| r.get::<_, Vec<u8>>(0),
                    )
                    .map_err(db_err)
                })
                .await
                .map(|d| slice_chunk(n as u64, CHUNK, d, start, end));
            Some((res, n + 1))
        }
    }))
}
