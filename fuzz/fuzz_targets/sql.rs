#![no_main]
//! The SQL parser: never panics; whatever parses renders to a canonical text that parses back
//! to the same query.
use davrepl_proto::sql::{SqlLimits, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(q) = parse(s, &SqlLimits::default()) {
            let canon = q.to_sql();
            let again = parse(&canon, &SqlLimits::default()).expect("canonical text parses");
            assert_eq!(again.to_sql(), canon);
        }
    }
});
