//! The store interface of [Tidings](https://docs.rs/tidings): what a store implementor depends
//! on, with no axum in it.
//!
//! A store holds everything a transport needs to deliver, so that a transport holds no delivery
//! state of its own: **topics** (append-only, bounded logs of [`Record`]s with offsets and an
//! epoch), **channel state** (user, attributes, followed topics with their cursors, close
//! reason, an [`Alias`]), channel expiry, and the **receiver lock** ("one receiving request per
//! session"). [`MemoryStore`] is the embedded default; a shared store (such as
//! `tidings_redis::RedisStore`) lets any node serve any request of any session.
//!
//! An implementation of [`Store`] proves itself with the contract suite (feature `contract`):
//!
//! ```
//! # #[cfg(feature = "contract")]
//! # async fn check() {
//! tidings_store::contract::run_all(tidings_store::MemoryStore::new).await;
//! # }
//! ```
//!
//! Publishing a message:
//!
//! ```
//! use tidings_store::{MemoryStore, Payload, Record, Retention, Store, Topic};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tidings_store::StoreError> {
//! let store = MemoryStore::new();
//! let room = Topic::new("room-1").expect("a valid name");
//! let offset = store
//!     .append(&room, Record::Message(Payload::new("hello")), Retention::default())
//!     .await?;
//! assert_eq!(offset.0, 1);
//! # Ok(()) }
//! ```

mod alias;
mod id;
mod memory;
mod message;
mod store;
mod topic;

#[cfg(any(test, feature = "contract"))]
pub mod contract;

pub use alias::{Alias, InvalidAlias};
pub use id::{ChannelId, random_id};
pub use memory::MemoryStore;
pub use message::{Control, Payload, Record};
pub use store::{
    ChannelState, Creation, Gap, Presence, ReadBatch, Retention, Store, StoreError, Subscription,
    read_start,
};
pub use topic::{InvalidTopic, Topic};
