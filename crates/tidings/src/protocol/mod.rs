//! Protocols: what goes on the wire, whichever transport carries it.
//!
//! A protocol is one implementation of [`Protocol`]: the frames a connection starts with, how a
//! batch of deliveries (messages, a gap, the close) becomes frames from the messages' shared
//! encodings, the heartbeat, and how to read what the client sends. Transports are generic over
//! it and name no protocol; a protocol names no transport. SockJS ([`sockjs`]), raw WebSocket
//! ([`raw`]), the native protocol ([`native`]) and STOMP ([`stomp`], carried raw or inside
//! SockJS) are the four today; a new one is a module here that implements the trait, plus its
//! routes.

use std::ops::Range;
use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;

use tidings_core::Cursor;
use tidings_store::{Payload, Topic};

use crate::engine::channel::Closed;
use crate::engine::reader::{Delivered, Missed};
use crate::engine::session::Session;

pub(crate) mod native;
pub(crate) mod raw;
pub(crate) mod sockjs;
pub(crate) mod stomp;

/// One frame of a protocol: one WebSocket text message, or one unit an HTTP body framing wraps
/// (a line, an event, a script call, an element of an array).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    text: Utf8Bytes,
    /// Where in `text` the position is that a client resumes from after this frame, for frames
    /// that carry one (Server-Sent Events send it as the event's `id`).
    /// (Start and end as `u32`: frames are far below 4 GiB, and a smaller frame is cheaper to
    /// move for every message of every recipient.)
    resume: Option<(u32, u32)>,
}

impl Frame {
    /// A frame of `text`.
    pub(crate) fn new(text: impl Into<Utf8Bytes>) -> Self {
        Frame {
            text: text.into(),
            resume: None,
        }
    }

    /// A frame of `text` that carries the client's resume position at `resume`.
    pub(crate) fn resuming(text: String, resume: Range<usize>) -> Self {
        let resume = text.get(resume.clone()).and_then(|_| {
            Some((
                u32::try_from(resume.start).ok()?,
                u32::try_from(resume.end).ok()?,
            ))
        });
        Frame {
            text: text.into(),
            resume,
        }
    }

    /// The frame's text.
    pub(crate) fn text(&self) -> &Utf8Bytes {
        &self.text
    }

    /// The frame's text, to send.
    pub(crate) fn into_text(self) -> Utf8Bytes {
        self.text
    }

    /// The position a client resumes from after this frame, if it carries one.
    pub(crate) fn resume(&self) -> Option<&str> {
        let (start, end) = self.resume?;
        self.text.as_str().get(start as usize..end as usize)
    }
}

/// A message as WebSocket text, in the forms the protocols send it whole: built once per message
/// on this node and kept in the payload ([`Payload::shared_form`]), so that no recipient pays for
/// axum's UTF-8 check (about 8 ns for a 64-byte message, once per recipient, had each built it).
pub(crate) struct Texts {
    /// The text itself (raw WebSocket).
    pub(crate) text: Utf8Bytes,
    /// `a["…"]`, the message alone in a SockJS frame.
    pub(crate) sockjs_frame: Utf8Bytes,
    /// Its STOMP MESSAGE frame, built by the first STOMP subscriber that receives it.
    pub(crate) stomp: OnceLock<StompShared>,
}

/// The STOMP MESSAGE frame of one message, built once on this node ([`stomp`] builds and reads
/// it): subscribers' frames differ only in the subscription's own headers, which come first.
pub(crate) struct StompShared {
    /// What it was built for. A frame names its topic's destination (under the service's user
    /// prefix) and its position; one built for another topic, position or prefix (the same
    /// payload published twice, two services on one store) is not used.
    pub(crate) topic: Topic,
    pub(crate) cursor: Cursor,
    pub(crate) user_prefix: Box<str>,
    /// The subscription id `frame` is for (with `ack: auto`): the first subscriber's, shared by
    /// every later one with the same id, as most are (`sub-0` of `@stomp/stompjs`).
    pub(crate) common: Box<str>,
    pub(crate) frame: Utf8Bytes,
    /// `frame` as a quoted JSON string, for SockJS's `a[…]`: escaped by the first STOMP
    /// subscriber over SockJS that gets it, shared by the rest.
    pub(crate) json: OnceLock<String>,
    /// Where in `frame` what every subscriber shares starts, after the subscription header:
    /// `message-id`, `destination`, the sender's headers, `content-length`, the blank line, the
    /// body and the NUL.
    pub(crate) rest: usize,
}

impl Texts {
    /// The text of `payload`, shared.
    #[inline]
    pub(crate) fn text(payload: &Payload) -> Utf8Bytes {
        Texts::of(payload, |t| t.text.clone())
    }

    /// `a["…"]` of `payload`, shared.
    #[inline]
    pub(crate) fn sockjs_frame(payload: &Payload) -> Utf8Bytes {
        Texts::of(payload, |t| t.sockjs_frame.clone())
    }

    /// One of the texts of `payload`: shared when the payload can hold them, else built here.
    #[inline]
    fn of(payload: &Payload, pick: impl FnOnce(&Texts) -> Utf8Bytes) -> Utf8Bytes {
        match payload.shared_form(Texts::build) {
            Some(texts) => pick(texts),
            None => pick(&Texts::build(payload)),
        }
    }

    pub(crate) fn build(payload: &Payload) -> Texts {
        // Both are built from `str`, so the checks pass.
        let text = |bytes: &bytes::Bytes| Utf8Bytes::try_from(bytes.clone()).unwrap_or_default();
        Texts {
            text: text(payload.text_bytes()),
            sockjs_frame: text(payload.sockjs().frame().as_bytes()),
            stomp: OnceLock::new(),
        }
    }
}

/// One wire protocol: what a transport writes for each thing the engine delivers, and how it
/// reads what the client sends.
///
/// Every method that writes pushes zero or more frames to `out`; a transport writes them in
/// order, each as one WebSocket message or one unit of its HTTP body. A protocol instance serves
/// one connection (or one HTTP request) and may keep state across calls.
pub(crate) trait Protocol: Send + 'static {
    /// Its name in metrics: `native`, `sockjs`, `raw` or `stomp`.
    const NAME: &'static str;

    /// What every connection starts with, before anything is delivered (the native protocol's
    /// `open`, with the position delivery starts from). Most protocols write nothing.
    fn start(&mut self, _out: &mut Vec<Frame>) {}

    /// The session was just created by this connection (SockJS's `o`).
    fn opened(&mut self, _out: &mut Vec<Frame>) {}

    /// Messages, in order, never empty. Built from each message's shared encodings
    /// ([`Payload`](crate::Payload)): per recipient, only what differs is written anew.
    fn messages(&mut self, messages: &[Delivered], out: &mut Vec<Frame>);

    /// Records the client missed are gone; messages after them follow. Returns false when the
    /// protocol has no way to say so: the transport then closes the session as lagging (3001).
    fn gap(&mut self, _missed: &Missed, _out: &mut Vec<Frame>) -> bool {
        false
    }

    /// Nothing was written for a heartbeat. Writing nothing leaves the transport to keep the
    /// connection alive its own way (a WebSocket ping).
    fn heartbeat(&mut self, out: &mut Vec<Frame>);

    /// The session is closed. Writing nothing leaves the close to the transport (a WebSocket
    /// close frame carries the code).
    fn close(&mut self, closed: &Closed, out: &mut Vec<Frame>);

    /// This connection ends without a close and the client comes back: a streaming response
    /// reached its limit, a poll is answered, another connection took the session over.
    fn end(&mut self, _out: &mut Vec<Frame>) {}

    /// The reader went up to `cursors` and holds nothing undelivered: everything up to there is
    /// this connection's client's, records of the session's own bookkeeping included (the
    /// native protocol's takeovers), though no frame carried their position. Called before an
    /// [`end`](Protocol::end) that answers a poll or ends a stream.
    fn reached(&mut self, _cursors: &[(Topic, Cursor)]) {}

    /// The messages in one WebSocket text message from the client, for [`receive`]. An
    /// error drops the connection without a word, and the session ends as it says (SockJS on
    /// broken JSON, as sockjs-node does).
    ///
    /// [`receive`]: Protocol::receive
    fn decode(&mut self, text: &str) -> Result<Vec<String>, Closed>;

    /// Acts on messages the client sent together, in order (from [`decode`](Protocol::decode)
    /// of the WebSocket messages at hand, or from an HTTP send's body). By default they are
    /// application messages, for `on_message` or `on_messages`. A protocol that answers its
    /// client (STOMP) sends its answers through the channel ([`Session::reply`]), never straight
    /// to a connection: the message may have reached another node than the one the client
    /// receives on.
    fn receive(
        &mut self,
        session: &Session,
        messages: Vec<String>,
    ) -> impl Future<Output = ()> + Send {
        session.incoming(messages)
    }

    /// How long the client may stay silent on a WebSocket before the transport closes the
    /// session as timed out (3003): the client agreed to send heart-beats this often, with a
    /// margin (STOMP). `None`, the default: a silent client is fine.
    fn quiet_limit(&self) -> Option<Duration> {
        None
    }
}
