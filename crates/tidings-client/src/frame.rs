//! The native protocol's frames as the server sends them (`docs/protocol.md`), read into a type:
//! anything else is a typed error, never a panic.

use serde::Deserialize;

use crate::error::Error;

/// One frame from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// First on every transport connection: where delivery starts.
    Open { pos: String },
    /// Messages in order, and the position after the last of them.
    Messages { pos: String, data: Vec<String> },
    /// Nothing to say for a heartbeat.
    Heartbeat,
    /// Messages before `pos` are gone; `missed` of them when known.
    Gap { pos: String, missed: Option<u64> },
    /// This connection ends; reconnect from the position (`pos` when given).
    End { pos: Option<String> },
    /// The session is closed.
    Close {
        code: u16,
        reason: String,
        reconnect: bool,
    },
    /// A frame of a type this client does not know: ignored, as the protocol asks.
    Other,
}

/// The wire form, before the checks a type cannot express.
#[derive(Deserialize)]
struct Wire {
    #[serde(rename = "type")]
    kind: String,
    pos: Option<String>,
    data: Option<Vec<String>>,
    missed: Option<u64>,
    code: Option<u16>,
    reason: Option<String>,
    reconnect: Option<bool>,
}

impl Frame {
    /// Reads one frame (a JSON object with a `type`).
    pub(crate) fn parse(text: &str) -> Result<Frame, Error> {
        let bad = |why: &str| Error::Protocol(format!("{why}: {}", abbreviate(text)));
        let wire: Wire = serde_json::from_str(text).map_err(|e| bad(&e.to_string()))?;
        let pos = |wire: &Wire| wire.pos.clone().ok_or_else(|| bad("a frame without `pos`"));
        Ok(match wire.kind.as_str() {
            "open" => Frame::Open { pos: pos(&wire)? },
            "messages" => {
                let pos = pos(&wire)?;
                match wire.data {
                    Some(data) if !data.is_empty() => Frame::Messages { pos, data },
                    _ => return Err(bad("a `messages` frame without messages")),
                }
            }
            "heartbeat" => Frame::Heartbeat,
            "gap" => Frame::Gap {
                pos: pos(&wire)?,
                missed: wire.missed,
            },
            "end" => Frame::End { pos: wire.pos },
            "close" => Frame::Close {
                code: wire
                    .code
                    .ok_or_else(|| bad("a `close` frame without `code`"))?,
                reason: wire.reason.unwrap_or_default(),
                reconnect: wire.reconnect.unwrap_or(false),
            },
            _ => Frame::Other,
        })
    }

    /// The position this frame moves the client to, if any.
    pub(crate) fn position(&self) -> Option<&str> {
        match self {
            Frame::Open { pos } | Frame::Messages { pos, .. } | Frame::Gap { pos, .. } => Some(pos),
            Frame::End { pos } => pos.as_deref(),
            Frame::Heartbeat | Frame::Close { .. } | Frame::Other => None,
        }
    }
}

/// At most 200 characters of `text`, for an error message.
pub(crate) fn abbreviate(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn reads_every_frame_of_the_protocol() {
        let frames = [
            (
                r#"{"type":"open","pos":"a:1:0","transport":"sse"}"#,
                Frame::Open {
                    pos: "a:1:0".into(),
                },
            ),
            (
                r#"{"type":"messages","pos":"a:1:2","data":["x","y\n"]}"#,
                Frame::Messages {
                    pos: "a:1:2".into(),
                    data: vec!["x".into(), "y\n".into()],
                },
            ),
            (r#"{"type":"heartbeat"}"#, Frame::Heartbeat),
            (
                r#"{"type":"gap","pos":"a:1:9","missed":null}"#,
                Frame::Gap {
                    pos: "a:1:9".into(),
                    missed: None,
                },
            ),
            (r#"{"type":"end"}"#, Frame::End { pos: None }),
            (
                r#"{"type":"close","code":3000,"reason":"Go away!","reconnect":false}"#,
                Frame::Close {
                    code: 3000,
                    reason: "Go away!".into(),
                    reconnect: false,
                },
            ),
            (r#"{"type":"later","what":1}"#, Frame::Other),
        ];
        for (text, frame) in frames {
            assert_eq!(Frame::parse(text).expect(text), frame);
        }
    }

    #[test]
    fn malformed_frames_are_errors() {
        for text in [
            "",
            "not json",
            "[]",
            r#"{"pos":"a"}"#,
            r#"{"type":"open"}"#,
            r#"{"type":"messages","pos":"p","data":[]}"#,
            r#"{"type":"messages","pos":"p","data":[1]}"#,
            r#"{"type":"close"}"#,
            r#"{"type":"gap","pos":7}"#,
        ] {
            assert!(
                matches!(Frame::parse(text), Err(Error::Protocol(_))),
                "{text:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn parsing_anything_never_panics(text in ".{0,300}") {
            let _ = Frame::parse(&text);
        }

        #[test]
        fn messages_read_back_as_written(
            pos in "[a-z0-9:,+]{1,40}",
            data in proptest::collection::vec(".{0,40}", 1..8),
        ) {
            let text = serde_json::json!({"type": "messages", "pos": pos, "data": data})
                .to_string();
            prop_assert_eq!(Frame::parse(&text).ok(), Some(Frame::Messages { pos, data }));
        }
    }
}
