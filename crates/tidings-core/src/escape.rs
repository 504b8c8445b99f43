//! JSON string encoding with SockJS's extra escapes.
//!
//! SockJS sends every message as a JSON string, and on top of ordinary JSON escaping it escapes a
//! set of code points that browsers or JavaScript parsers mangle (line separators, zero-width
//! joiners, specials). The reference test suite compares bytes, so the escapes use lowercase hex,
//! as `JSON.stringify` does. Non-BMP characters are written as UTF-8.

/// Whether SockJS requires `c` to be sent as a `\uXXXX` escape rather than as UTF-8.
pub fn needs_escape(c: char) -> bool {
    matches!(c as u32,
        0x0000..=0x001f
        | 0x200c..=0x200f
        | 0x2028..=0x202f
        | 0x2060..=0x206f
        | 0xfff0..=0xffff)
}

/// Appends `s` to `out` as a quoted JSON string literal, with SockJS's escapes.
pub fn push_json_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 2);
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let short = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\u{8}' => Some("\\b"),
            '\u{c}' => Some("\\f"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            _ => None,
        };
        if short.is_none() && !needs_escape(c) {
            continue;
        }
        out.push_str(&s[start..i]);
        start = i + c.len_utf8();
        match short {
            Some(esc) => out.push_str(esc),
            None => {
                let v = c as u32;
                out.push_str("\\u");
                for shift in [12, 8, 4, 0] {
                    out.push(HEX[((v >> shift) & 0xf) as usize] as char);
                }
            }
        }
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// `s` as a quoted JSON string literal with SockJS's escapes.
///
/// ```
/// assert_eq!(tidings_core::escape::json_string("a\u{2028}\"b"), r#""a\u2028\"b""#);
/// ```
pub fn json_string(s: &str) -> String {
    let mut out = String::new();
    push_json_string(&mut out, s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escapes_use_lowercase_hex() {
        assert_eq!(
            json_string("\u{1f}\u{200c}\u{fffe}"),
            r#""\u001f\u200c\ufffe""#
        );
    }

    #[test]
    fn short_escapes_match_json_stringify() {
        assert_eq!(json_string("\n\t\r\u{8}\u{c}\\\"/"), r#""\n\t\r\b\f\\\"/""#);
    }

    #[test]
    fn non_bmp_stays_utf8() {
        assert_eq!(json_string("\u{1f600}"), "\"\u{1f600}\"");
    }

    proptest! {
        #[test]
        fn round_trips_through_json(s in any::<String>()) {
            let encoded = json_string(&s);
            let decoded: String = serde_json::from_str(&encoded).unwrap();
            prop_assert_eq!(decoded, s);
        }

        #[test]
        fn never_emits_a_char_that_needs_escaping(s in any::<String>()) {
            let encoded = json_string(&s);
            prop_assert!(!encoded.chars().any(needs_escape));
        }
    }
}
