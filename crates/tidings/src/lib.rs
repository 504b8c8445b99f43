#![doc = include_str!("../README.md")]

// The layers, each importing only those listed after it (tests/layers.rs checks):
// serve → service → routes → transport → protocol → engine → store (tidings-store) → core.
mod engine;
mod protocol;
mod routes;
mod serve;
mod service;
mod transport;

pub use engine::channel::{Channel, Closed};
pub use engine::config::Config;
pub use engine::error::Error;
pub use engine::hub::{Event, Hub};
pub use engine::identity::Identity;
pub use routes::handshake::{Handshake, Rejection};
pub use serve::{Serve, serve};
pub use service::{Builder, Tidings, shutdown_signal};
pub use tidings_core::{self as core, CloseCode, Cursor, Epoch, Offset};

/// STOMP 1.2, 1.1 and 1.0 with Spring's destinations (`docs/stomp.md`): the endpoint is
/// [`Tidings::stomp_router`], the application's side [`Builder::on_stomp_send`],
/// [`Builder::stomp_login`] and [`Tidings::stomp`].
pub mod stomp {
    pub use crate::protocol::stomp::{
        RESUME_HEADER, StompBroker, StompConfig, StompLogin, StompMessage,
    };
    pub use tidings_core::stomp::Limits;
}
/// The store interface, records and the in-memory store: the `tidings-store` crate, which store
/// implementations depend on instead of this one.
pub use tidings_store::{
    self as store, ChannelId, MemoryStore, Payload, Presence, Retention, Store, Subscription, Topic,
};
