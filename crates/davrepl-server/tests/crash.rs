//! Crash safety over real processes: the server is SIGKILLed in the middle of a write storm,
//! restarted on the same SQLite file, and every acknowledged write must be there. Half the
//! writers send long bodies (kept in content files), half short ones (kept in the database).

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use davrepl_tests::remote::{self, between, version};
use davrepl_tests::{Running, spawn_listening};

const ROUNDS: usize = 4;
const WRITERS: usize = 6;

fn start(db: &std::path::Path) -> Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_davrepl-server"));
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--store",
        &format!("sqlite:{}", db.display()),
    ])
    .env("DAVREPL_LOG", "warn")
    .stderr(Stdio::null());
    spawn_listening(cmd)
}

#[derive(Debug, Clone, Default)]
struct Acked {
    rt: String,
    body: String,
    in_flight: Option<String>,
}

const SQL: &str = r#"SELECT "http://schemas.microsoft.com/repl/resourcetag" FROM SCOPE('DEEP TRAVERSAL OF "/data/"')"#;

async fn manifest(client: &reqwest::Client, base: &str, blob: Option<&str>) -> (u16, String) {
    remote::manifest(client, &format!("{base}/data/"), SQL, blob).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let acked: Arc<Mutex<HashMap<String, Acked>>> = Arc::default();
    let mut old_blob: Option<String> = None;
    for round in 0..ROUNDS {
        let mut server = start(&db);
        let base = server.base.clone();
        if round == 0 {
            let r = client
                .request(
                    reqwest::Method::from_bytes(b"MKCOL").unwrap(),
                    format!("{base}/data/"),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 201);
        } else {
            let snapshot = acked.lock().unwrap().clone();
            verify(&client, &base, &snapshot).await;
            // A collblob issued before the crash still works and reports every acknowledged
            // change made after it was issued.
            let blob = old_blob.as_deref().expect("blob from the previous round");
            let (status, text) = manifest(&client, &base, Some(blob)).await;
            assert_eq!(
                status, 207,
                "a pre-crash collblob must still be valid: {text}"
            );
            let rows: HashMap<String, String> = between(&text, "<a:response>", "</a:response>")
                .into_iter()
                .filter_map(|r| {
                    let href = between(r, "<a:href>", "</a:href>").first()?.to_string();
                    let rt = between(r, "<d:resourcetag>", "</d:resourcetag>")
                        .first()?
                        .to_string();
                    let path = href.split_once("://")?.1.split_once('/')?.1;
                    Some((format!("/{path}"), rt))
                })
                .collect();
            // Every write of the previous round came after that collblob was issued.
            let previous = format!("/data/r{}-", round - 1);
            let mut checked = 0;
            for (path, a) in acked.lock().unwrap().iter() {
                if a.rt.is_empty() || !path.starts_with(&previous) {
                    continue;
                }
                let rt = rows.get(path).unwrap_or_else(|| {
                    panic!("{path}: acknowledged after the collblob but not in its manifest")
                });
                assert!(
                    version(rt) >= version(&a.rt),
                    "{path}: manifest shows an older state than acknowledged"
                );
                checked += 1;
            }
            assert!(
                checked > 0,
                "round {round}: no acknowledged write to look for"
            );
        }
        let (_, text) = manifest(&client, &base, None).await;
        old_blob = Some(remote::blob_of(&text));

        // The storm: each writer owns its files, so the expected state is unambiguous.
        let storm: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (client, base, acked) = (client.clone(), base.clone(), acked.clone());
                tokio::spawn(async move {
                    for i in 0.. {
                        let path = format!("/data/r{round}-w{w}-f{}", i % 5);
                        let mut body = format!("round {round} writer {w} write {i}\n");
                        if w % 2 == 1 {
                            // Past the content-file threshold (128 KiB).
                            body = body.repeat(200_000 / body.len());
                        }
                        acked
                            .lock()
                            .unwrap()
                            .entry(path.clone())
                            .or_default()
                            .in_flight = Some(body.clone());
                        let resp = client
                            .put(format!("{base}{path}"))
                            .body(body.clone())
                            .send()
                            .await;
                        // A transport error is the kill; an HTTP error status never is.
                        let Ok(resp) = resp else { return Ok(i) };
                        if !resp.status().is_success() {
                            return Err(format!("{path}: PUT answered {}", resp.status()));
                        }
                        let rt = resp
                            .headers()
                            .get("resourcetag")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .trim_matches(['<', '>'])
                            .to_owned();
                        acked.lock().unwrap().insert(
                            path,
                            Acked {
                                rt,
                                body,
                                in_flight: None,
                            },
                        );
                    }
                    unreachable!("the loop only ends by returning")
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(400)).await;
        // The server must be up and answering right before the kill, or the round proves
        // nothing about a crash in the middle of writes.
        assert!(
            server.child.try_wait().unwrap().is_none(),
            "round {round}: the server exited before the kill"
        );
        let alive = client
            .head(format!("{base}/data/"))
            .send()
            .await
            .expect("server answers before the kill");
        assert!(
            alive.status().is_success(),
            "round {round}: {}",
            alive.status()
        );
        server.child.kill().expect("SIGKILL the server");
        let _ = server.child.wait();
        for (w, t) in storm.into_iter().enumerate() {
            let sent = t
                .await
                .expect("writer task")
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(
                sent >= 3,
                "round {round}: writer {w} got only {sent} writes through before the kill"
            );
        }
    }
    let server = start(&db);
    let snapshot = acked.lock().unwrap().clone();
    verify(&client, &server.base, &snapshot).await;
    // Every content file belongs to a long item that exists: nothing a kill cut off is left.
    let mut long_items = 0;
    for path in snapshot.keys() {
        let r = client
            .get(format!("{}{path}", server.base))
            .send()
            .await
            .unwrap();
        if r.status().is_success() && r.bytes().await.unwrap().len() >= 128 * 1024 {
            long_items += 1;
        }
    }
    let files = std::fs::read_dir(dir.path().join("store.db.content"))
        .unwrap()
        .count();
    assert!(long_items > 0, "no long item survived to check");
    assert_eq!(files, long_items, "content files without an item");
    drop(server);
    let acked = acked.lock().unwrap();
    for round in 0..ROUNDS {
        let writes = acked
            .iter()
            .filter(|(p, a)| p.starts_with(&format!("/data/r{round}-")) && !a.rt.is_empty())
            .count();
        assert!(
            writes >= WRITERS * 3,
            "round {round}: too few acknowledged files ({writes}) to prove anything"
        );
    }
}

async fn verify(client: &reqwest::Client, base: &str, acked: &HashMap<String, Acked>) {
    for (path, a) in acked {
        let r = client
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("get");
        if a.rt.is_empty() {
            // Never acknowledged: it may or may not exist; if it does, it is the in-flight body.
            if r.status().is_success() {
                let body = r.text().await.unwrap();
                assert_eq!(
                    Some(&body),
                    a.in_flight.as_ref(),
                    "{path}: unacknowledged content is not what was sent"
                );
            }
            continue;
        }
        assert!(
            r.status().is_success(),
            "{path}: acknowledged write lost ({})",
            r.status()
        );
        let rt = r
            .headers()
            .get("resourcetag")
            .unwrap()
            .to_str()
            .unwrap()
            .trim_matches(['<', '>'])
            .to_owned();
        let body = r.text().await.unwrap();
        if rt == a.rt {
            assert_eq!(
                body, a.body,
                "{path}: content differs from the acknowledged write"
            );
        } else {
            assert!(version(&rt) > version(&a.rt), "{path}: tag went backwards");
            assert_eq!(
                Some(&body),
                a.in_flight.as_ref(),
                "{path}: a later state that no write explains"
            );
        }
    }
}
