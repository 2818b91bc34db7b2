//! [`ReplLayer`]: the builder that configures the namespace and wraps a service.

use std::sync::Arc;

use davrepl_proto::href::Mount;
use davrepl_store::{ReplStore, ResourcePath};
use tower_layer::Layer;

use crate::config::{Access, Config, Limits, Principal, Shared};
use crate::service::ReplService;

/// A [`Layer`] that serves a WebDAV namespace from a [`ReplStore`] under a mount prefix and
/// passes every other request to the wrapped service.
#[must_use]
pub struct ReplLayer<S> {
    store: Arc<S>,
    config: Config,
}

impl<S> std::fmt::Debug for ReplLayer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplLayer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<S> Clone for ReplLayer<S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S: ReplStore> ReplLayer<S> {
    /// A layer serving `store` at `/` with default limits.
    pub fn new(store: S) -> Self {
        Self::from_arc(Arc::new(store))
    }

    /// Like [`ReplLayer::new`], sharing a store the application also uses.
    pub fn from_arc(store: Arc<S>) -> Self {
        Self {
            store,
            config: Config {
                mount: Mount::new("/"),
                limits: Limits::default(),
                strict_empty_repl: false,
                client_times: true,
                streams: Default::default(),
                authorizer: None,
            },
        }
    }

    /// Serves the namespace under `prefix` (e.g. `/dav`); other paths pass through.
    pub fn mount(mut self, prefix: &str) -> Self {
        self.config.mount = Mount::new(prefix);
        self
    }

    /// Sets the prefix clients see in hrefs when it differs from the request paths the layer
    /// receives: under axum's `Router::nest_service("/dav", …)` the layer sees `/x` while
    /// clients use `/dav/x`, so mount at `/` with public prefix `/dav`.
    pub fn public_prefix(mut self, prefix: &str) -> Self {
        self.config.mount = self.config.mount.with_public_prefix(prefix);
        self
    }

    /// Checks every request with `f` before anything is read or written.
    pub fn authorize(
        mut self,
        f: impl Fn(Option<&Principal>, Access, &ResourcePath) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.config.authorizer = Some(Arc::new(f));
        self
    }

    /// Replaces the limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.config.limits = limits;
        self
    }

    /// Turns PROPFIND `Depth: infinity` on or off.
    pub fn allow_depth_infinity(mut self, yes: bool) -> Self {
        self.config.limits.allow_depth_infinity = yes;
        self
    }

    /// Answers a manifest without changes with an empty `repl` element, exactly as the
    /// Exchange SDK describes, instead of returning an equivalent collblob (the default, which
    /// suits clients that always replace their stored collblob).
    pub fn strict_empty_repl(mut self, yes: bool) -> Self {
        self.config.strict_empty_repl = yes;
        self
    }

    /// Lets clients set an item's modification time (on by default): `X-OC-Mtime` on PUT
    /// (ownCloud/Nextcloud clients, rclone), and PROPPATCH of `DAV:getlastmodified`,
    /// `DAV:lastmodified` (seconds, as rclone sends it) or Windows' `Win32LastModifiedTime`.
    /// RFC 4918 calls `getlastmodified` protected; turned off, it is again (`403`), the header
    /// is ignored, and the other two are ordinary dead properties.
    pub fn client_times(mut self, yes: bool) -> Self {
        self.config.client_times = yes;
        self
    }

    /// Builds the service for `inner` without going through [`Layer`].
    pub fn service<I>(&self, inner: I) -> ReplService<S, I> {
        let shared = Shared {
            store: self.store.clone(),
            config: self.config.clone(),
        };
        ReplService::new(Arc::new(shared), inner)
    }
}

impl<S: ReplStore, I> Layer<I> for ReplLayer<S> {
    type Service = ReplService<S, I>;

    fn layer(&self, inner: I) -> Self::Service {
        self.service(inner)
    }
}
