//! Native protocol positions come from clients (a `pos` query parameter, `Last-Event-ID`). The
//! decoder must never panic, and whatever it accepts must encode back to a position that decodes
//! to the same thing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings_core::Position;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(position) = Position::decode(text)
    {
        let again = Position::decode(&position.encode()).expect("our own encoding decodes");
        assert_eq!(again, position);
    }
});
