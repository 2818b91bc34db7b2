//! Runs the example binary: WebDAV writes show up in the application's notes map.

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
async fn notes_follow_webdav_writes() {
    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_example-custom-store"))
            .arg("127.0.0.1:0")
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
    let mkcol = reqwest::Method::from_bytes(b"MKCOL").unwrap();
    assert_eq!(
        c.request(mkcol, format!("{base}/notes/sub/"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        201
    );
    assert_eq!(
        c.put(format!("{base}/notes/todo.txt"))
            .body("milk")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        201
    );
    assert_eq!(
        c.put(format!("{base}/notes/gone.txt"))
            .body("x")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        201
    );
    assert_eq!(
        c.delete(format!("{base}/notes/gone.txt"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        204
    );
    let view = c
        .get(format!("{base}/api/notes"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(view, r#"{"todo.txt":"milk"}"#);
    drop(child);
}
