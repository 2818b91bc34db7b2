//! [`ReplService`]: routes requests to the WebDAV handlers or to the wrapped service.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use crate::BoxError;
use crate::body::{DavBody, ReplBody};
use crate::config::Shared;

/// The service made by [`ReplLayer`](crate::ReplLayer).
///
/// Routing is synchronous and allocation-free on the pass-through path: a request whose path
/// is outside the mount prefix is handed to the inner service as it came, and its response
/// body is only wrapped, never buffered.
pub struct ReplService<S, I> {
    shared: Arc<Shared<S>>,
    inner: I,
}

impl<S, I: Clone> Clone for ReplService<S, I> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            inner: self.inner.clone(),
        }
    }
}

impl<S, I: std::fmt::Debug> std::fmt::Debug for ReplService<S, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplService")
            .field("mount", &self.shared.config.mount)
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, I> ReplService<S, I> {
    pub(crate) fn new(shared: Arc<Shared<S>>, inner: I) -> Self {
        Self { shared, inner }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &I {
        &self.inner
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`ReplService`].
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: FutKind<F>,
        body: PhantomData<fn() -> B>,
    }
}

/// A WebDAV request's future: boxed as the handler made it (its body is wrapped when it is
/// ready), so that the future is moved into place once.
type DavFuture = Pin<Box<dyn Future<Output = Response<DavBody>> + Send>>;

pin_project_lite::pin_project! {
    #[project = FutProj]
    enum FutKind<F> {
        Inner { #[pin] fut: F },
        Dav { fut: DavFuture },
    }
}

impl<F, B> std::fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ReplBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            FutProj::Inner { fut } => fut.poll(cx).map_ok(|r| r.map(ReplBody::inner)),
            FutProj::Dav { fut } => fut.as_mut().poll(cx).map(|r| Ok(r.map(ReplBody::dav))),
        }
    }
}

impl<S, I, ReqBody, ResBody> Service<Request<ReqBody>> for ReplService<S, I>
where
    S: davrepl_store::ReplStore,
    I: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: Body + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<ReplBody<ResBody>>;
    type Error = I::Error;
    type Future = ResponseFuture<I::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        if !self.shared.config.mount.contains(req.uri().path()) {
            return ResponseFuture {
                kind: FutKind::Inner {
                    fut: self.inner.call(req),
                },
                body: PhantomData,
            };
        }
        let fut = crate::handlers::handle(self.shared.clone(), req);
        ResponseFuture {
            kind: FutKind::Dav { fut: Box::pin(fut) },
            body: PhantomData,
        }
    }
}
