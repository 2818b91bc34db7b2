//! axum glue for [`davrepl`].
//!
//! Two ways to mount, both documented in `docs/mounting.md`:
//!
//! - [`wrap`]: the layer in front of a whole [`Router`]. Requests under the layer's mount
//!   prefix are WebDAV; everything else reaches the router unchanged. Serve it with
//!   `axum::serve(listener, davrepl_axum::into_make_service(svc))`.
//! - [`nest`]: the namespace as a nested service (`Router::nest_service`). axum strips the
//!   prefix before the service runs, so the layer is mounted at `/` and told the public prefix,
//!   which keeps hrefs in multistatus responses absolute and correct.
//!
//! `Router::layer` and `Router::route_layer` alone are not enough: they wrap the services of
//! routes (and, for `layer`, the fallback) *after* axum has matched a path and method, and a
//! `MethodRouter` answers `405` for PROPFIND, MKCOL, COPY, MOVE, … on any path it does know.
//!
//! ```
//! use axum::{Router, routing::get};
//! use davrepl::{MemStore, ReplLayer};
//!
//! let app = Router::new().route("/health", get(|| async { "ok" }));
//! let svc = davrepl_axum::wrap(ReplLayer::new(MemStore::new()).mount("/dav"), app);
//! let _make = davrepl_axum::into_make_service(svc);
//! ```

use std::convert::Infallible;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use davrepl::{Principal, ReplBody, ReplLayer, ReplService, ReplStore};
use tower::Service;
use tower::util::{MapRequestLayer, MapResponse};

/// The service [`wrap`] returns: a [`ReplService`] around a [`Router`] whose responses are
/// axum responses.
pub type Wrapped<S> =
    MapResponse<ReplService<S, Router>, fn(http::Response<ReplBody<Body>>) -> Response>;

fn to_axum(r: http::Response<ReplBody<Body>>) -> Response {
    r.map(Body::new)
}

/// Puts `layer` in front of the whole `router`.
// By value, like `nest`: call sites build the layer inline.
#[allow(clippy::needless_pass_by_value)]
pub fn wrap<S: ReplStore>(layer: ReplLayer<S>, router: Router) -> Wrapped<S> {
    MapResponse::new(layer.service(router), to_axum as fn(_) -> _)
}

/// Turns a service into what `axum::serve` takes.
pub fn into_make_service<T: Clone>(svc: T) -> tower::make::Shared<T> {
    tower::make::Shared::new(svc)
}

/// The service [`nested`] returns.
pub type Nested<S> =
    MapResponse<ReplService<S, NotFound>, fn(http::Response<ReplBody<Body>>) -> Response>;

/// The namespace as a service for `Router::nest_service(prefix, …)`: mounted at `/` with
/// `prefix` as its public prefix, so hrefs stay absolute (`/dav/...`). Wrap it in further
/// layers (authentication, limits) before nesting it.
pub fn nested<S: ReplStore>(prefix: &str, layer: ReplLayer<S>) -> Nested<S> {
    MapResponse::new(
        layer.mount("/").public_prefix(prefix).service(NotFound),
        to_axum as fn(_) -> _,
    )
}

/// Nests the namespace under `prefix` in `router` (see [`nested`]).
pub fn nest<S: ReplStore>(router: Router, prefix: &str, layer: ReplLayer<S>) -> Router {
    router.nest_service(prefix, nested(prefix, layer))
}

/// The inner service of [`nested`]: never reached, since the layer serves every path below
/// its mount.
#[derive(Debug, Clone, Copy)]
pub struct NotFound;

impl Service<Request> for NotFound {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request) -> Self::Future {
        std::future::ready(Ok(http::StatusCode::NOT_FOUND.into_response()))
    }
}

/// A layer that turns the application's own authenticated-user extension `T` (put there by
/// its auth middleware) into the [`Principal`] davrepl binds into collblobs and hands to its
/// authorizer. Place it between the auth layer and davrepl.
pub fn principal_from<T, F>(f: F) -> MapRequestLayer<impl FnMut(Request) -> Request + Clone>
where
    T: Send + Sync + 'static,
    F: Fn(&T) -> String + Clone + Send + 'static,
{
    MapRequestLayer::new(move |mut req: Request| {
        if let Some(name) = req.extensions().get::<T>().map(&f) {
            req.extensions_mut().insert(Principal(name));
        }
        req
    })
}

/// Compile-time proof that the services meet axum's bounds.
#[allow(dead_code)]
fn assert_bounds<S: ReplStore>() {
    fn axum_service<T>()
    where
        T: Service<Request, Response = Response, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        T::Future: Send + 'static,
    {
    }
    axum_service::<Wrapped<S>>();
    fn layer<L: Clone + Send + Sync + 'static>() {}
    layer::<ReplLayer<S>>();
}
