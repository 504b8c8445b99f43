//! Transports: each turns one kind of connection into writes of a protocol's frames and reads of
//! what the client sends. They name no protocol, and hold no delivery state of their own: the
//! connection's [`Attachment`](crate::engine::attachment::Attachment) does.
//!
//! - [`websocket`]: one loop for every protocol, one frame per text message.
//! - [`receive`]: a receiving HTTP request, with its body [`framing`] (xhr, xhr-streaming,
//!   eventsource, htmlfile, jsonp, ndjson, Server-Sent Events, a JSON array).
//! - [`send`]: messages a client sends over HTTP.
//! - The HTTP pieces the routes share: [`cors`], [`cache`], jsonp's and htmlfile's
//!   [`callback`], and plain answers ([`respond`]).

pub(crate) mod cache;
pub(crate) mod callback;
pub(crate) mod cors;
pub(crate) mod framing;
pub(crate) mod receive;
pub(crate) mod respond;
pub(crate) mod send;
pub(crate) mod websocket;
