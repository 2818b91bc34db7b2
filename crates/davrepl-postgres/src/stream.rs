//! Large content, streamed chunk by chunk after the read step.

use davrepl_store::chunks::slice_chunk;
use davrepl_store::engine::sql;
use davrepl_store::{ByteStream, ErrorKind, StoreError, StoreResult};

use crate::{CHUNK, Pg, pg_err, pooled};

/// Bytes `start..=end` of blob `blob`, one chunk per query. A blob's chunks never change once
/// written (a replacement gets a new blob), so a missing chunk means the resource was replaced
/// or deleted mid-read: the stream ends with an error instead of mixing versions.
pub(crate) fn stream(store: Pg, blob: Option<i64>, (start, end): (u64, u64)) -> ByteStream {
    let (first, last) = sql::chunk_span(start, end, CHUNK);
    Box::pin(futures_util::stream::unfold(first, move |n| {
        let store = store.clone();
        async move {
            if n > last {
                return None;
            }
            let res: StoreResult<_> = async {
                let conn = store.conn().await?;
                let rows = pooled(
                    &conn,
                    "SELECT data FROM davrepl_chunks WHERE blob = $1 AND n = $2",
                    &[&blob, &n],
                )
                .await?;
                let row = rows.first().ok_or_else(|| {
                    StoreError::new(
                        ErrorKind::Unavailable,
                        "the resource changed while it was being read",
                    )
                })?;
                let data = row.try_get(0).map_err(pg_err)?;
                Ok(slice_chunk(n as u64, CHUNK, data, start, end))
            }
            .await;
            Some((res, n + 1))
        }
    }))
}
