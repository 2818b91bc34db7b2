//! The writer thread: one connection, writes grouped into transactions (one savepoint each),
//! and the counters every write allocates from.

use std::sync::Arc;

use davrepl_store::engine::{self, sql};
use davrepl_store::{ErrorKind, StoreError, StoreId, StoreResult};
use rusqlite::{Connection, params};

use crate::db_err;
use crate::files::{Files, StagedFile, io_err};
use crate::hot::HotRows;
use crate::rows::{FileEffects, Tx};

/// Delivers a write's result once its transaction's fate is known.
pub(crate) type Finish = Box<dyn FnOnce(Option<&StoreError>) + Send>;
/// One write: runs inside the group transaction, says whether it succeeded.
pub(crate) type Job = Box<dyn FnOnce(&mut Tx<'_>) -> (bool, Finish) + Send>;

/// Most writes grouped into one transaction.
const MAX_GROUP: usize = 64;

/// The writer thread: owns the write connection and commits groups of writes, and holds the
/// store's claim on its database (`Files::claim`) until the last handle is gone.
pub(crate) fn spawn_writer(
    mut conn: Connection,
    id: StoreId,
    files: Arc<Files>,
    hot: Arc<HotRows>,
    owner: std::fs::File,
) -> StoreResult<std::sync::mpsc::Sender<Job>> {
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    let spawned = std::thread::Builder::new()
        .name("davrepl-sqlite-writer".into())
        .spawn(move || {
            // The store's claim on its database, given up when the last write is done.
            let _owner = owner;
            while let Ok(first) = rx.recv() {
                let mut jobs = vec![first];
                while jobs.len() < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(j) => jobs.push(j),
                        Err(_) => break,
                    }
                }
                run_group(&mut conn, id, &files, &hot, jobs);
            }
        });
    spawned.map_err(|e| {
        StoreError::new(ErrorKind::Internal, "cannot start the SQLite writer thread").with_source(e)
    })?;
    Ok(tx)
}

fn run_group(conn: &mut Connection, id: StoreId, files: &Files, hot: &HotRows, jobs: Vec<Job>) {
    let mut finishers: Vec<Finish> = Vec::with_capacity(jobs.len());
    let mut group = FileEffects::default();
    let outcome: StoreResult<()> = (|| {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let mut counters = Counters::load(&tx)?;
        for job in jobs {
            tx.execute_batch("SAVEPOINT job").map_err(db_err)?;
            let mut t = Tx {
                tx: &tx,
                c: Some(counters),
                id,
                files,
                fx: FileEffects::default(),
                seen: None,
            };
            // A panic in one write (a bug) must not take the writer thread, and with it every
            // later write, down: that write is rolled back and its caller gets an error.
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut t)));
            let fx = std::mem::take(&mut t.fx);
            let ok = match ran {
                Ok((ok, finish)) => {
                    finishers.push(finish);
                    ok
                }
                Err(_) => {
                    tracing::error!("a write panicked; it was rolled back and the writer goes on");
                    false
                }
            };
            if ok {
                counters = t.c.unwrap_or(counters);
                tx.execute_batch("RELEASE job").map_err(db_err)?;
                group.absorb(fx);
            } else {
                tx.execute_batch("ROLLBACK TO job; RELEASE job")
                    .map_err(db_err)?;
                fx.linked.iter().for_each(|&f| files.remove(f));
            }
        }
        counters.save(&tx)?;
        // New content file names are made durable before the rows naming them commit.
        if group.new_names {
            files
                .sync_dir()
                .map_err(|e| io_err("cannot sync the content directory", e))?;
        }
        // Cached rows are not handed out from here until the cache has been emptied, after
        // the commit and before any writer of the group is answered.
        let _committing = hot.committing();
        tx.commit().map_err(db_err)
    })();
    let err = outcome.err();
    match &err {
        Some(e) => {
            tracing::error!(error = %e, "a write transaction failed; its writes are refused");
            group.linked.iter().for_each(|&f| files.remove(f));
        }
        None => {
            group.adopted.into_iter().for_each(StagedFile::disarm);
            // Content no committed row refers to any more.
            group.released.iter().for_each(|&f| files.remove(f));
        }
    }
    for f in finishers {
        f(err.as_ref());
    }
}

/// The engine's counters, and the blob-id counter of this store.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Counters {
    pub(crate) log: engine::Counters,
    pub(crate) blob: i64,
}

impl Counters {
    pub(crate) fn load(conn: &Connection) -> StoreResult<Self> {
        let mut st = conn
            .prepare_cached(
                "SELECT seq, rid_counter, blob_counter, low_water, bytes FROM store WHERE id = 1",
            )
            .map_err(db_err)?;
        st.query_row([], |r| {
            let log = engine::Counters {
                seq: r.get::<_, i64>(0)? as u64,
                rid: r.get::<_, i64>(1)? as u64,
                low_water: r.get::<_, i64>(3)? as u64,
                bytes: r.get::<_, i64>(4)? as u64,
            };
            Ok(Self {
                log,
                blob: r.get(2)?,
            })
        })
        .map_err(db_err)
    }

    fn save(&self, tx: &Connection) -> StoreResult<()> {
        tx.prepare_cached(
            "UPDATE store SET seq = ?1, rid_counter = ?2, blob_counter = ?3, low_water = ?4, bytes = ?5 WHERE id = 1",
        )
        .and_then(|mut st| st.execute(params![
                sql::int(self.log.seq),
                sql::int(self.log.rid),
                self.blob,
                sql::int(self.log.low_water),
                sql::int(self.log.bytes)
            ]))
        .map_err(db_err)?;
        Ok(())
    }
}
