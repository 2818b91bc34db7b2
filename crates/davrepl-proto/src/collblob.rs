//! The collblob: a stateless, signed record of what a client has seen (design.md §4).
//!
//! Wire form: standard base64 (no line breaks) of
//! `version(1) | store id(16) | kind(1) | scope repl-uid(22) | binding hash(32) |
//! principal hash(32) | watermark(8) | issued-at(8) | query length(4) | query |
//! seen count(4) | seen × (repl-uid counter(6) + version(6)) | HMAC-SHA256(32)`.
//!
//! The HMAC key is the store's secret, so every node sharing a store accepts a collblob and it
//! survives restarts; any change to any byte makes it invalid (`475 Invalid collblob`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const VERSION: u8 = 1;
const FIXED: usize = 1 + 16 + 1 + 22 + 32 + 32 + 8 + 8 + 4 + 4 + 32;

/// Largest collblob text accepted, in bytes.
pub const MAX_TEXT: usize = 256 * 1024;

/// Which request kind issued the collblob; a collblob of one kind is refused by the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKind {
    /// A SEARCH manifest.
    Search,
    /// A PROPFIND manifest.
    Propfind,
    /// An RFC 6578 sync token (`sync-collection` REPORT or the `DAV:sync-token` property).
    Sync,
    /// An event-stream cursor (the `id:` of a Server-Sent Event).
    Events,
}

/// The decoded content of a collblob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollBlob {
    /// Store identity.
    pub store: [u8; 16],
    /// Issuing request kind.
    pub kind: BlobKind,
    /// repl-uid of the scope collection (detects delete + re-create).
    pub scope_rid: [u8; 22],
    /// SHA-256 of the normalised query binding (scope, traversal, `WHERE`).
    pub binding: [u8; 32],
    /// SHA-256 of the principal's name (all zeros for anonymous).
    pub principal: [u8; 32],
    /// Every change with a sequence number up to this has been seen.
    pub watermark: u64,
    /// Unix seconds when issued.
    pub issued: u64,
    /// The full query text, reused when a request omits `sql` (empty for PROPFIND).
    pub query: String,
    /// (repl-uid counter, version) pairs seen beyond the watermark, sorted.
    pub seen: Vec<(u64, u64)>,
}

/// Why a collblob was refused. Every variant means `475 Invalid collblob`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CollBlobError {
    /// Not base64, too short, or fields out of place.
    #[error("collblob is garbled")]
    Garbled,
    /// The signature does not match (tampered, or from another store).
    #[error("collblob signature does not match")]
    BadSignature,
    /// An unknown format version.
    #[error("collblob has an unknown version")]
    Version,
}

/// SHA-256 of `data`.
pub fn digest(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// The principal hash bound into collblobs: keyed with the store's secret, so a collblob (which
/// a client may log or share) does not let anyone confirm a guessed user name offline.
pub fn principal_hash(secret: &[u8], principal: Option<&str>) -> [u8; 32] {
    principal.map_or([0u8; 32], |p| {
        let mut m = mac(secret);
        m.update(b"principal:");
        m.update(p.as_bytes());
        m.finalize().into_bytes().into()
    })
}

fn put48(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes()[2..]);
}

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length.
    <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length")
}

impl CollBlob {
    /// Encodes and signs with `secret`.
    pub fn encode(&self, secret: &[u8]) -> String {
        let mut out = Vec::with_capacity(FIXED + self.query.len() + self.seen.len() * 12);
        out.push(VERSION);
        out.extend_from_slice(&self.store);
        out.push(match self.kind {
            BlobKind::Search => 0,
            BlobKind::Propfind => 1,
            BlobKind::Sync => 2,
            BlobKind::Events => 3,
        });
        out.extend_from_slice(&self.scope_rid);
        out.extend_from_slice(&self.binding);
        out.extend_from_slice(&self.principal);
        out.extend_from_slice(&self.watermark.to_be_bytes());
        out.extend_from_slice(&self.issued.to_be_bytes());
        out.extend_from_slice(&(self.query.len() as u32).to_be_bytes());
        out.extend_from_slice(self.query.as_bytes());
        out.extend_from_slice(&(self.seen.len() as u32).to_be_bytes());
        for (rid, version) in &self.seen {
            put48(&mut out, *rid);
            put48(&mut out, *version);
        }
        let mut m = mac(secret);
        m.update(&out);
        out.extend_from_slice(&m.finalize().into_bytes());
        STANDARD.encode(out)
    }

    /// Decodes and verifies with `secret`. Surrounding whitespace is ignored.
    pub fn decode(text: &str, secret: &[u8]) -> Result<Self, CollBlobError> {
        let text = text.trim();
        if text.len() > MAX_TEXT {
            return Err(CollBlobError::Garbled);
        }
        let raw = STANDARD.decode(text).map_err(|_| CollBlobError::Garbled)?;
        if raw.len() < FIXED {
            return Err(CollBlobError::Garbled);
        }
        let (body, sig) = raw.split_at(raw.len() - 32);
        let mut m = mac(secret);
        m.update(body);
        m.verify_slice(sig)
            .map_err(|_| CollBlobError::BadSignature)?;
        let mut r = Reader { b: body, i: 0 };
        if r.take(1)?[0] != VERSION {
            return Err(CollBlobError::Version);
        }
        let store = r.array::<16>()?;
        let kind = match r.take(1)?[0] {
            0 => BlobKind::Search,
            1 => BlobKind::Propfind,
            2 => BlobKind::Sync,
            3 => BlobKind::Events,
            _ => return Err(CollBlobError::Garbled),
        };
        let scope_rid = r.array::<22>()?;
        let binding = r.array::<32>()?;
        let principal = r.array::<32>()?;
        let watermark = u64::from_be_bytes(r.array::<8>()?);
        let issued = u64::from_be_bytes(r.array::<8>()?);
        let qlen = u32::from_be_bytes(r.array::<4>()?) as usize;
        let query =
            String::from_utf8(r.take(qlen)?.to_vec()).map_err(|_| CollBlobError::Garbled)?;
        let n = u32::from_be_bytes(r.array::<4>()?) as usize;
        if n.checked_mul(12) != Some(body.len() - r.i) {
            return Err(CollBlobError::Garbled);
        }
        let mut seen = Vec::with_capacity(n);
        for _ in 0..n {
            seen.push((r.u48()?, r.u48()?));
        }
        Ok(Self {
            store,
            kind,
            scope_rid,
            binding,
            principal,
            watermark,
            issued,
            query,
            seen,
        })
    }
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], CollBlobError> {
        let end = self.i.checked_add(n).ok_or(CollBlobError::Garbled)?;
        let s = self.b.get(self.i..end).ok_or(CollBlobError::Garbled)?;
        self.i = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CollBlobError> {
        self.take(N)?.try_into().map_err(|_| CollBlobError::Garbled)
    }

    fn u48(&mut self) -> Result<u64, CollBlobError> {
        let mut b = [0u8; 8];
        b[2..].copy_from_slice(self.take(6)?);
        Ok(u64::from_be_bytes(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> CollBlob {
        CollBlob {
            store: [1; 16],
            kind: BlobKind::Search,
            scope_rid: [2; 22],
            binding: digest(b"SHALLOW /x"),
            principal: principal_hash(b"k", Some("alice")),
            watermark: 42,
            issued: 1_700_000_000,
            query: "SELECT \"DAV:displayname\" FROM \"/x\"".into(),
            seen: vec![(3, 50), (9, 51)],
        }
    }

    #[test]
    fn round_trip_and_refusals() {
        let key = [7u8; 32];
        let text = sample().encode(&key);
        assert!(!text.contains(['\n', '<', '&', ' ']));
        assert_eq!(CollBlob::decode(&format!("  {text}\n"), &key), Ok(sample()));
        assert_eq!(
            CollBlob::decode(&text, &[8u8; 32]),
            Err(CollBlobError::BadSignature)
        );
        assert_eq!(
            CollBlob::decode("not base64!", &key),
            Err(CollBlobError::Garbled)
        );
        assert_eq!(CollBlob::decode("", &key), Err(CollBlobError::Garbled));
        assert_ne!(
            principal_hash(b"k", Some("a")),
            principal_hash(b"k", Some("b"))
        );
        assert_ne!(
            principal_hash(b"k", Some("a")),
            principal_hash(b"other store", Some("a")),
            "keyed per store"
        );
        assert_ne!(principal_hash(b"k", Some("a")), digest(b"principal:a"));
        assert_eq!(principal_hash(b"k", None), [0; 32]);
    }

    proptest! {
        #[test]
        fn any_blob_round_trips(watermark in 0u64..(1 << 48), query in ".{0,200}",
                                seen in proptest::collection::vec((0u64..(1 << 48), 0u64..(1 << 48)), 0..50),
                                kind in prop_oneof![Just(BlobKind::Search), Just(BlobKind::Propfind), Just(BlobKind::Sync), Just(BlobKind::Events)]) {
            let key = [3u8; 32];
            let blob = CollBlob { watermark, query, seen, kind, ..sample() };
            prop_assert_eq!(CollBlob::decode(&blob.encode(&key), &key), Ok(blob));
        }

        #[test]
        fn any_single_byte_change_is_refused(pos in 0usize..400, delta in 1u8..=255) {
            let key = [5u8; 32];
            let text = sample().encode(&key);
            let mut raw = STANDARD.decode(&text).unwrap();
            let pos = pos % raw.len();
            raw[pos] = raw[pos].wrapping_add(delta);
            prop_assert!(CollBlob::decode(&STANDARD.encode(&raw), &key).is_err());
        }
    }
}
