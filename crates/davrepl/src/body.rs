//! [`ReplBody`]: the response body of a [`ReplService`](crate::ReplService).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;

use crate::BoxError;

pin_project_lite::pin_project! {
    /// Either the wrapped service's body, passed through untouched, or a body made by the
    /// layer (a file, a streamed multistatus, an error message).
    pub struct ReplBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Dav { body: UnsyncBoxBody<Bytes, BoxError> },
    }
}

impl<B> std::fmt::Debug for ReplBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let which = match &self.kind {
            Kind::Inner { .. } => "Inner",
            Kind::Dav { .. } => "Dav",
        };
        f.debug_tuple("ReplBody").field(&which).finish()
    }
}

impl<B> Default for ReplBody<B> {
    /// An empty body made by the layer (used for rejections by auth layers in front of it).
    fn default() -> Self {
        Self::dav(empty())
    }
}

impl<B> ReplBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    pub(crate) fn dav(body: UnsyncBoxBody<Bytes, BoxError>) -> Self {
        Self {
            kind: Kind::Dav { body },
        }
    }
}

/// A body the layer made.
pub(crate) type DavBody = UnsyncBoxBody<Bytes, BoxError>;

pub(crate) fn full(bytes: impl Into<Bytes>) -> DavBody {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub(crate) fn empty() -> DavBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

impl<B> Body for ReplBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx).map_err(Into::into),
            KindProj::Dav { body } => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Dav { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Dav { body } => body.size_hint(),
        }
    }
}
