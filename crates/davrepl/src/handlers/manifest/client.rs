//! Client state: what a collblob and `resourcetaglist` say the client has seen, and the
//! collblob a response hands back.

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use davrepl_proto::collblob::{BlobKind, CollBlob};
use davrepl_proto::xml::ReplRequest;
use davrepl_store::{self as store, ReplStore, ReplUid, ResourcePath, Seq, tags};
use http::request::Parts;
use http::{StatusCode, header};

use super::*;
use crate::error::{DavError, DavResult};
use crate::handlers::Ctx;

pub(super) fn invalid_collblob(why: &str) -> DavError {
    DavError::new(
        StatusCode::from_u16(475).unwrap_or(StatusCode::BAD_REQUEST),
        format!("Invalid collblob: {why}"),
    )
}

/// What the client has seen, from its collblob and `resourcetaglist`.
pub(super) struct ClientState {
    pub(super) first_sync: bool,
    pub(super) watermark: Seq,
    pub(super) seen: HashSet<(u64, u64)>,
    pub(super) acks: HashSet<(u64, u64)>,
}

impl ClientState {
    pub(super) fn new(store: store::StoreId, blob: Option<&CollBlob>, repl: &ReplRequest) -> Self {
        Self {
            first_sync: blob.is_none(),
            watermark: blob.map_or(0, |b| b.watermark),
            seen: blob
                .map(|b| b.seen.iter().copied().collect())
                .unwrap_or_default(),
            acks: ack_keys(store, &repl.resource_tags),
        }
    }

    /// A plan over `scope` for this client.
    pub(super) fn plan(
        self,
        scope: ResourcePath,
        depth: store::Depth,
        include_scope: bool,
        collections_only: bool,
        filter: Filter,
        needs_props: bool,
    ) -> Plan {
        Plan {
            scope,
            depth,
            include_scope,
            collections_only,
            filter,
            needs_props,
            checksums: false,
            first_sync: self.first_sync,
            watermark: self.watermark,
            seen: self.seen,
            acks: self.acks,
        }
    }
}

/// Everything needed to issue a collblob.
pub(super) struct BlobBase {
    pub(super) store: [u8; 16],
    pub(super) kind: BlobKind,
    pub(super) scope_rid: [u8; 22],
    pub(super) binding: [u8; 32],
    pub(super) principal: [u8; 32],
    pub(super) query: String,
    pub(super) secret: [u8; 32],
}

impl BlobBase {
    pub(super) fn new<S: ReplStore>(
        ctx: &Ctx<S>,
        kind: BlobKind,
        scope_rid: ReplUid,
        binding: [u8; 32],
        query: String,
        secret: [u8; 32],
    ) -> Self {
        Self {
            store: ctx.store().store_id().0,
            kind,
            scope_rid: scope_rid.0,
            binding,
            principal: ctx.principal_hash(&secret),
            query,
            secret,
        }
    }

    pub(super) fn issue(&self, watermark: Seq, seen: Vec<(u64, u64)>) -> String {
        let issued = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        CollBlob {
            store: self.store,
            kind: self.kind,
            scope_rid: self.scope_rid,
            binding: self.binding,
            principal: self.principal,
            watermark,
            issued,
            query: self.query.clone(),
            seen,
        }
        .encode(&self.secret)
    }
}

pub(super) fn origin(parts: &Parts) -> String {
    let scheme = parts.uri.scheme_str().unwrap_or("http");
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".into());
    format!("{scheme}://{host}")
}

/// Decodes and checks the client's collblob against everything it is bound to.
pub(super) fn check_blob<S: ReplStore>(
    ctx: &Ctx<S>,
    text: &str,
    secret: &[u8; 32],
    kind: BlobKind,
) -> DavResult<CollBlob> {
    let blob = CollBlob::decode(text, secret).map_err(|e| invalid_collblob(&e.to_string()))?;
    if blob.store != ctx.store().store_id().0 {
        return Err(invalid_collblob("issued by another store"));
    }
    if blob.kind != kind {
        return Err(invalid_collblob("issued for another kind of request"));
    }
    if blob.principal != ctx.principal_hash(secret) {
        return Err(invalid_collblob("issued to another user"));
    }
    Ok(blob)
}

/// Splits the client's acknowledged resourcetags into (repl-uid counter, version) keys of this
/// store; foreign or malformed tags are ignored (spec §2.5).
pub(super) fn ack_keys(store_id: store::StoreId, tags_in: &[String]) -> HashSet<(u64, u64)> {
    tags_in
        .iter()
        .filter_map(|t| tags::parse_resource_tag(t))
        .filter(|(rid, store, _)| *store == store_id && rid.0[..16] == store_id.0)
        .map(|(rid, _, v)| (rid.counter(), v))
        .collect()
}
