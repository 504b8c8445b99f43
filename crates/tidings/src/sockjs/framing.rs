//! How each SockJS HTTP receive transport wraps a frame (`o`, `h`, `a[…]`, `c[…]`) in its
//! response body, and the response headers that go with it.
//!
//! This is the only part of the five HTTP receive transports that differs between them; the
//! session logic in [`receive`](super::receive) is shared.

use axum::http::{HeaderMap, HeaderValue, header};
use bytes::{BufMut, Bytes, BytesMut};
use tidings_core::escape::push_json_string;

use super::callback::Callback;

/// One of the SockJS HTTP receive transports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `POST …/xhr`: one frame and `\n`, then the response ends.
    XhrPolling,
    /// `POST …/xhr_streaming`: a prelude of 2048 `h`, then frames each followed by `\n`.
    XhrStreaming,
    /// `GET …/eventsource`: a `\r\n` prelude, then `data: <frame>\r\n\r\n` events.
    EventSource,
    /// `GET …/htmlfile?c=<cb>`: an HTML page that calls `p(<frame>)` in its parent per frame.
    HtmlFile(Callback),
    /// `GET …/jsonp?c=<cb>`: `/**/<cb>("<frame>");` and the response ends.
    Jsonp(Callback),
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
    /// Whether the response carries many frames (until the response limit), rather than one.
    pub(crate) fn streaming(&self) -> bool {
        matches!(
            self,
            Framing::XhrStreaming | Framing::EventSource | Framing::HtmlFile(_)
        )
    }

    /// Adds the content type and transport-specific headers. Caching, CORS and the cookie are
    /// the caller's.
    pub(crate) fn headers(&self, headers: &mut HeaderMap) {
        let content_type = match self {
            Framing::XhrPolling | Framing::XhrStreaming | Framing::Jsonp(_) => {
                "application/javascript; charset=UTF-8"
            }
            // Compared exactly by clients: no charset parameter.
            Framing::EventSource => "text/event-stream",
            Framing::HtmlFile(_) => "text/html; charset=UTF-8",
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
        matches!(
            self,
            Framing::XhrPolling | Framing::XhrStreaming | Framing::EventSource
        )
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
            Framing::XhrPolling | Framing::Jsonp(_) => None,
        }
    }

    /// `frame` wrapped for this transport: one chunk of the response body.
    pub(crate) fn frame(&self, frame: impl AsRef<[u8]>) -> Bytes {
        let frame = frame.as_ref();
        let mut out = BytesMut::with_capacity(frame.len() + 24);
        match self {
            Framing::XhrPolling | Framing::XhrStreaming => {
                out.put_slice(frame);
                out.put_u8(b'\n');
            }
            // Frames are JSON with every newline escaped, so one `data:` line always holds one.
            Framing::EventSource => {
                out.put_slice(b"data: ");
                out.put_slice(frame);
                out.put_slice(b"\r\n\r\n");
            }
            Framing::HtmlFile(_) => {
                out.put_slice(b"<script>\np(");
                out.put_slice(json_string(frame).as_bytes());
                out.put_slice(b");\n</script>\r\n");
            }
            // `/**/` keeps the body from starting with caller-chosen bytes.
            Framing::Jsonp(callback) => {
                out.put_slice(b"/**/");
                out.put_slice(callback.as_str().as_bytes());
                out.put_u8(b'(');
                out.put_slice(json_string(frame).as_bytes());
                out.put_slice(b");\r\n");
            }
        }
        out.freeze()
    }
}

/// A frame as a SockJS-escaped JSON string, for the transports that hand it to a script.
fn json_string(frame: &[u8]) -> String {
    // Frames are built from `str` pieces, so they are always UTF-8.
    let mut out = String::with_capacity(frame.len() + 8);
    push_json_string(&mut out, std::str::from_utf8(frame).unwrap_or_default());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn callback(name: &str) -> Callback {
        Callback::parse(Some(name)).expect("valid callback")
    }

    #[test]
    fn each_transport_wraps_frames_as_sockjs_node_does() {
        let cases = [
            (Framing::XhrPolling, "a[\"x\"]\n"),
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
            assert_eq!(framing.frame("a[\"x\"]"), expected, "{framing:?}");
        }
    }

    #[test]
    fn heartbeats_are_framed_like_any_frame() {
        assert_eq!(
            Framing::HtmlFile(callback("cb")).frame("h"),
            "<script>\np(\"h\");\n</script>\r\n"
        );
        assert_eq!(
            Framing::Jsonp(callback("cb")).frame("h"),
            "/**/cb(\"h\");\r\n"
        );
    }

    #[test]
    fn preludes() {
        let xhr = Framing::XhrStreaming.prelude().expect("prelude");
        assert_eq!(xhr.len(), 2049);
        assert!(xhr[..2048].iter().all(|b| *b == b'h') && xhr[2048] == b'\n');
        assert_eq!(Framing::EventSource.prelude().expect("prelude"), "\r\n");
        assert_eq!(Framing::XhrPolling.prelude(), None);
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
