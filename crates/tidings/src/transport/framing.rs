//! The HTTP body framings: how a receiving response wraps each frame of a protocol, what it
//! starts with, its content type, and whether it carries one step (polling) or many
//! (streaming). Each is named after the transport that brought it into the world; none knows
//! which protocol's frames it carries.

use axum::http::{HeaderMap, HeaderValue, header};
use bytes::{BufMut, Bytes, BytesMut};
use tidings_core::escape::push_json_string;

use super::callback::Callback;
use crate::protocol::Frame;

/// One way of carrying frames in an HTTP response body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// xhr-polling: each frame followed by `\n`; one step, then the response ends.
    Xhr,
    /// xhr-streaming: a prelude of 2048 `h` and `\n` (old browsers fire no progress event
    /// before 2 KiB), then each frame followed by `\n`.
    XhrStreaming,
    /// EventSource as SockJS frames it: a `\r\n` prelude, then `data: <frame>\r\n\r\n`.
    EventSource,
    /// htmlfile: an HTML page that calls `p(<frame>)` in its parent per frame.
    HtmlFile(Callback),
    /// jsonp-polling: `/**/<cb>("<frame>");` per frame; one step.
    Jsonp(Callback),
    /// Newline-delimited JSON: each frame followed by `\n`, streamed.
    Ndjson,
    /// Server-Sent Events: a `retry` prelude, then each frame as one unnamed event, with the
    /// frame's resume position as the event's `id` (so a browser's `EventSource` sends it back
    /// as `Last-Event-ID`).
    Sse,
    /// A JSON array of frames; one step.
    JsonArray,
}

/// The head of the htmlfile page; `{cb}` is replaced by the callback.
const HTMLFILE_HEAD: &str = r#"<!doctype html>
<html><head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
</head><body><h2>Don't panic!</h2>
  <script>
    document.domain = document.domain;
    var c = parent.{cb};
    c.start();
    function p(d) {c.message(d);};
    window.onload = function() {c.stop();};
  </script>"#;

/// Old browsers only start running a streamed HTML page after its first kilobyte, so the head
/// is padded past it. The length matches sockjs-node's (1029 bytes with the callback `cb`).
const HTMLFILE_PADDED_LEN: usize = 1027;

impl Framing {
    /// The transport's name in metrics.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Framing::Xhr => "xhr-polling",
            Framing::XhrStreaming => "xhr-streaming",
            Framing::EventSource => "eventsource",
            Framing::HtmlFile(_) => "htmlfile",
            Framing::Jsonp(_) => "jsonp-polling",
            Framing::Ndjson => "streaming",
            Framing::Sse => "sse",
            Framing::JsonArray => "polling",
        }
    }

    /// Whether the response carries many steps (until the response limit), rather than one.
    pub(crate) fn streaming(&self) -> bool {
        matches!(
            self,
            Framing::XhrStreaming
                | Framing::EventSource
                | Framing::HtmlFile(_)
                | Framing::Ndjson
                | Framing::Sse
        )
    }

    /// Adds the content type and framing-specific headers. Caching and cookies are the
    /// protocol's; CORS is [`Framing::cors`].
    pub(crate) fn headers(&self, headers: &mut HeaderMap) {
        let content_type = match self {
            Framing::Xhr | Framing::XhrStreaming | Framing::Jsonp(_) => {
                "application/javascript; charset=UTF-8"
            }
            // Compared exactly by clients: no charset parameter.
            Framing::EventSource | Framing::Sse => "text/event-stream",
            Framing::HtmlFile(_) => "text/html; charset=UTF-8",
            Framing::Ndjson => "application/x-ndjson",
            Framing::JsonArray => "application/json",
        };
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Framing::Jsonp(_) = self {
            // Script served with a caller-chosen name: never let a browser sniff it as anything
            // else (Rosetta Flash and friends).
            headers.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
        }
        if self.streaming() {
            // nginx buffers proxied responses unless told not to; a buffered stream delivers
            // nothing until it ends.
            headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
        }
    }

    /// Whether scripts on other origins read the response, so it needs CORS headers. (jsonp and
    /// htmlfile are loaded as scripts and pages, which need none.)
    pub(crate) fn cors(&self) -> bool {
        !matches!(self, Framing::HtmlFile(_) | Framing::Jsonp(_))
    }

    /// What a streaming response starts with, before any frame; not counted against the
    /// response limit.
    pub(crate) fn prelude(&self) -> Option<Bytes> {
        match self {
            Framing::XhrStreaming => {
                let mut prelude = BytesMut::with_capacity(2049);
                prelude.put_bytes(b'h', 2048);
                prelude.put_u8(b'\n');
                Some(prelude.freeze())
            }
            Framing::EventSource => Some(Bytes::from_static(b"\r\n")),
            Framing::HtmlFile(callback) => {
                let mut head = HTMLFILE_HEAD.replace("{cb}", callback.as_str());
                let padded = HTMLFILE_PADDED_LEN + callback.as_str().len() - 4;
                let spaces = padded.saturating_sub(head.len());
                head.extend(std::iter::repeat_n(' ', spaces));
                head.push_str("\r\n\r\n");
                Some(Bytes::from(head))
            }
            // How soon a plain EventSource retries after the response ends.
            Framing::Sse => Some(Bytes::from_static(b"retry: 1000\n\n")),
            Framing::Xhr | Framing::Jsonp(_) | Framing::Ndjson | Framing::JsonArray => None,
        }
    }

    /// One frame, wrapped: one chunk of a streaming response body.
    pub(crate) fn chunk(&self, frame: &Frame) -> Bytes {
        let mut out = BytesMut::with_capacity(frame.text().len() + 24);
        self.put(frame, &mut out);
        out.freeze()
    }

    /// The body of a polling response carrying `frames`.
    pub(crate) fn body(&self, frames: &[Frame]) -> Bytes {
        let len = frames.iter().map(|f| f.text().len() + 24).sum::<usize>() + 2;
        let mut out = BytesMut::with_capacity(len);
        if *self == Framing::JsonArray {
            out.put_u8(b'[');
            for (i, frame) in frames.iter().enumerate() {
                if i > 0 {
                    out.put_u8(b',');
                }
                out.put_slice(frame.text().as_bytes());
            }
            out.put_u8(b']');
        } else {
            for frame in frames {
                self.put(frame, &mut out);
            }
        }
        out.freeze()
    }

    fn put(&self, frame: &Frame, out: &mut BytesMut) {
        let text = frame.text().as_str();
        match self {
            Framing::Xhr | Framing::XhrStreaming | Framing::Ndjson => {
                out.put_slice(text.as_bytes());
                out.put_u8(b'\n');
            }
            // Frames hold no raw line break (SockJS and native frames are JSON), so one
            // `data:` line always holds one.
            Framing::EventSource => {
                out.put_slice(b"data: ");
                out.put_slice(text.as_bytes());
                out.put_slice(b"\r\n\r\n");
            }
            Framing::Sse => {
                if let Some(id) = frame.resume() {
                    out.put_slice(b"id: ");
                    out.put_slice(id.as_bytes());
                    out.put_u8(b'\n');
                }
                out.put_slice(b"data: ");
                out.put_slice(text.as_bytes());
                out.put_slice(b"\n\n");
            }
            Framing::HtmlFile(_) => {
                out.put_slice(b"<script>\np(");
                out.put_slice(json_string(text).as_bytes());
                out.put_slice(b");\n</script>\r\n");
            }
            // `/**/` keeps the body from starting with caller-chosen bytes.
            Framing::Jsonp(callback) => {
                out.put_slice(b"/**/");
                out.put_slice(callback.as_str().as_bytes());
                out.put_u8(b'(');
                out.put_slice(json_string(text).as_bytes());
                out.put_slice(b");\r\n");
            }
            Framing::JsonArray => out.put_slice(text.as_bytes()),
        }
    }
}

/// A frame as a SockJS-escaped JSON string, for the framings that hand it to a script.
fn json_string(frame: &str) -> String {
    let mut out = String::with_capacity(frame.len() + 8);
    push_json_string(&mut out, frame);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn callback(name: &str) -> Callback {
        Callback::parse(Some(name)).expect("valid callback")
    }

    fn frame(text: &'static str) -> Frame {
        Frame::new(text)
    }

    #[test]
    fn sse_sends_the_resume_position_as_the_event_id() {
        let text = r#"{"type":"messages","pos":"a:1:2","data":["x"]}"#.to_owned();
        let at = text.find("a:1:2").expect("pos");
        let with_id = Frame::resuming(text, at..at + 5);
        assert_eq!(
            Framing::Sse.chunk(&with_id),
            "id: a:1:2\ndata: {\"type\":\"messages\",\"pos\":\"a:1:2\",\"data\":[\"x\"]}\n\n"
        );
        assert_eq!(
            Framing::Sse.chunk(&frame(r#"{"type":"end"}"#)),
            "data: {\"type\":\"end\"}\n\n"
        );
    }

    #[test]
    fn polls_carry_their_frames_in_one_body() {
        let frames = [frame("o")];
        assert_eq!(Framing::Xhr.body(&frames), "o\n");
        let frames = [frame(r#"{"type":"open"}"#), frame(r#"{"type":"end"}"#)];
        assert_eq!(
            Framing::JsonArray.body(&frames),
            r#"[{"type":"open"},{"type":"end"}]"#
        );
        assert_eq!(Framing::JsonArray.body(&[]), "[]");
    }

    #[test]
    fn each_transport_wraps_frames_as_sockjs_node_does() {
        let cases = [
            (Framing::Xhr, "a[\"x\"]\n"),
            (Framing::XhrStreaming, "a[\"x\"]\n"),
            (Framing::EventSource, "data: a[\"x\"]\r\n\r\n"),
            (
                Framing::HtmlFile(callback("cb")),
                "<script>\np(\"a[\\\"x\\\"]\");\n</script>\r\n",
            ),
            (
                Framing::Jsonp(callback("x")),
                "/**/x(\"a[\\\"x\\\"]\");\r\n",
            ),
        ];
        for (framing, expected) in cases {
            assert_eq!(framing.chunk(&frame("a[\"x\"]")), expected, "{framing:?}");
        }
    }

    #[test]
    fn heartbeats_are_framed_like_any_frame() {
        assert_eq!(
            Framing::HtmlFile(callback("cb")).chunk(&frame("h")),
            "<script>\np(\"h\");\n</script>\r\n"
        );
        assert_eq!(
            Framing::Jsonp(callback("cb")).chunk(&frame("h")),
            "/**/cb(\"h\");\r\n"
        );
    }

    #[test]
    fn preludes() {
        let xhr = Framing::XhrStreaming.prelude().expect("prelude");
        assert_eq!(xhr.len(), 2049);
        assert!(xhr[..2048].iter().all(|b| *b == b'h') && xhr[2048] == b'\n');
        assert_eq!(Framing::EventSource.prelude().expect("prelude"), "\r\n");
        assert_eq!(Framing::Xhr.prelude(), None);
        assert_eq!(Framing::Jsonp(callback("cb")).prelude(), None);
    }

    #[test]
    fn htmlfile_head_is_padded_past_a_kilobyte() {
        let head = Framing::HtmlFile(callback("cb"))
            .prelude()
            .expect("prelude");
        assert_eq!(head.len(), 1029);
        let text = std::str::from_utf8(&head).expect("utf-8");
        assert!(text.contains("var c = parent.cb;"));
        assert!(text.ends_with(" \r\n\r\n"));
        let long = "x".repeat(2000);
        let head = Framing::HtmlFile(callback(&long))
            .prelude()
            .expect("prelude");
        // sockjs-node's padding grows with the callback, so the length stays 1027 + its length.
        assert_eq!(head.len(), 1027 + long.len());
    }
}
