//! Content digests, computed while an upload streams in, and the checksums clients send.

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

/// The digests of one item's content: SHA-1 and MD5 (what ownCloud-style clients such as
/// rclone compare) and SHA-256.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digests {
    /// SHA-1.
    pub sha1: [u8; 20],
    /// MD5.
    pub md5: [u8; 16],
    /// SHA-256.
    pub sha256: [u8; 32],
}

impl std::fmt::Debug for Digests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Digests(sha1:{})", hex(&self.sha1))
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

impl Digests {
    /// The stored form: the three digests concatenated (68 bytes).
    pub const LEN: usize = 20 + 16 + 32;

    /// The digests of `data`.
    pub fn of(data: &[u8]) -> Self {
        let mut h = Hasher::default();
        h.update(data);
        h.finish()
    }

    /// The stored form ([`LEN`](Self::LEN) bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        [&self.sha1[..], &self.md5[..], &self.sha256[..]].concat()
    }

    /// From the stored form; `None` when it is not [`LEN`](Self::LEN) bytes.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != Self::LEN {
            return None;
        }
        let mut d = Self {
            sha1: [0; 20],
            md5: [0; 16],
            sha256: [0; 32],
        };
        d.sha1.copy_from_slice(&b[..20]);
        d.md5.copy_from_slice(&b[20..36]);
        d.sha256.copy_from_slice(&b[36..]);
        Some(d)
    }
}

/// The three hashers, fed chunk by chunk.
#[derive(Default, Clone)]
pub(crate) struct Hasher {
    sha1: Sha1,
    md5: Md5,
    sha256: Sha256,
}

impl Hasher {
    pub(crate) fn update(&mut self, data: &[u8]) {
        self.sha1.update(data);
        self.md5.update(data);
        self.sha256.update(data);
    }

    pub(crate) fn finish(self) -> Digests {
        Digests {
            sha1: self.sha1.finalize().into(),
            md5: self.md5.finalize().into(),
            sha256: self.sha256.finalize().into(),
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

    /// Whether content with digests `d` has this checksum.
    pub fn matches(&self, d: &Digests) -> bool {
        match self {
            Self::Sha1(v) => *v == d.sha1,
            Self::Md5(v) => *v == d.md5,
            Self::Sha256(v) => *v == d.sha256,
        }
    }
}

/// `body`, hashing every chunk that passes; the digests are in the slot once the stream has
/// ended without an error.
pub(crate) fn hashing(body: ByteStream) -> (ByteStream, Arc<Mutex<Option<Digests>>>) {
    let slot = Arc::new(Mutex::new(None));
    let stream = Hashing {
        inner: body,
        hasher: Some(Hasher::default()),
        slot: slot.clone(),
    };
    (Box::pin(stream), slot)
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
        let mut h = Hasher::default();
        for piece in data.chunks(1_000 - 7) {
            h.update(piece);
        }
        let d = h.finish();
        assert_eq!(Digests::of(&data), d);
        assert_eq!(hex(&d.md5), "c192063a39b9d715a0bc01a9a9e0c4b0");
        assert_eq!(hex(&d.sha1), "8913a7e3c6d5ecbd4bde2b6920e941f379a56665");
        assert_eq!(
            hex(&d.sha256),
            "62673cff74e0d4b8329caf730adf979266a703d3b1f9d4a6e3fa078b26253bfa"
        );
    }

    #[test]
    fn known_digests_and_checksums() {
        let d = Digests::of(b"abc");
        assert_eq!(hex(&d.sha1), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(hex(&d.md5), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            hex(&d.sha256),
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
}
