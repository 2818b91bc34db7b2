//! An existing axum application (JSON routes and a health check) gaining a replicated `/dav`
//! namespace behind Basic authentication. See README.md.

#![allow(clippy::print_stdout)]

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use davrepl::{Access, MemStore, ReplLayer};
use tower::Layer;
use tower_http::auth::AsyncRequireAuthorizationLayer;

#[derive(Clone, Default)]
struct AppState {
    notes: Arc<Mutex<Vec<String>>>,
}

async fn list_notes(State(s): State<AppState>) -> Json<Vec<String>> {
    Json(s.notes.lock().unwrap_or_else(|e| e.into_inner()).clone())
}

async fn add_note(State(s): State<AppState>, Json(note): Json<String>) -> Json<usize> {
    let mut notes = s.notes.lock().unwrap_or_else(|e| e.into_inner());
    notes.push(note);
    Json(notes.len())
}

/// Users may write only in their own home collection; everyone may read. Creating `/users`
/// itself is a single-resource write anyone may make; anything recursive that reaches above a
/// home (`DELETE /dav/users/`, a MOVE or COPY onto it) would touch other users' homes and is
/// refused.
fn home_only(
    principal: Option<&davrepl::Principal>,
    access: Access,
    path: &davrepl::ResourcePath,
) -> bool {
    if !access.is_write() {
        return true;
    }
    let Some(user) = principal else { return false };
    let segs: Vec<&str> = path.segments().collect();
    let in_own_home = matches!(segs.as_slice(), ["users", name, ..] if *name == user.0);
    in_own_home || (access == Access::Write && segs == ["users"])
}

fn app() -> Router {
    let api = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/api/notes", get(list_notes).post(add_note))
        .with_state(AppState::default());
    let users = [
        ("alice".to_owned(), "alice-pw".to_owned()),
        ("bob".to_owned(), "bob-pw".to_owned()),
    ];
    let dav = davrepl_axum::nested("/dav", ReplLayer::new(MemStore::new()).authorize(home_only));
    let dav = AsyncRequireAuthorizationLayer::new(davrepl_auth::BasicAuth::new(users)).layer(dav);
    // Slow and abusive clients are the host server's job: cap request time and body size for
    // the whole application (davrepl itself never buffers an unbounded body).
    api.nest_service("/dav", dav)
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            std::time::Duration::from_secs(60),
        ))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            64 * 1024 * 1024,
        ))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}/", listener.local_addr()?);
    axum::serve(listener, app()).await
}
