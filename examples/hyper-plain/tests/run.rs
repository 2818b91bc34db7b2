//! Runs the example binary.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// Kills the example when the test ends, pass or fail, so a failed assertion never leaves it
/// running (and the test harness waiting for it).
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn hyper_app_with_dav() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.db");
    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_example-hyper-plain"))
            .args(["127.0.0.1:0", db.to_str().unwrap()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .trim_start_matches("listening on ")
        .trim_end_matches('/')
        .to_owned();
    let c = reqwest::Client::new();
    assert_eq!(
        c.get(format!("{base}/"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "hello from hyper\n"
    );
    assert_eq!(
        c.put(format!("{base}/dav/f.txt"))
            .body("data")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        201
    );
    assert_eq!(
        c.get(format!("{base}/dav/f.txt"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "data"
    );
    drop(child);
    assert!(db.exists(), "data went to the SQLite file");
}
