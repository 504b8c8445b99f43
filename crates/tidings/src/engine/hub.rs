//! The application's handle for publishing and managing channels from anywhere.

use std::sync::Arc;
use std::time::Duration;

use tidings_core::{CloseCode, Cursor, Offset};
use tidings_store::{
    ChannelId, Control, Payload, Presence, Record, Retention, Store, Subscription, Topic,
};
use tokio::sync::broadcast;

use crate::engine::error::Error;

/// A connect or disconnect, as seen by [`Hub::events`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A channel opened.
    Connected {
        /// Its id.
        channel: ChannelId,
        /// Its user, if any.
        user: Option<String>,
    },
    /// A channel closed.
    Disconnected {
        /// Its id.
        channel: ChannelId,
        /// Its user, if any.
        user: Option<String>,
        /// Why it closed.
        code: CloseCode,
    },
}

/// Publishes to topics, users and channels, manages subscriptions and answers presence.
///
/// Cheap to clone; get one from [`Tidings::hub`](crate::Tidings::hub) and keep it wherever the
/// application needs to push. Every publishing method encodes the message once; every
/// recipient's frame reuses those bytes.
///
/// # Cancel safety
///
/// Every method is one store operation (or, for the channel-directed ones, a store read followed
/// by one write); dropping the future before it completes either has applied the write or not.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    retention: Retention,
    /// Users' topics keep messages for the user's next channel, up to an age.
    user_retention: Retention,
    events: broadcast::Sender<Event>,
}

impl Hub {
    pub(crate) fn new(store: Arc<dyn Store>, retention: Retention, offline_age: Duration) -> Self {
        let (events, _) = broadcast::channel(1024);
        let user_retention = Retention {
            age: Some(offline_age),
            ..retention
        };
        Hub {
            inner: Arc::new(Inner {
                store,
                retention,
                user_retention,
                events,
            }),
        }
    }

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub(crate) fn emit(&self, event: Event) {
        // No receivers is fine: nobody asked for events.
        let _ = self.inner.events.send(event);
    }

    /// Appends `message` to `topic`; every channel following it receives it. Returns its offset.
    pub async fn publish(
        &self,
        topic: &Topic,
        message: impl Into<Payload>,
    ) -> Result<Offset, Error> {
        let record = self.message(message.into())?;
        let offset = self.append(topic, record).await?;
        crate::engine::metrics::published(1);
        Ok(offset)
    }

    /// Appends `messages` to `topic` in one store operation, in order, and returns their
    /// offsets (consecutive: no other message lands between them). On Redis this is one round
    /// trip and one wake-up of the topic's readers on each node for the whole batch, where
    /// [`publish`](Hub::publish) costs one of each per message: use it wherever messages come in
    /// bunches, as [`Builder::on_messages`](crate::Builder::on_messages) hands them over.
    ///
    /// Either every message is appended or none: one over the size limit fails the batch with
    /// [`Error::MessageTooLarge`] before anything is stored.
    pub async fn publish_batch(
        &self,
        topic: &Topic,
        messages: impl IntoIterator<Item = impl Into<Payload>>,
    ) -> Result<Vec<Offset>, Error> {
        let records = messages
            .into_iter()
            .map(|message| self.message(message.into()))
            .collect::<Result<Vec<Record>, Error>>()?;
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let offsets = self
            .inner
            .store
            .append_batch(topic, records, self.retention(topic))
            .await?;
        crate::engine::metrics::published(offsets.len());
        Ok(offsets)
    }

    /// Publishes to every channel.
    pub async fn broadcast(&self, message: impl Into<Payload>) -> Result<Offset, Error> {
        self.publish(&Topic::broadcast(), message).await
    }

    /// Publishes to every channel of `user`. When the user has no open channel, the next one it
    /// opens (on any node) is handed the message, unless it is older than
    /// [`Config::offline_age`](crate::Config::offline_age) by then or fell out of retention; a
    /// message one of the user's channels took is not handed to channels opened later.
    pub async fn send_to_user(
        &self,
        user: &str,
        message: impl Into<Payload>,
    ) -> Result<Offset, Error> {
        self.publish(&Topic::user(user), message).await
    }

    /// Publishes to one channel. Fails with [`Error::UnknownChannel`] if it is not open.
    pub async fn send_to_channel(
        &self,
        id: ChannelId,
        message: impl Into<Payload>,
    ) -> Result<Offset, Error> {
        self.require_open(id).await?;
        self.publish(&Topic::channel(id), message).await
    }

    /// Makes a channel follow `topic` from its current head on.
    pub async fn subscribe(&self, id: ChannelId, topic: &Topic) -> Result<(), Error> {
        self.subscribe_with(id, topic, &Subscription::default())
            .await
    }

    /// Makes a channel follow `topic` from its current head on, delivering first the last
    /// `last` messages the topic still retains (chat history), in order, each once: fewer when
    /// fewer are retained, none again of a topic the channel follows already (its cursor stays).
    pub async fn subscribe_with_history(
        &self,
        id: ChannelId,
        topic: &Topic,
        last: u64,
    ) -> Result<(), Error> {
        let store = &self.inner.store;
        let head = *store.watch(topic).await?.borrow();
        // A read from the start of this epoch reports as a gap what is no longer retained: the
        // history starts after it.
        let probe = store
            .read(topic, Cursor::new(head.epoch, Offset(0)), 1)
            .await?;
        let kept_after = probe.gap.map_or(0, |gap| gap.to.0);
        let from = head.offset.0.saturating_sub(last).max(kept_after);
        let how = Subscription {
            from: Some(Cursor::new(head.epoch, Offset(from))),
            label: None,
        };
        self.subscribe_with(id, topic, &how).await
    }

    /// Makes a channel follow `topic` as `how` says: from an earlier cursor (history, or where
    /// a client left off; what is no longer retained is a gap), and under a label its protocol
    /// gives the subscription. Subscribing to a topic followed already keeps its cursor.
    pub async fn subscribe_with(
        &self,
        id: ChannelId,
        topic: &Topic,
        how: &Subscription,
    ) -> Result<(), Error> {
        self.inner
            .store
            .subscribe(id, topic, how)
            .await?
            .ok_or(Error::UnknownChannel)?;
        self.append(
            &Topic::channel(id),
            Record::Control(Control::Subscribe {
                topic: topic.clone(),
            }),
        )
        .await?;
        Ok(())
    }

    /// Makes a channel stop following `topic`. Returns whether it was following it.
    pub async fn unsubscribe(&self, id: ChannelId, topic: &Topic) -> Result<bool, Error> {
        let was = self.inner.store.unsubscribe(id, topic).await?;
        if was {
            self.append(
                &Topic::channel(id),
                Record::Control(Control::Unsubscribe {
                    topic: topic.clone(),
                }),
            )
            .await?;
        }
        Ok(was)
    }

    /// Closes a channel with an application close code (1000, 3000 or 3100–4999) and reason.
    /// Messages published to it before the close are delivered first.
    pub async fn close(&self, id: ChannelId, code: u16, reason: &str) -> Result<(), Error> {
        let code = CloseCode::app(code)?;
        self.close_with(id, code, reason).await
    }

    pub(crate) async fn close_with(
        &self,
        id: ChannelId,
        code: CloseCode,
        reason: &str,
    ) -> Result<(), Error> {
        let reason = tidings_core::close::truncate_reason(reason);
        if self.inner.store.mark_closed(id, code, reason).await? {
            self.append(
                &Topic::channel(id),
                Record::Control(Control::Close {
                    code,
                    reason: reason.to_owned(),
                }),
            )
            .await?;
        }
        Ok(())
    }

    /// Sends the channel `id` a frame of its protocol, to be written as it is, in order with
    /// what else the channel is sent: how a protocol answers a client (a STOMP RECEIPT) whose
    /// frame may have reached another node than its connection.
    pub(crate) async fn reply(&self, id: ChannelId, text: String) -> Result<Offset, Error> {
        self.append(
            &Topic::channel(id),
            Record::Control(Control::Reply { text }),
        )
        .await
    }

    /// The open channels following `topic`, and their users, on every node sharing the store.
    pub async fn presence(&self, topic: &Topic) -> Result<Presence, Error> {
        Ok(self.inner.store.presence(topic).await?)
    }

    /// The open channels of `user`, on every node sharing the store: one per tab or device, to
    /// reach each with [`send_to_channel`](Hub::send_to_channel) or count them.
    pub async fn user_channels(&self, user: &str) -> Result<Vec<ChannelId>, Error> {
        Ok(self.inner.store.user_channels(user).await?)
    }

    /// Every open channel, and their users, on every node sharing the store (a closed channel
    /// lingering to answer its close is not counted).
    pub async fn online(&self) -> Result<Presence, Error> {
        Ok(self.inner.store.online().await?)
    }

    /// Connect and disconnect notifications from now on, at most once per channel each. A
    /// receiver that falls more than 1024 events behind gets `RecvError::Lagged`, then continues
    /// with the oldest event still held.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    async fn require_open(&self, id: ChannelId) -> Result<(), Error> {
        match self.inner.store.channel(id).await? {
            Some(state) if state.closed.is_none() => Ok(()),
            _ => Err(Error::UnknownChannel),
        }
    }

    /// The record of a published message, refused with [`Error::MessageTooLarge`] when it is
    /// over the size limit.
    fn message(&self, payload: Payload) -> Result<Record, Error> {
        let limit = self.inner.retention.bytes;
        match payload.len() {
            size if size > limit => Err(Error::MessageTooLarge { size, limit }),
            _ => Ok(Record::Message(payload)),
        }
    }

    async fn append(&self, topic: &Topic, record: Record) -> Result<Offset, Error> {
        let retention = self.retention(topic);
        Ok(self.inner.store.append(topic, record, retention).await?)
    }

    /// Users' topics keep their messages for the user's next channel, up to an age.
    fn retention(&self, topic: &Topic) -> Retention {
        if topic.is_user() {
            self.inner.user_retention
        } else {
            self.inner.retention
        }
    }
}
