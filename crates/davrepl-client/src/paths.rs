//! Paths as text on this side, percent-encoded on the wire.

use davrepl_proto::href::encode_segment;
use percent_encoding::percent_decode_str;

use crate::Error;

/// Percent-encodes a decoded path segment by segment (its `/` separators stay), as the
/// server encodes its hrefs.
pub(crate) fn encode_path(path: &str) -> String {
    path.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

/// Decodes a percent-encoded path; `Protocol` when it is not UTF-8.
pub(crate) fn decode(raw: &str) -> Result<String, Error> {
    percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| Error::protocol(format!("{raw}: not UTF-8 once decoded")))
}

/// The part of an href (absolute URL or absolute path) below `base` (decoded, ending in `/`),
/// without a trailing `/`; `None` when it lies outside `base`.
pub(crate) fn relative(href: &str, base: &str) -> Result<Option<String>, Error> {
    let path = match href.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => href,
    };
    let decoded = decode(path)?;
    let Some(rel) = decoded.strip_prefix(base) else {
        // The base collection itself, named without its slash.
        return Ok(
            (decoded.len() + 1 == base.len() && base.starts_with(&decoded)).then(String::new),
        );
    };
    Ok(Some(rel.trim_end_matches('/').to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_relative() {
        let p = "/dav/a b/ü#1%.txt";
        let enc = encode_path(p);
        assert_eq!(enc, "/dav/a%20b/%C3%BC%231%25.txt");
        assert_eq!(decode(&enc).unwrap(), p);
        let href = format!("http://h:1{enc}");
        assert_eq!(
            relative(&href, "/dav/").unwrap().as_deref(),
            Some("a b/ü#1%.txt")
        );
        assert_eq!(relative("/dav/x/", "/dav/").unwrap().as_deref(), Some("x"));
        assert_eq!(relative("/dav", "/dav/").unwrap().as_deref(), Some(""));
        assert_eq!(relative("/other/x", "/dav/").unwrap(), None);
        assert!(decode("/%FF").is_err());
    }
}
