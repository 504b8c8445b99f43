//! SockJS escaping: the output is JSON that decodes to the input and holds no character SockJS
//! wants escaped.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings_core::escape::{json_string, needs_escape};

fuzz_target!(|text: &str| {
    let encoded = json_string(text);
    assert!(!encoded.chars().any(needs_escape));
    let decoded: String = serde_json::from_str(&encoded).expect("valid JSON");
    assert_eq!(decoded, text);
});
