//! The one streaming multistatus writer: PROPFIND listings and manifests (and anything else
//! that answers with many `response` elements) produce their rows a chunk at a time, and this
//! turns that into a response body. Memory stays bounded by one chunk, whatever the number of
//! rows; a store error after the head went out ends the body (the client sees a truncated,
//! unusable response, never a complete-looking wrong one).

use std::future::Future;

use bytes::Bytes;
use davrepl_proto::xml::XmlWriter;
use davrepl_store::StoreError;
use futures_util::stream;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};

use crate::BoxError;
use crate::body::DavBody;

/// A source of multistatus rows.
pub(crate) trait Rows: Send + 'static {
    /// Writes the next chunk of rows into `w`; `Ok(true)` when that was the last one.
    fn next_chunk(
        &mut self,
        w: &mut XmlWriter,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// A body of `head` (the prolog, root element and any rows already known), then every chunk of
/// `rows`, then `</close>`.
pub(crate) fn stream<R: Rows>(head: Bytes, rows: R, close: &'static str) -> DavBody {
    let chunks = stream::unfold((Some(head), Some(rows)), move |(head, rows)| async move {
        if let Some(head) = head {
            return Some((Ok(head), (None, rows)));
        }
        let mut rows = rows?;
        let mut w = XmlWriter::new();
        match rows.next_chunk(&mut w).await {
            Ok(true) => {
                w.end(close);
                Some((Ok(w.take()), (None, None)))
            }
            Ok(false) => Some((Ok(w.take()), (None, Some(rows)))),
            Err(e) => {
                tracing::error!(error = %e, "the store failed while streaming a multistatus");
                let e: BoxError = Box::new(e);
                Some((Err(e), (None, None)))
            }
        }
    });
    StreamBody::new(futures_util::StreamExt::map(
        chunks,
        |r: Result<Bytes, BoxError>| r.map(Frame::data),
    ))
    .boxed_unsync()
}
