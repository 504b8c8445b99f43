//! SockJS 0.3.3: `o` when a session opens, `a[…]` frames of JSON strings, `h`, and
//! `c[code,"reason"]`; clients send JSON arrays of strings. The frames are the same on every
//! transport; each HTTP body framing only wraps them.

use axum::extract::ws::Utf8Bytes;
use tidings_core::{CloseCode, sockjs};

use super::{Frame, Protocol, Texts};
use crate::engine::channel::Closed;
use crate::engine::reader::Delivered;

/// The SockJS protocol. It keeps no state of its own.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SockJs;

impl Protocol for SockJs {
    const NAME: &'static str = "sockjs";

    fn opened(&mut self, out: &mut Vec<Frame>) {
        out.push(Frame::new(Utf8Bytes::from_static(sockjs::OPEN)));
    }

    fn messages(&mut self, messages: &[Delivered], out: &mut Vec<Frame>) {
        let frame = match messages {
            // The frame built when the message was published, shared, not copied.
            [one] => Texts::sockjs_frame(&one.payload),
            many => Utf8Bytes::from(sockjs::messages_frame(
                many.iter().map(|m| m.payload.sockjs()),
            )),
        };
        out.push(Frame::new(frame));
    }

    fn heartbeat(&mut self, out: &mut Vec<Frame>) {
        out.push(Frame::new(Utf8Bytes::from_static(sockjs::HEARTBEAT)));
    }

    fn close(&mut self, closed: &Closed, out: &mut Vec<Frame>) {
        let reason = tidings_core::close::truncate_reason(&closed.reason);
        out.push(Frame::new(sockjs::close_frame(closed.code, reason)));
    }

    fn decode(&mut self, text: &str) -> Result<Vec<String>, Closed> {
        // sockjs-node drops the connection on a broken frame; so do we, and the application
        // sees why.
        sockjs::parse_ws_message(text).map_err(|_| Closed::by(CloseCode::INVALID_PAYLOAD))
    }
}
