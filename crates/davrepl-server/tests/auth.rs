//! `--user`: Basic authentication in front of the namespace; collblobs are bound to the user.

use std::process::{Command, Stdio};

use davrepl_tests::{Running, spawn_listening};

fn start(args: &[&str]) -> Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_davrepl-server"));
    cmd.args(["--listen", "127.0.0.1:0", "--store", "memory"])
        .args(args)
        .stderr(Stdio::null());
    spawn_listening(cmd)
}

const SQL: &str = r#"SELECT "DAV:displayname" FROM SCOPE('SHALLOW TRAVERSAL OF "/"')"#;

fn body(blob: &str) -> String {
    format!(
        r#"<D:searchrequest xmlns:D="DAV:" xmlns:R="http://schemas.microsoft.com/repl/"><R:repl><R:collblob>{blob}</R:collblob></R:repl><D:sql>{SQL}</D:sql></D:searchrequest>"#
    )
}

#[tokio::test]
async fn users_and_collblob_binding() {
    let s = start(&["--user", "alice:pw-a", "--user", "bob:pw-b"]);
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
    let out = Command::new(env!("CARGO_BIN_EXE_davrepl-server"))
        .args(["--user", "nopassword"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("NAME:PASSWORD"));
}
