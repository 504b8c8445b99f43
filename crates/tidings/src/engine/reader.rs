//! The reader: the only thing that turns a channel's topics into its stream of deliveries.

use std::sync::Arc;

use futures::future::select_all;
use tidings_core::ids::Id128;
use tidings_core::{CloseCode, Cursor, Offset};
use tidings_store::{ChannelId, ChannelState, Control, Payload, Record, Store, Topic};
use tokio::sync::watch;

use crate::engine::channel::Closed;
use crate::engine::error::Error;

/// Most records read from one topic per store call; a busy topic is drained over several reads.
const READ_BATCH: usize = 256;

/// What the reader has for the transport.
#[derive(Debug)]
pub(crate) enum Delivery {
    /// Messages in order; never empty.
    Messages(Vec<Delivered>),
    /// Records the reader had not read are no longer retained (only with [`OnGap::Report`]);
    /// the messages after them follow.
    Gap(Missed),
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
    /// The protocol's name for the subscription it came through, if it gave one.
    pub(crate) label: Option<Arc<str>>,
    /// A frame of the channel's own protocol ([`Control::Reply`]), not an application
    /// message: written as it is.
    pub(crate) reply: bool,
}

/// Records of a topic that a reader missed: they were dropped before it read them.
#[derive(Clone, Debug)]
pub(crate) struct Missed {
    /// The topic with the hole.
    pub(crate) topic: Topic,
    /// Where the reader is now in that topic: after the hole.
    pub(crate) cursor: Cursor,
    /// How many records were missed, when known (not across an epoch change).
    pub(crate) count: Option<u64>,
}

/// What a reader does when records it had not read are gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OnGap {
    /// Close the channel with 3001 (SockJS and raw WebSocket, which cannot say more). The same
    /// happens when the reader falls more than `max_lag` behind.
    Close,
    /// Report the gap and go on after it (the native protocol).
    Report,
}

struct Follow {
    topic: Topic,
    cursor: Cursor,
    head: watch::Receiver<Cursor>,
    /// The protocol's name for the subscription, handed on with every delivery.
    label: Option<Arc<str>>,
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
    /// A reader of the channel `state` describes, from the cursors it holds.
    pub(crate) async fn new(
        store: Arc<dyn Store>,
        state: &ChannelState,
        max_lag: u64,
    ) -> Result<Self, Error> {
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
            reader.follow(private.clone(), *cursor, state).await?;
        }
        for (topic, cursor) in &state.topics {
            if *topic != private {
                reader.follow(topic.clone(), *cursor, state).await?;
            }
        }
        Ok(reader)
    }

    /// Makes this the reader of a channel just opened for `user`, which starts the user's topic
    /// where the user's channels left it ([`Store::create_channel`]). What fell out of that
    /// backlog before the channel opened is read past here, and logged: the protocols this
    /// reader serves cannot say "gap", and the channel has delivered nothing yet that the hole
    /// would break. (The native protocol's connections read the channel again from the store,
    /// and report it.)
    pub(crate) async fn opened(&mut self, user: Option<&str>) -> Result<(), Error> {
        let Some(user) = user.map(Topic::user) else {
            return Ok(());
        };
        let Some(follow) = self.follows.iter_mut().find(|f| f.topic == user) else {
            return Ok(());
        };
        let batch = self.store.read(&user, follow.cursor, 1).await?;
        if let Some(gap) = batch.gap {
            tracing::info!(
                topic = %user,
                missed = gap.to.0.saturating_sub(gap.from.0) + 1,
                "messages sent to a user while offline fell out of retention before it came back"
            );
            follow.cursor = Cursor::new(batch.cursor.epoch, gap.to);
        }
        Ok(())
    }

    /// Makes this the reader of the native connection `holder`, whose takeover record is at
    /// `since` on the private topic: later takeovers by others end it, and gaps are reported
    /// rather than closing the channel.
    pub(crate) fn resumable(&mut self, holder: Id128, since: Offset) {
        self.on_gap = OnGap::Report;
        self.holder = Some((holder, since));
    }

    /// Follows `topic` from `cursor`, under the label `state` gives it; a topic followed already
    /// only takes the label.
    async fn follow(
        &mut self,
        topic: Topic,
        cursor: Cursor,
        state: &ChannelState,
    ) -> Result<(), Error> {
        let label = state.labels.get(&topic).map(|l| Arc::from(l.as_str()));
        if let Some(follow) = self.follows.iter_mut().find(|f| f.topic == topic) {
            follow.label = label;
            return Ok(());
        }
        let head = self.store.watch(&topic).await?;
        self.follows.push(Follow {
            topic,
            cursor,
            head,
            label,
        });
        Ok(())
    }

    /// Where each topic was read up to, when nothing read is still to be handed on (no
    /// messages, gap or close waiting): what a connection that delivered everything it was
    /// given has delivered.
    pub(crate) fn caught_up(&self) -> Option<Vec<(Topic, Cursor)>> {
        let idle = self.ready.is_empty()
            && self.gap.is_none()
            && self.closing.is_none()
            && !self.taken_over;
        idle.then(|| self.cursors())
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
            if let Some(delivery) = self.at_hand().await? {
                return Ok(delivery);
            }
            self.wait().await?;
        }
    }

    /// The next delivery if one is ready now (in the store already, or the close), without
    /// waiting for more: `None` when [`next`](Reader::next) would wait.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`next`](Reader::next) is.
    pub(crate) async fn at_hand(&mut self) -> Result<Option<Delivery>, Error> {
        loop {
            if let Some(gap) = self.gap.take() {
                return Ok(Some(gap));
            }
            if !self.ready.is_empty() {
                return Ok(Some(Delivery::Messages(std::mem::take(&mut self.ready))));
            }
            if let Some(closed) = self.closing.take() {
                return Ok(Some(Delivery::Close(closed)));
            }
            if self.taken_over {
                return Ok(Some(Delivery::TakenOver));
            }
            if !self.poll_topics().await? {
                return Ok(None);
            }
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
                    self.gap = Some(Delivery::Gap(Missed {
                        topic: follow.topic.clone(),
                        cursor: Cursor::new(batch.cursor.epoch, gap.to),
                        count: (!gap.epoch_changed).then(|| gap.to.0 + 1 - gap.from.0),
                    }));
                }
                (OnGap::Report, None) => {}
            }
            progressed |= batch.cursor != follow.cursor;
            follow.cursor = batch.cursor;
            let topic = follow.topic.clone();
            let label = follow.label.clone();
            for (offset, record) in batch.records {
                match record {
                    Record::Message(payload) => self.ready.push(Delivered {
                        payload,
                        topic: topic.clone(),
                        cursor: Cursor::new(batch.cursor.epoch, offset),
                        label: label.clone(),
                        reply: false,
                    }),
                    // Boxed: controls are rare, and their store calls would otherwise make
                    // every reader's `next` future (moved on each poll loop of a connection)
                    // several hundred bytes larger.
                    Record::Control(control) => Box::pin(self.apply(control, offset)).await?,
                }
                if self.closing.is_some() {
                    // The close is read again by whoever picks the channel up from its saved
                    // cursors, should this connection end before writing it (a poll answered
                    // with the messages before it).
                    let before = Offset(offset.0.saturating_sub(1));
                    self.follows[i].cursor = Cursor::new(batch.cursor.epoch, before);
                    break;
                }
                if self.taken_over {
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
                if let Some(state) = self.store.channel(self.id).await?
                    && let Some(cursor) = state.topics.get(&topic).copied()
                {
                    self.follow(topic, cursor, &state).await?;
                }
            }
            Control::Reply { text } => {
                let private = &self.follows[0];
                self.ready.push(Delivered {
                    payload: Payload::new(text),
                    topic: private.topic.clone(),
                    cursor: Cursor::new(private.cursor.epoch, offset),
                    label: None,
                    reply: true,
                });
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
            // `Control` is `#[non_exhaustive]`: a control of a later version of `tidings-store`
            // that this engine does not act on.
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
