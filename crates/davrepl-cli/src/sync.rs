//! Running a sync: fetch the manifest, walk the folder, plan, carry the plan out, and repeat
//! until a pass finds nothing left to do — only then is the new collblob saved.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Instant, SystemTime};

use davrepl_client::{Client, Condition, ErrorKind, Item};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::journal::{Entry, Journal, Stat};
use crate::plan::{Action, Inputs, cond_for, dir_entry, entry_of, plan};
use crate::progress::Progress;
use crate::scan::{STATE_DIR, hash_file, hex, stat_of, walk};

/// Passes over manifest + folder before a sync gives up settling.
const MAX_PASSES: usize = 6;

/// What a sync is asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The local folder.
    pub dir: PathBuf,
    /// The server collection's URL.
    pub url: String,
    /// HTTP Basic credentials.
    pub credentials: Option<(String, String)>,
    /// Print the plan of the first pass, change nothing.
    pub dry_run: bool,
    /// No progress output, only warnings, failures and the summary.
    pub quiet: bool,
    /// Transfers in flight at once.
    pub concurrency: usize,
}

/// A failure that stops the whole sync.
#[derive(Debug)]
pub enum Fatal {
    /// The command was used wrongly (exit status 2).
    Usage(String),
    /// Something else (exit status 1).
    Failed(String),
}

impl std::fmt::Display for Fatal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fatal::Usage(m) | Fatal::Failed(m) => f.write_str(m),
        }
    }
}

impl From<rusqlite::Error> for Fatal {
    fn from(e: rusqlite::Error) -> Self {
        Fatal::Failed(format!("journal: {e}"))
    }
}

impl From<davrepl_client::Error> for Fatal {
    fn from(e: davrepl_client::Error) -> Self {
        match e.kind() {
            ErrorKind::Usage => Fatal::Usage(e.to_string()),
            _ => Fatal::Failed(e.to_string()),
        }
    }
}

/// The outcome of one sync.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Files uploaded.
    pub uploaded: usize,
    /// Files downloaded.
    pub downloaded: usize,
    /// Files and folders deleted (either side).
    pub deleted: usize,
    /// Renames and moves (either side).
    pub moved: usize,
    /// Conflicts (both versions kept).
    pub conflicts: usize,
    /// Bytes uploaded.
    pub bytes_up: u64,
    /// Bytes downloaded.
    pub bytes_down: u64,
    /// What failed, one line each.
    pub failures: Vec<String>,
    /// What was skipped, one line each.
    pub warnings: Vec<String>,
    /// Whether the folder and the server were found identical at the end (the collblob saved).
    pub converged: bool,
    /// The plan printed by a dry run.
    pub planned: Vec<String>,
}

impl Summary {
    /// The one-line summary printed at the end.
    pub fn line(&self, secs: f64) -> String {
        format!(
            "{} up, {} down, {} deleted, {} moved, {} conflicts, {} failed, {} skipped ({} up, {} down) in {secs:.1} s{}",
            self.uploaded,
            self.downloaded,
            self.deleted,
            self.moved,
            self.conflicts,
            self.failures.len(),
            self.warnings.len(),
            human(self.bytes_up),
            human(self.bytes_down),
            if self.converged {
                ""
            } else {
                " — not settled"
            },
        )
    }
}

fn human(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

#[derive(Default)]
struct Counters {
    uploaded: AtomicUsize,
    downloaded: AtomicUsize,
    deleted: AtomicUsize,
    moved: AtomicUsize,
    conflicts: AtomicUsize,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

/// A folder bound to a server collection.
pub struct Syncer {
    client: Client,
    root: PathBuf,
    state: PathBuf,
    journal: Mutex<Journal>,
    progress: Progress,
    dry_run: bool,
    concurrency: usize,
    tmp_seq: AtomicU64,
    counters: Counters,
    _lock: File,
}

impl std::fmt::Debug for Syncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syncer")
            .field("root", &self.root)
            .field("url", &self.client.base_url())
            .finish_non_exhaustive()
    }
}

/// Why one action did not happen.
type ItemError = String;

fn item_err(path: &str, e: impl std::fmt::Display) -> ItemError {
    format!("{path}: {e}")
}

fn changed_here(path: &str) -> ItemError {
    format!("{path}: changed here during the sync; left as it is for the next run")
}

impl Syncer {
    /// Opens `opts.dir` for syncing with `opts.url`: creates `.davrepl/` with the journal,
    /// takes the folder's lock, and checks the journal belongs to this URL.
    pub fn open(opts: &Options) -> Result<Self, Fatal> {
        let meta = std::fs::metadata(&opts.dir)
            .map_err(|e| Fatal::Usage(format!("{}: {e}", opts.dir.display())))?;
        if !meta.is_dir() {
            return Err(Fatal::Usage(format!(
                "{}: not a directory",
                opts.dir.display()
            )));
        }
        let mut builder = Client::builder(opts.url.clone());
        if let Some((u, p)) = &opts.credentials {
            builder = builder.basic_auth(u.clone(), p.clone());
        }
        let client = builder
            .timeout(std::time::Duration::from_secs(120))
            .build()?;
        let root = opts
            .dir
            .canonicalize()
            .map_err(|e| Fatal::Usage(format!("{}: {e}", opts.dir.display())))?;
        let state = root.join(STATE_DIR);
        std::fs::create_dir_all(state.join("tmp"))
            .map_err(|e| Fatal::Failed(format!("{}: {e}", state.display())))?;
        let lock = File::create(state.join("lock"))
            .map_err(|e| Fatal::Failed(format!("{}: {e}", state.display())))?;
        if lock.try_lock().is_err() {
            return Err(Fatal::Usage(format!(
                "another davrepl sync is running on {}",
                root.display()
            )));
        }
        // Downloads that never reached their place (a killed run).
        if let Ok(rd) = std::fs::read_dir(state.join("tmp")) {
            for e in rd.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let journal = Journal::open(&state.join("journal.db"))?;
        let url = client.base_url();
        match journal.meta("url")? {
            Some(bound) if bound != url => {
                return Err(Fatal::Usage(format!(
                    "{} is synced with {bound}, not {url} (remove {} to start over)",
                    root.display(),
                    state.display()
                )));
            }
            Some(_) => {}
            None => journal.set_meta("url", Some(&url))?,
        }
        Ok(Self {
            client,
            root,
            state,
            journal: Mutex::new(journal),
            progress: Progress::new(opts.quiet),
            dry_run: opts.dry_run,
            concurrency: opts.concurrency.max(1),
            tmp_seq: AtomicU64::new(0),
            counters: Counters::default(),
            _lock: lock,
        })
    }

    /// The client (for watching).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The collblob of the last settled sync.
    pub fn collblob(&self) -> Option<String> {
        self.journal().meta("collblob").ok().flatten()
    }

    /// The synced folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn journal(&self) -> std::sync::MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, e: &Entry) -> Result<(), ItemError> {
        self.journal()
            .put(e)
            .map_err(|err| item_err(&e.path, format!("journal: {err}")))
    }

    fn forget(&self, path: &str) -> Result<(), ItemError> {
        self.journal()
            .remove(path)
            .map_err(|err| item_err(path, format!("journal: {err}")))
    }

    /// One sync: passes until the folder and the server agree (at most six).
    pub async fn sync_once(&self) -> Result<Summary, Fatal> {
        let started = Instant::now();
        let mut summary = Summary::default();
        let mut failed: HashSet<String> = HashSet::new();
        for pass in 0..MAX_PASSES {
            let blob = self.journal().meta("collblob")?;
            // The folder is walked while the manifest is on its way.
            let root = self.root.clone();
            let walking = tokio::task::spawn_blocking(move || walk(&root));
            let (page, full) = match self.client.manifest_all(blob.as_deref()).await {
                Ok(p) => (p, blob.is_none()),
                Err(e) if e.kind() == ErrorKind::InvalidCollblob => {
                    self.progress.warn(
                        "the server no longer accepts the saved collblob: comparing everything",
                    );
                    self.journal().set_meta("collblob", None)?;
                    (self.client.manifest_all(None).await?, true)
                }
                Err(e) => return Err(e.into()),
            };
            let root = self.root.clone();
            let journal = self.journal().all()?;
            let walked = walking
                .await
                .map_err(|e| Fatal::Failed(format!("walking: {e}")))?;
            let mut planned = tokio::task::spawn_blocking(move || {
                let (local, warnings) = walked?;
                let mut p = plan(Inputs {
                    root: &root,
                    rows: page.rows,
                    full,
                    local,
                    journal,
                });
                p.warnings.extend(warnings);
                Ok::<_, std::io::Error>(p)
            })
            .await
            .map_err(|e| Fatal::Failed(format!("planning: {e}")))?
            .map_err(|e| Fatal::Failed(format!("{}: {e}", self.root.display())))?;
            if pass == 0 {
                for w in &planned.warnings {
                    self.progress.warn(w);
                }
                summary.warnings = planned.warnings.clone();
            }
            if self.dry_run {
                summary.planned = planned.actions.iter().map(Action::describe).collect();
                return Ok(summary);
            }
            // What failed earlier in this run is not tried again until the next run; a failed
            // server-side change keeps the collblob from moving past it.
            let mut blocked = false;
            planned.actions.retain(|a| {
                let skip = action_paths(a).iter().any(|p| failed.contains(*p));
                if skip && a.brings_server_change() {
                    blocked = true;
                }
                !skip
            });
            let quiet = planned.quiet();
            let errors = self.execute(planned.actions).await;
            for e in errors {
                failed.insert(e.0);
                self.progress.warn(&format!("failed: {}", e.1));
                summary.failures.push(e.1);
            }
            if quiet {
                if !blocked {
                    self.journal().set_meta("collblob", Some(&page.collblob))?;
                    summary.converged = true;
                }
                break;
            }
        }
        let c = &self.counters;
        summary.uploaded = c.uploaded.swap(0, Ordering::Relaxed);
        summary.downloaded = c.downloaded.swap(0, Ordering::Relaxed);
        summary.deleted = c.deleted.swap(0, Ordering::Relaxed);
        summary.moved = c.moved.swap(0, Ordering::Relaxed);
        summary.conflicts = c.conflicts.swap(0, Ordering::Relaxed);
        summary.bytes_up = c.bytes_up.swap(0, Ordering::Relaxed);
        summary.bytes_down = c.bytes_down.swap(0, Ordering::Relaxed);
        self.progress
            .finish(&summary.line(started.elapsed().as_secs_f64()));
        Ok(summary)
    }

    /// Carries out a plan in three phases: folders and bookkeeping first (parents before
    /// children), transfers and renames in parallel, then folder removals (deepest first).
    /// Returns (path, message) for each failure.
    async fn execute(&self, actions: Vec<Action>) -> Vec<(String, String)> {
        let mut first = Vec::new();
        let mut middle = Vec::new();
        let mut last = Vec::new();
        for a in actions {
            match a {
                Action::Record(_)
                | Action::Forget(_)
                | Action::MkdirLocal(_)
                | Action::MkcolRemote(_) => first.push(a),
                Action::RmdirLocal(_) | Action::RmdirRemote(_) => last.push(a),
                _ => middle.push(a),
            }
        }
        first.sort_by_key(|a| (!a.journal_only(), depth(action_paths(a)[0])));
        last.sort_by_key(|a| std::cmp::Reverse(depth(action_paths(a)[0])));
        let mut errors = Vec::new();
        for a in first {
            let key = action_paths(&a)[0].to_owned();
            if let Err(e) = self.run(a).await {
                errors.push((key, e));
            }
        }
        let bytes: u64 = middle.iter().map(action_bytes).sum();
        self.progress.begin(middle.len() as u64, bytes);
        let results: Vec<(String, Result<(), ItemError>)> = futures_util::stream::iter(middle)
            .map(|a| async move {
                let key = action_paths(&a)[0].to_owned();
                let r = self.run(a).await;
                self.progress.item_done();
                (key, r)
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        errors.extend(
            results
                .into_iter()
                .filter_map(|(k, r)| r.err().map(|e| (k, e))),
        );
        for a in last {
            let key = action_paths(&a)[0].to_owned();
            if let Err(e) = self.run(a).await {
                errors.push((key, e));
            }
        }
        errors
    }

    async fn run(&self, a: Action) -> Result<(), ItemError> {
        match a {
            Action::Record(e) => self.record(&e),
            Action::Forget(p) => self.forget(&p),
            Action::MkdirLocal(item) => {
                let p = self.root.join(&item.path);
                std::fs::create_dir_all(&p).map_err(|e| item_err(&item.path, e))?;
                self.record(&dir_entry(&item))
            }
            Action::MkcolRemote(path) => self.ensure_dir(&path).await,
            Action::Upload {
                path,
                cond,
                sha,
                stat,
            } => self.upload(&path, cond, &sha, stat).await,
            Action::Download { item, expect } => self.download(&item, expect).await,
            Action::RenameLocal { entry, item } => self.rename_local(&entry, &item).await,
            Action::MoveRemote {
                entry,
                to,
                sha,
                stat,
            } => self.move_remote(&entry, &to, &sha, stat).await,
            Action::DeleteLocal(entry) => self.delete_local(&entry),
            Action::DeleteRemote(entry) => self.delete_remote(&entry).await,
            Action::Conflict { path, stat, item } => self.conflict(&path, stat, &item).await,
            Action::RmdirLocal(entry) => {
                let p = self.root.join(&entry.path);
                match std::fs::remove_dir(&p) {
                    Ok(()) => {
                        self.counters.deleted.fetch_add(1, Ordering::Relaxed);
                        self.progress.action("rmdir", &entry.path);
                        self.forget_dir(&entry)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.forget_dir(&entry),
                    // Not empty: what is left in it goes up again (and re-creates it).
                    Err(_) => Ok(()),
                }
            }
            Action::RmdirRemote(entry) => self.rmdir_remote(&entry).await,
        }
    }

    /// Forgets a folder unless its repl-uid now stands at another path (a move).
    fn forget_dir(&self, entry: &Entry) -> Result<(), ItemError> {
        let j = self.journal();
        let current = j.get(&entry.path).map_err(|e| item_err(&entry.path, e))?;
        if current.is_some_and(|e| e.rid == entry.rid || e.rid.is_none()) {
            j.remove(&entry.path)
                .map_err(|e| item_err(&entry.path, e))?;
        }
        Ok(())
    }

    /// Creates `path` and its missing parents on the server.
    async fn ensure_dir(&self, path: &str) -> Result<(), ItemError> {
        let mut prefix = String::new();
        for seg in path.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(seg);
            let known = self
                .journal()
                .get(&prefix)
                .map_err(|e| item_err(&prefix, e))?
                .is_some_and(|e| e.is_dir);
            if known {
                continue;
            }
            match self.client.mkcol(&prefix).await {
                Ok(w) => {
                    self.progress.action("mkcol", &prefix);
                    self.record(&Entry {
                        path: prefix.clone(),
                        is_dir: true,
                        rid: w.rid,
                        tag: w.tag,
                        ..Entry::default()
                    })?;
                }
                // It may exist already: RFC 4918 says 405, the replication spec (A19) 409 —
                // which also means "parent missing", so ask.
                Err(e) if matches!(e.status(), Some(405 | 409)) => {
                    let here = self.client.propfind(&prefix, false).await.ok();
                    match here.and_then(|v| v.into_iter().next()) {
                        Some(item) if item.is_collection => self.record(&dir_entry(&item))?,
                        _ => return Err(item_err(&prefix, e)),
                    }
                }
                Err(e) => return Err(item_err(&prefix, e)),
            }
        }
        Ok(())
    }

    async fn ensure_parents(&self, path: &str) -> Result<(), ItemError> {
        match path.rsplit_once('/') {
            Some((parent, _)) => self.ensure_dir(parent).await,
            None => Ok(()),
        }
    }

    fn local_stat(&self, path: &str) -> Option<Stat> {
        std::fs::symlink_metadata(self.root.join(path))
            .ok()
            .filter(|m| m.is_file())
            .map(|m| stat_of(&m))
    }

    /// PUTs a local file under `cond`; `Ok(false)` when the server refused the condition.
    async fn put_local(
        &self,
        path: &str,
        cond: &Condition,
        sha: &str,
        stat: Stat,
    ) -> Result<bool, ItemError> {
        if self.local_stat(path) != Some(stat) {
            return Err(changed_here(path));
        }
        self.ensure_parents(path).await?;
        let file = self.root.join(path);
        let secs = stat.mtime_ns.div_euclid(1_000_000_000);
        let headers = [
            ("OC-Checksum", format!("SHA256:{sha}")),
            ("X-OC-Mtime", secs.to_string()),
        ];
        let mut r = self
            .client
            .put_file(path, &file, cond.clone(), &headers)
            .await;
        if matches!(&r, Err(e) if e.kind() == ErrorKind::Conflict) {
            // A parent the journal thought was there is gone on the server.
            self.forget_parents(path);
            self.ensure_parents(path).await?;
            r = self
                .client
                .put_file(path, &file, cond.clone(), &headers)
                .await;
        }
        match r {
            Ok(w) => {
                self.record(&Entry {
                    path: path.to_owned(),
                    is_dir: false,
                    rid: w.rid,
                    tag: w.tag,
                    stat,
                    sha256: Some(sha.to_owned()),
                })?;
                self.counters.uploaded.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .bytes_up
                    .fetch_add(stat.size, Ordering::Relaxed);
                self.progress.bytes(stat.size);
                self.progress.action("upload", path);
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::PreconditionFailed => Ok(false),
            Err(e) if e.status() == Some(400) && self.local_stat(path) != Some(stat) => {
                Err(changed_here(path))
            }
            Err(e) => Err(item_err(path, e)),
        }
    }

    fn forget_parents(&self, path: &str) {
        let mut p = path;
        while let Some((parent, _)) = p.rsplit_once('/') {
            let _ = self.journal().remove(parent);
            p = parent;
        }
    }

    /// Uploads; when the server changed too, keeps both versions.
    async fn upload(
        &self,
        path: &str,
        cond: Condition,
        sha: &str,
        stat: Stat,
    ) -> Result<(), ItemError> {
        if self.put_local(path, &cond, sha, stat).await? {
            return Ok(());
        }
        // Refused: what does the server hold there now?
        match self.client.propfind(path, false).await {
            Ok(items) => match items.into_iter().next() {
                Some(item) if item.sha256.as_deref() == Some(sha) => {
                    self.record(&entry_of(&item, stat, sha.to_owned()))
                }
                Some(item) if !item.is_collection => self.conflict(path, stat, &item).await,
                _ => Err(item_err(path, "a folder on the server has this name")),
            },
            Err(e) if e.kind() == ErrorKind::NotFound => {
                // Deleted there since: upload as new.
                if self.put_local(path, &Condition::Absent, sha, stat).await? {
                    Ok(())
                } else {
                    Err(item_err(path, "the server refused the upload twice"))
                }
            }
            Err(e) => Err(item_err(path, e)),
        }
    }

    /// Both sides changed `path`: the local file moves to a `(conflict …)` sibling that is
    /// uploaded as a new file, and the server's version is downloaded to the server's path.
    async fn conflict(&self, path: &str, stat: Stat, item: &Item) -> Result<(), ItemError> {
        if self.local_stat(path) != Some(stat) {
            return Err(changed_here(path));
        }
        let aside = self.conflict_name(path);
        std::fs::rename(self.root.join(path), self.root.join(&aside))
            .map_err(|e| item_err(path, e))?;
        self.counters.conflicts.fetch_add(1, Ordering::Relaxed);
        self.progress
            .action("conflict", &format!("{path} → {aside}"));
        let root = self.root.clone();
        let rel = aside.clone();
        let (sha, stat) = tokio::task::spawn_blocking(move || hash_file(&root.join(rel)))
            .await
            .map_err(|e| item_err(&aside, e))?
            .map_err(|e| item_err(&aside, e))?;
        if !self
            .put_local(&aside, &Condition::Absent, &sha, stat)
            .await?
        {
            return Err(item_err(
                &aside,
                "the conflict copy's name is taken on the server",
            ));
        }
        let expect = self.local_stat(&item.path);
        self.download(item, expect).await
    }

    fn conflict_name(&self, path: &str) -> String {
        let (dir, name) = match path.rsplit_once('/') {
            Some((d, n)) => (format!("{d}/"), n),
            None => (String::new(), path),
        };
        let (stem, ext) = match name.rfind('.') {
            Some(i) if i > 0 => (&name[..i], &name[i..]),
            _ => (name, ""),
        };
        let stamp = davrepl_proto::dates::rfc3339(SystemTime::now())
            .replace('T', " ")
            .replace([':', 'Z'], "");
        for n in 1.. {
            let suffix = if n == 1 {
                String::new()
            } else {
                format!(" {n}")
            };
            let candidate = format!("{dir}{stem} (conflict {stamp}{suffix}){ext}");
            let known = self.journal().get(&candidate).ok().flatten().is_some();
            if !known && std::fs::symlink_metadata(self.root.join(&candidate)).is_err() {
                return candidate;
            }
        }
        unreachable!("an unused name exists")
    }

    /// Downloads `item` to a temporary file and renames it into place, unless the local file
    /// there changed (`expect`: the stat it must still have, `None`: must not exist).
    async fn download(&self, item: &Item, expect: Option<Stat>) -> Result<(), ItemError> {
        let path = &item.path;
        let mut dl = match self.client.get(path).await {
            Ok(d) => d,
            // Gone since the manifest: the next pass sees the delete.
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(item_err(path, e)),
        };
        let n = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .state
            .join("tmp")
            .join(format!("{}-{n}", std::process::id()));
        let result = async {
            let mut f = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| item_err(path, e))?;
            let mut h = Sha256::new();
            while let Some(chunk) = dl.chunk().await.map_err(|e| item_err(path, e))? {
                h.update(&chunk);
                f.write_all(&chunk).await.map_err(|e| item_err(path, e))?;
                self.counters
                    .bytes_down
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                self.progress.bytes(chunk.len() as u64);
            }
            f.sync_data().await.map_err(|e| item_err(path, e))?;
            let sha = hex(&h.finalize());
            let same_version = dl.tag.is_some() && dl.tag == item.tag;
            if same_version && item.sha256.as_ref().is_some_and(|s| *s != sha) {
                return Err(item_err(
                    path,
                    "the download does not match the server's checksum",
                ));
            }
            if let (true, Some(t)) = (same_version, item.modified) {
                let f = f.into_std().await;
                let _ = f.set_modified(t);
            }
            Ok(sha)
        }
        .await;
        let sha = match result {
            Ok(s) => s,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        let target = self.root.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| item_err(path, e))?;
        }
        let now = std::fs::symlink_metadata(&target).ok();
        let unchanged = match (&now, expect) {
            (None, None) => true,
            (Some(m), Some(s)) => m.is_file() && stat_of(m) == s,
            _ => false,
        };
        if !unchanged {
            let _ = std::fs::remove_file(&tmp);
            return Err(changed_here(path));
        }
        std::fs::rename(&tmp, &target).map_err(|e| item_err(path, e))?;
        let stat = self.local_stat(path).unwrap_or_default();
        self.record(&Entry {
            path: path.clone(),
            is_dir: false,
            rid: dl.rid.clone().or_else(|| item.rid.clone()),
            tag: dl.tag.clone().or_else(|| item.tag.clone()),
            stat,
            sha256: Some(sha),
        })?;
        self.counters.downloaded.fetch_add(1, Ordering::Relaxed);
        self.progress.action("download", path);
        Ok(())
    }

    async fn rename_local(&self, entry: &Entry, item: &Item) -> Result<(), ItemError> {
        if self.local_stat(&entry.path) != Some(entry.stat) {
            return Err(changed_here(&entry.path));
        }
        let to = self.root.join(&item.path);
        if std::fs::symlink_metadata(&to).is_ok() {
            return Err(item_err(
                &item.path,
                "the server moved a file here, but this name is taken locally; left for the next run",
            ));
        }
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| item_err(&item.path, e))?;
        }
        std::fs::rename(self.root.join(&entry.path), &to).map_err(|e| item_err(&entry.path, e))?;
        self.counters.moved.fetch_add(1, Ordering::Relaxed);
        self.progress
            .action("rename", &format!("{} → {}", entry.path, item.path));
        let moved = Entry {
            path: item.path.clone(),
            tag: item.tag.clone(),
            ..entry.clone()
        };
        if item.sha256.is_some() && item.sha256 == entry.sha256 {
            self.record(&moved)
        } else {
            // Changed too: record the move under the old tag, then fetch the content.
            self.record(&Entry {
                tag: entry.tag.clone(),
                ..moved
            })?;
            self.download(item, Some(entry.stat)).await
        }
    }

    async fn move_remote(
        &self,
        entry: &Entry,
        to: &str,
        sha: &str,
        stat: Stat,
    ) -> Result<(), ItemError> {
        self.ensure_parents(to).await?;
        let cond = cond_for(entry.tag.as_ref());
        match self.client.move_to(&entry.path, to, cond, false).await {
            Ok(_) => {
                self.counters.moved.fetch_add(1, Ordering::Relaxed);
                self.progress
                    .action("move", &format!("{} → {to}", entry.path));
                // The move gave it a new resourcetag; ask for it.
                let item = self
                    .client
                    .propfind(to, false)
                    .await
                    .map_err(|e| item_err(to, e))?
                    .into_iter()
                    .next()
                    .ok_or_else(|| item_err(to, "gone right after the move"))?;
                let moved = Entry {
                    path: to.to_owned(),
                    tag: item.tag.clone(),
                    stat,
                    ..entry.clone()
                };
                if Some(sha) == entry.sha256.as_deref() {
                    self.record(&moved)
                } else {
                    self.record(&Entry {
                        stat: entry.stat,
                        ..moved
                    })?;
                    let cond = cond_for(item.tag.as_ref());
                    self.upload(to, cond, sha, stat).await
                }
            }
            // Changed (or deleted) on the server, or the new name is taken there: the renamed
            // file goes up as a new one; the old path is settled by the next pass.
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::PreconditionFailed | ErrorKind::NotFound
                ) =>
            {
                self.upload(to, Condition::Absent, sha, stat).await
            }
            Err(e) => Err(item_err(&entry.path, e)),
        }
    }

    fn delete_local(&self, entry: &Entry) -> Result<(), ItemError> {
        if self.local_stat(&entry.path) != Some(entry.stat) {
            return Err(changed_here(&entry.path));
        }
        std::fs::remove_file(self.root.join(&entry.path)).map_err(|e| item_err(&entry.path, e))?;
        self.counters.deleted.fetch_add(1, Ordering::Relaxed);
        self.progress.action("delete local", &entry.path);
        self.forget(&entry.path)
    }

    async fn delete_remote(&self, entry: &Entry) -> Result<(), ItemError> {
        let cond = cond_for(entry.tag.as_ref());
        match self.client.delete(&entry.path, cond).await {
            Ok(()) => {
                self.counters.deleted.fetch_add(1, Ordering::Relaxed);
                self.progress.action("delete", &entry.path);
                self.forget(&entry.path)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => self.forget(&entry.path),
            // Edited there meanwhile: the server's version comes back.
            Err(e) if e.kind() == ErrorKind::PreconditionFailed => {
                let item = self
                    .client
                    .propfind(&entry.path, false)
                    .await
                    .map_err(|e| item_err(&entry.path, e))?
                    .into_iter()
                    .next()
                    .ok_or_else(|| item_err(&entry.path, "gone on the server"))?;
                self.download(&item, None).await
            }
            Err(e) => Err(item_err(&entry.path, e)),
        }
    }

    async fn rmdir_remote(&self, entry: &Entry) -> Result<(), ItemError> {
        if self.root.join(&entry.path).is_dir() {
            return Ok(());
        }
        let items = match self.client.propfind(&entry.path, true).await {
            Ok(items) => items,
            Err(e) if e.kind() == ErrorKind::NotFound => return self.forget(&entry.path),
            Err(e) => return Err(item_err(&entry.path, e)),
        };
        if items.iter().any(|i| i.path != entry.path) {
            // Something new in it on the server: it comes down with the next pass.
            return Ok(());
        }
        match self.client.delete(&entry.path, Condition::None).await {
            Ok(()) => {
                self.counters.deleted.fetch_add(1, Ordering::Relaxed);
                self.progress.action("rmdir", &entry.path);
                self.forget(&entry.path)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => self.forget(&entry.path),
            Err(e) => Err(item_err(&entry.path, e)),
        }
    }
}

fn depth(path: &str) -> usize {
    path.matches('/').count()
}

/// The paths an action writes (its first one is its key).
fn action_paths(a: &Action) -> Vec<&str> {
    match a {
        Action::Record(e)
        | Action::DeleteLocal(e)
        | Action::DeleteRemote(e)
        | Action::RmdirLocal(e)
        | Action::RmdirRemote(e) => vec![&e.path],
        Action::Forget(p) | Action::MkcolRemote(p) => vec![p],
        Action::Upload { path, .. } | Action::Conflict { path, .. } => vec![path],
        Action::Download { item, .. } | Action::MkdirLocal(item) => vec![&item.path],
        Action::RenameLocal { entry, item } => vec![&entry.path, &item.path],
        Action::MoveRemote { entry, to, .. } => vec![&entry.path, to],
    }
}

fn action_bytes(a: &Action) -> u64 {
    match a {
        Action::Upload { stat, .. } => stat.size,
        Action::Download { item, .. } => item.len.unwrap_or(0),
        _ => 0,
    }
}

impl Action {
    /// Whether it carries a server-side change into the folder (such a change failing keeps
    /// the collblob where it was).
    fn brings_server_change(&self) -> bool {
        matches!(
            self,
            Action::Download { .. }
                | Action::RenameLocal { .. }
                | Action::DeleteLocal(_)
                | Action::Conflict { .. }
                | Action::MkdirLocal(_)
                | Action::RmdirLocal(_)
        )
    }
}
