//! Runs the example binary: WebDAV writes show up in the application's notes map.

use std::process::Command;

use davrepl_tests::spawn_listening;

#[tokio::test]
async fn notes_follow_webdav_writes() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_example-custom-store"));
    cmd.arg("127.0.0.1:0");
    let child = spawn_listening(cmd);
    let base = child.base.clone();
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
