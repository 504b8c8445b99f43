//! SockJS frames: what the server writes (`o`, `h`, `a[…]`, `c[…]`) and what clients send.

use bytestring::ByteString;

use crate::close::CloseCode;
use crate::escape::push_json_string;

/// The open frame, sent once, first.
pub const OPEN: &str = "o";
/// The heartbeat frame.
pub const HEARTBEAT: &str = "h";

/// One application message encoded once for every SockJS recipient.
///
/// Cloning is cheap: the fields are reference-counted UTF-8 bytes shared by every frame that
/// carries the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    json: ByteString,
    frame: ByteString,
}

impl Encoded {
    /// Encodes `text` as a SockJS JSON string and as a one-message `a[…]` frame.
    pub fn new(text: &str) -> Self {
        let mut s = String::with_capacity(text.len() + 4);
        s.push_str("a[");
        push_json_string(&mut s, text);
        s.push(']');
        let frame = ByteString::from(s);
        let json = frame.slice_ref(&frame[2..frame.len() - 1]);
        Encoded { json, frame }
    }

    /// The message as an escaped JSON string literal, quotes included: valid JSON, and a valid
    /// JavaScript string literal, for any frame that carries the message as JSON.
    pub fn json(&self) -> &ByteString {
        &self.json
    }

    /// The message alone in a frame: `a["…"]`.
    pub fn frame(&self) -> &ByteString {
        &self.frame
    }
}

/// One `a[…]` frame carrying `messages` in order, built from their shared encodings: nothing is
/// escaped again. (A single message has its frame already: [`Encoded::frame`].)
pub fn messages_frame<'a, I>(messages: I) -> String
where
    I: IntoIterator<Item = &'a Encoded>,
    I::IntoIter: Clone,
{
    let messages = messages.into_iter();
    let len = 2 + messages.clone().map(|m| m.json.len() + 1).sum::<usize>();
    let mut out = String::with_capacity(len);
    out.push_str("a[");
    for (i, m) in messages.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&m.json);
    }
    out.push(']');
    out
}

/// The close frame, e.g. `c[3000,"Go away!"]`.
pub fn close_frame(code: CloseCode, reason: &str) -> String {
    let mut s = format!("c[{},", code.as_u16());
    push_json_string(&mut s, reason);
    s.push(']');
    s
}

/// Why a client payload was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// The body was empty, or valid JSON other than an array of strings.
    #[error("Payload expected.")]
    Expected,
    /// The body was not valid JSON.
    #[error("Broken JSON encoding.")]
    BrokenJson,
}

/// Parses the body of an `xhr_send`/`jsonp_send`: a JSON array of strings.
///
/// `[]` is a valid keep-alive and yields no messages.
pub fn parse_send_body(body: &[u8]) -> Result<Vec<String>, PayloadError> {
    if body.is_empty() {
        return Err(PayloadError::Expected);
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| PayloadError::BrokenJson)?;
    strings(value).ok_or(PayloadError::Expected)
}

/// Parses one WebSocket text message of the SockJS WebSocket transport.
///
/// An empty message and `[]` yield nothing; a bare JSON string is accepted as one message, as
/// sockjs-node does.
pub fn parse_ws_message(text: &str) -> Result<Vec<String>, PayloadError> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|_| PayloadError::BrokenJson)?;
    match value {
        serde_json::Value::String(s) => Ok(vec![s]),
        other => strings(other).ok_or(PayloadError::Expected),
    }
}

fn strings(value: serde_json::Value) -> Option<Vec<String>> {
    match value {
        serde_json::Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                serde_json::Value::String(s) => Some(s),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_have_exact_bytes() {
        let a = Encoded::new("x");
        let b = Encoded::new("y\"z");
        assert_eq!(messages_frame([&a]), r#"a["x"]"#);
        assert_eq!(messages_frame([&a]), a.frame().as_ref() as &str);
        assert_eq!(messages_frame([&a, &b]), r#"a["x","y\"z"]"#);
        assert_eq!(
            close_frame(CloseCode::GO_AWAY, "Go away!"),
            r#"c[3000,"Go away!"]"#
        );
    }

    #[test]
    fn send_bodies() {
        assert_eq!(
            parse_send_body(br#"["a","b"]"#),
            Ok(vec!["a".into(), "b".into()])
        );
        assert_eq!(parse_send_body(b"[]"), Ok(vec![]));
        assert_eq!(parse_send_body(b""), Err(PayloadError::Expected));
        assert_eq!(parse_send_body(br#"["x"#), Err(PayloadError::BrokenJson));
        assert_eq!(parse_send_body(br#""x""#), Err(PayloadError::Expected));
        assert_eq!(parse_send_body(b"{}"), Err(PayloadError::Expected));
        assert_eq!(parse_send_body(b"[1]"), Err(PayloadError::Expected));
    }

    #[test]
    fn ws_messages() {
        assert_eq!(parse_ws_message(""), Ok(vec![]));
        assert_eq!(parse_ws_message("[]"), Ok(vec![]));
        assert_eq!(parse_ws_message(r#""a""#), Ok(vec!["a".into()]));
        assert_eq!(
            parse_ws_message(r#"["a","b"]"#),
            Ok(vec!["a".into(), "b".into()])
        );
        assert_eq!(parse_ws_message("[\"a"), Err(PayloadError::BrokenJson));
    }

    #[test]
    fn escaped_unicode_is_decoded() {
        assert_eq!(
            parse_ws_message(r#"["\u2028\ud83d\ude00"]"#),
            Ok(vec!["\u{2028}\u{1f600}".into()])
        );
    }

    proptest! {
        #[test]
        fn a_frame_round_trips(msgs in proptest::collection::vec(any::<String>(), 1..8)) {
            let encoded: Vec<Encoded> = msgs.iter().map(|m| Encoded::new(m)).collect();
            let frame = messages_frame(&encoded);
            prop_assert_eq!(frame.as_bytes()[0], b'a');
            let back = parse_send_body(&frame.as_bytes()[1..]).unwrap();
            prop_assert_eq!(back, msgs);
        }
    }
}
