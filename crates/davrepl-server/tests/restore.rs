//! A store restored from a backup: collblobs issued after the backup come from the store's
//! future and must get 475 (their sequence numbers will be reused), while older ones still work.
//! Once new writes carry the restored store past a future collblob's watermark only a new store
//! generation tells them apart: the first start after a restore uses `--after-restore`.

use std::process::{Command, Stdio};
use std::time::Duration;

use davrepl_tests::remote::{self, blob_of};
use davrepl_tests::{Running, spawn_listening};

fn start(db: &std::path::Path) -> Running {
    start_with(db, &[])
}

fn start_with(db: &std::path::Path, extra: &[&str]) -> Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_davrepl-server"));
    cmd.args(["--listen", "127.0.0.1:0", "--store"])
        .arg(format!("sqlite:{}", db.display()))
        .args(extra)
        .env("DAVREPL_LOG", "warn")
        .stderr(Stdio::null());
    spawn_listening(cmd)
}

fn stop(mut server: Running) {
    // SIGTERM: a graceful stop that checkpoints nothing in particular; the files are then
    // copied whole, as an operator's backup would be.
    let _ = Command::new("kill")
        .arg(server.child.id().to_string())
        .status();
    let _ = server.child.wait();
}

fn copy_db(from: &std::path::Path, to: &std::path::Path) {
    for ext in ["", "-wal", "-shm"] {
        let src = std::path::PathBuf::from(format!("{}{ext}", from.display()));
        let dst = std::path::PathBuf::from(format!("{}{ext}", to.display()));
        let _ = std::fs::remove_file(&dst);
        if src.exists() {
            std::fs::copy(&src, &dst).expect("copy database file");
        }
    }
}

const SQL: &str = r#"SELECT "http://schemas.microsoft.com/repl/resourcetag" FROM SCOPE('SHALLOW TRAVERSAL OF "/data/"')"#;

async fn manifest(client: &reqwest::Client, base: &str, blob: Option<&str>) -> (u16, String) {
    remote::manifest(client, &format!("{base}/data/"), SQL, blob).await
}

/// A level-1 `sync-collection` of `/data/` from `token`: the status, and the new token.
async fn sync(client: &reqwest::Client, base: &str, token: Option<&str>) -> (u16, String) {
    let r = client
        .request(
            reqwest::Method::from_bytes(b"REPORT").unwrap(),
            format!("{base}/data/"),
        )
        .body(davrepl_tests::sync_body(token, "1", "<D:getetag/>", None))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let token = remote::between(&text, "<D:sync-token>", "</D:sync-token>")
        .first()
        .map_or_else(String::new, |t| t.to_string());
    (status, if status == 207 { token } else { text })
}

async fn put(client: &reqwest::Client, base: &str, name: &str) {
    let r = client
        .put(format!("{base}/data/{name}"))
        .body(name.to_owned())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
}

#[tokio::test]
async fn collblobs_from_after_a_restored_backup_get_475() {
    let dir = tempfile::tempdir().unwrap();
    let (db, backup) = (dir.path().join("store.db"), dir.path().join("backup.db"));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    let server = start(&db);
    let r = client
        .request(
            reqwest::Method::from_bytes(b"MKCOL").unwrap(),
            format!("{}/data/", server.base),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    put(&client, &server.base, "a").await;
    let (status, text) = manifest(&client, &server.base, None).await;
    assert_eq!(status, 207);
    let before_backup = blob_of(&text);
    let (status, token_before) = sync(&client, &server.base, None).await;
    assert_eq!(status, 207, "{token_before}");
    stop(server);
    copy_db(&db, &backup);

    let server = start(&db);
    put(&client, &server.base, "b").await;
    put(&client, &server.base, "c").await;
    let (status, text) = manifest(&client, &server.base, None).await;
    assert_eq!(status, 207);
    let after_backup = blob_of(&text);
    let (status, token_after) = sync(&client, &server.base, None).await;
    assert_eq!(status, 207, "{token_after}");
    stop(server);

    copy_db(&backup, &db);
    let server = start(&db);
    let (status, text) = manifest(&client, &server.base, Some(&after_backup)).await;
    assert_eq!(
        status, 475,
        "a collblob from the store's future was accepted: {text}"
    );
    let (status, text) = manifest(&client, &server.base, Some(&before_backup)).await;
    assert_eq!(
        status, 207,
        "a collblob from before the backup still works: {text}"
    );
    // RFC 6578 tokens alike: 403 valid-sync-token from the future, fine from before.
    let (status, text) = sync(&client, &server.base, Some(&token_after)).await;
    assert_eq!(status, 403, "a sync token from the store's future: {text}");
    assert!(text.contains("valid-sync-token"), "{text}");
    let (status, text) = sync(&client, &server.base, Some(&token_before)).await;
    assert_eq!(status, 207, "a sync token from before the backup: {text}");
    stop(server);

    // Without a new generation, writes after the restore reuse the future collblob's sequence
    // numbers and it would look current again; the documented first start after a restore
    // starts a new generation, which refuses every earlier collblob for good.
    let server = start_with(&db, &["--after-restore"]);
    for n in ["d", "e", "f"] {
        put(&client, &server.base, n).await;
    }
    for (name, blob) in [("after", &after_backup), ("before", &before_backup)] {
        let (status, _) = manifest(&client, &server.base, Some(blob)).await;
        assert_eq!(
            status, 475,
            "the {name}-backup collblob outlived the new generation"
        );
    }
    for token in [&token_after, &token_before] {
        let (status, _) = sync(&client, &server.base, Some(token)).await;
        assert_eq!(status, 403, "a sync token outlived the new generation");
    }
    let (status, text) = manifest(&client, &server.base, None).await;
    assert_eq!(status, 207, "a first sync works: {text}");
    let fresh = blob_of(&text);
    stop(server);
    let server = start(&db);
    let (status, _) = manifest(&client, &server.base, Some(&fresh)).await;
    assert_eq!(status, 207, "the generation persists across restarts");
    let (status, _) = manifest(&client, &server.base, Some(&after_backup)).await;
    assert_eq!(status, 475);
}
