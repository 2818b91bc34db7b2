//! `NotesStore`: a storage backend written from scratch on davrepl's storage engine. Content
//! lives in files of a directory (one file per version of an item, written before the write
//! that adopts it); the index — the tree, the change log, dead properties, the counters — is a
//! `BTreeMap` behind a mutex.
//!
//! The engine owns every rule of the model (conditions, tree walks, sequence numbers,
//! tombstones, tags, listing order, change pages); this file only stores rows and moves bytes.
//! It keeps the index in memory and scans it where a real backend would have an index (see
//! `docs/implementing-a-store.md`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use davrepl_store::engine::{
    Atomic, AtomicOf, Backend, Counters, Engine, Incoming, LogQuery, PageQuery, Pieces, Record,
    Rows, Staged, Tombstone,
};
use davrepl_store::{
    ByteStream, DeadProp, ErrorKind, PurgeReport, ReplUid, ResourcePath, Secret, StoreError,
    StoreId, StoreResult,
};
use futures_util::StreamExt;
use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, Take};

/// Content up to this size is read within the read step.
const INLINE: u64 = 1 << 20;

/// A record's payload: the number of its content file (`None` for collections).
type Rec = Record<Option<u64>>;

#[derive(Default)]
struct Index {
    rows: BTreeMap<ResourcePath, Rec>,
    props: HashMap<u64, Vec<DeadProp>>,
    tombstones: Vec<Tombstone>,
    counters: Counters,
}

struct Files {
    dir: PathBuf,
    id: StoreId,
    secret: Secret,
    index: Mutex<Index>,
    next_file: AtomicU64,
}

/// The store. Cloning gives another handle to the same data.
#[derive(Clone, Debug)]
pub struct NotesStore {
    engine: Engine<Notes>,
}

davrepl_store::forward_repl_store!(impl[] for NotesStore => |s| (s.engine));

#[derive(Clone)]
struct Notes(Arc<Files>);

impl NotesStore {
    /// A store keeping its content in `dir` (created if needed), holding only the root.
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        let id = StoreId::random();
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut index = Index::default();
        let root = Rec::collection(ReplUid::new(id, 0), SystemTime::now());
        index.rows.insert(ResourcePath::root(), root);
        let files = Files {
            dir,
            id,
            secret,
            index: Mutex::new(index),
            next_file: AtomicU64::new(1),
        };
        Ok(Self {
            engine: Engine::new(Notes(Arc::new(files))),
        })
    }
}

impl Files {
    fn file(&self, n: u64) -> PathBuf {
        self.dir.join(format!("{n}.bin"))
    }

    fn new_file(&self) -> u64 {
        self.next_file.fetch_add(1, Ordering::Relaxed)
    }
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::new(ErrorKind::Internal, "content file").with_source(e)
}

/// One step: the index under the lock, and content files to delete once the step is done.
struct Tx<'a> {
    files: &'a Files,
    ix: &'a mut Index,
    unused: Vec<u64>,
}

impl Rows for Tx<'_> {
    type Payload = Option<u64>;

    fn store_id(&self) -> StoreId {
        self.files.id
    }

    fn get(&mut self, path: &ResourcePath) -> StoreResult<Option<Rec>> {
        Ok(self.ix.rows.get(path).cloned())
    }

    fn descendants(&mut self, root: &ResourcePath) -> StoreResult<Vec<(ResourcePath, Rec)>> {
        let below = self
            .ix
            .rows
            .iter()
            .filter(|(p, _)| p.is_strictly_within(root));
        Ok(below.map(|(p, r)| (p.clone(), r.clone())).collect())
    }

    fn put(&mut self, path: &ResourcePath, record: &Rec) -> StoreResult<()> {
        self.ix.rows.insert(path.clone(), record.clone());
        Ok(())
    }

    fn remove(&mut self, path: &ResourcePath) -> StoreResult<()> {
        self.ix.rows.remove(path);
        Ok(())
    }

    fn tombstone(&mut self, t: Tombstone) -> StoreResult<()> {
        self.ix.tombstones.push(t);
        Ok(())
    }

    fn counters(&mut self) -> StoreResult<&mut Counters> {
        Ok(&mut self.ix.counters)
    }

    fn props(&mut self, rid: ReplUid) -> StoreResult<Vec<DeadProp>> {
        Ok(self
            .ix
            .props
            .get(&rid.counter())
            .cloned()
            .unwrap_or_default())
    }

    fn set_props(&mut self, rid: ReplUid, props: &[DeadProp]) -> StoreResult<()> {
        self.ix.props.insert(rid.counter(), props.to_vec());
        Ok(())
    }

    fn duplicate(&mut self, payload: &Option<u64>) -> StoreResult<Option<u64>> {
        let Some(n) = *payload else { return Ok(None) };
        let copy = self.files.new_file();
        std::fs::copy(self.files.file(n), self.files.file(copy)).map_err(io)?;
        Ok(Some(copy))
    }

    fn release(&mut self, payload: Option<u64>) -> StoreResult<()> {
        self.unused.extend(payload);
        Ok(())
    }

    fn page(&mut self, q: &PageQuery) -> StoreResult<Vec<(ResourcePath, Rec)>> {
        let after = |p: &ResourcePath| q.after.as_ref().is_none_or(|a| p > a);
        let rows = self
            .ix
            .rows
            .iter()
            .filter(|(p, _)| after(p) && q.contains(p));
        Ok(rows
            .take(q.limit)
            .map(|(p, r)| (p.clone(), r.clone()))
            .collect())
    }

    fn changed(&mut self, q: &LogQuery) -> StoreResult<Vec<(ResourcePath, Rec)>> {
        let mut found: Vec<_> = (self.ix.rows.iter())
            .filter(|(p, r)| r.version > q.since && q.contains(p))
            .map(|(p, r)| (p.clone(), r.clone()))
            .collect();
        found.sort_by_key(|(_, r)| r.version);
        found.truncate(q.limit);
        Ok(found)
    }

    fn removed(&mut self, q: &LogQuery) -> StoreResult<Vec<Tombstone>> {
        let found =
            (self.ix.tombstones.iter()).filter(|t| t.seq > q.since && q.contains_removed(&t.path));
        Ok(found.take(q.limit).cloned().collect())
    }

    fn purge(&mut self, before: SystemTime) -> StoreResult<PurgeReport> {
        let (gone, kept) = std::mem::take(&mut self.ix.tombstones)
            .into_iter()
            .partition::<Vec<_>, _>(|t| t.at < before);
        self.ix.tombstones = kept;
        let low_water = &mut self.ix.counters.low_water;
        *low_water = gone.iter().map(|t| t.seq).fold(*low_water, u64::max);
        let removed = gone.len() as u64;
        Ok(PurgeReport {
            removed,
            low_water: *low_water,
        })
    }

    fn content(&mut self, file: &Option<u64>, (start, end): (u64, u64)) -> StoreResult<Pieces> {
        // Small content is read within the step, so it is the version the step saw even if a
        // writer replaces the file right after; larger content is streamed afterwards.
        if end - start >= INLINE {
            return Ok(None);
        }
        // Only the span, not the whole file: a short range of a large file stays cheap.
        use std::io::{Read, Seek};
        let mut f = std::fs::File::open(self.files.file(file.unwrap_or_default())).map_err(io)?;
        f.seek(std::io::SeekFrom::Start(start)).map_err(io)?;
        let mut data = vec![0; (end - start + 1) as usize];
        f.read_exact(&mut data).map_err(io)?;
        Ok(Some(vec![data.into()]))
    }
}

impl Backend for Notes {
    type Payload = Option<u64>;
    /// The content file an upload was written to.
    type Upload = u64;

    async fn atomic<T: Send + 'static>(&self, a: AtomicOf<Self, T>) -> StoreResult<T> {
        let Atomic { upload, step, .. } = a;
        let files = &self.0;
        let (result, unused) = {
            let mut ix = files.index.lock().unwrap_or_else(|e| e.into_inner());
            let mut tx = Tx {
                files,
                ix: &mut ix,
                unused: Vec::new(),
            };
            // The engine checks everything before it changes anything, so a failed step
            // leaves the index as it was (and releases the upload it did not adopt).
            let result = step(&mut tx, upload.map(Some));
            (result, tx.unused)
        };
        for n in unused {
            let _ = tokio::fs::remove_file(files.file(n)).await;
        }
        result
    }

    async fn stage(&self, incoming: Incoming) -> StoreResult<Staged<u64>> {
        let n = self.0.new_file();
        let path = self.0.file(n);
        let written = write_file(&path, incoming.body, incoming.max_len).await;
        if written.is_err() {
            let _ = tokio::fs::remove_file(&path).await;
        }
        Ok(Staged::new(n, written?))
    }

    fn stream(&self, _path: &ResourcePath, file: Option<u64>, span: (u64, u64)) -> ByteStream {
        read_span(self.0.file(file.unwrap_or_default()), span)
    }

    fn identity(&self) -> (StoreId, Secret) {
        // A real store keeps both across restarts (and shares them between nodes).
        (self.0.id, self.0.secret)
    }
}

async fn write_file(path: &PathBuf, mut body: ByteStream, max: Option<u64>) -> StoreResult<u64> {
    let mut file = File::create(path).await.map_err(io)?;
    let mut len = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        len += chunk.len() as u64;
        if max.is_some_and(|m| len > m) {
            return Err(StoreError::new(ErrorKind::TooLarge, "content too large"));
        }
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.sync_all().await.map_err(io)?;
    Ok(len)
}

/// Bytes `start..=end` of a content file, 64 KiB at a time.
fn read_span(path: PathBuf, (start, end): (u64, u64)) -> ByteStream {
    Box::pin(futures_util::stream::try_unfold(
        None,
        move |file: Option<Take<File>>| {
            let path = path.clone();
            async move {
                let mut file = match file {
                    Some(f) => f,
                    None => open_span(path, start, end).await?,
                };
                let mut buf = vec![0; 64 * 1024];
                let n = file.read(&mut buf).await.map_err(io)?;
                buf.truncate(n);
                Ok((n > 0).then(|| (bytes::Bytes::from(buf), Some(file))))
            }
        },
    ))
}

async fn open_span(path: PathBuf, start: u64, end: u64) -> StoreResult<Take<File>> {
    let mut file = File::open(path).await.map_err(|e| {
        let msg = "the resource changed while it was being read";
        StoreError::new(ErrorKind::Unavailable, msg).with_source(e)
    })?;
    file.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(io)?;
    Ok(file.take(end - start + 1))
}
