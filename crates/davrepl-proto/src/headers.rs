//! Typed parsers for the WebDAV request headers. Each returns a precise error that the layer
//! turns into `400 Bad Request` with the reason.

use davrepl_store::{EntityMatch, IfCondition, IfTerm};

/// A header that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {header} header: {reason}")]
pub struct HeaderError {
    /// The header's name.
    pub header: &'static str,
    /// What is wrong.
    pub reason: String,
}

fn err(header: &'static str, reason: impl Into<String>) -> HeaderError {
    HeaderError {
        header,
        reason: reason.into(),
    }
}

/// The `Depth` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// `0`.
    Zero,
    /// `1`.
    One,
    /// `1,noroot` (Exchange): members without the collection itself.
    OneNoRoot,
    /// `infinity`.
    Infinity,
    /// `infinity,noroot` (Exchange).
    InfinityNoRoot,
}

impl Depth {
    /// Parses a `Depth` value (case-insensitive, spaces around the comma allowed).
    pub fn parse(v: &str) -> Result<Self, HeaderError> {
        let norm: String = v
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase();
        match norm.as_str() {
            "0" => Ok(Self::Zero),
            "1" => Ok(Self::One),
            "1,noroot" => Ok(Self::OneNoRoot),
            "infinity" => Ok(Self::Infinity),
            "infinity,noroot" => Ok(Self::InfinityNoRoot),
            _ => Err(err("Depth", format!("{v:?} is not 0, 1 or infinity"))),
        }
    }
}

/// Parses `Overwrite: T|F` (default `T`).
pub fn parse_overwrite(v: Option<&str>) -> Result<bool, HeaderError> {
    match v.map(str::trim) {
        None => Ok(true),
        Some(s) if s.eq_ignore_ascii_case("t") => Ok(true),
        Some(s) if s.eq_ignore_ascii_case("f") => Ok(false),
        Some(s) => Err(err("Overwrite", format!("{s:?} is not T or F"))),
    }
}

/// A byte range request (`Range: bytes=…`), one range only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRangeSpec {
    /// `first-` or `first-last`.
    FromTo(u64, Option<u64>),
    /// `-suffix`: the last N bytes.
    Suffix(u64),
}

impl ByteRangeSpec {
    /// Parses `bytes=a-b`. Returns `Ok(None)` for forms we answer with the whole content
    /// (other units, several ranges), as RFC 9110 allows.
    pub fn parse(v: &str) -> Result<Option<Self>, HeaderError> {
        let Some(spec) = v.trim().strip_prefix("bytes=") else {
            return Ok(None);
        };
        if spec.contains(',') {
            return Ok(None);
        }
        let (a, b) = spec
            .trim()
            .split_once('-')
            .ok_or_else(|| err("Range", "missing '-'"))?;
        let num = |s: &str| {
            s.trim()
                .parse::<u64>()
                .map_err(|_| err("Range", format!("{s:?} is not a number")))
        };
        match (a.trim().is_empty(), b.trim().is_empty()) {
            (true, true) => Err(err("Range", "empty range")),
            (true, false) => Ok(Some(Self::Suffix(num(b)?))),
            (false, true) => Ok(Some(Self::FromTo(num(a)?, None))),
            (false, false) => {
                let (a, b) = (num(a)?, num(b)?);
                if b < a {
                    return Err(err("Range", "last byte before first byte"));
                }
                Ok(Some(Self::FromTo(a, Some(b))))
            }
        }
    }

    /// Resolves against a length: `Some((first, last))`, or `None` if unsatisfiable (416).
    pub fn resolve(self, len: u64) -> Option<(u64, u64)> {
        if len == 0 {
            return None;
        }
        match self {
            Self::FromTo(a, _) if a >= len => None,
            Self::FromTo(a, b) => Some((a, b.map_or(len - 1, |b| b.min(len - 1)))),
            Self::Suffix(0) => None,
            Self::Suffix(n) => Some((len.saturating_sub(n), len - 1)),
        }
    }
}

/// Parses `If-Match` / `If-None-Match`: `*` or a list of entity tags.
pub fn parse_entity_match(header: &'static str, v: &str) -> Result<EntityMatch, HeaderError> {
    let v = v.trim();
    if v == "*" {
        return Ok(EntityMatch::Any);
    }
    let mut tags = Vec::new();
    let mut rest = v;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            break;
        }
        let (weak, body) = match rest.strip_prefix("W/") {
            Some(b) => (true, b),
            None => (false, rest),
        };
        let body = body
            .strip_prefix('"')
            .ok_or_else(|| err(header, "entity tag must be quoted"))?;
        let end = body
            .find('"')
            .ok_or_else(|| err(header, "unterminated entity tag"))?;
        let tag = &body[..end];
        tags.push(if weak {
            format!("W/\"{tag}\"")
        } else {
            format!("\"{tag}\"")
        });
        rest = &body[end + 1..];
    }
    if tags.is_empty() {
        return Err(err(header, "no entity tag"));
    }
    Ok(EntityMatch::Tags(tags))
}

/// One list of an `If` header before its resource tag is resolved to a store path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawIfList {
    /// The tagged resource (`<uri>` before the lists), or `None` for an untagged list.
    pub resource: Option<String>,
    /// The AND-ed conditions.
    pub conditions: Vec<IfCondition>,
}

/// Parses an RFC 4918 `If` header: tagged and untagged lists, `Not`, state tokens in `<>` and
/// entity tags in `[]`. Liberal where Exchange clients are sloppy: `Not` in any case, missing
/// angle brackets around a token inside a list, extra whitespace. Limits the number of lists
/// and conditions to `max_terms` in total.
pub fn parse_if(v: &str, max_terms: usize) -> Result<Vec<RawIfList>, HeaderError> {
    const H: &str = "If";
    let b = v.as_bytes();
    let mut i = 0;
    let mut lists = Vec::new();
    let mut current_tag: Option<String> = None;
    let mut terms = 0usize;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] as char).is_ascii_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= b.len() {
            break;
        }
        match b[i] {
            b'<' => {
                let end = v[i..]
                    .find('>')
                    .ok_or_else(|| err(H, "unterminated resource tag"))?
                    + i;
                current_tag = Some(v[i + 1..end].trim().to_owned());
                i = end + 1;
                skip_ws(&mut i);
                if i >= b.len() || b[i] != b'(' {
                    return Err(err(H, "a tagged resource must be followed by a list"));
                }
            }
            b'(' => {
                i += 1;
                let mut conditions = Vec::new();
                loop {
                    skip_ws(&mut i);
                    if i >= b.len() {
                        return Err(err(H, "unterminated list"));
                    }
                    if b[i] == b')' {
                        i += 1;
                        break;
                    }
                    let mut negated = false;
                    if b.len() - i >= 3 && b[i..i + 3].eq_ignore_ascii_case(b"not") {
                        let after = b.get(i + 3).copied();
                        if after.is_none_or(|c| c.is_ascii_whitespace() || c == b'<' || c == b'[') {
                            negated = true;
                            i += 3;
                            skip_ws(&mut i);
                        }
                    }
                    if i >= b.len() {
                        return Err(err(H, "unterminated list"));
                    }
                    let term = match b[i] {
                        b'<' => {
                            let end = v[i..]
                                .find('>')
                                .ok_or_else(|| err(H, "unterminated state token"))?
                                + i;
                            let t = v[i + 1..end].trim();
                            if t.is_empty() {
                                return Err(err(H, "empty state token"));
                            }
                            i = end + 1;
                            IfTerm::Token(t.to_owned())
                        }
                        b'[' => {
                            let end = v[i..]
                                .find(']')
                                .ok_or_else(|| err(H, "unterminated entity tag"))?
                                + i;
                            let t = v[i + 1..end].trim();
                            if t.is_empty() {
                                return Err(err(H, "empty entity tag"));
                            }
                            i = end + 1;
                            IfTerm::ETag(t.to_owned())
                        }
                        b')' | b'(' => return Err(err(H, "expected a condition")),
                        _ => {
                            // Liberal: a bare token such as `(rt:…)`.
                            let start = i;
                            while i < b.len() && !b" \t()<>[]".contains(&b[i]) {
                                i += 1;
                            }
                            IfTerm::Token(v[start..i].to_owned())
                        }
                    };
                    terms += 1;
                    if terms > max_terms {
                        return Err(err(H, format!("more than {max_terms} conditions")));
                    }
                    conditions.push(IfCondition { negated, term });
                }
                if conditions.is_empty() {
                    return Err(err(H, "empty list"));
                }
                lists.push(RawIfList {
                    resource: current_tag.clone(),
                    conditions,
                });
            }
            c => return Err(err(H, format!("unexpected character {:?}", c as char))),
        }
    }
    if lists.is_empty() {
        return Err(err(H, "no list"));
    }
    let tagged = lists.iter().filter(|l| l.resource.is_some()).count();
    if tagged != 0 && tagged != lists.len() {
        return Err(err(H, "tagged and untagged lists cannot be mixed"));
    }
    Ok(lists)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(s: &str) -> IfTerm {
        IfTerm::Token(s.into())
    }

    #[test]
    fn depth_and_overwrite() {
        assert_eq!(Depth::parse("Infinity"), Ok(Depth::Infinity));
        assert_eq!(Depth::parse("1, noroot"), Ok(Depth::OneNoRoot));
        assert!(Depth::parse("2").is_err());
        assert_eq!(parse_overwrite(Some("f")), Ok(false));
        assert_eq!(parse_overwrite(None), Ok(true));
        assert!(parse_overwrite(Some("maybe")).is_err());
    }

    #[test]
    fn ranges() {
        let p = |s| ByteRangeSpec::parse(s).unwrap();
        assert_eq!(p("bytes=0-9").unwrap().resolve(5), Some((0, 4)));
        assert_eq!(p("bytes=-3").unwrap().resolve(5), Some((2, 4)));
        assert_eq!(p("bytes=7-").unwrap().resolve(5), None);
        assert_eq!(p("bytes=1-2,4-5"), None);
        assert_eq!(p("rows=1-2"), None);
        assert!(ByteRangeSpec::parse("bytes=5-1").is_err());
        assert!(ByteRangeSpec::parse("bytes=x-1").is_err());
    }

    #[test]
    fn entity_lists() {
        assert_eq!(parse_entity_match("If-Match", "*"), Ok(EntityMatch::Any));
        assert_eq!(
            parse_entity_match("If-Match", "\"a\", W/\"b\""),
            Ok(EntityMatch::Tags(vec!["\"a\"".into(), "W/\"b\"".into()]))
        );
        assert!(parse_entity_match("If-Match", "a").is_err());
        assert!(parse_entity_match("If-Match", "").is_err());
    }

    #[test]
    fn if_header_forms() {
        let l = parse_if("(<rt:1>) (<rid:2>)", 10).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].conditions[0].term, tok("rt:1"));
        let l = parse_if("<http://h/a> (Not <urn:x> [\"e\"])", 10).unwrap();
        assert_eq!(l[0].resource.as_deref(), Some("http://h/a"));
        assert!(l[0].conditions[0].negated);
        assert_eq!(l[0].conditions[1].term, IfTerm::ETag("\"e\"".into()));
        let l = parse_if("(rt:abc)", 10).unwrap();
        assert_eq!(l[0].conditions[0].term, tok("rt:abc"));
        let l = parse_if("(not <a>)", 10).unwrap();
        assert!(l[0].conditions[0].negated);
        let l = parse_if("(<DAV:no-lock>)", 10).unwrap();
        assert_eq!(l[0].conditions[0].term, tok("DAV:no-lock"));
        for bad in ["", "(", "()", "(<a>", "<a>", "x", "(<a>) <b> (<c>)", "([])"] {
            assert!(parse_if(bad, 10).is_err(), "{bad:?}");
        }
        assert!(parse_if("(<a>) (<b>) (<c>)", 2).is_err());
        // Found by fuzzing: a multi-byte character right after '(' used to split a char.
        assert!(parse_if("(,3\u{7a1}", 8).is_err());
        assert!(parse_if("(nޡ)", 8).is_ok());
        assert!(parse_if("(\u{7a1}\u{7a1})", 8).is_ok());
    }
}

/// The `Timeout` header of a LOCK (RFC 4918 §10.7): the first acceptable entry of its list,
/// as seconds, with `None` for `Infinite`. Entries the server does not understand are skipped
/// (the server may pick any timeout); a header with none it understands gives `Ok(None)` too.
pub fn parse_timeout(v: &str) -> Option<Option<u64>> {
    for entry in v.split(',').map(str::trim) {
        if entry.eq_ignore_ascii_case("infinite") {
            return Some(None);
        }
        if let Some(n) = entry
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case("second-"))
            .and_then(|_| entry[7..].parse::<u64>().ok())
        {
            return Some(Some(n));
        }
    }
    None
}

/// The `Lock-Token` header of an UNLOCK: one Coded-URL, `<token>`.
pub fn parse_lock_token(v: &str) -> Result<&str, HeaderError> {
    let inner = v
        .trim()
        .strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .ok_or_else(|| err("Lock-Token", "expected one lock token in angle brackets"))?;
    if inner.is_empty() || inner.contains(['<', '>', ' ']) {
        return Err(err(
            "Lock-Token",
            "expected one lock token in angle brackets",
        ));
    }
    Ok(inner)
}

#[cfg(test)]
mod lock_header_tests {
    use super::*;

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("Second-3600"), Some(Some(3600)));
        assert_eq!(parse_timeout("Infinite, Second-4100000000"), Some(None));
        assert_eq!(parse_timeout("Bogus, second-10"), Some(Some(10)));
        assert_eq!(parse_timeout("Second-x"), None);
        assert_eq!(parse_timeout("Second-99999999999999999999999"), None);
    }

    #[test]
    fn lock_tokens() {
        assert_eq!(
            parse_lock_token(" <opaquelocktoken:a-b> "),
            Ok("opaquelocktoken:a-b")
        );
        assert!(parse_lock_token("opaquelocktoken:a").is_err());
        assert!(parse_lock_token("<>").is_err());
        assert!(parse_lock_token("<a> <b>").is_err());
    }
}
