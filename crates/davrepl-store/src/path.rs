//! Normalised resource paths inside a store.

use std::fmt;
use std::sync::{Arc, LazyLock};

/// Why a string is not a valid [`ResourcePath`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The path does not start with `/`.
    #[error("path must start with '/'")]
    NotAbsolute,
    /// A segment is `.` or `..`.
    #[error("path segment '.' or '..' is not allowed")]
    DotSegment,
    /// A segment contains a NUL byte or a `/` that came from decoding.
    #[error("path segment contains a forbidden character")]
    ForbiddenChar,
    /// The path is longer than the caller allows.
    #[error("path is too long")]
    TooLong,
}

/// A decoded, normalised path of a resource inside a store.
///
/// Invariants: it starts with `/`; the root is `/`; no other path ends with `/`; no segment is
/// empty, `.` or `..`, and no segment contains NUL. Paths compare and sort as strings, so a
/// collection always sorts before its descendants.
///
/// The text is shared: a clone counts a reference instead of copying the path (a request
/// hands its path to the plan, the step and the metadata it returns; a store may index it
/// twice).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourcePath(Arc<str>);

/// The root, made once: [`ResourcePath::root`] hands out references to it.
static ROOT: LazyLock<ResourcePath> = LazyLock::new(|| ResourcePath(Arc::from("/")));

impl ResourcePath {
    /// The root collection, `/`.
    pub fn root() -> Self {
        ROOT.clone()
    }

    /// Parses a decoded path. Empty segments (`//`) and a trailing `/` are folded away.
    pub fn parse(path: &str) -> Result<Self, PathError> {
        if Self::check_normal(path)? {
            return Ok(Self(Arc::from(path)));
        }
        if !path.starts_with('/') {
            return Err(PathError::NotAbsolute);
        }
        let mut out = String::with_capacity(path.len());
        for seg in path.split('/').filter(|s| !s.is_empty()) {
            Self::check_segment(seg)?;
            out.push('/');
            out.push_str(seg);
        }
        if out.is_empty() {
            return Ok(Self::root());
        }
        Ok(Self(out.into()))
    }

    /// [`parse`](Self::parse) for an owned string.
    pub fn parse_owned(path: String) -> Result<Self, PathError> {
        if Self::check_normal(&path)? {
            return Ok(Self(path.into()));
        }
        Self::parse(&path)
    }

    /// `Ok(true)` when `path` is already in normal form below the root (absolute, no empty
    /// segment, no trailing `/`) with every segment allowed; `Ok(false)` when it needs folding
    /// first (or is not absolute, which [`parse`](Self::parse) then says).
    fn check_normal(path: &str) -> Result<bool, PathError> {
        if path.len() < 2 || !path.starts_with('/') || path.ends_with('/') || path.contains("//") {
            return Ok(false);
        }
        for seg in path.split('/').skip(1) {
            Self::check_segment(seg)?;
        }
        Ok(true)
    }

    fn check_segment(seg: &str) -> Result<(), PathError> {
        if seg == "." || seg == ".." {
            return Err(PathError::DotSegment);
        }
        // Bytes, not a char pattern: this runs for every segment of every request path.
        if seg.bytes().any(|b| b == 0 || b == b'/') {
            return Err(PathError::ForbiddenChar);
        }
        Ok(())
    }

    /// The path as a string (`/a/b`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the root collection.
    pub fn is_root(&self) -> bool {
        self.0.len() == 1
    }

    /// The parent collection, or `None` for the root.
    pub fn parent(&self) -> Option<ResourcePath> {
        if self.is_root() {
            return None;
        }
        let idx = self.0.rfind('/').unwrap_or(0);
        Some(if idx == 0 {
            Self::root()
        } else {
            Self(Arc::from(&self.0[..idx]))
        })
    }

    /// The last segment (empty for the root).
    pub fn name(&self) -> &str {
        let idx = self.0.rfind('/').unwrap_or(0);
        &self.0[idx + 1..]
    }

    /// The child named `name` (one segment).
    pub fn join(&self, name: &str) -> Result<ResourcePath, PathError> {
        if name.is_empty() {
            return Err(PathError::ForbiddenChar);
        }
        Self::check_segment(name)?;
        let mut s = String::with_capacity(self.0.len() + name.len() + 1);
        if !self.is_root() {
            s.push_str(&self.0);
        }
        s.push('/');
        s.push_str(name);
        Ok(Self(s.into()))
    }

    /// The prefix every descendant's path starts with (`/a/` for `/a`, `/` for the root).
    pub fn descendant_prefix(&self) -> String {
        if self.is_root() {
            self.0.to_string()
        } else {
            format!("{}/", self.0)
        }
    }

    /// The half-open range `[start, end)` of strings that holds exactly the descendants'
    /// paths in byte order: `start` is [`descendant_prefix`](Self::descendant_prefix), `end`
    /// the same with its final `/` raised to the next byte (`0`). For range scans on an
    /// ordered index; the range excludes `self`.
    pub fn descendant_range(&self) -> (String, String) {
        let start = self.descendant_prefix();
        let mut end = start.clone();
        end.pop();
        end.push('0');
        (start, end)
    }

    /// Whether `self` is `ancestor` or lies below it (segment-aware).
    pub fn is_within(&self, ancestor: &ResourcePath) -> bool {
        if ancestor.is_root() {
            return true;
        }
        self.0 == ancestor.0
            || (self.0.starts_with(&*ancestor.0) && self.0.as_bytes()[ancestor.0.len()] == b'/')
    }

    /// Whether `self` lies strictly below `ancestor`.
    pub fn is_strictly_within(&self, ancestor: &ResourcePath) -> bool {
        self != ancestor && self.is_within(ancestor)
    }

    /// Number of segments (0 for the root).
    pub fn depth(&self) -> usize {
        if self.is_root() {
            0
        } else {
            self.0.matches('/').count()
        }
    }

    /// The segments, in order.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|s| !s.is_empty())
    }

    /// Moves `self` from below `from` to below `to`: `/a/x/y` rebased from `/a` to `/b` is
    /// `/b/x/y`. Returns `None` if `self` is not within `from`.
    pub fn rebase(&self, from: &ResourcePath, to: &ResourcePath) -> Option<ResourcePath> {
        if !self.is_within(from) {
            return None;
        }
        let rest = if from.is_root() {
            &self.0[..]
        } else {
            &self.0[from.0.len()..]
        };
        if rest.is_empty() || rest == "/" {
            return Some(to.clone());
        }
        let mut s = String::with_capacity(to.0.len() + rest.len());
        if !to.is_root() {
            s.push_str(&to.0);
        }
        s.push_str(rest);
        Some(Self(s.into()))
    }
}

impl fmt::Display for ResourcePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ResourcePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

// Sound because `Ord`, `Eq` and `Hash` are derived from the inner `Arc<str>`, which agree with
// those of `str`.
impl std::borrow::Borrow<str> for ResourcePath {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for ResourcePath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> ResourcePath {
        ResourcePath::parse(s).unwrap()
    }

    #[test]
    fn normalises_and_rejects() {
        assert_eq!(p("/a//b/").as_str(), "/a/b");
        assert_eq!(p("/").as_str(), "/");
        assert_eq!(p("//").as_str(), "/");
        assert_eq!(ResourcePath::parse("a"), Err(PathError::NotAbsolute));
        assert_eq!(ResourcePath::parse("/a/../b"), Err(PathError::DotSegment));
        assert_eq!(ResourcePath::parse("/a/\0"), Err(PathError::ForbiddenChar));
    }

    /// The plain reading of the rules: split on `/`, drop empty segments, refuse `.`, `..`
    /// and NUL, join again.
    fn folded(s: &str) -> Result<String, PathError> {
        if !s.starts_with('/') {
            return Err(PathError::NotAbsolute);
        }
        let mut out = String::new();
        for seg in s.split('/').filter(|g| !g.is_empty()) {
            if seg == "." || seg == ".." {
                return Err(PathError::DotSegment);
            }
            if seg.contains('\0') {
                return Err(PathError::ForbiddenChar);
            }
            out = out + "/" + seg;
        }
        Ok(if out.is_empty() { "/".to_owned() } else { out })
    }

    proptest::proptest! {
        /// Both parsers (and the shortcut for text already in normal form) agree with the
        /// plain reading, on strings made mostly of the characters that matter.
        #[test]
        fn parsers_agree_with_the_rules(s in "[/a.\\x00]{0,12}") {
            let want = folded(&s);
            let got = ResourcePath::parse(&s).map(|p| p.as_str().to_owned());
            proptest::prop_assert_eq!(&got, &want);
            let owned = ResourcePath::parse_owned(s.clone()).map(|p| p.as_str().to_owned());
            proptest::prop_assert_eq!(&owned, &want);
        }
    }

    #[test]
    fn clones_share_the_text() {
        let a = p("/a/b");
        let b = a.clone();
        assert_eq!(a.as_str().as_ptr(), b.as_str().as_ptr());
        assert_eq!(
            ResourcePath::root().as_str().as_ptr(),
            p("//").as_str().as_ptr(),
            "every root is the one made once"
        );
    }

    #[test]
    fn owned_parse_agrees() {
        for s in [
            "/", "//", "/a", "/a/", "/a//b", "a", "", "/a/..", "/./b", "/a/\0", "/ä/b c",
        ] {
            assert_eq!(
                ResourcePath::parse_owned(s.to_owned()),
                ResourcePath::parse(s),
                "{s:?}"
            );
        }
    }

    #[test]
    fn family() {
        assert_eq!(p("/a/b").parent(), Some(p("/a")));
        assert_eq!(p("/a").parent(), Some(ResourcePath::root()));
        assert_eq!(ResourcePath::root().parent(), None);
        assert_eq!(p("/a/b").name(), "b");
        assert!(p("/a/b").is_within(&p("/a")));
        assert!(!p("/ab").is_within(&p("/a")));
        assert!(p("/ab").is_within(&ResourcePath::root()));
        assert_eq!(
            p("/a/x/y").rebase(&p("/a"), &p("/b/c")),
            Some(p("/b/c/x/y"))
        );
        assert_eq!(p("/a").rebase(&p("/a"), &p("/z")), Some(p("/z")));
        assert_eq!(
            p("/a").rebase(&ResourcePath::root(), &p("/z")),
            Some(p("/z/a"))
        );
        assert_eq!(p("/a/b").depth(), 2);
        assert_eq!(ResourcePath::root().join("x").unwrap(), p("/x"));
    }
}
