//! The embedded in-memory store.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use tidings_core::ids::Id128;
use tidings_core::{CloseCode, Cursor, Epoch, Offset};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::alias::Alias;
use crate::id::ChannelId;
use crate::message::Record;
use crate::store::{
    ChannelState, Creation, Presence, ReadBatch, Retention, Store, StoreError, Subscription,
    read_start,
};
use crate::topic::Topic;

/// The default store: everything in this process's memory.
///
/// Fast and dependency-free; sessions live and die with the process, so it serves one node.
/// Time is read from Tokio's clock, so tests with paused time see expiry happen.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    // A `parking_lot` lock, never held across `.await`: every method below does its work
    // synchronously. Topics sit behind their own `Arc` so readers of one topic do not block
    // lookups of the others.
    topics: RwLock<HashMap<Topic, Arc<TopicLog>>>,
    channels: Mutex<Channels>,
}

#[derive(Default)]
struct Channels {
    by_id: HashMap<ChannelId, Entry>,
    by_user: HashMap<String, HashSet<ChannelId>>,
    by_alias: HashMap<Alias, ChannelId>,
}

impl Channels {
    fn insert(&mut self, entry: Entry) {
        if let Some(alias) = &entry.state.alias {
            self.by_alias.insert(alias.clone(), entry.state.id);
        }
        if let Some(user) = &entry.state.user {
            self.by_user
                .entry(user.clone())
                .or_default()
                .insert(entry.state.id);
        }
        self.by_id.insert(entry.state.id, entry);
    }

    /// The ids of `user`'s channels that are not closed.
    fn open_ids<'a>(&'a self, user: &str) -> impl Iterator<Item = ChannelId> + 'a {
        let ids = self.by_user.get(user).into_iter().flatten();
        ids.filter(|id| self.by_id.get(id).is_some_and(|e| e.state.closed.is_none()))
            .copied()
    }

    fn open_of(&self, user: &str) -> usize {
        self.open_ids(user).count()
    }

    fn remove(&mut self, id: &ChannelId) -> Option<Entry> {
        let entry = self.by_id.remove(id)?;
        if let Some(alias) = &entry.state.alias
            && self.by_alias.get(alias) == Some(id)
        {
            self.by_alias.remove(alias);
        }
        if let Some(user) = &entry.state.user
            && let Some(ids) = self.by_user.get_mut(user)
        {
            ids.remove(id);
            if ids.is_empty() {
                self.by_user.remove(user);
            }
        }
        Some(entry)
    }
}

struct TopicLog {
    log: RwLock<Log>,
    head: watch::Sender<Cursor>,
}

struct Log {
    epoch: Epoch,
    /// Each record with when it was appended.
    records: VecDeque<(Offset, Record, Instant)>,
    bytes: usize,
    last: Offset,
    subscribers: HashSet<ChannelId>,
    /// When the last record was appended (or the topic created), for dropping idle topics.
    touched: Instant,
    /// The age bound of the last append's retention.
    age: Option<Duration>,
    /// How far the channels of the topic's user took it (user topics only): see
    /// [`Store::create_channel`].
    delivered: Offset,
}

impl Log {
    /// Drops the oldest records until at most `messages` and `bytes` remain (the newest stays).
    fn trim(&mut self, messages: usize, bytes: usize) {
        while self.records.len() > messages.max(1) || (self.bytes > bytes && self.records.len() > 1)
        {
            self.pop_oldest();
        }
    }

    /// Drops the records older than the age bound.
    fn drop_aged(&mut self, now: Instant) {
        let Some(age) = self.age else { return };
        while self
            .records
            .front()
            .is_some_and(|(_, _, at)| *at + age <= now)
        {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((_, old, _)) = self.records.pop_front() {
            self.bytes -= old.len();
        }
    }

    /// The offset of the oldest retained record, or the next one when none is retained.
    fn first(&self) -> Offset {
        self.records
            .front()
            .map_or(self.last.next(), |(offset, ..)| *offset)
    }
}

impl TopicLog {
    /// Where a channel starts the topic of a user who has no open channel: after the delivered
    /// mark, once the records past the age bound are dropped.
    fn backlog_start(&self) -> Cursor {
        let mut log = self.log.write();
        log.drop_aged(Instant::now());
        Cursor::new(log.epoch, log.delivered)
    }

    /// Moves the delivered mark forward to `cursor`, if it is of this life of the topic.
    fn delivered_to(&self, cursor: Cursor) {
        let mut log = self.log.write();
        if cursor.epoch == log.epoch && cursor.offset > log.delivered {
            log.delivered = cursor.offset.min(log.last);
        }
    }
}

struct Entry {
    state: ChannelState,
    expires: Instant,
    receiver: Option<(Id128, Instant)>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn topic(&self, topic: &Topic) -> Arc<TopicLog> {
        if let Some(log) = self.inner.topics.read().get(topic) {
            return log.clone();
        }
        self.inner
            .topics
            .write()
            .entry(topic.clone())
            .or_insert_with(|| {
                // A fresh epoch for every life of a topic: a cursor from an earlier life (or an
                // earlier process) cannot be mistaken for a position in this one.
                let epoch = Epoch(rand::random::<u64>() | 1);
                let (head, _) = watch::channel(Cursor::new(epoch, Offset::ZERO));
                Arc::new(TopicLog {
                    log: RwLock::new(Log {
                        epoch,
                        records: VecDeque::new(),
                        bytes: 0,
                        last: Offset::ZERO,
                        subscribers: HashSet::new(),
                        touched: Instant::now(),
                        age: None,
                        delivered: Offset::ZERO,
                    }),
                    head,
                })
            })
            .clone()
    }

    /// The state of the channel holding `alias`.
    fn holder_of(&self, alias: Option<&Alias>) -> Option<ChannelState> {
        let channels = self.inner.channels.lock();
        let id = channels.by_alias.get(alias?)?;
        channels.by_id.get(id).map(|e| e.state.clone())
    }

    fn existing_topic(&self, topic: &Topic) -> Option<Arc<TopicLog>> {
        self.inner.topics.read().get(topic).cloned()
    }

    /// Adds `id` to the topic's subscribers and returns the head cursor.
    fn attach(&self, topic: &Topic, id: ChannelId) -> Cursor {
        let log = self.topic(topic);
        let mut log = log.log.write();
        log.subscribers.insert(id);
        Cursor::new(log.epoch, log.last)
    }

    fn detach(&self, topic: &Topic, id: ChannelId) {
        if let Some(log) = self.existing_topic(topic) {
            log.log.write().subscribers.remove(&id);
        }
    }

    fn drop_channel(&self, id: ChannelId, state: &ChannelState) {
        for topic in state.topics.keys() {
            self.detach(topic, id);
        }
        self.inner.topics.write().remove(&Topic::channel(id));
    }

    /// Appends `records` (at least one) under one lock and wakes the watchers once: the offsets
    /// of the first and the last.
    fn append_all(
        &self,
        topic: &Topic,
        records: impl IntoIterator<Item = Record>,
        retention: Retention,
    ) -> (Offset, Offset) {
        let topic_log = self.topic(topic);
        let (first, head) = {
            let mut log = topic_log.log.write();
            let first = log.last.next();
            let now = Instant::now();
            for record in records {
                let offset = log.last.next();
                log.last = offset;
                log.bytes += record.len();
                log.records.push_back((offset, record, now));
            }
            log.touched = now;
            log.age = retention.age;
            log.trim(retention.messages, retention.bytes);
            log.drop_aged(now);
            (first, Cursor::new(log.epoch, log.last))
        };
        // Concurrent appends reach this point in any order once the log lock is released: only
        // move the head forward, or a late older append would hide a newer record from watchers.
        topic_log.head.send_if_modified(|current| {
            let newer = head.offset > current.offset;
            if newer {
                *current = head;
            }
            newer
        });
        (first, head.offset)
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn append(
        &self,
        topic: &Topic,
        record: Record,
        retention: Retention,
    ) -> Result<Offset, StoreError> {
        let (_, last) = self.append_all(topic, std::iter::once(record), retention);
        Ok(last)
    }

    async fn append_batch(
        &self,
        topic: &Topic,
        records: Vec<Record>,
        retention: Retention,
    ) -> Result<Vec<Offset>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let (first, last) = self.append_all(topic, records, retention);
        Ok((first.0..=last.0).map(Offset).collect())
    }

    async fn read(
        &self,
        topic: &Topic,
        cursor: Cursor,
        max: usize,
    ) -> Result<ReadBatch, StoreError> {
        let topic_log = self.topic(topic);
        let log = topic_log.log.read();
        let first = log.first();
        let (after, gap) = read_start(cursor, log.epoch, first);
        let skip = usize::try_from(after.0 + 1 - first.0).unwrap_or(usize::MAX);
        let records: Vec<(Offset, Record)> = log
            .records
            .iter()
            .skip(skip)
            .take(max)
            .map(|(offset, record, _)| (*offset, record.clone()))
            .collect();
        let offset = records.last().map_or(after, |(offset, _)| *offset);
        Ok(ReadBatch {
            records,
            gap,
            cursor: Cursor::new(log.epoch, offset),
        })
    }

    async fn watch(&self, topic: &Topic) -> Result<watch::Receiver<Cursor>, StoreError> {
        Ok(self.topic(topic).head.subscribe())
    }

    async fn create_channel(
        &self,
        mut state: ChannelState,
        ttl: Duration,
        max_per_user: usize,
    ) -> Result<Creation, StoreError> {
        if let Some(holder) = self.holder_of(state.alias.as_ref()) {
            return Ok(Creation::Existing(holder));
        }
        let private = Topic::channel(state.id);
        state.topics.entry(private).or_default();
        let topics: Vec<Topic> = state.topics.keys().cloned().collect();
        for topic in topics {
            let head = self.attach(&topic, state.id);
            state.topics.insert(topic, head);
        }
        let mut channels = self.inner.channels.lock();
        // Checked again under the lock that inserts: another request may have taken the alias
        // while this one attached its topics.
        if let Some(alias) = &state.alias
            && let Some(holder) = channels
                .by_alias
                .get(alias)
                .and_then(|id| channels.by_id.get(id))
        {
            let holder = holder.state.clone();
            drop(channels);
            self.drop_channel(state.id, &state);
            return Ok(Creation::Existing(holder));
        }
        // Counted under the same lock as the insert, so simultaneous creations cannot all pass.
        if let Some(user) = &state.user {
            let open = channels.open_of(user);
            if open >= max_per_user {
                drop(channels);
                self.drop_channel(state.id, &state);
                return Ok(Creation::UserFull);
            }
            let topic = Topic::user(user);
            if open == 0
                && let Some(cursor) = state.topics.get_mut(&topic)
            {
                *cursor = self.topic(&topic).backlog_start();
            }
        }
        channels.insert(Entry {
            state: state.clone(),
            expires: Instant::now() + ttl,
            receiver: None,
        });
        Ok(Creation::Created(state))
    }

    async fn channel_by_alias(&self, alias: &Alias) -> Result<Option<ChannelState>, StoreError> {
        Ok(self.holder_of(Some(alias)))
    }

    async fn channel(&self, id: ChannelId) -> Result<Option<ChannelState>, StoreError> {
        Ok(self
            .inner
            .channels
            .lock()
            .by_id
            .get(&id)
            .map(|e| e.state.clone()))
    }

    async fn subscribe(
        &self,
        id: ChannelId,
        topic: &Topic,
        how: &Subscription,
    ) -> Result<Option<Cursor>, StoreError> {
        if !self.inner.channels.lock().by_id.contains_key(&id) {
            return Ok(None);
        }
        let head = self.attach(topic, id);
        let mut channels = self.inner.channels.lock();
        let Some(entry) = channels.by_id.get_mut(&id) else {
            drop(channels);
            self.detach(topic, id);
            return Ok(None);
        };
        if let Some(label) = &how.label {
            entry.state.labels.insert(topic.clone(), label.clone());
        }
        let start = how.from.unwrap_or(head);
        Ok(Some(
            *entry.state.topics.entry(topic.clone()).or_insert(start),
        ))
    }

    async fn unsubscribe(&self, id: ChannelId, topic: &Topic) -> Result<bool, StoreError> {
        let removed = match self.inner.channels.lock().by_id.get_mut(&id) {
            Some(entry) => {
                entry.state.labels.remove(topic);
                entry.state.topics.remove(topic).is_some()
            }
            None => false,
        };
        if removed {
            self.detach(topic, id);
        }
        Ok(removed)
    }

    async fn save_cursors(
        &self,
        id: ChannelId,
        cursors: &[(Topic, Cursor)],
    ) -> Result<(), StoreError> {
        if let Some(entry) = self.inner.channels.lock().by_id.get_mut(&id) {
            let user_topic = entry.state.user.as_deref().map(Topic::user);
            for (topic, cursor) in cursors {
                if let Some(saved) = entry.state.topics.get_mut(topic) {
                    *saved = *cursor;
                    if user_topic.as_ref() == Some(topic)
                        && let Some(log) = self.existing_topic(topic)
                    {
                        log.delivered_to(*cursor);
                    }
                }
            }
        }
        Ok(())
    }

    async fn mark_closed(
        &self,
        id: ChannelId,
        code: CloseCode,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let mut channels = self.inner.channels.lock();
        match channels.by_id.get_mut(&id) {
            Some(entry) if entry.state.closed.is_none() => {
                entry.state.closed = Some((code, reason.to_owned()));
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn end_channel(&self, id: ChannelId, linger: Duration) -> Result<bool, StoreError> {
        match self.inner.channels.lock().by_id.get_mut(&id) {
            Some(entry) if !entry.state.ended => {
                entry.state.ended = true;
                entry.expires = Instant::now() + linger;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn touch(&self, id: ChannelId, ttl: Duration) -> Result<bool, StoreError> {
        match self.inner.channels.lock().by_id.get_mut(&id) {
            Some(entry) => {
                entry.expires = Instant::now() + ttl;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn remove_channel(&self, id: ChannelId) -> Result<Option<ChannelState>, StoreError> {
        let removed = self.inner.channels.lock().remove(&id);
        Ok(removed.map(|entry| {
            self.drop_channel(id, &entry.state);
            entry.state
        }))
    }

    async fn take_expired(&self, max: usize) -> Result<Vec<ChannelState>, StoreError> {
        let now = Instant::now();
        let expired: Vec<ChannelState> = {
            let mut channels = self.inner.channels.lock();
            let ids: Vec<ChannelId> = channels
                .by_id
                .iter()
                .filter(|(_, e)| {
                    e.expires <= now && e.receiver.is_none_or(|(_, until)| until <= now)
                })
                .map(|(id, _)| *id)
                .take(max)
                .collect();
            ids.iter()
                .filter_map(|id| channels.remove(id))
                .map(|e| e.state)
                .collect()
        };
        for state in &expired {
            self.drop_channel(state.id, state);
        }
        Ok(expired)
    }

    async fn drop_idle_topics(&self, idle: Duration, max: usize) -> Result<usize, StoreError> {
        let now = Instant::now();
        let mut topics = self.inner.topics.write();
        let idle_topics: Vec<Topic> = topics
            .iter()
            .filter(|(_, t)| {
                let log = t.log.read();
                log.subscribers.is_empty()
                    && log.touched + idle.max(log.age.unwrap_or_default()) <= now
            })
            .map(|(name, _)| name.clone())
            .take(max)
            .collect();
        for name in &idle_topics {
            topics.remove(name);
        }
        Ok(idle_topics.len())
    }

    async fn acquire_receiver(
        &self,
        id: ChannelId,
        holder: Id128,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut channels = self.inner.channels.lock();
        let Some(entry) = channels.by_id.get_mut(&id) else {
            return Ok(false);
        };
        match entry.receiver {
            Some((current, until)) if current != holder && until > now => Ok(false),
            _ => {
                entry.receiver = Some((holder, now + ttl));
                Ok(true)
            }
        }
    }

    async fn release_receiver(&self, id: ChannelId, holder: Id128) -> Result<(), StoreError> {
        if let Some(entry) = self.inner.channels.lock().by_id.get_mut(&id)
            && entry.receiver.is_some_and(|(current, _)| current == holder)
        {
            entry.receiver = None;
        }
        Ok(())
    }

    async fn presence(&self, topic: &Topic) -> Result<Presence, StoreError> {
        let subscribers: Vec<ChannelId> = match self.existing_topic(topic) {
            Some(log) => log.log.read().subscribers.iter().copied().collect(),
            None => Vec::new(),
        };
        let channels = self.inner.channels.lock();
        Ok(count(
            subscribers
                .iter()
                .filter_map(|id| channels.by_id.get(id))
                .map(|e| &e.state),
        ))
    }

    async fn online(&self) -> Result<Presence, StoreError> {
        let channels = self.inner.channels.lock();
        Ok(count(channels.by_id.values().map(|e| &e.state)))
    }

    async fn user_channels(&self, user: &str) -> Result<Vec<ChannelId>, StoreError> {
        Ok(self.inner.channels.lock().open_ids(user).collect())
    }
}

/// The open channels of `states`, and their users.
fn count<'a>(states: impl Iterator<Item = &'a ChannelState>) -> Presence {
    let mut presence = Presence {
        channels: 0,
        users: BTreeMap::new(),
    };
    for state in states.filter(|s| s.closed.is_none()) {
        presence.channels += 1;
        if let Some(user) = &state.user {
            *presence.users.entry(user.clone()).or_default() += 1;
        }
    }
    presence
}
