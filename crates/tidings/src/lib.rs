#![doc = include_str!("../README.md")]

mod channel;
mod config;
mod error;
mod handshake;
mod http_util;
mod hub;
mod id;
pub mod message;
mod native;
mod router;
mod session;
mod sockjs;
pub mod store;
mod tidings;
mod topic;
mod transport;

pub use channel::{Channel, Closed};
pub use config::{Builder, Config};
pub use error::Error;
pub use handshake::{Handshake, Identity, Rejection};
pub use hub::{Event, Hub};
pub use id::ChannelId;
pub use message::Payload;
pub use store::{MemoryStore, Presence, Retention, Store};
pub use tidings::Tidings;
pub use tidings_core::{self as core, CloseCode, Cursor, Epoch, Offset};
pub use topic::Topic;
