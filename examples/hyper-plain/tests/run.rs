//! Runs the example binary.

use std::process::Command;

use davrepl_tests::spawn_listening;

#[tokio::test]
async fn hyper_app_with_dav() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.db");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_example-hyper-plain"));
    cmd.args(["127.0.0.1:0", db.to_str().unwrap()]);
    let child = spawn_listening(cmd);
    let base = child.base.clone();
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
