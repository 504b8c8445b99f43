//! SockJS over HTTP: what a service answers without a session, and the session transports.
//!
//! Without a session: `/info` (capabilities, [`info`]) and the iframe page (`/iframe.html`,
//! [`iframe`]), plus the header sets that the session transports share with them: caching
//! ([`cache`]), CORS and preflights ([`cors`]), and the `JSESSIONID` cookie ([`cookie`]).
//!
//! Sessions: the receiving requests ([`receive`], framed per transport by [`framing`], with
//! jsonp's and htmlfile's [`callback`]) and the sends ([`send`]). The greeting and the WebSocket
//! transports are routed in `router.rs`.

pub(crate) mod cache;
pub(crate) mod callback;
pub(crate) mod cookie;
pub(crate) mod cors;
pub(crate) mod framing;
pub(crate) mod iframe;
pub(crate) mod info;
pub(crate) mod receive;
pub(crate) mod send;
