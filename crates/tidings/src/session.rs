//! A channel's life on the server: opening it, reading its merged topics, closing it.
//!
//! Transports are thin on purpose: they call [`open`], then loop on [`Reader::next`] writing
//! what it returns in their own framing, feed incoming text to [`Session::incoming`], and call
//! [`Session::finish`] at the end. All delivery state (cursors, subscriptions, the close reason)
//! lives in the store, so another transport can pick up where this one stopped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::select_all;
use tidings_core::ids::Id128;
use tidings_core::{CloseCode, Cursor, Offset};
use tokio::sync::watch;

use crate::channel::{Channel, Closed};
use crate::error::Error;
use crate::handshake::Identity;
use crate::hub::Event;
use crate::store::ChannelId;
use crate::store::Topic;
use crate::store::{Alias, ChannelState, Creation, Store, StoreError};
use crate::store::{Control, Payload, Record};
use crate::tidings::Shared;

/// Most records read from one topic per store call; a busy topic is drained over several reads.
const READ_BATCH: usize = 256;

/// What the reader has for the transport.
#[derive(Debug)]
pub(crate) enum Delivery {
    /// Messages in order; never empty.
    Messages(Vec<Delivered>),
    /// Records of `topic` up to `cursor` are no longer retained (only with [`OnGap::Report`]);
    /// the messages after them follow.
    Gap {
        /// The topic with the hole.
        topic: Topic,
        /// Where the reader is now in that topic: after the hole.
        cursor: Cursor,
        /// How many records were missed, when known (not across an epoch change).
        missed: Option<u64>,
    },
    /// The channel is closed; write the close and stop.
    Close(Closed),
    /// Another receiver took the channel over; stop without a close.
    TakenOver,
}

/// A message, and where it sits in its topic.
#[derive(Clone, Debug)]
pub(crate) struct Delivered {
    pub(crate) payload: Payload,
    pub(crate) topic: Topic,
    pub(crate) cursor: Cursor,
}

/// What a reader does when records it had not read are gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnGap {
    /// Close the channel with 3001 (SockJS and raw WebSocket, which cannot say more). The same
    /// happens when the reader falls more than `max_lag` behind.
    Close,
    /// Report the gap and go on after it (the native protocol).
    Report,
}

/// A live channel on this node.
#[derive(Clone)]
pub(crate) struct Session {
    pub(crate) shared: Arc<Shared>,
    pub(crate) channel: Channel,
}

/// What [`open`] found.
pub(crate) enum Opened {
    /// A new channel, with a reader positioned at the heads of its topics.
    Created(Session, Reader),
    /// Another request created the channel with this alias first.
    Found(ChannelState),
}

/// Creates a channel for `identity` (found again later by `alias`, when given), runs `on_open`,
/// and returns it with a reader positioned at the heads of its topics (so `on_open`'s own sends
/// are delivered).
pub(crate) async fn open(
    shared: &Arc<Shared>,
    identity: Identity,
    alias: Option<Alias>,
) -> Result<Opened, Error> {
    let store = shared.hub.store();
    let config = &shared.config;
    let id = ChannelId::random();
    let mut topics = BTreeMap::new();
    topics.insert(Topic::broadcast(), Cursor::default());
    if let Some(user) = &identity.user {
        topics.insert(Topic::user(user), Cursor::default());
    }
    let state = ChannelState {
        id,
        user: identity.user.clone(),
        attributes: identity.attributes.clone(),
        topics,
        closed: None,
        alias,
        ended: false,
    };
    let limit = config.max_channels_per_user;
    let state = match store
        .create_channel(state, shared.session_ttl(), limit)
        .await?
    {
        Creation::Created(state) => state,
        Creation::Existing(state) => return Ok(Opened::Found(state)),
        Creation::UserFull => return Err(Error::TooManyChannels { limit }),
    };
    let reader = Reader::new(store.clone(), &state, config.max_lag).await?;
    let channel = Channel::new(
        id,
        identity.user.clone(),
        identity.attributes,
        shared.hub.clone(),
    );
    shared.ensure_sweeper();
    shared.hub.emit(Event::Connected {
        channel: id,
        user: identity.user,
    });
    let session = Session {
        shared: shared.clone(),
        channel,
    };
    if let Some(on_open) = &shared.handlers.open {
        on_open(session.channel.clone()).await;
    }
    Ok(Opened::Created(session, reader))
}

/// Picks up a channel another request opened: a reader from its saved cursors.
pub(crate) async fn attach(
    shared: &Arc<Shared>,
    state: &ChannelState,
) -> Result<(Session, Reader), Error> {
    let reader = Reader::new(shared.hub.store().clone(), state, shared.config.max_lag).await?;
    Ok((Session::of(shared, state), reader))
}

/// Picks up a channel for a native transport connection `holder`, reading from the cursors in
/// `state` (the client's position applied to them): gaps are reported, and the connection
/// takes the channel over from any receiver that started before it.
pub(crate) async fn take_over(
    shared: &Arc<Shared>,
    state: &ChannelState,
    holder: Id128,
) -> Result<(Session, Reader), Error> {
    let private = Topic::channel(state.id);
    let offset = shared
        .hub
        .store()
        .append(
            &private,
            Record::Control(Control::Takeover { holder }),
            shared.config.retention,
        )
        .await?;
    let mut reader = Reader::new(shared.hub.store().clone(), state, shared.config.max_lag).await?;
    reader.on_gap = OnGap::Report;
    reader.holder = Some((holder, offset));
    Ok((Session::of(shared, state), reader))
}

/// How a channel ended, as the store recorded it: its close, or 3002 "Session expired" when it
/// expired without one.
pub(crate) fn close_of(state: &ChannelState) -> Closed {
    match &state.closed {
        Some((code, reason)) => Closed::new(*code, reason.as_str()),
        None => Closed::by(CloseCode::SESSION_EXPIRED),
    }
}

/// Refuses a channel for a user who has [`Config::max_channels_per_user`](crate::Config) open.
pub(crate) async fn check_user_limit(shared: &Shared, identity: &Identity) -> Result<(), Error> {
    if let Some(user) = &identity.user {
        let limit = shared.config.max_channels_per_user;
        if shared.hub.store().user_channels(user).await?.len() >= limit {
            return Err(Error::TooManyChannels { limit });
        }
    }
    Ok(())
}

impl Session {
    /// The session of a stored channel, to hand its messages to the application.
    pub(crate) fn of(shared: &Arc<Shared>, state: &ChannelState) -> Self {
        Session {
            shared: shared.clone(),
            channel: Channel::new(
                state.id,
                state.user.clone(),
                state.attributes.clone(),
                shared.hub.clone(),
            ),
        }
    }

    /// Hands one client message to `on_message` and waits for it, so messages of one channel
    /// are handled in order.
    pub(crate) async fn incoming(&self, text: String) {
        if let Some(on_message) = &self.shared.handlers.message {
            on_message(self.channel.clone(), text).await;
        }
    }

    /// Keeps the channel alive in the store while its connection is.
    pub(crate) async fn keep_alive(&self) -> Result<(), Error> {
        self.shared
            .hub
            .store()
            .touch(self.channel.id(), self.shared.session_ttl())
            .await?;
        Ok(())
    }

    /// Saves how far the reader delivered, so the next request of this channel goes on from
    /// there.
    pub(crate) async fn save(&self, reader: &Reader) -> Result<(), Error> {
        let store = self.shared.hub.store();
        store
            .save_cursors(self.channel.id(), &reader.cursors())
            .await?;
        Ok(())
    }

    /// The connection serving the channel ended without a close, and the client may come back:
    /// saves the cursors and keeps the channel for `wait`.
    pub(crate) async fn detach(&self, reader: &Reader, wait: Duration) -> Result<(), Error> {
        self.save(reader).await?;
        self.shared
            .hub
            .store()
            .touch(self.channel.id(), wait)
            .await?;
        Ok(())
    }

    /// Ends the channel and tells the application how, once however many requests race to end
    /// it. The closed channel lingers in the store for `linger` (so late requests are answered
    /// with its close), or is removed at once when `linger` is zero.
    pub(crate) async fn finish(
        self,
        cursors: &[(Topic, Cursor)],
        closed: Closed,
        linger: Duration,
    ) {
        let store = self.shared.hub.store();
        let id = self.channel.id();
        let ended = async {
            store.save_cursors(id, cursors).await?;
            store.mark_closed(id, closed.code, &closed.reason).await?;
            let first = store.end_channel(id, linger).await?;
            if linger.is_zero() {
                store.remove_channel(id).await?;
            }
            Ok::<_, StoreError>(first)
        };
        match ended.await {
            Ok(true) => self.shared.closed(self.channel, closed).await,
            // The sweeper, or another request, ended it first and has told the application.
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(%error, channel = %id, "could not end a channel");
            }
        }
    }
}

struct Follow {
    topic: Topic,
    cursor: Cursor,
    head: watch::Receiver<Cursor>,
}

/// Reads a channel's topics from their cursors, merged, with controls applied in order.
pub(crate) struct Reader {
    store: Arc<dyn Store>,
    id: ChannelId,
    /// The private topic is always first, so a close is seen before later broadcasts.
    follows: Vec<Follow>,
    max_lag: u64,
    on_gap: OnGap,
    /// The native connection this reader serves, and the offset of its takeover record on the
    /// private topic: later takeovers by others end it, earlier ones are history.
    holder: Option<(Id128, Offset)>,
    /// What a cancelled `next` had already taken from the store; returned by the next call.
    ready: Vec<Delivered>,
    /// A gap to report before `ready`.
    gap: Option<Delivery>,
    closing: Option<Closed>,
    taken_over: bool,
}

impl Reader {
    async fn new(store: Arc<dyn Store>, state: &ChannelState, max_lag: u64) -> Result<Self, Error> {
        let private = Topic::channel(state.id);
        let mut reader = Reader {
            store,
            id: state.id,
            follows: Vec::with_capacity(state.topics.len()),
            max_lag,
            on_gap: OnGap::Close,
            holder: None,
            ready: Vec::new(),
            gap: None,
            taken_over: false,
            // A close reaches the reader as a control record on the private topic, after the
            // messages sent before it; `state.closed` alone would overtake them.
            closing: None,
        };
        if let Some(cursor) = state.topics.get(&private) {
            reader.follow(private.clone(), *cursor).await?;
        }
        for (topic, cursor) in &state.topics {
            if *topic != private {
                reader.follow(topic.clone(), *cursor).await?;
            }
        }
        Ok(reader)
    }

    async fn follow(&mut self, topic: Topic, cursor: Cursor) -> Result<(), Error> {
        if self.follows.iter().any(|f| f.topic == topic) {
            return Ok(());
        }
        let head = self.store.watch(&topic).await?;
        self.follows.push(Follow {
            topic,
            cursor,
            head,
        });
        Ok(())
    }

    /// Where each topic was delivered up to.
    pub(crate) fn cursors(&self) -> Vec<(Topic, Cursor)> {
        self.follows
            .iter()
            .map(|f| (f.topic.clone(), f.cursor))
            .collect()
    }

    /// Waits for the next messages or the close.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: records taken from the store by a cancelled call are kept and returned by
    /// the next one, so nothing is skipped.
    pub(crate) async fn next(&mut self) -> Result<Delivery, Error> {
        loop {
            if let Some(gap) = self.gap.take() {
                return Ok(gap);
            }
            if !self.ready.is_empty() {
                return Ok(Delivery::Messages(std::mem::take(&mut self.ready)));
            }
            if let Some(closed) = self.closing.take() {
                return Ok(Delivery::Close(closed));
            }
            if self.taken_over {
                return Ok(Delivery::TakenOver);
            }
            if self.poll_topics().await? {
                continue;
            }
            self.wait().await?;
        }
    }

    /// Reads every topic whose head moved. Returns whether anything was read.
    async fn poll_topics(&mut self) -> Result<bool, Error> {
        let mut progressed = false;
        let mut i = 0;
        while i < self.follows.len() && self.closing.is_none() && !self.taken_over {
            let follow = &mut self.follows[i];
            let head = *follow.head.borrow_and_update();
            if head.epoch == follow.cursor.epoch && head.offset <= follow.cursor.offset {
                i += 1;
                continue;
            }
            let batch = self
                .store
                .read(&follow.topic, follow.cursor, READ_BATCH)
                .await?;
            match (self.on_gap, batch.gap) {
                (OnGap::Close, gap) => {
                    let lag = head.offset.0.saturating_sub(batch.cursor.offset.0);
                    if gap.is_some() || lag > self.max_lag {
                        self.closing = Some(Closed::by(CloseCode::LAGGED));
                        return Ok(true);
                    }
                }
                // What was read already goes first; this topic is read again next time.
                (OnGap::Report, Some(_)) if !self.ready.is_empty() || self.gap.is_some() => {
                    return Ok(true);
                }
                (OnGap::Report, Some(gap)) => {
                    self.gap = Some(Delivery::Gap {
                        topic: follow.topic.clone(),
                        cursor: Cursor::new(batch.cursor.epoch, gap.to),
                        missed: (!gap.epoch_changed).then(|| gap.to.0 + 1 - gap.from.0),
                    });
                }
                (OnGap::Report, None) => {}
            }
            progressed |= batch.cursor != follow.cursor;
            follow.cursor = batch.cursor;
            let topic = follow.topic.clone();
            for (offset, record) in batch.records {
                match record {
                    Record::Message(payload) => self.ready.push(Delivered {
                        payload,
                        topic: topic.clone(),
                        cursor: Cursor::new(batch.cursor.epoch, offset),
                    }),
                    Record::Control(control) => self.apply(control, offset).await?,
                }
                if self.closing.is_some() || self.taken_over {
                    break;
                }
            }
            i += 1;
        }
        Ok(progressed)
    }

    async fn apply(&mut self, control: Control, offset: Offset) -> Result<(), Error> {
        match control {
            Control::Takeover { holder } => {
                // Only native readers take over, and only their channels see takeovers.
                if let Some((mine, since)) = self.holder
                    && offset > since
                    && holder != mine
                {
                    self.taken_over = true;
                }
            }
            Control::Subscribe { topic } => {
                let state = self.store.channel(self.id).await?;
                if let Some(cursor) = state.and_then(|s| s.topics.get(&topic).copied()) {
                    self.follow(topic, cursor).await?;
                }
            }
            Control::Unsubscribe { topic } => {
                // The private topic (first) carries the controls; it is never dropped.
                if let Some(i) = self.follows.iter().skip(1).position(|f| f.topic == topic) {
                    self.follows.remove(i + 1);
                }
            }
            Control::Close { code, reason } => {
                self.closing = Some(Closed::new(code, reason));
            }
            // A control of a later version, written by a newer node sharing the store.
            _ => {}
        }
        Ok(())
    }

    /// Waits until the head of a followed topic moves.
    async fn wait(&mut self) -> Result<(), Error> {
        let changes = self.follows.iter_mut().map(|f| Box::pin(f.head.changed()));
        let (result, index, _) = select_all(changes).await;
        if result.is_err() {
            // The topic's log is gone. For the private topic that means the channel was removed
            // from the store (expired or closed elsewhere).
            if index == 0 {
                self.closing = Some(Closed::by(CloseCode::SESSION_EXPIRED));
            } else {
                self.follows.remove(index);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tidings;
    use crate::store::Retention;

    async fn opened(tidings: &Tidings) -> (Session, Reader) {
        match open(&tidings.shared_for_tests(), Identity::user("u"), None)
            .await
            .expect("open")
        {
            Opened::Created(session, reader) => (session, reader),
            Opened::Found(_) => panic!("no alias, so nothing to find"),
        }
    }

    fn texts(delivery: Delivery) -> Vec<String> {
        match delivery {
            Delivery::Messages(m) => m.iter().map(|d| d.payload.text().to_owned()).collect(),
            other => panic!("expected messages, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn merges_private_user_and_broadcast_topics() {
        let tidings = Tidings::builder().build();
        let (session, mut reader) = opened(&tidings).await;
        let hub = tidings.hub();
        session.channel.send("private").await.expect("send");
        hub.send_to_user("u", "user").await.expect("user");
        hub.broadcast("all").await.expect("broadcast");
        let mut got = texts(reader.next().await.expect("next"));
        got.sort();
        assert_eq!(got, ["all", "private", "user"]);
    }

    #[tokio::test]
    async fn close_comes_after_earlier_messages() {
        let tidings = Tidings::builder().build();
        let (session, mut reader) = opened(&tidings).await;
        session.channel.send("last words").await.expect("send");
        session.channel.close(4000, "bye").await.expect("close");
        session
            .channel
            .send("never")
            .await
            .expect("send after close is accepted");
        assert_eq!(texts(reader.next().await.expect("next")), ["last words"]);
        match reader.next().await.expect("next") {
            Delivery::Close(c) => assert_eq!((c.code.as_u16(), c.reason.as_str()), (4000, "bye")),
            other => panic!("expected close, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_gap_closes_as_lagged() {
        let tidings = Tidings::builder()
            .retention(Retention {
                messages: 5,
                bytes: 1 << 20,
            })
            .build();
        let (session, mut reader) = opened(&tidings).await;
        for i in 0..10 {
            session.channel.send(format!("m{i}")).await.expect("send");
        }
        match reader.next().await.expect("next") {
            Delivery::Close(c) => assert_eq!(c.code, CloseCode::LAGGED),
            other => panic!("expected lagged, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn too_far_behind_closes_as_lagged_even_when_retained() {
        let tidings = Tidings::builder().max_lag(3).build();
        let (_session, mut reader) = opened(&tidings).await;
        let hub = tidings.hub();
        for i in 0..300 {
            hub.broadcast(format!("m{i}")).await.expect("broadcast");
        }
        // The first read takes one batch; what is left behind is still over the bound.
        match reader.next().await.expect("next") {
            Delivery::Close(c) => assert_eq!(c.code, CloseCode::LAGGED),
            other => panic!("expected lagged, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn subscriptions_take_effect_in_order() {
        let tidings = Tidings::builder().build();
        let (session, mut reader) = opened(&tidings).await;
        let hub = tidings.hub();
        let room = Topic::new("room").expect("topic");
        hub.publish(&room, "before").await.expect("publish");
        session.channel.subscribe(&room).await.expect("subscribe");
        hub.publish(&room, "after").await.expect("publish");
        assert_eq!(texts(reader.next().await.expect("next")), ["after"]);
        session
            .channel
            .unsubscribe(&room)
            .await
            .expect("unsubscribe");
        hub.publish(&room, "gone").await.expect("publish");
        session.channel.send("mine").await.expect("send");
        assert_eq!(texts(reader.next().await.expect("next")), ["mine"]);
    }

    #[tokio::test]
    async fn cancelled_next_loses_nothing() {
        let tidings = Tidings::builder().build();
        let (_session, mut reader) = opened(&tidings).await;
        let hub = tidings.hub();
        let mut seen = Vec::new();
        for i in 0..200 {
            hub.broadcast(i.to_string()).await.expect("broadcast");
            // Poll once and drop: a cancelled call must not skip what it read.
            if let Some(Ok(d)) = futures::FutureExt::now_or_never(reader.next()) {
                seen.extend(texts(d));
            }
        }
        while seen.len() < 200 {
            seen.extend(texts(reader.next().await.expect("next")));
        }
        let expected: Vec<String> = (0..200).map(|i: i32| i.to_string()).collect();
        assert_eq!(seen, expected);
    }

    #[tokio::test(start_paused = true)]
    async fn expired_channels_are_swept_and_reported() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let tidings = Tidings::builder()
            .heartbeat(Duration::from_secs(1))
            .disconnect_delay(Duration::from_secs(2))
            .on_close(move |channel, closed| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send((channel.id(), closed.code));
                }
            })
            .build();
        let (session, _reader) = opened(&tidings).await;
        let id = session.channel.id();
        // Nobody renews the channel: after 2 heartbeats + the disconnect delay it is swept.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let (closed_id, code) = rx.recv().await.expect("on_close ran");
        assert_eq!((closed_id, code), (id, CloseCode::SESSION_EXPIRED));
        assert_eq!(tidings.hub().online().await.expect("online").channels, 0);
    }
}
