//! Decodes arbitrary bytes with the default limits. Whatever decodes must
//! encode, and the encoded text must decode to the same value.
#![no_main]

use cluster_scope_core::json::{decode, encode, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(value) = decode(data, &limits) {
        let text = encode(&value, &limits).expect("a decoded value encodes");
        let again = decode(&text, &limits).expect("encoded text decodes");
        assert_eq!(again, value, "round trip changed the value");
    }
});
