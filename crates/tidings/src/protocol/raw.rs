//! Raw WebSocket: one text message per application message, both ways, with no framing at all.
//! Heartbeats and the close are the WebSocket's own (a ping; a close frame with the code).

use super::{Frame, Protocol, Texts};
use crate::engine::channel::Closed;
use crate::engine::reader::Delivered;

/// The raw protocol. It keeps no state.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Raw;

impl Protocol for Raw {
    const NAME: &'static str = "raw";

    fn messages(&mut self, messages: &[Delivered], out: &mut Vec<Frame>) {
        // The text as published, shared by every recipient.
        out.extend(messages.iter().map(|m| Frame::new(Texts::text(&m.payload))));
    }

    fn heartbeat(&mut self, _out: &mut Vec<Frame>) {}

    fn close(&mut self, _closed: &Closed, _out: &mut Vec<Frame>) {}

    fn decode(&mut self, text: &str) -> Result<Vec<String>, Closed> {
        Ok(vec![text.to_owned()])
    }
}
