//! Live changes: `GET` on a collection with `Accept: text/event-stream` streams Server-Sent
//! Events, one per change in scope, in log order — another cursor into the same change log.
//!
//! Every event's `id:` is a signed cursor (a collblob of kind [`BlobKind::Events`] bound to the
//! store, the principal, the collection and the depth); `Last-Event-ID` (or `?cursor=`) resumes
//! exactly after that event. A cursor that is foreign, forged, below the log's low-water mark
//! or from the store's future gets `event: reset` and the stream ends: the client syncs again
//! with a manifest. Between changes the stream waits on the store's change signal (which only
//! wakes it; it always re-reads the log), sending a comment line as heartbeat.

use crate::handlers::names;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use davrepl_proto::collblob::{self, BlobKind, CollBlob};
use davrepl_proto::headers::Depth;
use davrepl_store::{
    self as store, Change, ChangeKind, ChangeSignal, ChangesQuery, Meta, ReplStore, ResourcePath,
    Seq,
};
use futures_util::StreamExt;
use futures_util::future::{Either, select};
use http::{HeaderValue, Response, StatusCode, header};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};

use super::Ctx;
use super::log::PAGE;
use crate::BoxError;
use crate::body::DavBody;
use crate::config::{Access, Principal, Shared, StreamPermit};
use crate::error::{DavError, DavResult};

/// How often a stream looks at the log when the store gives no change signal.
const POLL: Duration = Duration::from_secs(1);

/// Whether the request asks for an event stream.
pub(crate) fn wanted<S: ReplStore>(ctx: &Ctx<S>) -> bool {
    ctx.parts
        .headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|m| m.split(';').next().unwrap_or("").trim() == "text/event-stream")
        })
}

/// Issues and checks the cursors of one stream.
struct Cursors {
    store: [u8; 16],
    principal: [u8; 32],
    secret: [u8; 32],
    scope_rid: [u8; 22],
    binding: [u8; 32],
}

impl Cursors {
    fn issue(&self, at: Seq) -> String {
        let issued = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        CollBlob {
            store: self.store,
            kind: BlobKind::Events,
            scope_rid: self.scope_rid,
            binding: self.binding,
            principal: self.principal,
            watermark: at,
            issued,
            query: String::new(),
            seen: Vec::new(),
        }
        .encode(&self.secret)
    }

    /// The log position of a client's cursor, or why it cannot be used.
    fn check(&self, text: &str) -> Result<Seq, &'static str> {
        let blob =
            CollBlob::decode(text, &self.secret).map_err(|_| "the cursor is not one of ours")?;
        if blob.store != self.store || blob.kind != BlobKind::Events {
            return Err("the cursor was issued by another store or for another request");
        }
        if blob.principal != self.principal {
            return Err("the cursor was issued to another user");
        }
        if blob.binding != self.binding || blob.scope_rid != self.scope_rid {
            return Err("the cursor was issued for another collection or depth");
        }
        Ok(blob.watermark)
    }
}

/// `GET` with `Accept: text/event-stream` on the collection `coll`.
pub(crate) async fn stream<S: ReplStore>(
    ctx: &Ctx<S>,
    coll: &Meta,
) -> DavResult<Response<DavBody>> {
    let depth = match ctx.head.depth {
        None | Some(Depth::One) => store::Depth::One,
        Some(Depth::Infinity) => store::Depth::Infinity,
        Some(_) => {
            return Err(DavError::bad_request(
                "an event stream takes Depth 1 (the default) or infinity",
            ));
        }
    };
    let limits = &ctx.shared.config.limits;
    let principal = ctx.parts.extensions.get::<Principal>().cloned();
    let permit = ctx
        .shared
        .config
        .streams
        .admit(principal.as_ref().map(|p| p.0.clone()), limits)
        .ok_or_else(|| {
            DavError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many event streams are open; close one or retry later",
            )
        })?;
    let secret = ctx.store().secret().await?;
    let cursors = Cursors {
        store: ctx.store().store_id().0,
        principal: ctx.principal_hash(&secret),
        secret,
        scope_rid: coll.rid.0,
        binding: collblob::digest(
            format!(
                "EVENTS {} {}",
                if depth == store::Depth::One {
                    "1"
                } else {
                    "infinity"
                },
                coll.path
            )
            .as_bytes(),
        ),
    };
    let watermark = ctx.store().watermark().await?;
    let given = match ctx.header(&names::LAST_EVENT_ID)? {
        Some(v) => Some(v.to_owned()),
        None => query_cursor(ctx.parts.uri.query()),
    };
    let start = match given {
        None => Ok(watermark),
        Some(text) => cursors.check(&text).and_then(|at| {
            if at > watermark {
                Err("the cursor is from the store's future (a restored store?)")
            } else {
                Ok(at)
            }
        }),
    };
    let feed = Feed {
        shared: ctx.shared.clone(),
        principal,
        scope: coll.path.clone(),
        depth,
        since: 0,
        pending: VecDeque::new(),
        signal: ctx.store().change_signal(),
        cursors,
        heartbeat: limits.event_heartbeat.max(Duration::from_millis(10)),
        state: State::Starting,
        _permit: permit,
    };
    let feed = match start {
        Ok(at) => Feed { since: at, ..feed },
        Err(why) => Feed {
            state: State::Reset(why),
            ..feed
        },
    };
    let events = futures_util::stream::unfold(feed, |mut f| async move {
        let chunk = f.next().await?;
        Some((Ok::<_, BoxError>(Frame::data(chunk)), f))
    });
    let mut resp = Response::new(StreamBody::new(events.boxed()).boxed_unsync());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(resp)
}

/// `cursor=` in a query string (percent-decoded; a `+` stays a `+`, as base64 has it).
fn query_cursor(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .find_map(|kv| unpercent(kv.strip_prefix("cursor=")?))
}

fn unpercent(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

enum State {
    /// The first chunk announces where the stream starts.
    Starting,
    Running,
    /// The client's cursor cannot be used: one `reset` event, then the end.
    Reset(&'static str),
    Done,
}

/// One open stream.
struct Feed<S> {
    shared: Arc<Shared<S>>,
    principal: Option<Principal>,
    scope: ResourcePath,
    depth: store::Depth,
    /// Every change in scope up to here has been sent (or was not the client's to see).
    since: Seq,
    pending: VecDeque<Change>,
    signal: Option<ChangeSignal>,
    cursors: Cursors,
    heartbeat: Duration,
    state: State,
    _permit: StreamPermit,
}

impl<S: ReplStore> Feed<S> {
    /// The next chunk of the body, `None` at the end.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            match self.state {
                State::Done => return None,
                State::Reset(why) => {
                    self.state = State::Done;
                    return Some(reset(why));
                }
                State::Starting => {
                    // The first page decides whether the cursor can be served at all.
                    if let Err(end) = self.fetch().await {
                        return end;
                    }
                    self.state = State::Running;
                    let id = self.cursors.issue(self.since);
                    let data = format!("{{\"watermark\":{}}}", self.since);
                    return Some(event(&id, "ready", &data));
                }
                State::Running => {}
            }
            while let Some(c) = self.pending.pop_front() {
                if c.seq <= self.since {
                    continue;
                }
                self.since = c.seq;
                if let Some(e) = self.render(&c) {
                    return Some(e);
                }
            }
            let generation = self.signal.as_ref().map(ChangeSignal::generation);
            match self.fetch().await {
                Err(end) => return end,
                Ok(true) => continue,
                Ok(false) => {}
            }
            let wait = async {
                match (&self.signal, generation) {
                    (Some(s), Some(g)) => s.changed_within(g, self.scope.clone()).await,
                    _ => tokio::time::sleep(POLL.min(self.heartbeat)).await,
                }
            };
            let beat = tokio::time::sleep(self.heartbeat);
            if let Either::Right(_) = select(Box::pin(wait), Box::pin(beat)).await {
                return Some(Bytes::from_static(b": heartbeat\n\n"));
            }
        }
    }

    /// Reads the next page of the log into `pending`: `Ok(true)` when it found changes,
    /// `Ok(false)` when there are none yet, `Err` with the stream's last chunk when it ends.
    async fn fetch(&mut self) -> Result<bool, Option<Bytes>> {
        let mut q = ChangesQuery::new(self.scope.clone(), self.depth, self.since, PAGE);
        q.include_removed = true;
        let page = match self.shared.store.changes(q).await {
            Ok(p) => p,
            Err(e) => {
                // The client reconnects with its last id and misses nothing.
                tracing::warn!(error = %e, "an event stream could not read the log");
                self.state = State::Done;
                return Err(None);
            }
        };
        if self.since < page.low_water {
            self.state = State::Done;
            return Err(Some(reset(
                "changes after the cursor were purged from the log; sync again",
            )));
        }
        if page.changes.is_empty() {
            self.since = self.since.max(page.watermark);
            return Ok(false);
        }
        self.pending.extend(page.changes);
        Ok(true)
    }

    /// The event of one change, if the principal may see its path.
    fn render(&self, c: &Change) -> Option<Bytes> {
        let path = c.path();
        let allowed = self
            .shared
            .config
            .authorizer
            .as_ref()
            .is_none_or(|auth| auth(self.principal.as_ref(), Access::Read, path));
        if !allowed {
            return None;
        }
        let id = self.cursors.issue(c.seq);
        let mount = &self.shared.config.mount;
        Some(match &c.kind {
            ChangeKind::Upsert(m) => {
                let mut data = String::with_capacity(256);
                data.push_str("{\"href\":");
                json_string(&mut data, &mount.href(&m.path, m.is_collection()));
                data.push_str(",\"repl-uid\":");
                json_string(&mut data, &m.repl_uid());
                data.push_str(",\"resourcetag\":");
                json_string(&mut data, &m.resource_tag());
                data.push_str(",\"etag\":");
                json_string(&mut data, &m.etag());
                data.push_str(if m.is_collection() {
                    ",\"collection\":true}"
                } else {
                    ",\"collection\":false}"
                });
                event(&id, "change", &data)
            }
            ChangeKind::Removed { rid, path, kind } => {
                let coll = *kind == store::ResourceKind::Collection;
                let mut data = String::with_capacity(128);
                data.push_str("{\"href\":");
                json_string(&mut data, &mount.href(path, coll));
                data.push_str(",\"repl-uid\":");
                json_string(&mut data, &rid.to_string());
                data.push('}');
                event(&id, "delete", &data)
            }
        })
    }
}

fn event(id: &str, kind: &str, data: &str) -> Bytes {
    Bytes::from(format!("id: {id}\nevent: {kind}\ndata: {data}\n\n"))
}

fn reset(why: &str) -> Bytes {
    let mut data = String::from("{\"reason\":");
    json_string(&mut data, why);
    data.push('}');
    Bytes::from(format!("event: reset\ndata: {data}\n\n"))
}

/// Appends `s` as a JSON string literal.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        let mut s = String::new();
        json_string(&mut s, "a\"b\\c\nd");
        assert_eq!(s, "\"a\\\"b\\\\c\\u000ad\"");
    }

    #[test]
    fn cursor_from_the_query() {
        assert_eq!(query_cursor(Some("x=1&cursor=ab%2Bc")), Some("ab+c".into()));
        assert_eq!(query_cursor(Some("x=1")), None);
        assert_eq!(query_cursor(None), None);
    }
}
