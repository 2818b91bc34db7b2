#![no_main]
//! The collblob decoder: never panics and never accepts anything it did not sign.
use davrepl_proto::collblob::CollBlob;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        assert!(CollBlob::decode(s, &[9u8; 32]).is_err(), "a forged collblob was accepted");
    }
});
