//! The `davrepl` binary as users run it: exit statuses, a sync killed at random moments and
//! resumed, and `--watch`.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use davrepl_client::Condition;

fn davrepl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_davrepl"));
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

async fn status(mut cmd: Command) -> i32 {
    tokio::task::spawn_blocking(move || cmd.status().expect("run davrepl").code().unwrap_or(-1))
        .await
        .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_statuses() {
    let w = World::start().await;
    let a = w.folder("a");
    let mut c = davrepl();
    c.args(["sync", "/nonexistent/folder", &w.url()]);
    assert_eq!(status(c).await, 2, "missing folder");
    let mut c = davrepl();
    c.args(["sync"]).arg(&a).arg("ftp://example/x/");
    assert_eq!(status(c).await, 2, "not an http URL");
    let mut c = davrepl();
    c.args(["sync"])
        .arg(&a)
        .arg(w.url())
        .args(["--user", "alice"]);
    c.env_remove("DAVREPL_PASSWORD");
    assert_eq!(status(c).await, 2, "a user without a password");
    let mut c = davrepl();
    c.arg("frobnicate");
    assert_eq!(status(c).await, 2, "unknown subcommand");
    write(&a, "x.txt", "x\n");
    let mut c = davrepl();
    c.args(["sync"]).arg(&a).arg(w.url());
    assert_eq!(status(c).await, 0, "a good sync");
    // The folder is bound to its URL.
    let mut c = davrepl();
    c.args(["sync"])
        .arg(&a)
        .arg(format!("http://{}/dav/other/", w.addr));
    assert_eq!(status(c).await, 2, "another URL");
    // A server that is not there.
    let b = w.folder("b");
    let mut c = davrepl();
    c.args(["sync"]).arg(&b).arg("http://127.0.0.1:9/dav/");
    assert_eq!(status(c).await, 1, "no server");
}

/// A small deterministic generator for kill delays.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

/// Runs `davrepl sync dir url` and SIGKILLs it after `ms`; true when it had finished first.
async fn run_and_kill(dir: &std::path::Path, url: &str, ms: u64) -> bool {
    let mut c = davrepl();
    c.args(["sync"]).arg(dir).arg(url).arg("--quiet");
    let mut child = c.spawn().expect("spawn");
    let deadline = Instant::now() + Duration::from_millis(ms);
    loop {
        if child.try_wait().expect("wait").is_some() {
            return true;
        }
        if Instant::now() >= deadline {
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_random_moments_and_resumed_it_converges_without_duplicates() {
    let w = World::start().await;
    let (a, b) = (w.folder("a"), w.folder("b"));
    for i in 0..2000 {
        write(&a, &format!("d{}/f{i}.txt", i % 17), format!("file {i}\n"));
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64;
    eprintln!("kill schedule seed {seed}");
    let mut rng = Lcg(seed);
    let url = w.url();
    for dir in [&a, &b] {
        let mut kills = 0;
        for _ in 0..6 {
            let ms = 30 + rng.next(900);
            if run_and_kill(dir, &url, ms).await {
                break;
            }
            kills += 1;
            let held = if dir == &a {
                w.server_tree().await.len()
            } else {
                tree(dir).len()
            };
            eprintln!("killed after {ms} ms: {held} items synced so far");
        }
        eprintln!("{} killed {kills} times", dir.display());
        let mut c = davrepl();
        c.args(["sync"]).arg(dir).arg(&url).arg("--quiet");
        assert_eq!(status(c).await, 0, "the resumed sync of {}", dir.display());
    }
    let t = assert_converged(&w, &a, &b).await;
    let files = t.values().filter(|v| v.is_some()).count();
    assert_eq!(files, 2000, "no duplicates, nothing lost");
    assert!(
        !t.keys().any(|k| k.contains("(conflict")),
        "no conflict copies"
    );
}

async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_carries_changes_both_ways_as_they_happen() {
    let w = World::start().await;
    let a = w.folder("a");
    write(&a, "start.txt", "start\n");
    let mut c = davrepl();
    c.args(["sync"])
        .arg(&a)
        .arg(w.url())
        .args(["--watch", "--quiet"]);
    let mut child = c.spawn().expect("spawn");
    eventually("the first sync", async || {
        w.server_tree().await.contains_key("start.txt")
    })
    .await;
    // Local → server (file-system notification).
    write(&a, "later/local.txt", "made locally\n");
    eventually("the local file on the server", async || {
        w.server_tree().await.contains_key("later/local.txt")
    })
    .await;
    // Server → local (long-polled manifest).
    w.client()
        .put("remote.txt", "made on the server\n", Condition::Absent)
        .await
        .expect("PUT");
    eventually("the server's file locally", async || {
        a.join("remote.txt").exists()
    })
    .await;
    assert!(child.try_wait().expect("wait").is_none(), "still watching");
    child.kill().expect("kill");
    child.wait().expect("reap");
    assert_eq!(read(&a, "remote.txt"), "made on the server\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_come_from_a_file_or_the_environment_and_a_wrong_one_fails() {
    let w = World::start_with(Some(("alice", "s3cret pass"))).await;
    let a = w.folder("a");
    write(&a, "mine.txt", "alice's\n");
    let pw = w.tmp.path().join("pw");
    std::fs::write(&pw, "s3cret pass\nignored second line\n").expect("write");
    let mut c = davrepl();
    c.args(["sync"])
        .arg(&a)
        .arg(w.url())
        .args(["--user", "alice", "--password-file"])
        .arg(&pw);
    assert_eq!(status(c).await, 0, "the right password from a file");
    let b = w.folder("b");
    let mut c = davrepl();
    c.args(["sync"])
        .arg(&b)
        .arg(w.url())
        .args(["--user", "alice"]);
    c.env("DAVREPL_PASSWORD", "s3cret pass");
    assert_eq!(
        status(c).await,
        0,
        "the right password from the environment"
    );
    assert_eq!(read(&b, "mine.txt"), "alice's\n");
    let mut c = davrepl();
    c.args(["sync"])
        .arg(&b)
        .arg(w.url())
        .args(["--user", "alice"]);
    c.env("DAVREPL_PASSWORD", "wrong");
    let out = tokio::task::spawn_blocking(move || c.output().expect("run"))
        .await
        .expect("join");
    assert_eq!(out.status.code(), Some(1), "a wrong password");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401"), "says why: {err}");
}
