//! [`Engine`]: the whole [`ReplStore`] contract over a [`Backend`] that only runs atomic steps
//! on its rows and moves content.

use std::future::Future;
use std::time::{Duration, SystemTime};

use super::{LockScan, LogQuery, PageQuery, Rows, lock, read, subscription, write};
use crate::condition::Condition;
use crate::digest::{self, Hasher};
use crate::error::{ErrorKind, StoreError, StoreResult};
use crate::lock::{LOCK_TOKEN_SCHEME, Lock, LockGrant, LockRequest};
use crate::path::ResourcePath;
use crate::tags::{Seq, StoreId};
use crate::types::{
    ByteRange, ByteStream, Capabilities, ChangePage, ChangesQuery, CreateOptions, DeleteOptions,
    Entry, GetOptions, ListOptions, Listing, Meta, PatchOptions, PropPatch, PurgeReport,
    PutOptions, TransferOptions, WriteOutcome,
};
use crate::{ReplStore, Secret};

/// One atomic step, as the engine hands it to [`Backend::atomic`]: it runs on the step's rows
/// and gets the payload of the step's upload, if any. It may run more than once (a backend
/// that fetched too little runs it again with more); it has no other side effect.
pub type Step<P, T> =
    Box<dyn Fn(&mut dyn Rows<Payload = P>, Option<P>) -> StoreResult<T> + Send + Sync>;

/// What a step will read, known before it runs: a backend that talks to a server fetches all
/// of it in one round trip (others ignore it). Anything missing is still asked for through
/// [`Rows`]; the plan only saves round trips.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Plan {
    /// The step writes (otherwise it reads from one consistent snapshot).
    pub write: bool,
    /// A read of a few rows by key, no scan and no log (a HEAD, PROPFIND of one resource, or
    /// the GET of an item): cheap enough that a backend may run it on the calling thread
    /// instead of handing it to a blocking pool. Set for every backend.
    pub point: bool,
    /// Single rows it reads.
    pub paths: Vec<ResourcePath>,
    /// Subtrees it reads whole (the root's row included).
    pub trees: Vec<ResourcePath>,
    /// Rows whose dead properties it reads.
    pub props_of: Vec<ResourcePath>,
    /// Subtrees whose every row's dead properties it reads.
    pub props_below: Vec<ResourcePath>,
    /// A subtree whose content it copies (new content handles needed).
    pub copies_of: Option<ResourcePath>,
    /// Listing pages it reads.
    pub pages: Vec<PageQuery>,
    /// Change-log reads ([`Rows::changed`] and [`Rows::removed`]).
    pub logs: Vec<LogQuery>,
    /// It reads the counters (a write always does).
    pub counters: bool,
    /// It reads the content of this item (a range of it, or all), when small
    /// ([`Rows::content`]).
    pub content: Option<(ResourcePath, Option<ByteRange>)>,
    /// Lock rows a read reads ([`Rows::locks`]); a write's are found through
    /// [`Rows::may_hold_locks`].
    pub locks: Option<LockScan>,
    /// Subscriptions it reads ([`Rows::subscription`]).
    pub subscriptions: Vec<u64>,
    /// Rows a write may change or remove, subtree roots standing for their subtrees (the
    /// target, a MOVE's source, a COPY's or MOVE's destination). A backend whose writers run
    /// concurrently locks them, and their ancestors against a concurrent removal, before it
    /// reads anything; a write below them locks them as ancestors, so it waits.
    pub written: Vec<ResourcePath>,
    /// The write changes lock rows or the log's low-water mark (LOCK, a refresh, UNLOCK, a
    /// purge): a backend whose writers run concurrently runs it alone.
    pub exclusive: bool,
}

impl Plan {
    fn read(paths: impl IntoIterator<Item = ResourcePath>) -> Self {
        Self {
            paths: paths.into_iter().collect(),
            ..Self::default()
        }
    }

    /// A write on `target`: the target, its parent and every path `cond` names. (Lock rows
    /// are not listed: a write reads them only when the store holds any,
    /// [`Rows::may_hold_locks`].)
    fn write(target: &ResourcePath, cond: &Condition) -> Self {
        let mut plan = Self {
            write: true,
            written: vec![target.clone()],
            ..Self::read(cond.paths(target)) // the target first, each path once
        };
        if let Some(parent) = target.parent() {
            plan.add_path(parent);
        }
        plan
    }

    /// Adds a single row to read, unless it is listed already.
    fn add_path(&mut self, path: ResourcePath) {
        if !self.paths.contains(&path) {
            self.paths.push(path);
        }
    }
}

/// An upload's body on its way to [`Backend::stage`].
#[non_exhaustive]
pub struct Incoming {
    /// Where it is being written.
    pub path: ResourcePath,
    /// The body.
    pub body: ByteStream,
    /// Refuse it ([`ErrorKind::TooLarge`]) beyond this many bytes.
    pub max_len: Option<u64>,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("path", &self.path)
            .field("max_len", &self.max_len)
            .finish_non_exhaustive()
    }
}

/// One atomic step and what it needs, as the engine hands it to [`Backend::atomic`].
#[non_exhaustive]
pub struct Atomic<P, U, T> {
    /// What the step will read.
    pub plan: Plan,
    /// Staged content whose payload the step gets.
    pub upload: Option<U>,
    /// The step.
    pub step: Step<P, T>,
}

impl<P, U, T> std::fmt::Debug for Atomic<P, U, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Atomic")
            .field("plan", &self.plan)
            .field("upload", &self.upload.is_some())
            .finish_non_exhaustive()
    }
}

/// The [`Atomic`] of backend `B`.
pub type AtomicOf<B, T> = Atomic<<B as Backend>::Payload, <B as Backend>::Upload, T>;

/// Uploaded content, stored by [`Backend::stage`] before the write that adopts it.
#[derive(Debug)]
#[non_exhaustive]
pub struct Staged<U> {
    /// The backend's handle on the staged content.
    pub upload: U,
    /// Its length in bytes.
    pub len: u64,
    /// Whether the backend changed the content (reported as `transformed`).
    pub transformed: bool,
}

impl<U> Staged<U> {
    /// Staged content of `len` bytes, unchanged.
    pub fn new(upload: U, len: u64) -> Self {
        Self {
            upload,
            len,
            transformed: false,
        }
    }
}

/// What a storage backend does: run atomic steps on its rows, and move content in and out.
/// Every rule of the model is the engine's; see `docs/implementing-a-store.md`.
pub trait Backend: Send + Sync + 'static {
    /// Whether the backend reads the [`Plan`] of each step (to prefetch what it names);
    /// building a plan costs a few allocations, which backends that read in place skip.
    const PREFETCH: bool = false;

    /// The backend's handle on one resource's content.
    type Payload: Clone + Default + Send + Sync + 'static;
    /// Content staged by [`stage`](Self::stage), not yet part of any resource.
    type Upload: Send + 'static;

    /// The store's id and collblob secret (both stable across restarts and nodes).
    fn identity(&self) -> (StoreId, Secret);

    /// What the store supports.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// Reads an upload's body (at most `max_len` bytes, else [`ErrorKind::TooLarge`]) into
    /// staged content. Nothing may be visible in the store until a step adopts it.
    fn stage(
        &self,
        body: Incoming,
    ) -> impl Future<Output = StoreResult<Staged<Self::Upload>>> + Send;

    /// Runs the step as one atomic step: for a writing [`Plan`] all its row changes happen
    /// together (and writes are serialized, so sequence numbers become visible in order) or
    /// none does; otherwise it reads one consistent snapshot. With an upload, the step gets
    /// its payload; if the step fails, the upload is discarded.
    fn atomic<T: Send + 'static>(
        &self,
        step: AtomicOf<Self, T>,
    ) -> impl Future<Output = StoreResult<T>> + Send;

    /// The bytes `start..=end` of content a step did not read itself ([`Rows::content`]
    /// returned `None`). If the resource changes meanwhile, the stream ends with an error
    /// rather than mixing two versions.
    fn stream(&self, path: &ResourcePath, payload: Self::Payload, span: (u64, u64)) -> ByteStream;
}

/// The [`ReplStore`] of a [`Backend`]. Backends wrap it in their own store type (see
/// [`forward_repl_store!`](crate::forward_repl_store)).
#[derive(Clone)]
pub struct Engine<B> {
    backend: B,
    id: StoreId,
    secret: Secret,
    signal: crate::ChangeSignal,
}

impl<B> std::fmt::Debug for Engine<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("store", &self.id)
            .field("backend", &std::any::type_name::<B>())
            .finish_non_exhaustive()
    }
}

impl<B: Backend> Engine<B> {
    /// The store of `backend`.
    pub fn new(backend: B) -> Self {
        Self::with_signal(backend, crate::ChangeSignal::new())
    }

    /// The store of `backend`, firing `signal` after every write step it commits (a backend
    /// shared by several processes fires the same signal when another one commits).
    pub fn with_signal(backend: B, signal: crate::ChangeSignal) -> Self {
        let (id, secret) = backend.identity();
        Self {
            backend,
            id,
            secret,
            signal,
        }
    }

    /// The signal fired after every write step this engine commits. A backend shared by
    /// several processes fires it too when another process commits (PostgreSQL does, through
    /// `LISTEN`).
    pub fn signal(&self) -> &crate::ChangeSignal {
        &self.signal
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The plan of a step: built only for a backend that prefetches
    /// ([`Backend::PREFETCH`]); the others only learn whether the step writes.
    fn plan(&self, write: bool, build: impl FnOnce() -> Plan) -> Plan {
        if B::PREFETCH {
            let plan = build();
            debug_assert_eq!(plan.write, write, "a plan says whether it writes");
            plan
        } else {
            Plan {
                write,
                ..Plan::default()
            }
        }
    }

    /// The backend's future itself, not one wrapping it: each async layer is another copy of
    /// the plan and the result on every request.
    fn run<T: Send + 'static>(
        &self,
        plan: Plan,
        upload: Option<B::Upload>,
        step: impl Fn(&mut dyn Rows<Payload = B::Payload>, Option<B::Payload>) -> StoreResult<T>
        + Send
        + Sync
        + 'static,
    ) -> impl Future<Output = StoreResult<T>> + Send {
        self.backend.atomic(Atomic {
            plan,
            upload,
            step: Box::new(step),
        })
    }

    /// [`run`](Self::run) for a step that may add to the change log at (or below) `touched`:
    /// once it commits, the change signal wakes the readers it may concern.
    async fn run_changing<T: Send + 'static>(
        &self,
        plan: Plan,
        upload: Option<B::Upload>,
        touched: Vec<ResourcePath>,
        step: impl Fn(&mut dyn Rows<Payload = B::Payload>, Option<B::Payload>) -> StoreResult<T>
        + Send
        + Sync
        + 'static,
    ) -> StoreResult<T> {
        let out = self.run(plan, upload, step).await;
        if out.is_ok() {
            self.signal.notify_paths(touched);
        }
        out
    }

    async fn transfer(
        &self,
        from: &ResourcePath,
        to: &ResourcePath,
        opts: TransferOptions,
        moving: bool,
    ) -> StoreResult<WriteOutcome> {
        let plan = self.plan(true, || {
            let mut plan = Plan::write(from, &opts.condition);
            if let Some(parent) = to.parent() {
                plan.add_path(parent);
            }
            plan.trees = vec![from.clone(), to.clone()];
            plan.written = match moving {
                true => vec![from.clone(), to.clone()],
                false => vec![to.clone()],
            };
            if !moving {
                plan.props_of = vec![from.clone()];
                plan.props_below = vec![from.clone()];
                plan.copies_of = Some(from.clone());
            }
            plan
        });
        let (from, to) = (from.clone(), to.clone());
        let touched = if moving {
            vec![from.clone(), to.clone()]
        } else {
            vec![to.clone()]
        };
        self.run_changing(plan, None, touched, move |rows, _| {
            if moving {
                write::rename(rows, &from, &to, &opts)
            } else {
                write::copy(rows, &from, &to, &opts)
            }
        })
        .await
    }
}

/// `plan`, marked as a [point read](Plan::point).
fn exclusive(mut plan: Plan) -> Plan {
    plan.exclusive = true;
    plan
}

fn point(mut plan: Plan) -> Plan {
    plan.point = true;
    plan
}

fn no_payload() -> StoreError {
    StoreError::new(
        ErrorKind::Internal,
        "the backend gave no payload for an upload",
    )
}

impl<B: Backend> ReplStore for Engine<B> {
    fn store_id(&self) -> StoreId {
        self.id
    }

    fn capabilities(&self) -> Capabilities {
        self.backend.capabilities()
    }

    fn change_signal(&self) -> Option<crate::ChangeSignal> {
        Some(self.signal.clone())
    }

    async fn secret(&self) -> StoreResult<Secret> {
        Ok(self.secret)
    }

    async fn head(&self, path: &ResourcePath) -> StoreResult<Meta> {
        let path = path.clone();
        let plan = point(self.plan(false, || Plan::read([path.clone()])));
        self.run(plan, None, move |rows, _| read::head(rows, &path))
            .await
    }

    async fn props(&self, path: &ResourcePath) -> StoreResult<Entry> {
        let path = path.clone();
        let plan = point(self.plan(false, || Plan {
            props_of: vec![path.clone()],
            ..Plan::read([path.clone()])
        }));
        self.run(plan, None, move |rows, _| read::entry(rows, &path))
            .await
    }

    async fn list(&self, path: &ResourcePath, opts: ListOptions) -> StoreResult<Listing> {
        let path = path.clone();
        let plan = self.plan(false, || Plan {
            pages: vec![read::page_query(&path, &opts)],
            ..Plan::read([path.clone()])
        });
        self.run(plan, None, move |rows, _| read::list(rows, &path, &opts))
            .await
    }

    async fn read(&self, path: &ResourcePath, opts: GetOptions) -> StoreResult<(Meta, ByteStream)> {
        let p = path.clone();
        let plan = point(self.plan(false, || {
            let mut plan = Plan::read(opts.condition.paths(&p)); // `p` first
            plan.content = Some((p.clone(), opts.range));
            if opts.condition.needs_locks() {
                plan.locks = Some(lock::scan(&[], &[], &p, &opts.condition));
            }
            plan
        }));
        let found = self
            .run(plan, None, move |rows, _| read::content(rows, &p, &opts))
            .await?;
        let stream: ByteStream = match found.bytes {
            Some(pieces) => Box::pin(futures_util::stream::iter(
                pieces.into_iter().filter(|b| !b.is_empty()).map(Ok),
            )),
            None => self
                .backend
                .stream(path, found.payload, (found.start, found.end)),
        };
        Ok((found.meta, stream))
    }

    async fn put(
        &self,
        path: &ResourcePath,
        body: ByteStream,
        opts: PutOptions,
    ) -> StoreResult<WriteOutcome> {
        // The digest the request gives a checksum for is computed as the body streams into
        // the backend; the others only when first asked for (`digests`).
        let (body, digests) = match opts.checksum {
            Some(c) => {
                let (body, slot) = digest::hashing(body, Hasher::only(c.algorithm()));
                (body, Some(slot))
            }
            None => (body, None),
        };
        let incoming = Incoming {
            path: path.clone(),
            body,
            max_len: opts.max_len,
        };
        let staged = self.backend.stage(incoming).await?;
        let (len, transformed) = (staged.len, staged.transformed);
        // A backend that changed the content did so after the hashing saw it.
        let digests = match transformed {
            true => None,
            false => digests.and_then(|d| *d.lock().unwrap_or_else(|e| e.into_inner())),
        };
        let plan = self.plan(true, || Plan::write(path, &opts.condition));
        let path = path.clone();
        if let Some(expected) = opts.checksum
            && !digests.is_some_and(|d| expected.matches(&d))
        {
            // Refused before anything is written; the staged content is discarded by the
            // failing step.
            return self
                .run(plan, Some(staged.upload), |rows, payload| {
                    if let Some(p) = payload {
                        rows.release(p)?;
                    }
                    Err(StoreError::new(
                        ErrorKind::ChecksumMismatch,
                        "the content does not have the checksum the request gave",
                    ))
                })
                .await;
        }
        self.run_changing(
            plan,
            Some(staged.upload),
            vec![path.clone()],
            move |rows, payload| {
                let payload = payload.ok_or_else(no_payload)?;
                let mut content = write::NewContent::new(payload, len);
                content.content_type = opts.content_type.clone();
                content.digests = digests;
                content.modified = opts.modified;
                content.transformed = transformed;
                content.quota = opts.quota;
                write::put(rows, &path, content, &opts.condition)
            },
        )
        .await
    }

    async fn digests(&self, path: &ResourcePath) -> StoreResult<Meta> {
        self.digests_many(std::slice::from_ref(path))
            .await?
            .pop()
            .unwrap_or_else(|| Err(StoreError::new(ErrorKind::Internal, "no digests")))
    }

    async fn digests_many(&self, paths: &[ResourcePath]) -> StoreResult<Vec<StoreResult<Meta>>> {
        let mut out = Vec::with_capacity(paths.len());
        let mut computed = Vec::new();
        for path in paths {
            let found = match self.read(path, GetOptions::default()).await {
                Ok((meta, body)) => digest::complete(meta, body).await,
                Err(e) => Err(e),
            };
            match found {
                Ok((meta, fresh)) => {
                    if fresh {
                        computed.push(write::DigestsOf {
                            path: path.clone(),
                            rid: meta.rid,
                            content_version: meta.content_version,
                            digests: meta.digests.unwrap_or_default(),
                        });
                    }
                    out.push(Ok(meta));
                }
                // An item the caller listed may be gone or replaced by now: its own answer.
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::IsCollection) => {
                    out.push(Err(e));
                }
                Err(e) => return Err(e),
            }
        }
        if !computed.is_empty() {
            // Recorded only where an item still holds the content they are of: no new
            // version, no change-log row (nothing a client sees as a change has happened).
            // All in one write step.
            let plan = self.plan(true, || {
                let mut plan = Plan::read(computed.iter().map(|c| c.path.clone()));
                plan.write = true;
                plan.written = computed.iter().map(|c| c.path.clone()).collect();
                plan
            });
            self.run(plan, None, move |rows, _| {
                computed
                    .iter()
                    .try_for_each(|c| write::record_digests(rows, c).map(drop))
            })
            .await?;
        }
        Ok(out)
    }

    async fn create_collection(
        &self,
        path: &ResourcePath,
        opts: CreateOptions,
    ) -> StoreResult<WriteOutcome> {
        let plan = self.plan(true, || Plan::write(path, &opts.condition));
        let path = path.clone();
        self.run_changing(plan, None, vec![path.clone()], move |rows, _| {
            write::create_collection(rows, &path, &opts.condition)
        })
        .await
    }

    async fn delete(&self, path: &ResourcePath, opts: DeleteOptions) -> StoreResult<Meta> {
        let plan = self.plan(true, || Plan {
            trees: vec![path.clone()],
            ..Plan::write(path, &opts.condition)
        });
        let path = path.clone();
        self.run_changing(plan, None, vec![path.clone()], move |rows, _| {
            write::delete(rows, &path, &opts.condition)
        })
        .await
    }

    async fn copy(
        &self,
        from: &ResourcePath,
        to: &ResourcePath,
        opts: TransferOptions,
    ) -> StoreResult<WriteOutcome> {
        self.transfer(from, to, opts, false).await
    }

    async fn rename(
        &self,
        from: &ResourcePath,
        to: &ResourcePath,
        opts: TransferOptions,
    ) -> StoreResult<WriteOutcome> {
        self.transfer(from, to, opts, true).await
    }

    async fn patch_props(
        &self,
        path: &ResourcePath,
        patch: Vec<PropPatch>,
        opts: PatchOptions,
    ) -> StoreResult<WriteOutcome> {
        let plan = self.plan(true, || Plan {
            props_of: vec![path.clone()],
            ..Plan::write(path, &opts.condition)
        });
        let path = path.clone();
        self.run_changing(plan, None, vec![path.clone()], move |rows, _| {
            write::patch_props(rows, &path, patch.clone(), &opts.condition, opts.modified)
        })
        .await
    }

    async fn usage(&self) -> StoreResult<Option<u64>> {
        let plan = self.plan(false, || Plan {
            counters: true,
            ..Plan::default()
        });
        self.run(plan, None, |rows, _| Ok(Some(rows.counters()?.bytes)))
            .await
    }

    async fn watermark(&self) -> StoreResult<Seq> {
        let plan = self.plan(false, || Plan {
            counters: true,
            ..Plan::default()
        });
        self.run(plan, None, |rows, _| rows.current_seq()).await
    }

    async fn horizon(&self) -> StoreResult<Seq> {
        let plan = self.plan(false, || Plan {
            counters: true,
            ..Plan::default()
        });
        self.run(plan, None, |rows, _| rows.horizon()).await
    }

    async fn changes(&self, query: ChangesQuery) -> StoreResult<ChangePage> {
        let plan = self.plan(false, || Plan {
            logs: vec![read::log_query(&query)],
            counters: true,
            ..Plan::read([query.scope.clone()])
        });
        self.run(plan, None, move |rows, _| read::changes(rows, &query))
            .await
    }

    async fn purge(&self, before: SystemTime) -> StoreResult<PurgeReport> {
        let plan = self.plan(true, || Plan {
            write: true,
            exclusive: true,
            ..Plan::default()
        });
        self.run(plan, None, move |rows, _| {
            let now = SystemTime::now();
            rows.sweep_locks(now)?;
            rows.sweep_subscriptions(now)?;
            rows.purge(before)
        })
        .await
    }

    async fn lock(&self, path: &ResourcePath, req: LockRequest) -> StoreResult<LockGrant> {
        // Staged in case nothing is mapped at the URL (a locked empty resource); released
        // otherwise.
        let empty: crate::ByteStream = Box::pin(futures_util::stream::empty());
        let incoming = Incoming {
            path: path.clone(),
            body: empty,
            max_len: None,
        };
        let staged = self.backend.stage(incoming).await?;
        let token = new_lock_token();
        let plan = self.plan(true, || exclusive(Plan::write(path, &req.condition)));
        let path = path.clone();
        self.run_changing(
            plan,
            Some(staged.upload),
            vec![path.clone()],
            move |rows, payload| {
                let payload = payload.ok_or_else(no_payload)?;
                lock::lock(rows, &path, &req, &token, payload, SystemTime::now())
            },
        )
        .await
    }

    async fn refresh_lock(
        &self,
        path: &ResourcePath,
        cond: Condition,
        timeout: Duration,
    ) -> StoreResult<Lock> {
        let plan = self.plan(true, || exclusive(Plan::write(path, &cond)));
        let path = path.clone();
        self.run(plan, None, move |rows, _| {
            lock::refresh(rows, &path, &cond, timeout, SystemTime::now())
        })
        .await
    }

    async fn unlock(
        &self,
        path: &ResourcePath,
        token: &str,
        principal: Option<&str>,
    ) -> StoreResult<Lock> {
        let none = Condition::none();
        let plan = self.plan(true, || exclusive(Plan::write(path, &none)));
        let (path, token) = (path.clone(), token.to_owned());
        let principal = principal.map(str::to_owned);
        self.run(plan, None, move |rows, _| {
            let now = SystemTime::now();
            lock::unlock(rows, &path, &token, principal.as_deref(), now)
        })
        .await
    }

    async fn subscribe(&self, req: crate::NewSubscription) -> StoreResult<crate::Subscription> {
        // Ids are random (Exchange's are small decimal numbers; these stay below 2^53 so any
        // client's number type holds them); a taken one is drawn again.
        for _ in 0..8 {
            let id = random_subscription_id();
            let plan = self.plan(true, || Plan {
                counters: true,
                subscriptions: vec![id],
                write: true,
                ..Plan::default()
            });
            let req = req.clone();
            let made = self
                .run(plan, None, move |rows, _| {
                    subscription::subscribe(rows, id, &req, SystemTime::now())
                })
                .await;
            match made {
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                other => return other,
            }
        }
        Err(StoreError::new(
            ErrorKind::Internal,
            "no free subscription id after 8 draws",
        ))
    }

    async fn subscriptions(
        &self,
        ids: Vec<u64>,
        principal: Option<String>,
    ) -> StoreResult<Vec<crate::Subscription>> {
        let plan = self.plan(false, || Plan {
            subscriptions: ids.clone(),
            ..Plan::default()
        });
        self.run(plan, None, move |rows, _| {
            subscription::read(rows, &ids, principal.as_deref(), SystemTime::now())
        })
        .await
    }

    async fn update_subscription(
        &self,
        id: u64,
        principal: Option<String>,
        update: crate::SubscriptionUpdate,
    ) -> StoreResult<crate::Subscription> {
        let plan = self.plan(true, || Plan {
            subscriptions: vec![id],
            write: true,
            ..Plan::default()
        });
        self.run(plan, None, move |rows, _| {
            subscription::update(rows, id, principal.as_deref(), update, SystemTime::now())
        })
        .await
    }

    async fn unsubscribe(&self, id: u64, principal: Option<String>) -> StoreResult<()> {
        let plan = self.plan(true, || Plan {
            subscriptions: vec![id],
            write: true,
            ..Plan::default()
        });
        self.run(plan, None, move |rows, _| {
            subscription::unsubscribe(rows, id, principal.as_deref(), SystemTime::now())
        })
        .await
    }

    async fn locks(&self, path: &ResourcePath, below: bool) -> StoreResult<Vec<Lock>> {
        let plan = self.plan(false, || Plan {
            locks: Some(lock::discovery_scan(path, below)),
            ..Plan::default()
        });
        let path = path.clone();
        self.run(plan, None, move |rows, _| {
            lock::discover(rows, &path, below, SystemTime::now())
        })
        .await
    }
}

/// A random subscription id in `1..2^53`.
fn random_subscription_id() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("operating system random source is unavailable");
    (u64::from_le_bytes(b) >> 11).max(1)
}

/// `opaquelocktoken:` and a random (version 4) UUID.
fn new_lock_token() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("operating system random source is unavailable");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{LOCK_TOKEN_SCHEME}{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::Plan;
    use crate::{Condition, IfList, IfResource, ResourcePath};

    fn path(p: &str) -> ResourcePath {
        ResourcePath::parse(p).unwrap()
    }

    fn tagged(p: &str) -> IfList {
        IfList {
            resource: IfResource::Path(path(p)),
            conditions: Vec::new(),
        }
    }

    /// A backend fetches what a plan lists: each path once, the target first.
    #[test]
    fn a_write_plan_lists_each_path_once() {
        let cond = Condition {
            if_lists: vec![tagged("/a/b"), tagged("/c"), tagged("/c"), tagged("/a")],
            ..Condition::default()
        };
        let plan = Plan::write(&path("/a/b"), &cond);
        assert!(plan.write);
        assert_eq!(plan.paths, [path("/a/b"), path("/c"), path("/a")]);
        let mut moving = plan.clone();
        moving.add_path(path("/c"));
        assert_eq!(moving.paths, plan.paths);
        let plain = Plan::write(&path("/a/b"), &Condition::default());
        assert_eq!(plain.paths, [path("/a/b"), path("/a")]);
    }
}
