//! Serves `NotesStore` over WebDAV under `/notes/` and the notes (the top-level items, name →
//! text) as JSON at `/api/notes`, read through the store like any other client would.
//!
//! ```text
//! example-custom-store [ADDR] [DIR]
//! ```

#![allow(clippy::print_stdout)]

use bytes::Bytes;
use davrepl::{ReplLayer, ReplStore, ResourcePath};
use davrepl_store::{Depth, ListOptions};
use example_custom_store::NotesStore;
use http_body_util::Full;

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `"name":"text"` for every top-level item.
async fn notes(store: &NotesStore) -> Result<Vec<String>, davrepl::StoreError> {
    let top = ListOptions::new(Depth::One, 1000);
    let mut out = Vec::new();
    for entry in store.list(&ResourcePath::root(), top).await?.entries {
        if entry.meta.is_collection() {
            continue;
        }
        let (_, mut content) = store.read(&entry.meta.path, Default::default()).await?;
        let mut text = Vec::new();
        while let Some(piece) = futures_util::StreamExt::next(&mut content).await {
            text.extend_from_slice(&piece?);
        }
        let text = String::from_utf8_lossy(&text);
        out.push(format!(
            "{}:{}",
            json_string(entry.meta.path.name()),
            json_string(&text)
        ));
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3001".into());
    let dir = std::env::args().nth(2).map_or_else(
        || std::env::temp_dir().join(format!("davrepl-notes-{}", std::process::id())),
        Into::into,
    );
    let store = NotesStore::new(dir)?;
    let view = store.clone();
    // The application's own route: the notes as JSON.
    let api = tower::service_fn(move |_req: http::Request<davrepl_hyper::Incoming>| {
        let view = view.clone();
        async move {
            let body = match notes(&view).await {
                Ok(notes) => notes.join(","),
                Err(e) => format!("\"error\":{}", json_string(&e.to_string())),
            };
            let body = Full::new(Bytes::from(format!("{{{body}}}")));
            Ok::<_, std::convert::Infallible>(http::Response::new(body))
        }
    });
    let svc = ReplLayer::new(store).mount("/notes").service(api);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}/", listener.local_addr()?);
    davrepl_hyper::serve(listener, svc, std::future::pending()).await
}
