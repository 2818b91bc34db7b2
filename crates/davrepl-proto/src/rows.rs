//! `Range: rows=…` for SEARCH results and manifests (spec §2.6).

use crate::headers::HeaderError;

/// One row range of a `Range: rows=` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowSpec {
    /// `first-last` or `first-`.
    FromTo(u64, Option<u64>),
    /// `-n`: the last n rows (`-0` asks for none: a count-only request).
    Last(u64),
}

/// Parses `rows=…` (whitespace after commas allowed). `Ok(None)` for another unit.
pub fn parse(v: &str, max_specs: usize) -> Result<Option<Vec<RowSpec>>, HeaderError> {
    let err = |r: &str| HeaderError {
        header: "Range",
        reason: r.to_owned(),
    };
    let v = v.trim();
    let Some(rest) = v.strip_prefix("rows=").or_else(|| v.strip_prefix("Rows=")) else {
        return Ok(None);
    };
    let mut specs = Vec::new();
    for part in rest.split(',') {
        let part = part.trim();
        let (a, b) = part
            .split_once('-')
            .ok_or_else(|| err("row range needs '-'"))?;
        let num = |s: &str| {
            s.trim()
                .parse::<u64>()
                .map_err(|_| err("row numbers must be integers"))
        };
        let spec = match (a.trim().is_empty(), b.trim().is_empty()) {
            (true, true) => return Err(err("empty row range")),
            (true, false) => RowSpec::Last(num(b)?),
            (false, true) => RowSpec::FromTo(num(a)?, None),
            (false, false) => {
                let (a, b) = (num(a)?, num(b)?);
                if b < a {
                    return Err(err("last row before first row"));
                }
                RowSpec::FromTo(a, Some(b))
            }
        };
        specs.push(spec);
        if specs.len() > max_specs {
            return Err(err(&format!("more than {max_specs} row ranges")));
        }
    }
    Ok(Some(specs))
}

/// The rows to deliver out of `total`, as sorted, merged inclusive ranges; `Err(())` when the
/// request is unsatisfiable (every range starts at or past the end of a non-empty result).
#[allow(clippy::result_unit_err)]
pub fn resolve(specs: &[RowSpec], total: u64) -> Result<Vec<(u64, u64)>, ()> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut any_satisfiable = total == 0;
    for s in specs {
        let r = match *s {
            RowSpec::Last(0) => {
                any_satisfiable = true;
                None
            }
            RowSpec::Last(n) if total > 0 => Some((total.saturating_sub(n), total - 1)),
            RowSpec::Last(_) => None,
            RowSpec::FromTo(a, _) if a >= total => None,
            RowSpec::FromTo(a, b) => Some((a, b.map_or(total - 1, |b| b.min(total - 1)))),
        };
        if let Some(r) = r {
            any_satisfiable = true;
            out.push(r);
        }
    }
    if !any_satisfiable {
        return Err(());
    }
    out.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(out.len());
    for (a, b) in out {
        match merged.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    Ok(merged)
}

/// `Content-Range` value: `rows 0-9; total=250`, `rows 0-0; total=0` for an empty result,
/// `rows */N; total=N` for a count-only request.
pub fn content_range(ranges: &[(u64, u64)], total: u64) -> String {
    if total == 0 {
        return "rows 0-0; total=0".into();
    }
    if ranges.is_empty() {
        return format!("rows */{total}; total={total}");
    }
    let parts: Vec<String> = ranges.iter().map(|(a, b)| format!("{a}-{b}")).collect();
    format!("rows {}; total={total}", parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_forms() {
        let p = |s| parse(s, 10).unwrap().unwrap();
        assert_eq!(p("rows=0-99"), vec![RowSpec::FromTo(0, Some(99))]);
        assert_eq!(
            p("rows=0-5, 10-15"),
            vec![RowSpec::FromTo(0, Some(5)), RowSpec::FromTo(10, Some(15))]
        );
        assert_eq!(p("rows=-0"), vec![RowSpec::Last(0)]);
        assert_eq!(p("rows=228-"), vec![RowSpec::FromTo(228, None)]);
        assert_eq!(parse("bytes=0-1", 10).unwrap(), None);
        assert!(parse("rows=5-1", 10).is_err());
        assert!(parse("rows=x", 10).is_err());
        assert!(parse("rows=1-2,3-4,5-6", 2).is_err());
    }

    #[test]
    fn resolve_and_header() {
        assert_eq!(
            resolve(&[RowSpec::FromTo(0, Some(99))], 250),
            Ok(vec![(0, 99)])
        );
        assert_eq!(
            resolve(&[RowSpec::FromTo(0, Some(99))], 50),
            Ok(vec![(0, 49)])
        );
        assert_eq!(resolve(&[RowSpec::FromTo(300, None)], 250), Err(()));
        assert_eq!(resolve(&[RowSpec::FromTo(300, None)], 0), Ok(vec![]));
        assert_eq!(resolve(&[RowSpec::Last(0)], 7), Ok(vec![]));
        assert_eq!(
            resolve(&[RowSpec::FromTo(0, Some(4)), RowSpec::Last(5)], 8),
            Ok(vec![(0, 7)])
        );
        assert_eq!(content_range(&[(0, 99)], 250), "rows 0-99; total=250");
        assert_eq!(content_range(&[], 7), "rows */7; total=7");
        assert_eq!(content_range(&[], 0), "rows 0-0; total=0");
    }
}
