//! The engine: what every protocol and transport shares, and nothing of either.
//!
//! The [`Hub`](hub::Hub) publishes to topics; a [`Channel`](channel::Channel) is the
//! application's handle on one client; a session is opened, attached to a connection and
//! finished in [`session`]; the [`Reader`](reader::Reader) turns a channel's topics into its
//! stream of deliveries; an [`Attachment`](attachment::Attachment) is one connection holding a
//! channel, with its heartbeat and what becomes of the session when the connection goes. The
//! engine knows the store (the `tidings-store` crate) and nothing above it: no protocol, no
//! transport, no route.

pub(crate) mod attachment;
pub(crate) mod channel;
pub(crate) mod config;
pub(crate) mod context;
pub(crate) mod error;
pub(crate) mod hub;
pub(crate) mod identity;
pub(crate) mod metrics;
pub(crate) mod reader;
pub(crate) mod session;
pub(crate) mod shutdown;
pub(crate) mod sweeper;
pub(crate) mod timed;
