//! Request paths and hrefs under a mount prefix.

use davrepl_store::{PathError, ResourcePath};
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

/// Why a request path or href cannot name a resource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HrefError {
    /// It does not lie under the mount prefix.
    #[error("path is outside the mount prefix")]
    OutsideMount,
    /// Percent-decoding gave invalid UTF-8.
    #[error("path is not valid UTF-8 after percent-decoding")]
    NotUtf8,
    /// A `%` not followed by two hex digits.
    #[error("malformed percent-escape in the path")]
    BadEscape,
    /// An encoded `/` (`%2F`) inside a segment.
    #[error("encoded '/' in a path segment is not allowed")]
    EncodedSlash,
    /// A malformed absolute URI.
    #[error("malformed URI")]
    BadUri,
    /// The decoded path is not acceptable.
    #[error(transparent)]
    Path(#[from] PathError),
}

/// Characters escaped in hrefs we emit: controls, space and the characters with a meaning in
/// URIs or XML, so hrefs survive any client's parser.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'\'')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}')
    .add(b'/');

/// Percent-encodes one path segment (a `/` in it is encoded too) the way hrefs are emitted.
pub fn encode_segment(segment: &str) -> String {
    utf8_percent_encode(segment, SEGMENT).to_string()
}

fn normalise_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("/{trimmed}")
    }
}

fn under<'a>(prefix: &str, raw_path: &'a str) -> Option<&'a str> {
    if prefix.is_empty() {
        return Some(raw_path);
    }
    raw_path
        .strip_prefix(prefix)
        .filter(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Where a namespace is mounted: the prefix of request paths the layer sees (`route`), and the
/// prefix clients see in hrefs (`public`). They differ when a framework strips a prefix before
/// the layer runs (axum's `nest_service`) or a reverse proxy rewrites paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    route: String,
    public: String,
}

impl Mount {
    /// A mount whose request paths and hrefs share the prefix (`/dav`, `/dav/` or `/`).
    pub fn new(prefix: &str) -> Self {
        let p = normalise_prefix(prefix);
        Self {
            route: p.clone(),
            public: p,
        }
    }

    /// Sets the prefix clients see in hrefs, `Destination` and `If` headers.
    #[must_use]
    pub fn with_public_prefix(mut self, public: &str) -> Self {
        self.public = normalise_prefix(public);
        self
    }

    /// The routing prefix without trailing slash (empty for the root mount).
    pub fn prefix(&self) -> &str {
        &self.route
    }

    /// The public prefix without trailing slash.
    pub fn public_prefix(&self) -> &str {
        &self.public
    }

    /// Whether a raw (still encoded) request path belongs to this mount. Cheap: used to route.
    pub fn contains(&self, raw_path: &str) -> bool {
        under(&self.route, raw_path).is_some()
    }

    /// Whether a raw path as a client writes it (in `Destination`, `If` or a SQL scope) is in
    /// this namespace.
    pub fn contains_public(&self, raw_path: &str) -> bool {
        under(&self.public, raw_path).is_some()
    }

    /// Decodes a raw request path (no query) into a store path.
    pub fn resolve(&self, raw_path: &str) -> Result<ResourcePath, HrefError> {
        decode_path(under(&self.route, raw_path).ok_or(HrefError::OutsideMount)?)
    }

    /// Decodes a raw path as a client writes it (public prefix) into a store path.
    pub fn resolve_public(&self, raw_path: &str) -> Result<ResourcePath, HrefError> {
        decode_path(under(&self.public, raw_path).ok_or(HrefError::OutsideMount)?)
    }

    /// Resolves an href from a request body or header: an absolute URI (its path is used; the
    /// caller checks the authority with [`split_absolute`]) or an absolute path.
    pub fn resolve_href(&self, href: &str) -> Result<ResourcePath, HrefError> {
        let path = match split_absolute(href) {
            Some((_, path)) => path,
            None if href.starts_with('/') => href,
            None => return Err(HrefError::BadUri),
        };
        let path = path.split(['?', '#']).next().unwrap_or("");
        self.resolve_public(if path.is_empty() { "/" } else { path })
    }

    /// The encoded href of a store path, with a trailing `/` for collections.
    pub fn href(&self, path: &ResourcePath, collection: bool) -> String {
        let mut out = String::with_capacity(self.public.len() + path.as_str().len() + 8);
        out.push_str(&self.public);
        for seg in path.segments() {
            out.push('/');
            out.extend(utf8_percent_encode(seg, SEGMENT));
        }
        if collection || out.is_empty() {
            out.push('/');
        }
        out
    }
}

fn decode_path(rest: &str) -> Result<ResourcePath, HrefError> {
    if !rest.contains('%') {
        // Nothing to decode (the common case): the raw path is the store path, which `parse`
        // folds and checks as the loop below would.
        return Ok(match rest.starts_with('/') {
            true => ResourcePath::parse(rest)?,
            false => ResourcePath::parse(&format!("/{rest}"))?,
        });
    }
    let mut decoded = String::with_capacity(rest.len() + 1);
    decoded.push('/');
    for seg in rest.split('/').filter(|s| !s.is_empty()) {
        let b = seg.as_bytes();
        if b.iter().enumerate().any(|(i, &c)| {
            c == b'%'
                && !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                    && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        }) {
            return Err(HrefError::BadEscape);
        }
        let seg = percent_decode_str(seg)
            .decode_utf8()
            .map_err(|_| HrefError::NotUtf8)?;
        if seg.contains('/') {
            return Err(HrefError::EncodedSlash);
        }
        if !decoded.ends_with('/') {
            decoded.push('/');
        }
        decoded.push_str(&seg);
    }
    // Built in normal form above: kept without another copy.
    Ok(ResourcePath::parse_owned(decoded)?)
}

/// Splits `scheme://authority/path` into (authority, path). `None` if `uri` is not absolute.
pub fn split_absolute(uri: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = uri.split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return None;
    }
    match rest.find('/') {
        Some(i) => Some((&rest[..i], &rest[i..])),
        None => Some((rest, "/")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_without_escapes_resolves_as_its_escaped_spelling() {
        let m = Mount::new("/dav");
        for raw in [
            "/dav/a",
            "/dav/a/",
            "/dav//a//b/",
            "/dav/a/../b",
            "/dav/./a",
            "/dav/a/.",
            "/dav/a b",
            "/dav/a/\0",
            "/dav/ä/a",
        ] {
            let rest = raw.strip_prefix("/dav").unwrap_or(raw);
            let escaped = format!("/dav{}", rest.replacen('a', "%61", 1));
            assert_eq!(
                m.resolve(raw),
                m.resolve(&escaped),
                "{raw} against {escaped}"
            );
        }
        assert_eq!(Mount::new("/").resolve("*"), Mount::new("/").resolve("%2A"));
    }

    #[test]
    fn resolve_under_prefix() {
        let m = Mount::new("/dav/");
        assert!(m.contains("/dav"));
        assert!(m.contains("/dav/x"));
        assert!(!m.contains("/davx"));
        assert_eq!(m.resolve("/dav/a%20b/c").unwrap().as_str(), "/a b/c");
        assert_eq!(m.resolve("/dav").unwrap().as_str(), "/");
        assert_eq!(m.resolve("/other"), Err(HrefError::OutsideMount));
        assert_eq!(m.resolve("/dav/a%2Fb"), Err(HrefError::EncodedSlash));
        assert!(matches!(
            m.resolve("/dav/%2e%2e/x"),
            Err(HrefError::Path(_))
        ));
        assert_eq!(m.resolve("/dav/%ff"), Err(HrefError::NotUtf8));
        assert!(matches!(m.resolve("/dav/a%00"), Err(HrefError::Path(_))));
    }

    #[test]
    fn hrefs_round_trip() {
        let m = Mount::new("/dav");
        let p = ResourcePath::parse("/a b/ü#?%").unwrap();
        let h = m.href(&p, false);
        assert_eq!(h, "/dav/a%20b/%C3%BC%23%3F%25");
        assert_eq!(m.resolve(&h).unwrap(), p);
        assert_eq!(m.href(&ResourcePath::root(), true), "/dav/");
        assert_eq!(Mount::new("/").href(&ResourcePath::root(), true), "/");
        assert_eq!(m.resolve_href("http://h:1/dav/x?q").unwrap().as_str(), "/x");
        let nested = Mount::new("/").with_public_prefix("/dav");
        assert_eq!(nested.resolve("/x").unwrap().as_str(), "/x");
        assert_eq!(nested.resolve_href("/dav/x").unwrap().as_str(), "/x");
        assert_eq!(nested.href(&p, false), "/dav/a%20b/%C3%BC%23%3F%25");
        assert!(!nested.contains_public("/x"));
        assert_eq!(split_absolute("http://h/p"), Some(("h", "/p")));
        assert_eq!(split_absolute("/p"), None);
    }
}
