//! `--users-file`: Basic authentication with Argon2-hashed passwords in front of the namespace;
//! collblobs are bound to the user. `--homes`, the refusal to serve anonymously beyond
//! loopback, and the `Host` check of an anonymous loopback server.

use std::process::{Command, Stdio};

use davrepl_tests::{Running, spawn_listening};

fn start(args: &[&str]) -> Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_davrepl-server"));
    cmd.args(["--listen", "127.0.0.1:0", "--store", "memory"])
        .args(args)
        .stderr(Stdio::null());
    spawn_listening(cmd)
}

/// A users file for alice (pw-a) and bob (pw-b), hashed as `--hash-password` would.
fn users_file(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("users");
    let text = format!(
        "# test users\nalice:{}\nbob:{}\n",
        davrepl_auth::hash_password("pw-a").unwrap(),
        davrepl_auth::hash_password("pw-b").unwrap()
    );
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

const SQL: &str = r#"SELECT "DAV:displayname" FROM SCOPE('SHALLOW TRAVERSAL OF "/"')"#;

fn body(blob: &str) -> String {
    format!(
        r#"<D:searchrequest xmlns:D="DAV:" xmlns:R="http://schemas.microsoft.com/repl/"><R:repl><R:collblob>{blob}</R:collblob></R:repl><D:sql>{SQL}</D:sql></D:searchrequest>"#
    )
}

#[tokio::test]
async fn users_and_collblob_binding() {
    let dir = tempfile::tempdir().unwrap();
    let file = users_file(&dir);
    let s = start(&["--users-file", &file]);
    let c = reqwest::Client::new();
    let url = format!("{}/x.txt", s.base);
    let r = c.put(&url).body("x").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(
        r.headers()
            .get("www-authenticate")
            .is_some_and(|v| v.to_str().unwrap().starts_with("Basic"))
    );
    assert_eq!(
        c.put(&url)
            .basic_auth("alice", Some("wrong"))
            .body("x")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    assert_eq!(
        c.put(&url)
            .basic_auth("alice", Some("pw-a"))
            .body("x")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        201
    );
    let search = reqwest::Method::from_bytes(b"SEARCH").unwrap();
    let r = c
        .request(search.clone(), format!("{}/", s.base))
        .basic_auth("alice", Some("pw-a"))
        .body(body(""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 207);
    let text = r.text().await.unwrap();
    let blob = text
        .split("<d:collblob>")
        .nth(1)
        .unwrap()
        .split("</d:collblob>")
        .next()
        .unwrap()
        .to_owned();
    let again = |user: &'static str, pw: &'static str| {
        let (c, search, base, blob) = (c.clone(), search.clone(), s.base.clone(), blob.clone());
        async move {
            c.request(search, format!("{base}/"))
                .basic_auth(user, Some(pw))
                .body(body(&blob))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(again("alice", "pw-a").await, 207);
    assert_eq!(
        again("bob", "pw-b").await,
        475,
        "a collblob of user A is invalid for user B"
    );
}

#[tokio::test]
async fn clear_start_up_errors() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = Command::new(env!("CARGO_BIN_EXE_davrepl-server"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--store",
            "memory",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen on"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_davrepl-server"))
        .args(["--store", "nosuch://x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown store"));
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain");
    std::fs::write(&plain, "alice:secret\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_davrepl-server"))
        .args(["--store", "memory", "--users-file"])
        .arg(&plain)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not an Argon2 hash"),
        "plain passwords are refused"
    );
    // Anonymous beyond loopback only when asked for explicitly.
    let out = Command::new(env!("CARGO_BIN_EXE_davrepl-server"))
        .args(["--store", "memory", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("without users"));
}

#[tokio::test]
async fn hash_password_prints_a_usable_hash() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_davrepl-server"))
        .arg("--hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"pw-c\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users");
    std::fs::write(&file, format!("carol:{hash}\n")).unwrap();
    let s = start(&["--users-file", &file.display().to_string()]);
    let c = reqwest::Client::new();
    let put = |pw: &'static str| {
        c.put(format!("{}/c.txt", s.base))
            .basic_auth("carol", Some(pw))
            .body("c")
    };
    assert_eq!(put("wrong").send().await.unwrap().status().as_u16(), 401);
    assert_eq!(put("pw-c").send().await.unwrap().status().as_u16(), 201);
}

#[tokio::test]
async fn homes_keep_users_apart() {
    let dir = tempfile::tempdir().unwrap();
    let file = users_file(&dir);
    let s = start(&["--users-file", &file, "--homes"]);
    let c = reqwest::Client::new();
    let m = |x: &str| reqwest::Method::from_bytes(x.as_bytes()).unwrap();
    let status =
        |rb: reqwest::RequestBuilder| async move { rb.send().await.unwrap().status().as_u16() };
    let alice = |rb: reqwest::RequestBuilder| rb.basic_auth("alice", Some("pw-a"));
    let bob = |rb: reqwest::RequestBuilder| rb.basic_auth("bob", Some("pw-b"));
    let url = |p: &str| format!("{}{p}", s.base);
    // Homes exist from the start.
    assert_eq!(
        status(alice(c.put(url("/alice/a.txt")).body("A"))).await,
        201
    );
    assert_eq!(status(bob(c.get(url("/alice/a.txt")))).await, 403);
    assert_eq!(status(bob(c.put(url("/alice/a.txt")).body("B"))).await, 403);
    assert_eq!(status(bob(c.put(url("/top.txt")).body("B"))).await, 403);
    assert_eq!(
        status(bob(c.request(m("PROPFIND"), url("/")).header("Depth", "1"))).await,
        403,
        "listing the root would show every home"
    );
    assert_eq!(
        status(bob(c.request(m("PROPFIND"), url("/")).header("Depth", "0"))).await,
        207
    );
    assert_eq!(
        status(bob(c
            .request(m("MOVE"), url("/bob/"))
            .header("Destination", url("/alice/bob/"))))
        .await,
        403
    );
    assert_eq!(status(bob(c.put(url("/bob/b.txt")).body("B"))).await, 201);
    let r = alice(c.get(url("/alice/a.txt"))).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "A");
}

#[tokio::test]
async fn anonymous_loopback_server_checks_host() {
    let s = start(&[]);
    let c = reqwest::Client::new();
    let url = format!("{}/x.txt", s.base);
    assert_eq!(
        c.put(&url)
            .body("x")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        201
    );
    // A page on another site that rebinds its name to 127.0.0.1 sends its own Host.
    let r = c
        .get(&url)
        .header("Host", "attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = c
        .get(&url)
        .header("Host", "localhost:1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}
