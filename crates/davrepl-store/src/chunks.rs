//! Helpers for stores that keep content in fixed-size chunks (the SQLite and PostgreSQL
//! stores): cutting an incoming body into chunks, and slicing stored chunks for a byte range.

use std::future::Future;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use crate::{ByteStream, ErrorKind, StoreError, StoreResult};

/// Cuts a body into pieces of exactly `size` bytes, refusing it once it exceeds a limit.
///
/// Call [`full_chunk`](Self::full_chunk) until it returns `None`, then take the shorter
/// remainder with [`into_rest`](Self::into_rest). At most one chunk is held in memory.
pub struct Chunker {
    body: ByteStream,
    size: usize,
    max_len: Option<u64>,
    pending: BytesMut,
    total: u64,
    ended: bool,
}

impl std::fmt::Debug for Chunker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunker")
            .field("size", &self.size)
            .field("total", &self.total)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl Chunker {
    /// Chunks of `size` bytes (at least 1) from `body`; more than `max_len` bytes in total is
    /// [`ErrorKind::TooLarge`].
    pub fn new(body: ByteStream, size: usize, max_len: Option<u64>) -> Self {
        Self {
            body,
            size: size.max(1),
            max_len,
            pending: BytesMut::new(),
            total: 0,
            ended: false,
        }
    }

    /// The next whole chunk, or `None` once the body has ended with less than a chunk left.
    /// Errors of the body (and the size limit) are passed on.
    pub async fn full_chunk(&mut self) -> StoreResult<Option<Bytes>> {
        loop {
            if self.pending.len() >= self.size {
                return Ok(Some(self.pending.split_to(self.size).freeze()));
            }
            if self.ended {
                return Ok(None);
            }
            match self.body.next().await {
                Some(piece) => {
                    let piece = piece?;
                    self.total += piece.len() as u64;
                    if let Some(max) = self.max_len
                        && self.total > max
                    {
                        return Err(StoreError::new(
                            ErrorKind::TooLarge,
                            format!("content is larger than {max} bytes"),
                        ));
                    }
                    self.pending.extend_from_slice(&piece);
                }
                None => self.ended = true,
            }
        }
    }

    /// Bytes received so far (all of them, once [`full_chunk`](Self::full_chunk) returned
    /// `None`).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The final partial chunk, if any bytes are left.
    pub fn into_rest(self) -> Option<Bytes> {
        (!self.pending.is_empty()).then(|| self.pending.freeze())
    }
}

/// An upload cut into chunks by [`stage`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Staged {
    /// The blob the whole chunks were written under (chunks `0..chunks`), if there were any.
    pub blob: Option<i64>,
    /// How many whole chunks were written.
    pub chunks: i64,
    /// The final partial chunk, still in memory (it becomes chunk number `chunks`).
    pub rest: Option<Bytes>,
    /// Bytes in all.
    pub total: u64,
}

/// Where [`stage`] puts whole chunks: a backend that keeps content as numbered chunks of
/// blobs (the SQL backends).
pub trait ChunkSink: Sync {
    /// A new blob for an upload.
    fn begin(&self) -> impl Future<Output = StoreResult<i64>> + Send;
    /// Stores chunk `n` of `blob`.
    fn append(
        &self,
        blob: i64,
        n: i64,
        piece: Bytes,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Removes a blob no write adopted (best effort: a later start sweeps what remains).
    fn discard(&self, blob: i64) -> impl Future<Output = ()> + Send;
}

/// Reads `body`, storing each whole chunk of `size` bytes in `sink` as soon as it is complete,
/// under one blob begun at the first whole chunk; a body shorter than one chunk is never
/// written. When reading or writing fails (or the body exceeds `max_len`), the blob is
/// discarded and the error returned. At most one chunk is in memory at a time.
pub async fn stage(
    sink: &impl ChunkSink,
    body: ByteStream,
    size: usize,
    max_len: Option<u64>,
) -> StoreResult<crate::engine::Staged<Staged>> {
    let mut chunker = Chunker::new(body, size, max_len);
    let mut blob = None;
    let mut chunks = 0;
    let result: StoreResult<()> = async {
        while let Some(piece) = chunker.full_chunk().await? {
            let b = match blob {
                Some(b) => b,
                None => *blob.insert(sink.begin().await?),
            };
            sink.append(b, chunks, piece).await?;
            chunks += 1;
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        if let Some(b) = blob {
            sink.discard(b).await;
        }
        return Err(e);
    }
    let total = chunker.total();
    let staged = Staged {
        blob,
        chunks,
        total,
        rest: chunker.into_rest(),
    };
    Ok(crate::engine::Staged::new(staged, total))
}

/// The part of chunk number `n` (of `size`-byte chunks) that lies within the inclusive byte
/// range `start..=end` of the whole content.
pub fn slice_chunk(n: u64, size: usize, data: Vec<u8>, start: u64, end: u64) -> Bytes {
    let base = n * size as u64;
    let from = start.saturating_sub(base) as usize;
    let to = ((end + 1).saturating_sub(base) as usize).min(data.len());
    Bytes::from(data).slice(from.min(to)..to)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(pieces: &[&'static [u8]]) -> ByteStream {
        let v: Vec<StoreResult<Bytes>> = pieces.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        Box::pin(futures_util::stream::iter(v))
    }

    #[tokio::test]
    async fn cuts_exact_chunks_and_keeps_the_rest() {
        let mut c = Chunker::new(body(&[b"abc", b"defgh", b"ij"]), 4, None);
        assert_eq!(c.full_chunk().await.unwrap().unwrap(), "abcd");
        assert_eq!(c.full_chunk().await.unwrap().unwrap(), "efgh");
        assert!(c.full_chunk().await.unwrap().is_none());
        assert_eq!(c.total(), 10);
        assert_eq!(c.into_rest().unwrap(), "ij");
    }

    #[tokio::test]
    async fn refuses_more_than_the_limit() {
        let mut c = Chunker::new(body(&[b"abc", b"def"]), 100, Some(5));
        let e = c.full_chunk().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TooLarge);
    }

    /// Records what it is asked to do.
    #[derive(Default)]
    struct Sink {
        written: std::sync::Mutex<Vec<(i64, i64, Bytes)>>,
        discarded: std::sync::Mutex<Option<i64>>,
    }

    impl ChunkSink for Sink {
        async fn begin(&self) -> StoreResult<i64> {
            Ok(7)
        }

        async fn append(&self, blob: i64, n: i64, piece: Bytes) -> StoreResult<()> {
            self.written.lock().unwrap().push((blob, n, piece));
            Ok(())
        }

        async fn discard(&self, blob: i64) {
            *self.discarded.lock().unwrap() = Some(blob);
        }
    }

    #[tokio::test]
    async fn stage_writes_whole_chunks_under_one_blob() {
        let sink = Sink::default();
        let staged = stage(&sink, body(&[b"abc", b"defgh", b"ij"]), 4, None)
            .await
            .unwrap();
        let s = staged.upload;
        assert_eq!(
            (s.blob, s.chunks, s.total, staged.len),
            (Some(7), 2, 10, 10)
        );
        assert_eq!(s.rest.unwrap(), "ij");
        let w = sink.written.into_inner().unwrap();
        assert_eq!(
            w,
            [(7, 0, Bytes::from("abcd")), (7, 1, Bytes::from("efgh"))]
        );
        assert_eq!(*sink.discarded.lock().unwrap(), None);
    }

    #[tokio::test]
    async fn stage_discards_on_failure_and_skips_small_bodies() {
        let sink = Sink::default();
        let e = stage(&sink, body(&[b"abcd", b"efgh"]), 4, Some(6))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TooLarge);
        assert_eq!(*sink.discarded.lock().unwrap(), Some(7));
        let small = Sink::default();
        let s = stage(&small, body(&[b"ab"]), 4, None).await.unwrap().upload;
        assert_eq!((s.blob, s.chunks, s.total), (None, 0, 2));
        assert!(small.written.into_inner().unwrap().is_empty());
    }

    #[test]
    fn slices_a_range_across_chunks() {
        // content "0123456789", chunks of 4: "0123" "4567" "89"; range 2..=8
        assert_eq!(slice_chunk(0, 4, b"0123".to_vec(), 2, 8), "23");
        assert_eq!(slice_chunk(1, 4, b"4567".to_vec(), 2, 8), "4567");
        assert_eq!(slice_chunk(2, 4, b"89".to_vec(), 2, 8), "8");
    }
}
