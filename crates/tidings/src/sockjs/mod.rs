//! The static half of SockJS: what a service answers without a session.
//!
//! `/info` (capabilities, [`info`]) and the iframe page (`/iframe.html`, [`iframe`]), plus the
//! header sets that the session transports share with them: caching ([`cache`]), CORS and
//! preflights ([`cors`]), and the `JSESSIONID` cookie ([`cookie`]). The greeting and the
//! WebSocket transports are routed in `router.rs`.

pub(crate) mod cache;
pub(crate) mod cookie;
pub(crate) mod cors;
pub(crate) mod iframe;
pub(crate) mod info;
