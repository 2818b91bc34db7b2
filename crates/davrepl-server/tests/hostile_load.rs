//! Hostile requests running alongside normal clients against a real server process: the normal
//! clients never wait more than a second, and the server's peak memory grows by less than
//! 64 MiB, whatever the hostile bodies (each within the request limits) hold. Figures are
//! printed (`cargo test -p davrepl-server --test hostile_load -- --nocapture`).

#![allow(clippy::print_stdout)]

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use davrepl_tests::spawn_listening;

fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Bodies that used to crash, stall or balloon the server; each under the 1 MiB body limit.
fn hostile_bodies() -> Vec<(&'static str, String)> {
    let decls: String = (0..250)
        .map(|i| format!(" xmlns:p{i}=\"urn:x:{i}\""))
        .collect();
    vec![
        (
            "PROPFIND",
            format!(
                "<D:propfind xmlns:D=\"DAV:\">{}</D:propfind>",
                "<a>".repeat(300_000)
            ),
        ),
        (
            "PROPPATCH",
            format!(
                "<D:propertyupdate xmlns:D=\"DAV:\">{}{}</D:propertyupdate>",
                "<a>".repeat(150_000),
                "</a>".repeat(150_000)
            ),
        ),
        (
            "PROPFIND",
            format!(
                "<D:propfind xmlns:D=\"DAV:\"><D:prop>{}</D:prop></D:propfind>",
                "<D:getetag/>".repeat(80_000)
            ),
        ),
        (
            "PROPFIND",
            format!(
                "<D:propfind xmlns:D=\"DAV:\"{decls}><D:prop>{}</D:prop></D:propfind>",
                "<p1:x/>".repeat(9_000)
            ),
        ),
        (
            "SEARCH",
            format!(
                r#"<D:searchrequest xmlns:D="DAV:"><D:sql>SELECT "DAV:displayname" FROM SCOPE('DEEP TRAVERSAL OF "/"') WHERE "DAV:displayname" LIKE '%{}b' ORDER BY "DAV:displayname"</D:sql></D:searchrequest>"#,
                "a".repeat(250)
            ),
        ),
        (
            "PROPPATCH",
            format!(
                "<D:propertyupdate xmlns:D=\"DAV:\" xmlns:Z=\"urn:z:\"><D:set><D:prop><Z:v>{}</Z:v></D:prop></D:set></D:propertyupdate>trailing",
                "t".repeat(900_000)
            ),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn normal_clients_are_served_while_hostile_requests_run() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_davrepl-server"));
    cmd.args(["--listen", "127.0.0.1:0", "--store", "memory"])
        .env("DAVREPL_LOG", "error")
        .stderr(Stdio::null());
    let server = spawn_listening(cmd);
    let pid = server.child.id();
    let base = server.base.clone();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    for i in 0..200 {
        let r = client
            .put(format!(
                "{base}/{}",
                "a".repeat(i % 50 + 1) + &i.to_string()
            ))
            .body("x")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    let idle_kb = status_kb(pid, "VmRSS:");
    let stop = Arc::new(AtomicBool::new(false));
    let hostile: Vec<_> = (0..4)
        .map(|h| {
            let (client, base, stop) = (client.clone(), base.clone(), stop.clone());
            tokio::spawn(async move {
                let bodies = hostile_bodies();
                let mut sent = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let (method, body) = &bodies[(sent as usize + h) % bodies.len()];
                    let r = client
                        .request(
                            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                            format!("{base}/"),
                        )
                        .body(body.clone())
                        .send()
                        .await
                        .expect("the server answers hostile requests");
                    let code = r.status().as_u16();
                    assert!(code < 500, "{method} gave {code}");
                    sent += 1;
                }
                sent
            })
        })
        .collect();
    let worst = Arc::new(AtomicU64::new(0));
    let served = Arc::new(AtomicU64::new(0));
    let normal: Vec<_> = (0..4)
        .map(|n| {
            let (client, base, stop, worst, served) = (
                client.clone(),
                base.clone(),
                stop.clone(),
                worst.clone(),
                served.clone(),
            );
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let url = format!("{base}/normal-{n}-{}", i % 10);
                    let r = client.put(&url).body("data").send().await.unwrap();
                    assert!(r.status().is_success());
                    let r = client.get(&url).send().await.unwrap();
                    assert_eq!(r.text().await.unwrap(), "data");
                    let ms = t.elapsed().as_millis() as u64;
                    worst.fetch_max(ms, Ordering::Relaxed);
                    served.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    let mut hostile_sent = 0;
    for h in hostile {
        hostile_sent += h.await.expect("hostile task");
    }
    for n in normal {
        n.await.expect("normal client");
    }
    let peak_kb = status_kb(pid, "VmHWM:");
    let worst = worst.load(Ordering::Relaxed);
    let served = served.load(Ordering::Relaxed);
    println!(
        "hostile requests: {hostile_sent}; normal PUT+GET pairs: {served}, slowest {worst} ms; \
         RSS idle {} MiB, peak {} MiB (+{} MiB)",
        idle_kb / 1024,
        peak_kb / 1024,
        peak_kb.saturating_sub(idle_kb) / 1024
    );
    assert!(
        hostile_sent >= 8,
        "too few hostile requests ({hostile_sent}) to prove anything"
    );
    assert!(served >= 20, "normal clients were barely served ({served})");
    assert!(worst < 1000, "a normal client waited {worst} ms");
    assert!(
        peak_kb.saturating_sub(idle_kb) < 64 * 1024,
        "peak RSS grew by {} MiB",
        peak_kb.saturating_sub(idle_kb) / 1024
    );
}
