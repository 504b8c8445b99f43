//! The STOMP decoder reads client bytes: it must never panic, whatever the bytes and however
//! they are split, and every frame it accepts must survive re-encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings_core::stomp::{Decoder, Item, Limits, Version};

fuzz_target!(|data: &[u8]| {
    let Some((&split, bytes)) = data.split_first() else {
        return;
    };
    let split = usize::from(split).min(bytes.len());
    let limits = Limits {
        max_frame: 4096,
        max_headers: 16,
        max_header_line: 512,
    };
    let mut decoder = Decoder::new(limits);
    for piece in [&bytes[..split], &bytes[split..]] {
        if decoder.push(piece).is_err() {
            return;
        }
        loop {
            match decoder.next_item() {
                Ok(Some(Item::Frame(frame))) => {
                    let encoded = frame.encode(Version::V1_2);
                    // The encoder may add a content-length header.
                    let mut again = Decoder::new(Limits {
                        max_frame: usize::MAX / 4,
                        max_headers: limits.max_headers + 1,
                        // Escaping can double a header line's length.
                        max_header_line: limits.max_header_line * 2 + 16,
                    });
                    again.push(&encoded).expect("our own frame fits");
                    let Ok(Some(Item::Frame(mut back))) = again.next_item() else {
                        panic!("our own frame decodes: {encoded:?}");
                    };
                    back.headers.retain(|(n, _)| n != "content-length");
                    let mut original = frame.clone();
                    original.headers.retain(|(n, _)| n != "content-length");
                    assert_eq!(back.body, original.body);
                }
                Ok(Some(Item::Heartbeat)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
});
