//! What one node knows of the topics its readers follow: each topic's head, for the watch that
//! wakes readers, and its newest records, so that a thousand readers of one topic on this node
//! cost one message from Redis, not a thousand reads.
//!
//! Every append publishes `{t: topic, e: epoch, o: offset of the last, f: first retained, r:
//! [records]}` on the prefix's `heads` channel, from inside the script that appends (a batch's
//! records in one announcement, at the offsets up to `o`), so the announcements of one topic
//! arrive in offset order and a batch wakes the readers of a node once. Dropping a topic (idle, or a removed channel's private
//! topic) publishes `{t: topic, d: 1}`. Each node subscribes once and keeps a [`Mirror`] for
//! every topic it watches. Pub/sub may lose announcements while the connection is down, so a
//! mirror never trusts a run of records with a hole in it, and every head is read again from
//! Redis when the subscription is back.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Deserialize;
use tidings_core::{Cursor, Epoch, Offset};
use tidings_store::ReadBatch;
use tidings_store::Record;
use tidings_store::Topic;
use tokio::sync::watch;

use crate::codec;

/// The mirrors of the topics this node watches.
pub(crate) struct Heads {
    topics: Mutex<HashMap<Topic, Arc<Mirror>>>,
    /// The most records a mirror keeps; readers further behind read from Redis.
    limit: usize,
}

pub(crate) struct Mirror {
    head: watch::Sender<Cursor>,
    log: Mutex<Log>,
    limit: usize,
}

/// A contiguous run of a topic's newest records, as far as this node has seen them.
#[derive(Default)]
struct Log {
    /// Unknown until the first announcement or read of the topic.
    epoch: Option<Epoch>,
    records: VecDeque<(Offset, Record)>,
    /// The highest offset this node knows was appended: the head its watchers see.
    known: Offset,
}

/// One announcement on the `heads` channel.
#[derive(Deserialize)]
struct Announcement {
    t: String,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    o: Option<String>,
    #[serde(default)]
    f: Option<String>,
    #[serde(default)]
    r: Option<Vec<String>>,
    #[serde(default)]
    d: Option<u8>,
}

impl Heads {
    /// Mirrors that keep up to `limit` records of each topic.
    pub(crate) fn new(limit: usize) -> Self {
        Heads {
            topics: Mutex::default(),
            limit: limit.max(1),
        }
    }

    /// The topic's mirror, and whether it was just made (its head is then still to be read).
    pub(crate) fn mirror(&self, topic: &Topic) -> (Arc<Mirror>, watch::Receiver<Cursor>, bool) {
        let mut topics = self.topics.lock();
        if let Some(mirror) = topics.get(topic) {
            let rx = mirror.head.subscribe();
            // A mirror whose head could not be read yet is as good as new.
            let fresh = mirror.log.lock().epoch.is_none();
            return (mirror.clone(), rx, fresh);
        }
        let (head, rx) = watch::channel(Cursor::default());
        let mirror = Arc::new(Mirror {
            head,
            log: Mutex::new(Log::default()),
            limit: self.limit,
        });
        topics.insert(topic.clone(), mirror.clone());
        (mirror, rx, true)
    }

    fn existing(&self, topic: &Topic) -> Option<Arc<Mirror>> {
        self.topics.lock().get(topic).cloned()
    }

    /// Takes in an announcement from the `heads` channel.
    pub(crate) fn announced(&self, payload: &[u8]) {
        let Ok(announcement) = serde_json::from_slice::<Announcement>(payload) else {
            tracing::warn!("unreadable announcement on the heads channel");
            return;
        };
        let topic = Topic::from_stored(&announcement.t);
        if announcement.d.is_some() {
            self.dropped(&topic);
            return;
        }
        let Some(mirror) = self.existing(&topic) else {
            return;
        };
        if mirror.head.receiver_count() == 0 {
            // Nobody here reads the topic any more: stop mirroring it.
            let mut topics = self.topics.lock();
            if mirror.head.receiver_count() == 0 {
                topics.remove(&topic);
            }
            return;
        }
        let parsed = (|| {
            let epoch = Epoch(codec::number(announcement.e.as_deref()?, "epoch").ok()?);
            let offset = Offset(codec::number(announcement.o.as_deref()?, "offset").ok()?);
            let first = Offset(codec::number(announcement.f.as_deref()?, "offset").ok()?);
            let records = announcement.r.as_deref()?.iter();
            let records = records.map(|r| codec::decode_record(r).ok());
            Some((epoch, offset, first, records.collect::<Option<Vec<_>>>()?))
        })();
        match parsed {
            Some((epoch, offset, first, records)) => {
                mirror.appended(epoch, offset, first, records);
            }
            None => tracing::warn!(topic = %topic, "unreadable announcement of an append"),
        }
    }

    /// The topic is gone from Redis: its watchers learn it when their sender drops.
    pub(crate) fn dropped(&self, topic: &Topic) {
        self.topics.lock().remove(topic);
    }

    /// Every topic mirrored, for reading their heads again; forgets those nobody watches.
    pub(crate) fn watched(&self) -> Vec<(Topic, Arc<Mirror>)> {
        let mut topics = self.topics.lock();
        topics.retain(|_, mirror| mirror.head.receiver_count() > 0);
        topics
            .iter()
            .map(|(topic, mirror)| (topic.clone(), mirror.clone()))
            .collect()
    }

    /// Reads from this node's copy when it holds what the reader needs: `None` sends the read
    /// to Redis.
    pub(crate) fn read(&self, topic: &Topic, cursor: Cursor, max: usize) -> Option<ReadBatch> {
        let mirror = self.existing(topic)?;
        // A mirror nobody watches may have missed a drop: only a watched one is kept current.
        if mirror.head.receiver_count() == 0 {
            return None;
        }
        mirror.read(cursor, max)
    }

    /// Takes in what a read from Redis returned.
    pub(crate) fn learned(&self, topic: &Topic, batch: &ReadBatch, last: Offset) {
        if let Some(mirror) = self.existing(topic) {
            mirror.learned(batch, last);
        }
    }

    /// Takes in an append this node made (before its announcement comes back): `records` at the
    /// offsets up to `last`.
    pub(crate) fn appended_here(
        &self,
        topic: &Topic,
        epoch: Epoch,
        last: Offset,
        first: Offset,
        records: Vec<Record>,
    ) {
        if let Some(mirror) = self.existing(topic) {
            mirror.appended(epoch, last, first, records);
        }
    }
}

impl Mirror {
    /// How many receivers of the head exist.
    pub(crate) fn watchers(&self) -> usize {
        self.head.receiver_count()
    }

    /// Takes in the head as read from Redis.
    pub(crate) fn head_read(&self, head: Cursor) {
        let mut log = self.log.lock();
        match log.epoch {
            Some(epoch) if epoch == head.epoch => {
                if head.offset > log.known {
                    log.known = head.offset;
                }
            }
            _ => {
                *log = Log {
                    epoch: Some(head.epoch),
                    records: VecDeque::new(),
                    known: head.offset,
                };
            }
        }
        self.publish(&log);
    }

    /// Takes in `records`, appended at the offsets up to `last`, and wakes the watchers once.
    fn appended(&self, epoch: Epoch, last: Offset, first: Offset, records: Vec<Record>) {
        let mut log = self.log.lock();
        if log.epoch != Some(epoch) {
            *log = Log {
                epoch: Some(epoch),
                records: VecDeque::new(),
                known: Offset::ZERO,
            };
        }
        let start = last
            .0
            .saturating_add(1)
            .saturating_sub(records.len() as u64);
        for (offset, record) in (start..).map(Offset).zip(records) {
            log.add(offset, record, self.limit);
        }
        log.trim(first);
        if last > log.known {
            log.known = last;
        }
        self.publish(&log);
    }

    fn learned(&self, batch: &ReadBatch, last: Offset) {
        let mut log = self.log.lock();
        if log.epoch != Some(batch.cursor.epoch) {
            return;
        }
        for (offset, record) in &batch.records {
            log.add(*offset, record.clone(), self.limit);
        }
        if last > log.known {
            log.known = last;
        }
        self.publish(&log);
    }

    /// Moves the watched head forward (or into a new epoch), never back.
    fn publish(&self, log: &Log) {
        let Some(epoch) = log.epoch else {
            return;
        };
        let head = Cursor::new(epoch, log.known);
        self.head.send_if_modified(|current| {
            let moved = current.epoch != head.epoch || head.offset > current.offset;
            if moved {
                *current = head;
            }
            moved
        });
    }

    fn read(&self, cursor: Cursor, max: usize) -> Option<ReadBatch> {
        let log = self.log.lock();
        if log.epoch != Some(cursor.epoch) {
            return None;
        }
        let caught_up = ReadBatch {
            records: Vec::new(),
            gap: None,
            cursor,
        };
        if cursor.offset >= log.known || max == 0 {
            return Some(caught_up);
        }
        let (first, _) = log.records.front()?;
        let (last, _) = log.records.back()?;
        if cursor.offset.next() < *first || cursor.offset >= *last {
            return None;
        }
        let skip = usize::try_from(cursor.offset.0 + 1 - first.0).ok()?;
        let records: Vec<(Offset, Record)> =
            log.records.iter().skip(skip).take(max).cloned().collect();
        // Short of `max` with more known to exist: Redis has the rest, and reads all of it.
        if records.len() < max && *last < log.known {
            return None;
        }
        let offset = records.last().map_or(cursor.offset, |(offset, _)| *offset);
        Some(ReadBatch {
            records,
            gap: None,
            cursor: Cursor::new(cursor.epoch, offset),
        })
    }
}

impl Log {
    /// Adds a record if it continues the run; a record after a hole starts a new run.
    fn add(&mut self, offset: Offset, record: Record, limit: usize) {
        match self.records.back() {
            Some((last, _)) if offset <= *last => return,
            Some((last, _)) if offset != last.next() => self.records.clear(),
            _ => {}
        }
        self.records.push_back((offset, record));
        if self.records.len() > limit {
            self.records.pop_front();
        }
    }

    /// Forgets records Redis no longer retains.
    fn trim(&mut self, first: Offset) {
        while self
            .records
            .front()
            .is_some_and(|(offset, _)| *offset < first)
        {
            self.records.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use tidings_store::Payload;

    use super::*;

    fn message(text: &str) -> Record {
        Record::Message(Payload::new(text))
    }

    fn topic() -> Topic {
        Topic::from_stored("room")
    }

    #[test]
    fn a_mirror_serves_what_it_holds_and_defers_the_rest() {
        let heads = Heads::new(1024);
        let (mirror, rx, fresh) = heads.mirror(&topic());
        assert!(fresh);
        let epoch = Epoch(7);
        mirror.head_read(Cursor::new(epoch, Offset(2)));
        assert_eq!(*rx.borrow(), Cursor::new(epoch, Offset(2)));
        // Records 1 and 2 predate the mirror: only Redis has them.
        assert!(
            heads
                .read(&topic(), Cursor::new(epoch, Offset(0)), 10)
                .is_none()
        );
        for n in 3..=5 {
            mirror.appended(epoch, Offset(n), Offset(1), vec![message(&n.to_string())]);
        }
        assert_eq!(*rx.borrow(), Cursor::new(epoch, Offset(5)));
        let batch = heads
            .read(&topic(), Cursor::new(epoch, Offset(2)), 2)
            .unwrap();
        let offsets: Vec<u64> = batch.records.iter().map(|(o, _)| o.0).collect();
        assert_eq!(offsets, [3, 4]);
        assert_eq!(batch.cursor, Cursor::new(epoch, Offset(4)));
        // At the known head: nothing to read, without asking Redis.
        let batch = heads
            .read(&topic(), Cursor::new(epoch, Offset(5)), 10)
            .unwrap();
        assert!(batch.records.is_empty());
        // Another epoch goes to Redis.
        assert!(
            heads
                .read(&topic(), Cursor::new(Epoch(8), Offset(5)), 10)
                .is_none()
        );
    }

    #[test]
    fn a_hole_in_the_announcements_is_never_served() {
        let heads = Heads::new(1024);
        let (mirror, _rx, _) = heads.mirror(&topic());
        let epoch = Epoch(3);
        mirror.head_read(Cursor::new(epoch, Offset(0)));
        mirror.appended(epoch, Offset(1), Offset(1), vec![message("1")]);
        // 2 was lost (a reconnect); 3 arrives.
        mirror.appended(epoch, Offset(3), Offset(1), vec![message("3")]);
        assert!(
            heads
                .read(&topic(), Cursor::new(epoch, Offset(1)), 10)
                .is_none()
        );
        let batch = heads
            .read(&topic(), Cursor::new(epoch, Offset(2)), 10)
            .unwrap();
        assert_eq!(batch.records.len(), 1);
    }

    #[test]
    fn retention_announced_is_applied() {
        let heads = Heads::new(1024);
        let (mirror, _rx, _) = heads.mirror(&topic());
        let epoch = Epoch(3);
        mirror.head_read(Cursor::new(epoch, Offset(0)));
        for n in 1..=5 {
            mirror.appended(
                epoch,
                Offset(n),
                Offset(n.saturating_sub(1)),
                vec![message("x")],
            );
        }
        assert!(
            heads
                .read(&topic(), Cursor::new(epoch, Offset(1)), 10)
                .is_none()
        );
        assert_eq!(
            heads
                .read(&topic(), Cursor::new(epoch, Offset(3)), 10)
                .unwrap()
                .records
                .len(),
            2
        );
    }

    #[test]
    fn a_batch_announced_lands_at_its_offsets_with_one_wake_up() {
        let heads = Heads::new(1024);
        let (mirror, mut rx, _) = heads.mirror(&topic());
        mirror.head_read(Cursor::new(Epoch(3), Offset(2)));
        rx.mark_unchanged();
        heads.announced(br#"{"t":"room","e":"3","o":"5","f":"1","r":["ma","mb","mc"]}"#);
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), Cursor::new(Epoch(3), Offset(5)));
        let batch = heads
            .read(&topic(), Cursor::new(Epoch(3), Offset(2)), 10)
            .unwrap();
        let read: Vec<(u64, Record)> = batch.records.into_iter().map(|(o, r)| (o.0, r)).collect();
        assert_eq!(
            read,
            [(3, message("a")), (4, message("b")), (5, message("c"))]
        );
    }

    #[test]
    fn a_mirror_keeps_its_limit() {
        let heads = Heads::new(2);
        let (mirror, _rx, _) = heads.mirror(&topic());
        let epoch = Epoch(3);
        mirror.head_read(Cursor::new(epoch, Offset(0)));
        let records = (1..=5).map(|n| message(&n.to_string())).collect();
        mirror.appended(epoch, Offset(5), Offset(1), records);
        assert!(
            heads
                .read(&topic(), Cursor::new(epoch, Offset(2)), 10)
                .is_none()
        );
        let batch = heads
            .read(&topic(), Cursor::new(epoch, Offset(3)), 10)
            .unwrap();
        assert_eq!(batch.records.len(), 2);
    }

    #[test]
    fn a_dropped_topic_ends_its_watchers() {
        let heads = Heads::new(1024);
        let (_, mut rx, _) = heads.mirror(&topic());
        heads.announced(br#"{"t":"room","d":1}"#);
        let changed = futures::executor::block_on(rx.changed());
        assert!(changed.is_err());
    }
}
