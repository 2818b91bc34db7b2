#![no_main]
//! The If header parser: never panics, and everything it accepts has at least one condition.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(lists) = davrepl_proto::headers::parse_if(s, 64) {
            assert!(!lists.is_empty() && lists.iter().all(|l| !l.conditions.is_empty()));
        }
        let _ = davrepl_proto::headers::parse_entity_match("If-Match", s);
        let _ = davrepl_proto::headers::Depth::parse(s);
        let _ = davrepl_proto::headers::parse_timeout(s);
        let _ = davrepl_proto::headers::parse_lock_token(s);
    }
});
