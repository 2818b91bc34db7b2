//! Serves `NotesStore` over WebDAV and the notes map as JSON at `/api/notes`.

#![allow(clippy::print_stdout)]

use bytes::Bytes;
use davrepl::ReplLayer;
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

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3001".into());
    let store = NotesStore::new();
    let view = store.clone();
    // The application's own route: the notes map as JSON.
    let api = tower::service_fn(move |_req: http::Request<davrepl_hyper::Incoming>| {
        let notes = view.notes();
        async move {
            let body: Vec<String> = notes
                .iter()
                .map(|(k, v)| format!("{}:{}", json_string(k), json_string(v)))
                .collect();
            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(format!(
                "{{{}}}",
                body.join(",")
            )))))
        }
    });
    let svc = ReplLayer::new(store).mount("/notes").service(api);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}/", listener.local_addr()?);
    davrepl_hyper::serve(listener, svc, std::future::pending()).await
}
