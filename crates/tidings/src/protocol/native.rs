//! The native protocol's frames (`docs/protocol.md`): JSON objects with a `type`, each batch of
//! messages one frame carrying the position after it, so that a client that reconnects with it
//! resumes exactly there, on any transport.
//!
//! Per recipient, a batch costs what truly differs: its position, written once per batch from
//! prefixes kept per topic, and a copy of each message's JSON string, escaped once when the
//! message was published.

use tidings_core::escape::push_json_string;
use tidings_core::position::InvalidPosition;
use tidings_core::{Cursor, Epoch, Position, TopicRef};
use tidings_store::{ChannelId, ChannelState, Topic};

use super::{Frame, Protocol};
use crate::engine::channel::Closed;
use crate::engine::reader::{Delivered, Missed};

/// The native protocol on one transport connection.
#[derive(Debug)]
pub(crate) struct Native {
    /// The transport's name in the `open` frame: `websocket`, `sse`, `streaming`, `polling`.
    transport: &'static str,
    tracker: Tracker,
    /// Whether [`Protocol::reached`] moved the tracker: `end` then carries the position.
    reached: bool,
}

impl Native {
    /// The protocol for a connection of `transport` starting at `tracker`'s position.
    pub(crate) fn new(transport: &'static str, tracker: Tracker) -> Self {
        Native {
            transport,
            tracker,
            reached: false,
        }
    }
}

/// `{"type":"<kind>","pos":"<position>"` (the object left open), and where the position is.
fn with_position(
    tracker: &Tracker,
    kind: &str,
    capacity: usize,
) -> (String, std::ops::Range<usize>) {
    let mut out = String::with_capacity(capacity + tracker.len_hint());
    out.push_str(r#"{"type":""#);
    out.push_str(kind);
    out.push_str(r#"","pos":""#);
    let start = out.len();
    tracker.write(&mut out);
    let end = out.len();
    out.push('"');
    (out, start..end)
}

impl Protocol for Native {
    const NAME: &'static str = "native";

    fn start(&mut self, out: &mut Vec<Frame>) {
        let (mut text, pos) = with_position(&self.tracker, "open", 48);
        text.push_str(r#","transport":""#);
        text.push_str(self.transport);
        text.push_str(r#""}"#);
        out.push(Frame::resuming(text, pos));
    }

    fn messages(&mut self, messages: &[Delivered], out: &mut Vec<Frame>) {
        for message in messages {
            self.tracker.advance(&message.topic, message.cursor);
        }
        let data: usize = messages
            .iter()
            .map(|m| m.payload.sockjs().json().len() + 1)
            .sum();
        let (mut text, pos) = with_position(&self.tracker, "messages", data + 40);
        text.push_str(r#","data":["#);
        for (i, message) in messages.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            // Escaped once when the message was published, shared by every recipient.
            text.push_str(message.payload.sockjs().json());
        }
        text.push_str("]}");
        out.push(Frame::resuming(text, pos));
    }

    fn gap(&mut self, missed: &Missed, out: &mut Vec<Frame>) -> bool {
        self.tracker.advance(&missed.topic, missed.cursor);
        let (mut text, pos) = with_position(&self.tracker, "gap", 40);
        text.push_str(r#","missed":"#);
        match missed.count {
            Some(count) => text.push_str(itoa::Buffer::new().format(count)),
            None => text.push_str("null"),
        }
        text.push('}');
        out.push(Frame::resuming(text, pos));
        true
    }

    fn heartbeat(&mut self, out: &mut Vec<Frame>) {
        // A text frame even on WebSocket, so that a browser script can tell the connection is
        // alive.
        out.push(Frame::new(axum::extract::ws::Utf8Bytes::from_static(
            r#"{"type":"heartbeat"}"#,
        )));
    }

    fn close(&mut self, closed: &Closed, out: &mut Vec<Frame>) {
        out.push(Frame::new(close_frame(closed)));
    }

    fn end(&mut self, out: &mut Vec<Frame>) {
        // With the position when the reader went past records that no frame carried (this
        // connection's own takeover): a client that kept the last frame's position would
        // otherwise fall behind its private topic by one record per poll, and, a retention's
        // worth of quiet polls later, be told of a gap that hid nothing.
        if self.reached {
            let (mut text, pos) = with_position(&self.tracker, "end", 16);
            text.push('}');
            out.push(Frame::resuming(text, pos));
        } else {
            out.push(Frame::new(axum::extract::ws::Utf8Bytes::from_static(
                r#"{"type":"end"}"#,
            )));
        }
    }

    fn reached(&mut self, cursors: &[(Topic, Cursor)]) {
        for (topic, cursor) in cursors {
            self.tracker.advance(topic, *cursor);
        }
        self.reached = true;
    }

    fn decode(&mut self, text: &str) -> Result<Vec<String>, Closed> {
        // Each WebSocket text message is one application message, verbatim.
        Ok(vec![text.to_owned()])
    }
}

/// `{"type":"close","code":…,"reason":"…","reconnect":…}`: also what a closed session answers
/// before any connection is attached.
pub(crate) fn close_frame(closed: &Closed) -> String {
    let reason = tidings_core::close::truncate_reason(&closed.reason);
    let mut out = String::with_capacity(64 + reason.len());
    out.push_str(r#"{"type":"close","code":"#);
    out.push_str(itoa::Buffer::new().format(closed.code.as_u16()));
    out.push_str(r#","reason":"#);
    push_json_string(&mut out, reason);
    out.push_str(r#","reconnect":"#);
    out.push_str(if closed.code.reconnect() {
        "true"
    } else {
        "false"
    });
    out.push('}');
    out
}

/// Where a native connection's client is: the cursor of each topic up to the last message it
/// was sent. Each entry keeps its encoded prefix (`a:<epoch>:`), so writing the position for a
/// batch costs a copy of the prefixes and one number per topic.
#[derive(Debug)]
pub(crate) struct Tracker {
    channel: ChannelId,
    user: Option<Topic>,
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    topic: Topic,
    epoch: Epoch,
    /// `<ref>:<epoch in hex>:`.
    prefix: String,
    offset: u64,
}

impl Tracker {
    /// A tracker starting at `cursors`, for the channel `id` of `user`.
    pub(crate) fn new(
        id: ChannelId,
        user: Option<&str>,
        cursors: impl IntoIterator<Item = (Topic, Cursor)>,
    ) -> Self {
        let mut tracker = Tracker {
            channel: id,
            user: user.map(Topic::user),
            entries: Vec::new(),
        };
        for (topic, cursor) in cursors {
            tracker.advance(&topic, cursor);
        }
        tracker
    }

    /// Moves `topic` to `cursor`.
    pub(crate) fn advance(&mut self, topic: &Topic, cursor: Cursor) {
        match self.entries.iter().position(|e| e.topic == *topic) {
            Some(i) if self.entries[i].epoch == cursor.epoch => {
                self.entries[i].offset = cursor.offset.0;
            }
            Some(i) => {
                let prefix = prefix(&self.topic_ref(topic), cursor.epoch);
                let entry = &mut self.entries[i];
                entry.epoch = cursor.epoch;
                entry.prefix = prefix;
                entry.offset = cursor.offset.0;
            }
            None => {
                let prefix = prefix(&self.topic_ref(topic), cursor.epoch);
                self.entries.push(Entry {
                    topic: topic.clone(),
                    epoch: cursor.epoch,
                    prefix,
                    offset: cursor.offset.0,
                });
            }
        }
    }

    /// Appends the position as the client sees it to `out`.
    pub(crate) fn write(&self, out: &mut String) {
        let mut number = itoa::Buffer::new();
        for (i, entry) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&entry.prefix);
            out.push_str(number.format(entry.offset));
        }
    }

    /// The position as the client sees it.
    #[cfg(test)]
    pub(crate) fn position(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    /// About how long the written position is.
    fn len_hint(&self) -> usize {
        self.entries.iter().map(|e| e.prefix.len() + 8).sum()
    }

    fn topic_ref(&self, topic: &Topic) -> TopicRef {
        if *topic == Topic::broadcast() {
            TopicRef::All
        } else if topic.private_to() == Some(self.channel) {
            TopicRef::Own
        } else if self.user.as_ref() == Some(topic) {
            TopicRef::User
        } else {
            TopicRef::Named(topic.as_str().to_owned())
        }
    }

    /// The topic a position entry names, for this channel.
    fn topic_of(&self, topic: &TopicRef) -> Option<Topic> {
        match topic {
            TopicRef::All => Some(Topic::broadcast()),
            TopicRef::Own => Some(Topic::channel(self.channel)),
            TopicRef::User => self.user.clone(),
            TopicRef::Named(name) => Some(Topic::from_stored(name)),
        }
    }
}

/// `<ref>:<epoch in hex>:`, the part of a position entry that changes only with the epoch.
fn prefix(topic: &TopicRef, epoch: Epoch) -> String {
    let mut prefix = String::with_capacity(24);
    topic.push_prefix(epoch, &mut prefix);
    prefix
}

/// Moves the cursors of `state` to the client's position `pos` (as the client got it from a
/// frame); topics the channel no longer follows are ignored. An empty position changes nothing.
pub(crate) fn resume_at(state: &mut ChannelState, pos: &str) -> Result<(), InvalidPosition> {
    if pos.is_empty() {
        return Ok(());
    }
    let position = Position::decode(pos)?;
    let names = Tracker::new(state.id, state.user.as_deref(), []);
    for (topic, cursor) in position.entries {
        if let Some(topic) = names.topic_of(&topic)
            && let Some(saved) = state.topics.get_mut(&topic)
        {
            *saved = cursor;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use tidings_core::{CloseCode, Offset};

    use super::*;
    use tidings_store::Payload;

    fn texts(frames: &[Frame]) -> Vec<&str> {
        frames.iter().map(|f| f.text().as_str()).collect()
    }

    fn delivered(text: &str, topic: &Topic, epoch: u64, offset: u64) -> Delivered {
        Delivered {
            payload: Payload::new(text),
            topic: topic.clone(),
            cursor: Cursor::new(Epoch(epoch), Offset(offset)),
            label: None,
            reply: false,
        }
    }

    #[test]
    fn frames_carry_the_position_after_them() {
        let id = ChannelId::random();
        let all = Topic::broadcast();
        let mut native = Native::new(
            "sse",
            Tracker::new(
                id,
                None,
                [(all.clone(), Cursor::new(Epoch(0xa), Offset(1)))],
            ),
        );
        let mut out = Vec::new();
        native.start(&mut out);
        native.messages(
            &[
                delivered("hi \"you\"\u{2028}", &all, 0xa, 2),
                delivered("two", &all, 0xa, 3),
            ],
            &mut out,
        );
        native.gap(
            &Missed {
                topic: all.clone(),
                cursor: Cursor::new(Epoch(0xa), Offset(9)),
                count: Some(4),
            },
            &mut out,
        );
        native.gap(
            &Missed {
                topic: all.clone(),
                cursor: Cursor::new(Epoch(0xb), Offset(9)),
                count: None,
            },
            &mut out,
        );
        native.heartbeat(&mut out);
        native.end(&mut out);
        native.close(&Closed::new(CloseCode::GO_AWAY, "Go away!"), &mut out);
        assert_eq!(
            texts(&out),
            [
                r#"{"type":"open","pos":"a:a:1","transport":"sse"}"#,
                r#"{"type":"messages","pos":"a:a:3","data":["hi \"you\"\u2028","two"]}"#,
                r#"{"type":"gap","pos":"a:a:9","missed":4}"#,
                r#"{"type":"gap","pos":"a:b:9","missed":null}"#,
                r#"{"type":"heartbeat"}"#,
                r#"{"type":"end"}"#,
                r#"{"type":"close","code":3000,"reason":"Go away!","reconnect":false}"#,
            ]
        );
        let resumes: Vec<_> = out.iter().map(Frame::resume).collect();
        assert_eq!(
            resumes,
            [
                Some("a:a:1"),
                Some("a:a:3"),
                Some("a:a:9"),
                Some("a:b:9"),
                None,
                None,
                None
            ]
        );
        for frame in &out {
            serde_json::from_str::<serde_json::Value>(frame.text()).expect("valid JSON");
        }
    }

    #[test]
    fn positions_abbreviate_the_channels_own_topics_and_resume_where_they_say() {
        let id = ChannelId::random();
        let at = |o| Cursor::new(Epoch(0xa), Offset(o));
        let room = Topic::new("room 1").expect("topic");
        let mut tracker = Tracker::new(
            id,
            Some("ann"),
            [
                (Topic::channel(id), at(2)),
                (Topic::broadcast(), at(1)),
                (Topic::user("ann"), at(3)),
            ],
        );
        tracker.advance(&room, at(4));
        tracker.advance(&Topic::broadcast(), at(7));
        assert_eq!(tracker.position(), "c:a:2,a:a:7,u:a:3,troom+1:a:4");
        let mut state = ChannelState {
            id,
            user: Some("ann".into()),
            attributes: Default::default(),
            topics: [
                Topic::broadcast(),
                Topic::channel(id),
                Topic::user("ann"),
                room.clone(),
            ]
            .into_iter()
            .map(|t| (t, Cursor::default()))
            .collect(),
            closed: None,
            alias: None,
            ended: false,
            labels: Default::default(),
        };
        resume_at(&mut state, &tracker.position()).expect("a valid position");
        assert_eq!(state.topics[&Topic::broadcast()], at(7));
        assert_eq!(state.topics[&room], at(4));
        assert_eq!(state.topics[&Topic::user("ann")], at(3));
        assert_eq!(state.topics[&Topic::channel(id)], at(2));
        assert!(resume_at(&mut state, "a:zz:1").is_err());
    }
}
