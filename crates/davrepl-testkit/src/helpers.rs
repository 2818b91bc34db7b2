//! Small helpers shared by the cases, public so backend tests can reuse them.

use bytes::Bytes;
use davrepl_store::{
    ByteStream, ChangesQuery, Condition, Depth, IfCondition, IfList, IfResource, IfTerm,
    ListOptions, Meta, PutOptions, ReplStore, ResourcePath, StoreError,
};
use futures_util::StreamExt;

/// Parses a path, panicking on a bad literal.
pub fn path(s: &str) -> ResourcePath {
    ResourcePath::parse(s).unwrap_or_else(|e| panic!("bad test path {s:?}: {e}"))
}

/// A one-chunk body stream.
pub fn body(data: impl Into<Bytes>) -> ByteStream {
    let b: Bytes = data.into();
    Box::pin(futures_util::stream::iter([Ok::<_, StoreError>(b)]))
}

/// PUT without condition; panics on failure.
pub async fn put<S: ReplStore>(store: &S, p: &str, data: &str) -> Meta {
    store
        .put(&path(p), body(data.to_owned()), PutOptions::default())
        .await
        .unwrap_or_else(|e| panic!("put {p}: {e}"))
        .meta
}

/// MKCOL without condition; panics on failure.
pub async fn mkcol<S: ReplStore>(store: &S, p: &str) -> Meta {
    store
        .create_collection(&path(p), Default::default())
        .await
        .unwrap_or_else(|e| panic!("mkcol {p}: {e}"))
        .meta
}

/// Reads a whole item as a string.
pub async fn read_string<S: ReplStore>(store: &S, p: &str) -> String {
    let (_, mut stream) = store
        .read(&path(p), Default::default())
        .await
        .unwrap_or_else(|e| panic!("read {p}: {e}"));
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect("content chunk"));
    }
    String::from_utf8(out).expect("utf-8 content")
}

/// A condition with one untagged list holding one token.
pub fn if_token(token: &str) -> Condition {
    if_lists(vec![vec![(false, IfTerm::Token(token.to_owned()))]])
}

/// A condition with one list tagged with `p`, holding one token.
pub fn if_lists_on(p: &str, token: &str) -> Condition {
    let mut c = if_token(token);
    c.if_lists[0].resource = IfResource::Path(path(p));
    c
}

/// A condition from untagged lists of (negated, term).
pub fn if_lists(lists: Vec<Vec<(bool, IfTerm)>>) -> Condition {
    let mut c = Condition::none();
    c.if_lists = lists
        .into_iter()
        .map(|l| IfList {
            resource: IfResource::Target,
            conditions: l
                .into_iter()
                .map(|(negated, term)| IfCondition { negated, term })
                .collect(),
        })
        .collect();
    c
}

/// Every change below `scope` (deep) since `since`, following pages.
pub async fn all_changes<S: ReplStore>(
    store: &S,
    scope: &str,
    since: u64,
) -> (Vec<davrepl_store::Change>, u64) {
    let mut out = Vec::new();
    let mut since = since;
    loop {
        let page = store
            .changes(ChangesQuery::new(path(scope), Depth::Infinity, since, 1000))
            .await
            .expect("changes");
        out.extend(page.changes);
        since = page.watermark;
        if !page.more {
            return (out, since);
        }
    }
}

/// Every resource below `scope`, in path order.
pub async fn list_all<S: ReplStore>(store: &S, scope: &str, depth: Depth) -> Vec<Meta> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list(&path(scope), ListOptions::new(depth, 100).after(after))
            .await
            .expect("list");
        out.extend(page.entries.into_iter().map(|e| e.meta));
        match page.next {
            Some(n) => after = Some(n),
            None => return out,
        }
    }
}
