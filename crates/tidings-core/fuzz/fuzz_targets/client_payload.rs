//! Every parser that reads client bytes: xhr_send/jsonp_send bodies and WebSocket frames.
//! They must never panic, and whatever they accept must survive re-encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings_core::sockjs::{Encoded, messages_frame, parse_send_body, parse_ws_message};

fuzz_target!(|data: &[u8]| {
    if let Ok(messages) = parse_send_body(data) {
        round_trip(&messages);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(messages) = parse_ws_message(text)
    {
        round_trip(&messages);
    }
});

fn round_trip(messages: &[String]) {
    if messages.is_empty() {
        return;
    }
    let encoded: Vec<Encoded> = messages.iter().map(|m| Encoded::new(m)).collect();
    let frame = messages_frame(&encoded);
    let back = parse_send_body(frame[1..].as_bytes()).expect("our own frame parses");
    assert_eq!(back, messages);
}
