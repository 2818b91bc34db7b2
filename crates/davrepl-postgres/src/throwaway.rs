//! A throwaway PostgreSQL cluster for tests and benchmarks (feature `throwaway`).
//!
//! [`Cluster::start`] runs `initdb` in a fresh temporary directory, starts `postgres` on a free
//! loopback port with password (SCRAM) authentication, and removes everything when dropped.
//! Run as root, the server programs are started through `runuser -u postgres`, since
//! PostgreSQL refuses to run as root.
//!
//! [`Cluster::shared`] gives one cluster per test process. Statics are never dropped, so it is
//! torn down by a small watchdog process that waits for the test process to exit.
//!
//! When the PostgreSQL binaries are absent, [`Cluster::shared`] panics: a test run without
//! PostgreSQL must not look like a passing one. To skip deliberately, set
//! `DAVREPL_SKIP_POSTGRES=1`; then it prints a loud message and returns `None` so that the tests
//! skip. With the `CI` environment variable set, a missing PostgreSQL is always a failure.

#![allow(clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::PgStore;

/// Options of a throwaway cluster.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClusterOptions {
    /// `fsync` and `synchronous_commit` on. Off by default: tests do not need durability
    /// against power loss, and it makes `CREATE DATABASE` much faster. Benchmarks turn it on.
    pub durable: bool,
    /// `max_connections`.
    pub max_connections: u32,
    /// More server settings, each `name=value` without spaces (for example
    /// `shared_preload_libraries=pg_stat_statements` to see what each statement costs).
    pub settings: Vec<String>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            durable: false,
            max_connections: 300,
            settings: Vec::new(),
        }
    }
}

/// A running throwaway cluster.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    bindir: PathBuf,
    port: u16,
    password: String,
    as_postgres: bool,
    databases: AtomicU32,
}

/// The environment variable that turns a missing PostgreSQL into a deliberate skip (outside CI).
pub const SKIP_VAR: &str = "DAVREPL_SKIP_POSTGRES";

/// The superuser the cluster is created with.
pub const USER: &str = "davrepl";

/// Where the PostgreSQL server programs are: `$DAVREPL_PG_BINDIR`, the newest
/// `/usr/lib/postgresql/*/bin`, or the directory of `initdb` on `PATH`.
pub fn find_bindir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DAVREPL_PG_BINDIR") {
        let d = PathBuf::from(d);
        return d.join("initdb").exists().then_some(d);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|p| p.join("initdb").exists() && p.join("pg_ctl").exists())
    })
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("randomness");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// `settings` as `-c name=value` arguments of the server, each after a space.
fn server_settings(settings: &[String]) -> Result<String, String> {
    let mut out = String::new();
    for s in settings {
        let well_formed = s.split_once('=').is_some_and(|(name, _)| !name.is_empty());
        if !well_formed || s.contains(char::is_whitespace) {
            return Err(format!(
                "a setting is `name=value` without spaces, not {s:?}"
            ));
        }
        out.push_str(" -c ");
        out.push_str(s);
    }
    Ok(out)
}

impl Cluster {
    /// Creates and starts a cluster. `Ok(None)` when the PostgreSQL binaries are absent.
    pub fn start(opts: &ClusterOptions) -> Result<Option<Self>, String> {
        let extra = server_settings(&opts.settings)?;
        let Some(bindir) = find_bindir() else {
            return Ok(None);
        };
        let as_postgres = running_as_root();
        let dir = std::env::temp_dir().join(format!(
            "davrepl-pg-{}-{}",
            std::process::id(),
            random_hex(4)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let password = random_hex(16);
        std::fs::write(dir.join("pw"), &password).map_err(|e| e.to_string())?;
        let cluster = Self {
            dir,
            bindir,
            port: free_port()?,
            password,
            as_postgres,
            databases: AtomicU32::new(0),
        };
        if as_postgres {
            cluster.run(
                Command::new("chown")
                    .args(["-R", "postgres:"])
                    .arg(&cluster.dir),
            )?;
        }
        let data = cluster.dir.join("data");
        let mut initdb = cluster.server_cmd("initdb");
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                USER,
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", cluster.dir.join("pw").display()));
        cluster.run(&mut initdb)?;
        let sync = if opts.durable { "on" } else { "off" };
        let mut start = cluster.server_cmd("pg_ctl");
        start
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(cluster.dir.join("log"))
            .arg("-w")
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections={} -c fsync={sync} -c synchronous_commit={sync} -c full_page_writes={sync}{extra}",
                cluster.port,
                cluster.dir.display(),
                opts.max_connections
            ))
            .arg("start");
        cluster.run(&mut start).map_err(|e| {
            let log = std::fs::read_to_string(cluster.dir.join("log")).unwrap_or_default();
            format!("{e}\n{log}")
        })?;
        Ok(Some(cluster))
    }

    /// One cluster for the whole test process, started on first use and stopped by a
    /// watchdog when the process exits. When PostgreSQL is not installed: `None` (after a loud
    /// message) if `DAVREPL_SKIP_POSTGRES` is set and `CI` is not, otherwise a panic. Panics
    /// too when the cluster cannot start.
    pub fn shared() -> Option<&'static Self> {
        static SHARED: OnceLock<Option<Cluster>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let started = Self::start(&ClusterOptions::default())
                    .unwrap_or_else(|e| panic!("cannot start a throwaway PostgreSQL: {e}"));
                match started {
                    Some(c) => {
                        c.watch(std::process::id());
                        Some(c)
                    }
                    None if std::env::var_os("CI").is_some() => panic!(
                        "PostgreSQL binaries (initdb, pg_ctl) not found and CI is set: install the \
                         `postgresql` package or set DAVREPL_PG_BINDIR"
                    ),
                    None if std::env::var_os(SKIP_VAR).is_none() => panic!(
                        "PostgreSQL binaries (initdb, pg_ctl) not found: install the `postgresql` \
                         package, point DAVREPL_PG_BINDIR at its bin directory, or set \
                         {SKIP_VAR}=1 to skip the PostgreSQL tests deliberately"
                    ),
                    None => {
                        eprintln!(
                            "\n*** SKIPPING PostgreSQL tests ({SKIP_VAR} is set and initdb/pg_ctl \
                             were not found) ***\n"
                        );
                        None
                    }
                }
            })
            .as_ref()
    }

    fn server_cmd(&self, program: &str) -> Command {
        let exe = self.bindir.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn run(&self, cmd: &mut Command) -> Result<(), String> {
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{cmd:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{cmd:?} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Starts a detached shell that stops the cluster and removes its directory once `pid`
    /// has exited.
    fn watch(&self, pid: u32) {
        let stop = self.stop_script();
        let script = format!("while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop}");
        let spawned = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if let Err(e) = spawned {
            eprintln!("cannot start the PostgreSQL watchdog ({e}); stop it by hand: {stop}");
        }
    }

    fn stop_script(&self) -> String {
        let data = self.dir.join("data");
        format!(
            "kill -INT $(head -1 {pid} 2>/dev/null) 2>/dev/null; i=0; while [ -e {pid} ] && [ $i -lt 50 ]; do sleep 0.2; i=$((i+1)); done; rm -rf {dir}",
            pid = data.join("postmaster.pid").display(),
            dir = self.dir.display()
        )
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory (for `pg_ctl` by hand while debugging).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A connection URL for database `db`.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{USER}:{}@127.0.0.1:{}/{db}",
            self.password, self.port
        )
    }

    /// Creates a new empty database and returns its URL.
    pub async fn create_database(&self) -> Result<String, String> {
        let name = format!(
            "t{}_{}",
            self.databases.fetch_add(1, Ordering::Relaxed),
            random_hex(3)
        );
        let (client, conn) = tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(conn);
        let created = client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .map_err(|e| e.to_string());
        drop(client);
        let _ = driver.await;
        created.map(|()| self.url(&name))
    }

    /// A [`PgStore`] on a new empty database.
    pub async fn fresh_store(&self) -> PgStore {
        self.fresh_store_with(crate::PgOptions::default()).await
    }

    /// A [`PgStore`] with `opts` on a new empty database.
    pub async fn fresh_store_with(&self, opts: crate::PgOptions) -> PgStore {
        let url = self.create_database().await.expect("create database");
        PgStore::connect_with(&url, opts).await.expect("connect")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .arg("-c")
            .arg(self.stop_script())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Fills collection `parent` (which must exist) with `n` small items named `m0000000`… in
/// one statement, numbering them as if written one by one. For benchmarks that need large
/// collections quickly; the store must not be written concurrently meanwhile. Ends with
/// `VACUUM ANALYZE`, so the tables are in the state a store that grew over time is in.
pub async fn bulk_members(url: &str, parent: &str, n: u64) -> Result<(), String> {
    let (mut client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(conn);
    let result = async {
        let e = |e: tokio_postgres::Error| e.to_string();
        let n = i64::try_from(n).map_err(|e| e.to_string())?;
        let tx = client.transaction().await.map_err(e)?;
        let row = tx
            .query_one(
                "SELECT seq, rid_counter FROM davrepl_store WHERE id = 1 FOR UPDATE",
                &[],
            )
            .await
            .map_err(e)?;
        let (seq, rid): (i64, i64) = (row.try_get(0).map_err(e)?, row.try_get(1).map_err(e)?);
        let blob0: i64 = tx
            .query_one("SELECT setval('davrepl_blob_ids', nextval('davrepl_blob_ids') + $1::bigint)", &[&n])
            .await
            .map_err(e)?
            .try_get(0)
            .map_err(e)?;
        let blob0 = blob0 - n;
        let now = crate::now_nanos();
        let prefix = if parent == "/" { String::from("/") } else { format!("{parent}/") };
        tx.execute(
            "INSERT INTO davrepl_resource_rows (path, parent, rid, kind, version, content_version, len, content_type, created, modified, blob)
             SELECT $1::text || 'm' || lpad(i::text, 7, '0'), $2::text, $3::bigint + i + 1, 1, $4::bigint + i + 1, $4::bigint + i + 1, 5, NULL, $5::bigint, $5::bigint, $6::bigint + i
             FROM generate_series(0::bigint, $7::bigint - 1) AS i",
            &[&prefix, &parent, &rid, &seq, &now, &blob0, &n],
        )
        .await
        .map_err(e)?;
        tx.execute(
            "INSERT INTO davrepl_chunks (blob, n, data) SELECT $1::bigint + i, 0, 'hello'::bytea FROM generate_series(0::bigint, $2::bigint - 1) AS i",
            &[&blob0, &n],
        )
        .await
        .map_err(e)?;
        tx.execute(
            "UPDATE davrepl_resource_rows SET content_version = $1 WHERE path = $2",
            &[&(seq + n), &parent],
        )
        .await
        .map_err(e)?;
        tx.execute(
            "UPDATE davrepl_store SET seq = $1, rid_counter = $2, bytes = bytes + 5 * $3::bigint WHERE id = 1",
            &[&(seq + n), &(rid + n), &n],
        )
        .await
        .map_err(e)?;
        tx.commit().await.map_err(e)?;
        // A store that grew to this size over time has been vacuumed and analyzed; without
        // it, autovacuum would work through the new rows during the first measurements.
        client.batch_execute("VACUUM ANALYZE").await.map_err(e)
    }
    .await;
    drop(client);
    let _ = driver.await;
    result
}

#[cfg(test)]
mod tests {
    use super::server_settings;

    #[test]
    fn settings_become_server_arguments() {
        let ok = ["work_mem=8MB".to_owned(), "jit=off".to_owned()];
        assert_eq!(server_settings(&ok).unwrap(), " -c work_mem=8MB -c jit=off");
        assert_eq!(server_settings(&[]).unwrap(), "");
    }

    #[test]
    fn malformed_settings_are_refused() {
        for bad in ["", "jit", "=off", "work_mem=8 MB", "a=b -c fsync=off"] {
            let err = server_settings(&[bad.to_owned()]).unwrap_err();
            assert!(err.contains("name=value"), "{bad:?}: {err}");
        }
    }
}
