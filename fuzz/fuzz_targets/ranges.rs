#![no_main]
//! `Range: rows=` and `Range: bytes=`: never panic; resolved row ranges are sorted, disjoint
//! and inside the result.
use davrepl_proto::headers::ByteRangeSpec;
use davrepl_proto::rows;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let total = u64::from(data[0]) * 7;
    if let Ok(s) = std::str::from_utf8(&data[1..]) {
        if let Ok(Some(specs)) = rows::parse(s, 16) {
            if let Ok(ranges) = rows::resolve(&specs, total) {
                for w in ranges.windows(2) {
                    assert!(w[0].1 < w[1].0);
                }
                assert!(ranges.iter().all(|(a, b)| a <= b && *b < total.max(1)));
                let _ = rows::content_range(&ranges, total);
            }
        }
        if let Ok(Some(spec)) = ByteRangeSpec::parse(s) {
            if let Some((a, b)) = spec.resolve(total) {
                assert!(a <= b && b < total);
            }
        }
    }
});
