//! Date formats used by WebDAV live properties.

use std::time::{SystemTime, UNIX_EPOCH};

/// The latest instant an HTTP date can show: `Fri, 31 Dec 9999 23:59:59 GMT` (its year has
/// four digits).
const LAST_HTTP_DATE: u64 = 253_402_300_799;

/// Whole seconds since 1970 (0 for an earlier time).
fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A point in time as a civil UTC date: year, month (1-12), day (1-31), hour, minute,
/// second, and weekday (0 = Sunday). Times before 1970 count as 1970-01-01.
struct Civil {
    year: i64,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    weekday: u8,
}

impl Civil {
    fn of_secs(secs: u64) -> Self {
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        // Civil-from-days (proleptic Gregorian), after Howard Hinnant's published algorithm.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        Self {
            year: yoe + era * 400 + i64::from(month <= 2),
            month: month as u8,
            day: day as u8,
            hour: (rem / 3600) as u8,
            minute: (rem / 60 % 60) as u8,
            second: (rem % 60) as u8,
            // 1970-01-01 was a Thursday.
            weekday: ((days + 4) % 7) as u8,
        }
    }

    fn of(t: SystemTime) -> Self {
        Self::of_secs(secs(t))
    }
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` (for `getlastmodified` and `Last-Modified`). Times
/// outside what the format can show are clamped to it (1970 to the end of 9999): a stored
/// time, which a client may have chosen (`X-OC-Mtime`), never makes a response fail.
pub fn http_date(t: SystemTime) -> String {
    std::str::from_utf8(&http_date_bytes(t))
        .unwrap_or_default()
        .to_owned()
}

/// [`http_date`] as ASCII bytes on the stack (for a header value, which copies them once).
pub fn http_date_bytes(t: SystemTime) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let c = Civil::of_secs(secs(t).min(LAST_HTTP_DATE));
    let two = |n: u8| [b'0' + n / 10, b'0' + n % 10];
    let year = c.year as u16; // 1970..=9999 after the clamp
    let mut out = *b"Sun, 06 Nov 1994 08:49:37 GMT";
    out[0..3].copy_from_slice(DAYS[usize::from(c.weekday)]);
    out[5..7].copy_from_slice(&two(c.day));
    out[8..11].copy_from_slice(MONTHS[usize::from(c.month - 1)]);
    out[12..14].copy_from_slice(&two((year / 100) as u8));
    out[14..16].copy_from_slice(&two((year % 100) as u8));
    out[17..19].copy_from_slice(&two(c.hour));
    out[20..22].copy_from_slice(&two(c.minute));
    out[23..25].copy_from_slice(&two(c.second));
    out
}

/// Parses an HTTP date (`If-Modified-Since`); `None` if malformed.
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(s).ok()
}

/// `1994-11-06T08:49:37Z` (for `creationdate`).
pub fn rfc3339(t: SystemTime) -> String {
    let c = Civil::of(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Every day from 1970 to 2100 (at a varying time of day), and both ends of the range,
    /// formats as the `httpdate` crate formats it.
    #[test]
    fn http_dates_match_httpdate() {
        for day in 0..(130 * 366) {
            let secs = day * 86_400 + (day * 7919) % 86_400;
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            assert_eq!(http_date(t), httpdate::fmt_http_date(t), "{secs}");
        }
        let last = UNIX_EPOCH + Duration::from_secs(LAST_HTTP_DATE);
        assert_eq!(http_date(last), httpdate::fmt_http_date(last));
        assert_eq!(http_date(last), "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    /// Times the format cannot show are clamped, never a panic.
    #[test]
    fn http_dates_out_of_range_are_clamped() {
        let far = UNIX_EPOCH + Duration::from_secs(300_000_000_000);
        assert_eq!(http_date(far), "Fri, 31 Dec 9999 23:59:59 GMT");
        let before = UNIX_EPOCH - Duration::from_secs(86_400);
        assert_eq!(http_date(before), "Thu, 01 Jan 1970 00:00:00 GMT");
    }

    #[test]
    fn formats() {
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(rfc3339(t), "1994-11-06T08:49:37Z");
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(t));
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
    }
}
