//! The [`Store`] trait and the records it exchanges.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use tidings_core::ids::Id128;
use tidings_core::{CloseCode, Cursor, Epoch, Offset};
use tokio::sync::watch;

use crate::alias::Alias;
use crate::id::ChannelId;
use crate::message::Record;
use crate::topic::Topic;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend is unreachable or refused the operation; retrying later may succeed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The backend returned data this version cannot read.
    #[error("corrupt store data: {0}")]
    Corrupt(String),
}

/// Bounds on one topic's retained history. The oldest records are dropped first once a bound
/// is passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// The most records kept.
    pub messages: usize,
    /// The most bytes of message text kept.
    pub bytes: usize,
    /// How long a record is kept, or `None` for as long as the other bounds allow. Applied when
    /// the topic is appended to and when a channel starts reading its user's topic from where
    /// the user's channels left it (see [`Store::create_channel`]); a topic with an age is also
    /// kept at least that long after its last append, however idle.
    pub age: Option<Duration>,
}

impl Default for Retention {
    /// 1000 messages or 1 MiB per topic, whichever is reached first, of any age.
    fn default() -> Self {
        Retention {
            messages: 1000,
            bytes: 1 << 20,
            age: None,
        }
    }
}

/// What a read of a topic returned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadBatch {
    /// Records after the cursor, oldest first, with their offsets; offsets are consecutive.
    pub records: Vec<(Offset, Record)>,
    /// Set when records between the cursor and the first returned record are no longer
    /// retained (or the cursor belongs to another epoch): the reader missed them.
    pub gap: Option<Gap>,
    /// Where the reader is after this batch.
    pub cursor: Cursor,
}

/// A run of records a reader missed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    /// The first missed offset (in the reader's epoch, when `epoch_changed` is false).
    pub from: Offset,
    /// The last missed offset.
    pub to: Offset,
    /// The cursor was from another life of the topic; how much was missed is unknown.
    pub epoch_changed: bool,
}

/// Where a read from `cursor` starts, in a topic of `epoch` whose oldest retained record is
/// `first` (the head's next offset when it retains none): the offset the read goes on after,
/// and the gap the reader missed, if any. Every store reads this way; see [`ReadBatch::gap`].
pub fn read_start(cursor: Cursor, epoch: Epoch, first: Offset) -> (Offset, Option<Gap>) {
    let before_first = Offset(first.0 - 1);
    let missed = |epoch_changed| Gap {
        from: cursor.offset.next(),
        to: before_first,
        epoch_changed,
    };
    if cursor.epoch != epoch {
        (before_first, Some(missed(true)))
    } else if cursor.offset < before_first {
        (before_first, Some(missed(false)))
    } else {
        (cursor.offset, None)
    }
}

/// One channel's state as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelState {
    /// The channel's id.
    pub id: ChannelId,
    /// The user the auth hook returned, if any.
    pub user: Option<String>,
    /// Attributes the auth hook returned.
    pub attributes: BTreeMap<String, String>,
    /// The topics the channel follows, each with the cursor up to which it was delivered.
    pub topics: BTreeMap<Topic, Cursor>,
    /// The protocol's names for some of those subscriptions (a STOMP subscription id), set by
    /// [`Store::subscribe`] and handed back with every delivery of the topic.
    pub labels: BTreeMap<Topic, String>,
    /// Set once the channel is closed (or asked to close: the close may still be on its way to
    /// the client).
    pub closed: Option<(CloseCode, String)>,
    /// A second name the channel is found by (a SockJS session id, a native token). At most one
    /// channel holds an alias at a time; it is freed when the channel is removed.
    pub alias: Option<Alias>,
    /// Set once the application was told the channel ended ([`Store::end_channel`]). An ended
    /// channel lingers only so that late requests can be answered with its close.
    pub ended: bool,
}

/// How [`Store::subscribe`] subscribes a channel to a topic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subscription {
    /// Where a new subscription starts: after this cursor (an earlier position, to read the
    /// topic's history or resume where a client left off), or, when `None`, at the topic's
    /// head. A cursor older than what the topic retains, or of another epoch, is read as a gap.
    pub from: Option<Cursor>,
    /// The protocol's name for the subscription; `None` keeps the label it has, if any.
    pub label: Option<String>,
}

/// What [`Store::create_channel`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Creation {
    /// The channel was stored; its state with the cursors filled in.
    Created(ChannelState),
    /// Another channel holds the alias; nothing was stored. Its state.
    Existing(ChannelState),
    /// The user has the most open channels allowed already; nothing was stored.
    UserFull,
}

/// How many channels, and of which users, follow a topic (or are online).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Presence {
    /// Channels counted.
    pub channels: usize,
    /// Users with the number of their channels; anonymous channels are not listed.
    pub users: BTreeMap<String, usize>,
}

/// Storage behind every session: topics with offsets, channel state, receiver locks.
///
/// Implementations must pass the contract suite in [`contract`](crate::contract) (enable the
/// `contract` feature). All methods are cancel
/// safe in the sense that a dropped call either took effect or did not, never half.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Appends a record to `topic` (creating the topic if needed) and returns its offset. Then
    /// drops the oldest records until `retention` holds, and wakes the topic's watchers. The
    /// topic keeps `retention.age` for the reads and drops that follow.
    async fn append(
        &self,
        topic: &Topic,
        record: Record,
        retention: Retention,
    ) -> Result<Offset, StoreError>;

    /// Appends `records` to `topic` in one step and returns their offsets, which are
    /// consecutive: no other append lands between them, retention is applied once, after the
    /// last (a batch longer than `retention` keeps its newest records), and watchers are woken
    /// once, for the whole batch. An empty batch appends nothing. One store operation, so that
    /// a store with round trips makes one for the batch.
    async fn append_batch(
        &self,
        topic: &Topic,
        records: Vec<Record>,
        retention: Retention,
    ) -> Result<Vec<Offset>, StoreError>;

    /// Reads up to `max` records after `cursor`.
    async fn read(
        &self,
        topic: &Topic,
        cursor: Cursor,
        max: usize,
    ) -> Result<ReadBatch, StoreError>;

    /// Watches the head of `topic` (the cursor of its last record), creating the topic if needed.
    /// The receiver changes whenever a record is appended.
    async fn watch(&self, topic: &Topic) -> Result<watch::Receiver<Cursor>, StoreError>;

    /// Stores a new channel, subscribed to `topics` at their current heads, alive for `ttl`.
    /// Returns the state as stored (with the cursors filled in).
    ///
    /// When `state.alias` is set and another channel holds that alias already, nothing is
    /// stored and that channel's state is returned instead ([`Creation::Existing`]). Two
    /// requests racing to create the same SockJS session thus agree on one channel.
    ///
    /// Otherwise, when `state.user` already has `max_per_user` open (not closed) channels,
    /// nothing is stored ([`Creation::UserFull`]). The count and the insert are one atomic step,
    /// so a burst of simultaneous creations for one user cannot pass the limit together.
    /// Anonymous channels are not counted.
    ///
    /// **Offline delivery.** A channel of a user that follows the user's topic
    /// ([`Topic::user`]) starts it at the head when the user has another open channel (that one
    /// has taken what came before). When the user has none, it starts after the topic's
    /// *delivered mark*, the furthest cursor any channel of the user saved for that topic
    /// ([`save_cursors`](Store::save_cursors)), so what was sent to the user while none of its
    /// channels was open is delivered to this one. Records older than the topic's
    /// [`Retention::age`] are dropped first; what the channel missed of them is a gap when it
    /// reads. The decision is taken in the same atomic step as the insert, so of two channels
    /// opened at once only one is handed the backlog.
    async fn create_channel(
        &self,
        state: ChannelState,
        ttl: Duration,
        max_per_user: usize,
    ) -> Result<Creation, StoreError>;

    /// The state of a channel, if it exists.
    async fn channel(&self, id: ChannelId) -> Result<Option<ChannelState>, StoreError>;

    /// The state of the channel holding `alias`, if any.
    async fn channel_by_alias(&self, alias: &Alias) -> Result<Option<ChannelState>, StoreError>;

    /// Subscribes a channel to `topic`, at its current head or after `how.from`, and gives the
    /// subscription `how.label` when there is one. Returns the cursor it starts from, or `None`
    /// if the channel is unknown. Subscribing again keeps the first cursor (and replaces the
    /// label when a new one is given).
    async fn subscribe(
        &self,
        id: ChannelId,
        topic: &Topic,
        how: &Subscription,
    ) -> Result<Option<Cursor>, StoreError>;

    /// Unsubscribes a channel from `topic`, its label with it. Returns whether it was
    /// subscribed.
    async fn unsubscribe(&self, id: ChannelId, topic: &Topic) -> Result<bool, StoreError>;

    /// Saves how far a channel's topics were delivered. Topics it no longer follows are ignored.
    /// A cursor of the channel's user's topic also moves that topic's delivered mark forward
    /// (never back); see [`create_channel`](Store::create_channel).
    async fn save_cursors(
        &self,
        id: ChannelId,
        cursors: &[(Topic, Cursor)],
    ) -> Result<(), StoreError>;

    /// Marks a channel closed with `code` and `reason`; the first close wins. Returns whether
    /// this call closed it.
    async fn mark_closed(
        &self,
        id: ChannelId,
        code: CloseCode,
        reason: &str,
    ) -> Result<bool, StoreError>;

    /// Marks a channel ended (the application has been, or is about to be, told) and lets it
    /// linger for `linger` before it expires. Returns whether this call ended it: the first
    /// caller reports the end, so it is reported once however many nodes see it.
    async fn end_channel(&self, id: ChannelId, linger: Duration) -> Result<bool, StoreError>;

    /// Keeps a channel alive for `ttl` from now. Returns false if it is unknown.
    async fn touch(&self, id: ChannelId, ttl: Duration) -> Result<bool, StoreError>;

    /// Removes a channel, its subscriptions and its private topic; returns its last state.
    async fn remove_channel(&self, id: ChannelId) -> Result<Option<ChannelState>, StoreError>;

    /// Removes and returns channels whose time to live has passed while no receiver held them.
    /// Those not [`ended`](ChannelState::ended) are reported to the application by the caller.
    async fn take_expired(&self, max: usize) -> Result<Vec<ChannelState>, StoreError>;

    /// Drops up to `max` topics that no channel follows and that had no append for `idle` (or for
    /// their [`Retention::age`], when that is longer); returns how many. A topic created again
    /// later starts a new epoch.
    async fn drop_idle_topics(&self, idle: Duration, max: usize) -> Result<usize, StoreError>;

    /// Takes the one-receiver lock of a channel for `holder`, for `ttl`. Succeeds if the lock is
    /// free, expired, or already held by `holder` (which renews it).
    async fn acquire_receiver(
        &self,
        id: ChannelId,
        holder: Id128,
        ttl: Duration,
    ) -> Result<bool, StoreError>;

    /// Releases the receiver lock if `holder` holds it.
    async fn release_receiver(&self, id: ChannelId, holder: Id128) -> Result<(), StoreError>;

    /// Who follows `topic`: its open channels (not closed; a closed one lingers only to answer
    /// its close).
    async fn presence(&self, topic: &Topic) -> Result<Presence, StoreError>;

    /// Every open channel in the store.
    async fn online(&self) -> Result<Presence, StoreError>;

    /// The open channels of one user.
    async fn user_channels(&self, user: &str) -> Result<Vec<ChannelId>, StoreError>;
}
