//! The server's handle on one client's logical connection.

use std::collections::BTreeMap;
use std::sync::Arc;

use tidings_core::{CloseCode, Offset};
use tidings_store::{ChannelId, ChannelState, Payload, Topic};

use crate::engine::error::Error;
use crate::engine::hub::Hub;

/// One client's logical connection, whatever transport carries it.
///
/// Cheap to clone. Handlers receive it; keep its [`id`](Channel::id) to reach it later through
/// the [`Hub`].
#[derive(Clone)]
pub struct Channel {
    info: Arc<Info>,
    hub: Hub,
}

struct Info {
    id: ChannelId,
    user: Option<String>,
    attributes: BTreeMap<String, String>,
}

/// How a channel ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Closed {
    /// The close code; see the table in `tidings_core::close`.
    pub code: CloseCode,
    /// The reason text.
    pub reason: String,
}

impl Closed {
    pub(crate) fn new(code: CloseCode, reason: impl Into<String>) -> Self {
        Closed {
            code,
            reason: reason.into(),
        }
    }

    pub(crate) fn by(code: CloseCode) -> Self {
        Closed::new(code, code.default_reason())
    }

    /// How a channel ended, as the store recorded it: its close, or 3002 "Session expired" when
    /// it expired without one.
    pub(crate) fn of(state: &ChannelState) -> Self {
        match &state.closed {
            Some((code, reason)) => Closed::new(*code, reason.as_str()),
            None => Closed::by(CloseCode::SESSION_EXPIRED),
        }
    }
}

impl Channel {
    pub(crate) fn new(
        id: ChannelId,
        user: Option<String>,
        attributes: BTreeMap<String, String>,
        hub: Hub,
    ) -> Self {
        Channel {
            info: Arc::new(Info {
                id,
                user,
                attributes,
            }),
            hub,
        }
    }

    /// The channel's id (128 random bits, chosen by the server).
    pub fn id(&self) -> ChannelId {
        self.info.id
    }

    /// The user the auth hook returned.
    pub fn user(&self) -> Option<&str> {
        self.info.user.as_deref()
    }

    /// The attributes the auth hook returned.
    pub fn attributes(&self) -> &BTreeMap<String, String> {
        &self.info.attributes
    }

    /// One attribute.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.info.attributes.get(key).map(String::as_str)
    }

    /// Sends a message to this channel only.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future either has queued the message or not.
    pub async fn send(&self, message: impl Into<Payload>) -> Result<Offset, Error> {
        self.hub
            .publish(&Topic::channel(self.info.id), message)
            .await
    }

    /// Closes the channel with an application code (1000, 3000 or 3100–4999) and a reason of up
    /// to 123 bytes (longer reasons are cut). Messages sent before are delivered first.
    pub async fn close(&self, code: u16, reason: &str) -> Result<(), Error> {
        self.hub.close(self.info.id, code, reason).await
    }

    /// Makes this channel follow `topic` from now on.
    pub async fn subscribe(&self, topic: &Topic) -> Result<(), Error> {
        self.hub.subscribe(self.info.id, topic).await
    }

    /// Makes this channel stop following `topic`.
    pub async fn unsubscribe(&self, topic: &Topic) -> Result<bool, Error> {
        self.hub.unsubscribe(self.info.id, topic).await
    }

    /// The hub, to publish to others.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("id", &self.info.id)
            .field("user", &self.info.user)
            .finish()
    }
}
