#![no_main]
//! The XML request parsers (PROPFIND, PROPPATCH, SEARCH, REPORT): never panic, bounded work.
use davrepl_proto::xml::{
    XmlLimits, parse_lockinfo, parse_propfind, parse_proppatch, parse_report, parse_search,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut limits = XmlLimits::default();
    limits.max_bytes = 64 * 1024;
    limits.max_depth = 32;
    limits.max_elements = 2000;
    let _ = parse_propfind(data, &limits);
    let _ = parse_proppatch(data, &limits);
    let _ = parse_search(data, &limits);
    let _ = parse_report(data, &limits);
    let _ = parse_lockinfo(data, &limits);
});
