#![no_main]
//! Request paths and hrefs: never panic, and nothing resolves outside the mount or to a path
//! with `..` in it.
use davrepl_proto::href::Mount;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let m = Mount::new("/dav");
        for r in [m.resolve(s), m.resolve_href(s)] {
            if let Ok(p) = r {
                assert!(p.segments().all(|seg| seg != ".." && seg != "." && !seg.contains('/')));
                let href = m.href(&p, false);
                assert!(href.starts_with("/dav"));
                assert_eq!(m.resolve(&href).unwrap(), p);
            }
        }
    }
});
