#![no_main]
//! The LIKE matcher against a plain recursive reference on short inputs (where the reference's
//! exponential worst case stays small); on any input, it must never panic.
use davrepl_proto::sql::like;
use libfuzzer_sys::fuzz_target;

fn reference(t: &[char], p: &[char]) -> bool {
    match p.split_first() {
        None => t.is_empty(),
        Some(('%', rest)) => (0..=t.len()).any(|i| reference(&t[i..], rest)),
        Some(('_', rest)) => !t.is_empty() && reference(&t[1..], rest),
        Some((c, rest)) => {
            t.first().is_some_and(|x| x.eq_ignore_ascii_case(c)) && reference(&t[1..], rest)
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let (text, pattern) = s.split_once('\u{1}').unwrap_or((s, "%"));
    let got = like(text, pattern);
    let (t, p): (Vec<char>, Vec<char>) = (text.chars().collect(), pattern.chars().collect());
    if t.len() <= 16 && p.len() <= 12 {
        assert_eq!(got, reference(&t, &p), "text {text:?} pattern {pattern:?}");
    }
});
