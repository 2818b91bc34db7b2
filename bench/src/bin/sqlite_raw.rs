//! The raw rate of one-row INSERT transactions on SQLite, in WAL mode with
//! `synchronous=FULL` (what the SQLite store uses by default), one after another on one
//! connection: the floor a store that commits each write alone cannot beat.
//!
//! `sqlite_raw DIR [SECONDS] [BYTES]` prints `inserts/s N`.

#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(
        args.next()
            .ok_or("usage: sqlite_raw DIR [SECONDS] [BYTES]")?,
    );
    let seconds: f64 = args.next().map_or(Ok(3.0), |s| s.parse())?;
    let bytes: usize = args.next().map_or(Ok(1024), |s| s.parse())?;
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("raw.db");
    let _ = std::fs::remove_file(&path);
    let conn = rusqlite::Connection::open(&path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")?;
    let data = vec![b'x'; bytes];
    let mut st = conn.prepare("INSERT INTO t (data) VALUES (?1)")?;
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs_f64(seconds) {
        conn.execute_batch("BEGIN")?;
        st.execute([&data])?;
        conn.execute_batch("COMMIT")?;
        n += 1;
    }
    println!(
        "inserts/s {:.0}",
        n as f64 / started.elapsed().as_secs_f64()
    );
    drop(st);
    drop(conn);
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.join(format!("raw.db{ext}")));
    }
    Ok(())
}
