//! Identities and version tokens: store id, repl-uid, resourcetag, contenttag and ETag.
//!
//! Layout (design.md §2): a repl-uid is the 16-byte store id followed by a 6-byte creation
//! counter; a change key is the store id followed by the 6-byte change sequence number. A
//! resourcetag is `rt:` + hex(repl-uid) + hex(change key) (88 hex digits), so it names both the
//! resource and its state, and is never reused for another state or another resource.

use std::fmt;

/// A store-wide change sequence number. Only the low 48 bits are used in tokens.
pub type Seq = u64;

/// The largest sequence number that fits in a 6-byte change key.
pub const MAX_SEQ: Seq = (1 << 48) - 1;

fn push_hex(out: &mut String, bytes: &[u8]) {
    // Tags are formatted on every response: two digits per byte from a table into a stack
    // buffer, then one copy, not through `fmt` or a char at a time.
    let mut buf = [0u8; 64];
    for chunk in bytes.chunks(32) {
        let digits = &mut buf[..2 * chunk.len()];
        hex_into(digits, chunk);
        out.push_str(ascii(digits));
    }
}

/// Writes the two lowercase hex digits of each byte of `bytes` into `out`, which is twice as
/// long.
fn hex_into(out: &mut [u8], bytes: &[u8]) {
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(*b)]);
    }
}

/// Tag bytes as text. Every tag is ASCII, so this never gives the empty fallback.
fn ascii(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

/// The two lowercase hex digits of every byte value.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut t = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [DIGITS[i >> 4], DIGITS[i & 0xf]];
        i += 1;
    }
    t
};

fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2
        || !s
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return None;
    }
    let mut out = [0u8; N];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let hi = (chunk[0] as char).to_digit(16)?;
        let lo = (chunk[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

fn seq_bytes(seq: Seq) -> [u8; 6] {
    let b = seq.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

/// The identity of one store (16 random bytes, fixed when the store is created).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreId(pub [u8; 16]);

impl StoreId {
    /// A fresh random store id.
    pub fn random() -> Self {
        let mut b = [0u8; 16];
        // The OS random source is always available on supported targets; a failure here would
        // make every store id predictable, so refuse to continue.
        getrandom::fill(&mut b).expect("operating system random source is unavailable");
        Self(b)
    }

    /// Lowercase hex (32 digits).
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(32);
        push_hex(&mut s, &self.0);
        s
    }

    /// Parses 32 lowercase hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        parse_hex::<16>(s).map(Self)
    }
}

impl fmt::Debug for StoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreId({})", self.to_hex())
    }
}

/// A resource's permanent identity (`rid:` + 44 hex digits): store id + creation counter.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplUid(pub [u8; 22]);

impl ReplUid {
    /// The repl-uid made by `store` for its `counter`-th created resource.
    pub fn new(store: StoreId, counter: u64) -> Self {
        let mut b = [0u8; 22];
        b[..16].copy_from_slice(&store.0);
        b[16..].copy_from_slice(&seq_bytes(counter));
        Self(b)
    }

    /// The 44 hex digits without the `rid:` prefix.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(44);
        push_hex(&mut s, &self.0);
        s
    }

    /// Parses `rid:` + 44 lowercase hex digits.
    pub fn parse(token: &str) -> Option<Self> {
        parse_hex::<22>(token.strip_prefix("rid:")?).map(Self)
    }

    /// The creation counter part.
    pub fn counter(&self) -> u64 {
        let mut b = [0u8; 8];
        b[2..].copy_from_slice(&self.0[16..]);
        u64::from_be_bytes(b)
    }
}

impl fmt::Display for ReplUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(48);
        push_repl_uid(&mut s, self);
        f.write_str(&s)
    }
}

impl fmt::Debug for ReplUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Formats a resourcetag: `rt:` + hex(repl-uid) + hex(store id + change sequence).
pub fn resource_tag(rid: &ReplUid, store: &StoreId, version: Seq) -> String {
    let mut s = String::with_capacity(RESOURCE_TAG_LEN);
    push_resource_tag(&mut s, rid, store, version);
    s
}

/// The length of a resourcetag (and of a contenttag).
pub const RESOURCE_TAG_LEN: usize = 3 + 88;

/// Appends the resourcetag [`resource_tag`] formats to `out`, so that a caller building a
/// larger value (a header, a document) needs no string of its own for it.
pub fn push_resource_tag(out: &mut String, rid: &ReplUid, store: &StoreId, version: Seq) {
    out.push_str(ascii(&resource_tag_bytes(rid, store, version)));
}

/// The resourcetag [`resource_tag`] formats, as ASCII bytes on the stack (for a header value,
/// which copies them once).
pub fn resource_tag_bytes(rid: &ReplUid, store: &StoreId, version: Seq) -> [u8; RESOURCE_TAG_LEN] {
    let mut b = [0u8; RESOURCE_TAG_LEN];
    b[..3].copy_from_slice(b"rt:");
    hex_into(&mut b[3..47], &rid.0);
    hex_into(&mut b[47..79], &store.0);
    hex_into(&mut b[79..], &seq_bytes(version));
    b
}

/// Appends `rid:` + 44 hex digits, the repl-uid's text, to `out`.
pub(crate) fn push_repl_uid(out: &mut String, rid: &ReplUid) {
    out.push_str(ascii(&repl_uid_bytes(rid)));
}

/// The length of a repl-uid's text, `rid:` + 44 hex digits.
pub const REPL_UID_LEN: usize = 4 + 44;

/// A repl-uid's text as ASCII bytes on the stack.
pub fn repl_uid_bytes(rid: &ReplUid) -> [u8; REPL_UID_LEN] {
    let mut b = [0u8; REPL_UID_LEN];
    b[..4].copy_from_slice(b"rid:");
    hex_into(&mut b[4..], &rid.0);
    b
}

/// Formats a contenttag: `ct:` + hex(repl-uid) + hex(store id + content sequence).
pub fn content_tag(rid: &ReplUid, store: &StoreId, content_version: Seq) -> String {
    let mut s = String::with_capacity(91);
    s.push_str("ct:");
    push_hex(&mut s, &rid.0);
    push_hex(&mut s, &store.0);
    push_hex(&mut s, &seq_bytes(content_version));
    s
}

/// Splits a resourcetag into (repl-uid, change sequence). `None` if it is not one of ours in
/// shape (foreign or toy tags are simply never equal to a current tag).
pub fn parse_resource_tag(tag: &str) -> Option<(ReplUid, StoreId, Seq)> {
    let hex = tag.strip_prefix("rt:")?;
    if hex.len() != 88 {
        return None;
    }
    let rid = parse_hex::<22>(&hex[..44])?;
    let store = parse_hex::<16>(&hex[44..76])?;
    let seq = parse_hex::<6>(&hex[76..])?;
    let mut b = [0u8; 8];
    b[2..].copy_from_slice(&seq);
    Some((ReplUid(rid), StoreId(store), u64::from_be_bytes(b)))
}

/// Formats the strong ETag (with quotes) of a resource state: derived from the same change key
/// as the resourcetag, so `If-Match` gives the same guarantee as `If: (<rt:…>)`.
pub fn etag(rid: &ReplUid, version: Seq) -> String {
    ascii(&etag_bytes(rid, version)).to_owned()
}

/// The length of an ETag, quotes included.
pub const ETAG_LEN: usize = 1 + 12 + 1 + 12 + 1;

/// The ETag [`etag`] formats, as ASCII bytes on the stack.
pub fn etag_bytes(rid: &ReplUid, version: Seq) -> [u8; ETAG_LEN] {
    let mut b = [b'"'; ETAG_LEN];
    hex_into(&mut b[1..13], &rid.0[16..]);
    b[13] = b'-';
    hex_into(&mut b[14..26], &seq_bytes(version));
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let store = StoreId([0xab; 16]);
        let rid = ReplUid::new(store, 7);
        let rid_s = rid.to_string();
        assert_eq!(rid_s.len(), 4 + 44);
        assert_eq!(ReplUid::parse(&rid_s), Some(rid));
        assert_eq!(rid.counter(), 7);
        let rt = resource_tag(&rid, &store, 99);
        assert_eq!(rt.len(), 3 + 88);
        assert_eq!(parse_resource_tag(&rt), Some((rid, store, 99)));
        assert_eq!(parse_resource_tag("rt:doc1-01"), None);
        assert!(ReplUid::parse(&rid_s.to_uppercase()).is_none());
        assert_ne!(etag(&rid, 1), etag(&rid, 2));
        assert_eq!(
            etag(&rid, 0x0102_0304_0506),
            "\"000000000007-010203040506\""
        );
        assert_eq!(etag(&rid, 1).as_bytes(), etag_bytes(&rid, 1));
        let expected = format!(
            "rt:{}{}{}",
            "ab".repeat(16) + "000000000007",
            "ab".repeat(16),
            "000000000063"
        );
        assert_eq!(rt, expected);
        assert_eq!(rt.as_bytes(), resource_tag_bytes(&rid, &store, 99));
        assert_eq!(rid_s, format!("rid:{}000000000007", "ab".repeat(16)));
        let mut pushed = String::from("<");
        push_resource_tag(&mut pushed, &rid, &store, 99);
        assert_eq!(pushed, format!("<{rt}"));
    }
}
