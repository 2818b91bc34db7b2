//! What ownCloud-style clients (rclone's `owncloud` vendor, Windows) rely on, through the
//! reference server on every store: modification times they set (`X-OC-Mtime`, PROPPATCH of
//! the time properties), `oc:checksums` and `OC-Checksum`, and RFC 4331 quotas with `507`.

use std::process::{Command, Stdio};
use std::time::Duration;

use davrepl_postgres::throwaway::Cluster;
use davrepl_tests::{Running, spawn_listening};

const QUOTA: u64 = 1000;

fn server(store: &str) -> Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_davrepl-server"));
    cmd.args(["--listen", "127.0.0.1:0", "--store", store])
        .args(["--quota-bytes", &QUOTA.to_string()])
        .env("DAVREPL_LOG", "warn")
        .stderr(Stdio::null());
    spawn_listening(cmd)
}

fn method(m: &str) -> reqwest::Method {
    reqwest::Method::from_bytes(m.as_bytes()).expect("method")
}

async fn propfind(c: &reqwest::Client, url: &str, props: &str) -> String {
    propfind_depth(c, url, "0", props).await
}

async fn propfind_depth(c: &reqwest::Client, url: &str, depth: &str, props: &str) -> String {
    let body = format!(
        "<?xml version=\"1.0\"?><d:propfind xmlns:d=\"DAV:\" xmlns:oc=\"http://owncloud.org/ns\">\
         <d:prop>{props}</d:prop></d:propfind>"
    );
    let r = c
        .request(method("PROPFIND"), url)
        .header("Depth", depth)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 207);
    r.text().await.unwrap()
}

/// A PROPPATCH setting one property (`prop`, an element in the `d:` = `DAV:` namespace or
/// with its own `xmlns`).
async fn set_prop(c: &reqwest::Client, url: &str, prop: &str) -> reqwest::Response {
    let body = format!(
        "<?xml version=\"1.0\"?><d:propertyupdate xmlns:d=\"DAV:\"><d:set><d:prop>{prop}\
         </d:prop></d:set></d:propertyupdate>"
    );
    c.request(method("PROPPATCH"), url)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Makes the collection `dir` (a URL ending in `/`) with items `0`, `1`, `2` holding
/// `item 0` … `item 2`; their ETags.
async fn three_items(c: &reqwest::Client, dir: &str) -> Vec<String> {
    let r = c.request(method("MKCOL"), dir).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let mut etags = Vec::new();
    for i in 0..3 {
        let r = c
            .put(format!("{dir}{i}"))
            .body(format!("item {i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        etags.push(r.headers()["etag"].to_str().unwrap().to_owned());
    }
    etags
}

async fn get(c: &reqwest::Client, url: &str) -> String {
    c.get(url).send().await.unwrap().text().await.unwrap()
}

/// Everything, against one running server.
async fn check(base: &str) {
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let url = |p: &str| format!("{base}{p}");

    // X-OC-Mtime: the time is kept to the second and reported as getlastmodified.
    let r = c
        .put(url("/a.txt"))
        .header("X-OC-Mtime", "1600000000")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(r.headers()["x-oc-mtime"], "accepted");
    let props = propfind(&c, &url("/a.txt"), "<d:getlastmodified/><oc:checksums/>").await;
    assert!(props.contains("Sun, 13 Sep 2020 12:26:40 GMT"), "{props}");
    // oc:checksums: SHA1, MD5 and SHA256 of "hello".
    for sum in [
        "SHA1:aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d",
        "MD5:5d41402abc4b2a76b9719d911017c592",
        "SHA256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
    ] {
        assert!(props.contains(sum), "{sum} in {props}");
    }
    // A PUT without OC-Checksum computes no digest: a Depth 1 listing asking for them
    // computes and records them, and the ETags do not move (no new version).
    let etags = three_items(&c, &url("/sums/")).await;
    let expected = [
        "SHA256:f5201cf555e7b13e0dc1d8c025407e0d2d96eb5728d49be67c29becdc1ee44ba",
        "MD5:bb26615c7faed2a60ad09f1f72d39b64",
        "SHA256:7f5f00f1199c45329d4e101bb8160f5c2d47998e87ec2520f7a8146250375a3d",
    ];
    for round in 0..2 {
        let listing = propfind_depth(&c, &url("/sums/"), "1", "<d:getetag/><oc:checksums/>").await;
        assert_eq!(
            listing.matches("MD5:").count(),
            3,
            "round {round}: {listing}"
        );
        for e in expected.into_iter().chain(etags.iter().map(String::as_str)) {
            assert!(listing.contains(e), "round {round}: {e} in {listing}");
        }
    }
    // A sync-collection REPORT fills them too, the items batched ahead of their turn (the
    // quota here leaves no room for one too large to be; the manifest test in
    // tests/tests/replication.rs has one).
    three_items(&c, &url("/feed/")).await;
    for round in 0..2 {
        let r = c
            .request(method("REPORT"), url("/feed/"))
            .header("Depth", "1")
            .body(
                "<?xml version=\"1.0\"?><d:sync-collection xmlns:d=\"DAV:\" \
                 xmlns:oc=\"http://owncloud.org/ns\"><d:sync-token/><d:sync-level>1\
                 </d:sync-level><d:prop><d:getetag/><oc:checksums/></d:prop>\
                 </d:sync-collection>",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 207);
        let report = r.text().await.unwrap();
        assert_eq!(report.matches("MD5:").count(), 3, "round {round}: {report}");
        for e in expected {
            assert!(report.contains(e), "round {round}: {e} in {report}");
        }
    }
    for (i, etag) in etags.iter().enumerate() {
        let r = c.head(url(&format!("/sums/{i}"))).send().await.unwrap();
        assert_eq!(
            &r.headers()["etag"],
            etag.as_str(),
            "recording digests is no change"
        );
    }
    for dir in ["/sums/", "/feed/"] {
        let r = c.request(method("DELETE"), url(dir)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 204);
    }
    // A malformed time is refused, and so is one the SQL stores cannot keep (after April
    // 2262; a time after 9999 used to be stored, and every later GET or listing of the item
    // panicked formatting Last-Modified). The last second they keep is taken.
    for (mtime, status) in [
        ("soon", 400),
        ("300000000000", 400),
        ("9223372037", 400),
        ("9223372036", 201),
    ] {
        let r = c
            .put(url("/far.txt"))
            .header("X-OC-Mtime", mtime)
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "X-OC-Mtime: {mtime}");
    }
    let r = c.get(url("/far.txt")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers()["last-modified"],
        "Fri, 11 Apr 2262 23:47:16 GMT"
    );
    let r = c.delete(url("/far.txt")).send().await.unwrap();
    assert_eq!(
        r.status().as_u16(),
        204,
        "the quota figures below count without it"
    );

    // PROPPATCH of the times: rclone's DAV:lastmodified (seconds), getlastmodified and
    // Windows' Win32LastModifiedTime (HTTP dates), each answered 200.
    for (prop, shown) in [
        (
            "<d:lastmodified>1500000000</d:lastmodified>",
            "Fri, 14 Jul 2017 02:40:00 GMT",
        ),
        (
            "<d:getlastmodified>Mon, 01 Jan 2001 00:00:00 GMT</d:getlastmodified>",
            "Mon, 01 Jan 2001 00:00:00 GMT",
        ),
        (
            "<w:Win32LastModifiedTime xmlns:w=\"urn:schemas-microsoft-com:\">Tue, 02 Jan 2001 00:00:00 GMT</w:Win32LastModifiedTime>",
            "Tue, 02 Jan 2001 00:00:00 GMT",
        ),
    ] {
        let r = set_prop(&c, &url("/a.txt"), prop).await;
        assert_eq!(r.status().as_u16(), 207);
        let text = r.text().await.unwrap();
        assert!(text.contains("200 OK"), "{prop}: {text}");
        let props = propfind(&c, &url("/a.txt"), "<d:getlastmodified/>").await;
        assert!(props.contains(shown), "{prop}: {props}");
    }
    // A time the stores cannot keep is refused whichever way it comes.
    for prop in [
        "<d:lastmodified>300000000000</d:lastmodified>",
        "<d:getlastmodified>Fri, 31 Dec 9999 23:59:59 GMT</d:getlastmodified>",
    ] {
        let r = set_prop(&c, &url("/a.txt"), prop).await;
        assert_eq!(r.status().as_u16(), 400, "{prop}");
    }
    assert_eq!(
        get(&c, &url("/a.txt")).await,
        "hello",
        "times never touch content"
    );

    // OC-Checksum: a wrong one is refused and the old content stays; a right one passes.
    let r = c
        .put(url("/a.txt"))
        .header(
            "OC-Checksum",
            "SHA1:0000000000000000000000000000000000000000",
        )
        .body("corrupted in transit")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(get(&c, &url("/a.txt")).await, "hello");
    let r = c
        .put(url("/a.txt"))
        .header("OC-Checksum", "MD5:7815696ecbf1c96e6894b779456d330e")
        .body("asd")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let r = c
        .put(url("/b.txt"))
        .header("OC-Checksum", "ADLER32:01234567")
        .body("unknown algorithms are ignored")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);

    // Quota: what is used and left, and 507 with nothing written past it.
    let q = propfind(
        &c,
        &url("/"),
        "<d:quota-used-bytes/><d:quota-available-bytes/>",
    )
    .await;
    let used = 3 + "unknown algorithms are ignored".len() as u64;
    assert!(
        q.contains(&format!("<D:quota-used-bytes>{used}</D:quota-used-bytes>")),
        "{q}"
    );
    assert!(
        q.contains(&format!(
            "<D:quota-available-bytes>{}</D:quota-available-bytes>",
            QUOTA - used
        )),
        "{q}"
    );
    let r = c
        .put(url("/big.bin"))
        .body(vec![7u8; QUOTA as usize])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 507);
    assert!(r.text().await.unwrap().contains("quota-not-exceeded"));
    let r = c.get(url("/big.bin")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404, "nothing written");
    let r = c
        .request(method("COPY"), url("/b.txt"))
        .header("Destination", url("/c.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "a copy within the quota");
    let q2 = propfind(&c, &url("/"), "<d:quota-used-bytes/>").await;
    assert!(
        q2.contains(&format!(
            "<D:quota-used-bytes>{}</D:quota-used-bytes>",
            used + 30
        )),
        "{q2}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory() {
    check(&server("memory").base).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("s.db").display());
    check(&server(&store).base).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let url = cluster.create_database().await.expect("database");
    check(&server(&url).base).await;
}
