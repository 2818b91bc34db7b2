//! Content digests, computed while an upload streams in or later from the stored content, and
//! the checksums clients send.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::error::StoreError;
use crate::types::ByteStream;

/// A digest algorithm the store knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// SHA-1.
    Sha1,
    /// MD5.
    Md5,
    /// SHA-256.
    Sha256,
}

/// What is known of the digests of one item's content: SHA-1 and MD5 (what ownCloud-style
/// clients such as rclone compare) and SHA-256 (what davrepl's sync client compares).
///
/// A PUT computes only the digest its request names a checksum for (`OC-Checksum`), so an
/// upload nobody asks digests of is not hashed at all; [`ReplStore::digests`](crate::ReplStore::digests)
/// computes the others from the stored content the first time they are asked for and records
/// them with the item.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Digests {
    /// SHA-1, if known.
    pub sha1: Option<[u8; 20]>,
    /// MD5, if known.
    pub md5: Option<[u8; 16]>,
    /// SHA-256, if known.
    pub sha256: Option<[u8; 32]>,
}

impl std::fmt::Debug for Digests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut t = f.debug_tuple("Digests");
        if let Some(d) = &self.sha1 {
            t.field(&format_args!("sha1:{}", hex(d)));
        }
        if self.md5.is_some() {
            t.field(&format_args!("md5"));
        }
        if self.sha256.is_some() {
            t.field(&format_args!("sha256"));
        }
        t.finish()
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Copies the next `N` bytes of `b` from `*at` on, moving `*at` past them.
fn take<const N: usize>(b: &[u8], at: &mut usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[*at..*at + N]);
    *at += N;
    out
}

impl Digests {
    /// The stored form of all three digests: their concatenation (68 bytes).
    pub const LEN: usize = 20 + 16 + 32;

    /// All three digests of `data`.
    pub fn of(data: &[u8]) -> Self {
        let mut h = Hasher::all();
        h.update(data);
        h.finish()
    }

    /// Whether all three are known.
    pub fn is_complete(&self) -> bool {
        self.sha1.is_some() && self.md5.is_some() && self.sha256.is_some()
    }

    /// Whether none is known.
    pub fn is_empty(&self) -> bool {
        self.sha1.is_none() && self.md5.is_none() && self.sha256.is_none()
    }

    /// These digests, `None` when none is known.
    pub fn known(self) -> Option<Self> {
        (!self.is_empty()).then_some(self)
    }

    /// These digests, with those unknown here taken from `other` (digests of the same
    /// content).
    #[must_use]
    pub fn or(self, other: Self) -> Self {
        Self {
            sha1: self.sha1.or(other.sha1),
            md5: self.md5.or(other.md5),
            sha256: self.sha256.or(other.sha256),
        }
    }

    /// The stored form: the known digests concatenated in the order SHA-1, MD5, SHA-256. The
    /// lengths of the seven possible sets differ (16, 20, 32, 36, 48, 52, 68), so the length
    /// tells which are there.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::LEN);
        out.extend_from_slice(self.sha1.as_ref().map_or(&[][..], |d| &d[..]));
        out.extend_from_slice(self.md5.as_ref().map_or(&[][..], |d| &d[..]));
        out.extend_from_slice(self.sha256.as_ref().map_or(&[][..], |d| &d[..]));
        out
    }

    /// From the stored form ([`to_bytes`](Self::to_bytes)); `None` when its length is not
    /// one of a set of digests.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let (sha1, md5, sha256) = match b.len() {
            0 => (false, false, false),
            20 => (true, false, false),
            16 => (false, true, false),
            32 => (false, false, true),
            36 => (true, true, false),
            52 => (true, false, true),
            48 => (false, true, true),
            Self::LEN => (true, true, true),
            _ => return None,
        };
        let mut at = 0;
        Some(Self {
            sha1: sha1.then(|| take::<20>(b, &mut at)),
            md5: md5.then(|| take::<16>(b, &mut at)),
            sha256: sha256.then(|| take::<32>(b, &mut at)),
        })
    }
}

/// Hashers for some of the three digests, fed chunk by chunk.
#[derive(Clone)]
pub(crate) struct Hasher {
    sha1: Option<Sha1>,
    md5: Option<Md5>,
    sha256: Option<Sha256>,
}

impl Hasher {
    /// Hashers for all three.
    pub(crate) fn all() -> Self {
        Self {
            sha1: Some(Sha1::default()),
            md5: Some(Md5::default()),
            sha256: Some(Sha256::default()),
        }
    }

    /// Hashers for those of the three `have` lacks.
    pub(crate) fn missing(have: &Digests) -> Self {
        Self {
            sha1: have.sha1.is_none().then(Sha1::default),
            md5: have.md5.is_none().then(Md5::default),
            sha256: have.sha256.is_none().then(Sha256::default),
        }
    }

    /// A hasher for `algorithm` alone.
    pub(crate) fn only(algorithm: Algorithm) -> Self {
        Self {
            sha1: (algorithm == Algorithm::Sha1).then(Sha1::default),
            md5: (algorithm == Algorithm::Md5).then(Md5::default),
            sha256: (algorithm == Algorithm::Sha256).then(Sha256::default),
        }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        if let Some(h) = &mut self.sha1 {
            h.update(data);
        }
        if let Some(h) = &mut self.md5 {
            h.update(data);
        }
        if let Some(h) = &mut self.sha256 {
            h.update(data);
        }
    }

    pub(crate) fn finish(self) -> Digests {
        Digests {
            sha1: self.sha1.map(|h| h.finalize().into()),
            md5: self.md5.map(|h| h.finalize().into()),
            sha256: self.sha256.map(|h| h.finalize().into()),
        }
    }
}

/// A checksum a client says the content has (`OC-Checksum: SHA1:…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    /// SHA-1.
    Sha1([u8; 20]),
    /// MD5.
    Md5([u8; 16]),
    /// SHA-256.
    Sha256([u8; 32]),
}

impl Checksum {
    /// Parses `ALGO:hex` (`SHA1`, `MD5`, `SHA256`, any case); `None` when it is not one.
    pub fn parse(s: &str) -> Option<Self> {
        let (algo, value) = s.trim().split_once(':')?;
        let value = value.trim();
        match algo.to_ascii_uppercase().as_str() {
            "SHA1" => unhex(value).map(Self::Sha1),
            "MD5" => unhex(value).map(Self::Md5),
            "SHA256" => unhex(value).map(Self::Sha256),
            _ => None,
        }
    }

    /// Its algorithm.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Self::Sha1(_) => Algorithm::Sha1,
            Self::Md5(_) => Algorithm::Md5,
            Self::Sha256(_) => Algorithm::Sha256,
        }
    }

    /// Whether content with digests `d` has this checksum (`false` when `d` lacks its
    /// algorithm).
    pub fn matches(&self, d: &Digests) -> bool {
        match self {
            Self::Sha1(v) => d.sha1 == Some(*v),
            Self::Md5(v) => d.md5 == Some(*v),
            Self::Sha256(v) => d.sha256 == Some(*v),
        }
    }
}

/// `body`, fed chunk by chunk to `hasher` as it passes; the digests are in the slot once the
/// stream has ended without an error.
pub(crate) fn hashing(
    body: ByteStream,
    hasher: Hasher,
) -> (ByteStream, Arc<Mutex<Option<Digests>>>) {
    let slot = Arc::new(Mutex::new(None));
    let stream = Hashing {
        inner: body,
        hasher: Some(hasher),
        slot: slot.clone(),
    };
    (Box::pin(stream), slot)
}

/// Hashes this many bytes at most before giving the runtime a turn.
const SLICE: usize = 256 * 1024;

/// `meta` with all three digests, those it lacks computed from `body` (its content); also
/// whether any was computed. Between slices of [`SLICE`] bytes it yields to the runtime, so a
/// large item hashed from memory does not hold a worker thread for long.
pub(crate) async fn complete(
    mut meta: crate::Meta,
    mut body: ByteStream,
) -> Result<(crate::Meta, bool), StoreError> {
    let have = meta.digests.unwrap_or_default();
    if have.is_complete() {
        return Ok((meta, false));
    }
    let mut hasher = Hasher::missing(&have);
    let mut since_yield = 0;
    while let Some(chunk) = std::future::poll_fn(|cx| body.as_mut().poll_next(cx)).await {
        for piece in chunk?.chunks(SLICE) {
            hasher.update(piece);
            since_yield += piece.len();
            if since_yield >= SLICE {
                since_yield = 0;
                YieldOnce(false).await;
            }
        }
    }
    meta.digests = Some(have.or(hasher.finish()));
    Ok((meta, true))
}

/// Pending once (waking itself at once), then ready: a turn for the runtime's other tasks.
struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

struct Hashing {
    inner: ByteStream,
    hasher: Option<Hasher>,
    slot: Arc<Mutex<Option<Digests>>>,
}

impl Stream for Hashing {
    type Item = Result<Bytes, StoreError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = self.inner.as_mut().poll_next(cx);
        match &next {
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some(h) = self.hasher.as_mut() {
                    h.update(chunk);
                }
            }
            Poll::Ready(Some(Err(_))) => self.hasher = None,
            Poll::Ready(None) => {
                if let Some(h) = self.hasher.take() {
                    *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(h.finish());
                }
            }
            Poll::Pending => {}
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many blocks and a partial last one, fed in uneven pieces: the block code (MD5 in
    /// assembly where the `md5-asm` feature is on) against digests from another implementation
    /// (Python's hashlib).
    #[test]
    fn known_digests_of_a_long_input_in_pieces() {
        let data = b"davrepl".repeat(10_000);
        let mut h = Hasher::all();
        for piece in data.chunks(1_000 - 7) {
            h.update(piece);
        }
        let d = h.finish();
        assert_eq!(Digests::of(&data), d);
        assert_eq!(hex(&d.md5.unwrap()), "c192063a39b9d715a0bc01a9a9e0c4b0");
        assert_eq!(
            hex(&d.sha1.unwrap()),
            "8913a7e3c6d5ecbd4bde2b6920e941f379a56665"
        );
        assert_eq!(
            hex(&d.sha256.unwrap()),
            "62673cff74e0d4b8329caf730adf979266a703d3b1f9d4a6e3fa078b26253bfa"
        );
    }

    #[test]
    fn known_digests_and_checksums() {
        let d = Digests::of(b"abc");
        assert!(d.is_complete());
        assert_eq!(
            hex(&d.sha1.unwrap()),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(hex(&d.md5.unwrap()), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            hex(&d.sha256.unwrap()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Digests::from_bytes(&d.to_bytes()), Some(d));
        assert!(
            Checksum::parse("SHA1:a9993e364706816aba3e25717850c26c9cd0d89d")
                .unwrap()
                .matches(&d)
        );
        assert!(
            Checksum::parse("md5:900150983CD24FB0D6963F7D28E17F72")
                .unwrap()
                .matches(&d)
        );
        assert!(
            !Checksum::parse("MD5:00000000000000000000000000000000")
                .unwrap()
                .matches(&d)
        );
        for bad in ["SHA1:xyz", "CRC32:1234", "nothing", "SHA1:", "MD5:é0"] {
            assert_eq!(Checksum::parse(bad), None, "{bad}");
        }
    }

    /// A hasher for one algorithm computes that one only, and a checksum of another algorithm
    /// does not match digests that lack it.
    #[test]
    fn one_algorithm_and_the_missing_ones() {
        let all = Digests::of(b"abc");
        for (algo, expect) in [
            (
                Algorithm::Sha1,
                Digests {
                    sha1: all.sha1,
                    ..Digests::default()
                },
            ),
            (
                Algorithm::Md5,
                Digests {
                    md5: all.md5,
                    ..Digests::default()
                },
            ),
            (
                Algorithm::Sha256,
                Digests {
                    sha256: all.sha256,
                    ..Digests::default()
                },
            ),
        ] {
            let mut h = Hasher::only(algo);
            h.update(b"ab");
            h.update(b"c");
            let d = h.finish();
            assert_eq!(d, expect, "{algo:?}");
            assert!(!d.is_complete() && !d.is_empty());
            let mut rest = Hasher::missing(&d);
            rest.update(b"abc");
            let rest = rest.finish();
            assert_eq!(d.or(rest), all, "{algo:?}");
            assert!(d.or(rest).is_complete());
        }
        let only_md5 = Digests {
            md5: all.md5,
            ..Digests::default()
        };
        assert!(!Checksum::Sha1(all.sha1.unwrap()).matches(&only_md5));
        assert!(Checksum::Md5(all.md5.unwrap()).matches(&only_md5));
        assert_eq!(Digests::default().known(), None);
        assert_eq!(only_md5.known(), Some(only_md5));
    }

    /// Every subset of the three survives its stored form, and no other length is one.
    #[test]
    fn every_subset_round_trips() {
        let all = Digests::of(b"subsets");
        let mut lens = std::collections::BTreeSet::new();
        for mask in 0u8..8 {
            let d = Digests {
                sha1: all.sha1.filter(|_| mask & 1 != 0),
                md5: all.md5.filter(|_| mask & 2 != 0),
                sha256: all.sha256.filter(|_| mask & 4 != 0),
            };
            let b = d.to_bytes();
            assert!(lens.insert(b.len()), "two subsets share length {}", b.len());
            assert_eq!(Digests::from_bytes(&b), Some(d), "mask {mask}");
        }
        assert_eq!(all.to_bytes().len(), Digests::LEN);
        for bad in [1, 15, 21, 33, 67, 69] {
            assert_eq!(Digests::from_bytes(&vec![0; bad]), None, "{bad}");
        }
    }
}
