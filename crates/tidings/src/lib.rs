#![doc = include_str!("../README.md")]

mod channel;
mod config;
mod error;
mod handshake;
mod http_util;
mod hub;
mod native;
mod router;
mod session;
mod sockjs;
mod tidings;
mod transport;

pub use channel::{Channel, Closed};
pub use config::{Builder, Config};
pub use error::Error;
pub use handshake::{Handshake, Identity, Rejection};
pub use hub::{Event, Hub};
pub use tidings::Tidings;
pub use tidings_core::{self as core, CloseCode, Cursor, Epoch, Offset};
/// The store interface, records and the in-memory store: the `tidings-store` crate, which store
/// implementations depend on instead of this one.
pub use tidings_store::{
    self as store, ChannelId, MemoryStore, Payload, Presence, Retention, Store, Topic,
};
