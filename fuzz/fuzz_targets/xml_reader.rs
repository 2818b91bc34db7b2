#![no_main]
//! The streaming XML reader on any bytes (well-formed or not): never panics, and every tree it
//! accepts is within its depth and element limits.
use davrepl_proto::xml::{XmlLimits, parse_document};
use libfuzzer_sys::fuzz_target;

fn depth(e: &davrepl_proto::xml::Element) -> usize {
    1 + e.child_elements().map(depth).max().unwrap_or(0)
}

fn count(e: &davrepl_proto::xml::Element) -> usize {
    1 + e.child_elements().map(count).sum::<usize>()
}

fuzz_target!(|data: &[u8]| {
    let mut limits = XmlLimits::default();
    limits.max_bytes = 64 * 1024;
    limits.max_depth = 16;
    limits.max_elements = 500;
    if let Ok(root) = parse_document(data, &limits) {
        assert!(depth(&root) <= limits.max_depth);
        assert!(count(&root) <= limits.max_elements);
    }
});
