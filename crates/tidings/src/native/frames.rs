//! The frames of the native protocol, as JSON (WebSocket, streaming, polling) and as
//! Server-Sent Events, and the position each message carries.

use std::collections::BTreeMap;

use tidings_core::escape::push_json_string;
use tidings_core::{Cursor, Position, TopicRef};

use crate::channel::Closed;
use crate::store::ChannelId;
use crate::store::Payload;
use crate::store::Topic;

/// One frame of the native protocol.
#[derive(Debug)]
pub(crate) enum Frame<'a> {
    /// First on every transport connection: where delivery starts.
    Open {
        transport: &'static str,
        pos: String,
    },
    /// A message and the position right after it.
    Message { pos: String, data: &'a Payload },
    /// Nothing to say for a heartbeat.
    Heartbeat,
    /// Messages up to `pos` are gone.
    Gap { pos: String, missed: Option<u64> },
    /// This response is complete; reconnect from the last position.
    End,
    /// The session is closed.
    Close(&'a Closed),
}

impl Frame<'_> {
    /// The frame's `type`.
    fn name(&self) -> &'static str {
        match self {
            Frame::Open { .. } => "open",
            Frame::Message { .. } => "message",
            Frame::Heartbeat => "heartbeat",
            Frame::Gap { .. } => "gap",
            Frame::End => "end",
            Frame::Close(_) => "close",
        }
    }

    /// The frame's JSON members after `type`, each preceded by a comma.
    fn members(&self, out: &mut String) {
        match self {
            Frame::Open { transport, pos } => {
                out.push_str(r#","transport":""#);
                out.push_str(transport);
                out.push_str(r#"","pos":"#);
                push_json_string(out, pos);
            }
            Frame::Message { pos, data } => {
                out.push_str(r#","pos":"#);
                push_json_string(out, pos);
                out.push_str(r#","data":"#);
                // Escaped once when the message was published, shared by every recipient.
                out.push_str(std::str::from_utf8(data.sockjs().json()).unwrap_or("\"\""));
            }
            Frame::Gap { pos, missed } => {
                out.push_str(r#","pos":"#);
                push_json_string(out, pos);
                out.push_str(r#","missed":"#);
                out.push_str(&missed.map_or("null".to_owned(), |m| m.to_string()));
            }
            Frame::Close(closed) => {
                out.push_str(r#","code":"#);
                out.push_str(&closed.code.as_u16().to_string());
                out.push_str(r#","reason":"#);
                push_json_string(out, &closed.reason);
                out.push_str(r#","reconnect":"#);
                out.push_str(if closed.code.reconnect() {
                    "true"
                } else {
                    "false"
                });
            }
            Frame::Heartbeat | Frame::End => {}
        }
    }

    /// The frame as one JSON object.
    pub(crate) fn json(&self) -> String {
        let mut out = String::with_capacity(64);
        out.push_str(r#"{"type":""#);
        out.push_str(self.name());
        out.push('"');
        self.members(&mut out);
        out.push('}');
        out
    }

    /// The frame as one Server-Sent Event. Messages are unnamed events, so a plain
    /// `EventSource`'s `onmessage` sees them, with their position as `lastEventId`.
    pub(crate) fn sse(&self) -> String {
        match self {
            Frame::Message { pos, data } => {
                let mut out = String::with_capacity(data.len() + pos.len() + 16);
                out.push_str("id: ");
                out.push_str(pos);
                out.push('\n');
                // A line break inside the message would end the `data:` field: each line gets
                // its own, and EventSource joins them with `\n` again. A lone `\r` counts as a
                // line break in SSE, so it is split on too (and comes back as `\n`).
                let lines = data
                    .text()
                    .split("\r\n")
                    .flat_map(|l| l.split(['\n', '\r']));
                for line in lines {
                    out.push_str("data: ");
                    out.push_str(line);
                    out.push('\n');
                }
                out.push('\n');
                out
            }
            Frame::Gap { pos, missed } => format!(
                "event: gap\nid: {pos}\ndata: {{\"missed\":{}}}\n\n",
                missed.map_or("null".to_owned(), |m| m.to_string())
            ),
            Frame::Heartbeat | Frame::End => format!("event: {}\ndata:\n\n", self.name()),
            // The event name says the type; the data is the rest of the JSON frame.
            Frame::Open { .. } | Frame::Close(_) => {
                let mut members = String::new();
                self.members(&mut members);
                let data = members.strip_prefix(',').unwrap_or_default();
                format!("event: {}\ndata: {{{data}}}\n\n", self.name())
            }
        }
    }
}

/// Where a native connection's client is: the cursor of each topic up to the last message it
/// was sent. Every message frame carries the position after it.
#[derive(Debug)]
pub(crate) struct Tracker {
    channel: ChannelId,
    user: Option<String>,
    cursors: BTreeMap<Topic, Cursor>,
}

impl Tracker {
    /// A tracker starting at `cursors`, for a channel of `user`.
    pub(crate) fn new(
        channel: ChannelId,
        user: Option<String>,
        cursors: impl IntoIterator<Item = (Topic, Cursor)>,
    ) -> Self {
        Tracker {
            channel,
            user,
            cursors: cursors.into_iter().collect(),
        }
    }

    /// Moves `topic` to `cursor`.
    pub(crate) fn advance(&mut self, topic: &Topic, cursor: Cursor) {
        match self.cursors.get_mut(topic) {
            Some(c) => *c = cursor,
            None => {
                self.cursors.insert(topic.clone(), cursor);
            }
        }
    }

    /// The position as the client sees it.
    pub(crate) fn position(&self) -> String {
        let entries = self
            .cursors
            .iter()
            .map(|(topic, cursor)| (self.topic_ref(topic), *cursor))
            .collect();
        Position { entries }.encode()
    }

    fn topic_ref(&self, topic: &Topic) -> TopicRef {
        if *topic == Topic::broadcast() {
            TopicRef::All
        } else if topic.private_to() == Some(self.channel) {
            TopicRef::Own
        } else if self
            .user
            .as_deref()
            .is_some_and(|u| *topic == Topic::user(u))
        {
            TopicRef::User
        } else {
            TopicRef::Named(topic.as_str().to_owned())
        }
    }

    /// The topic a position entry names, for this channel.
    pub(crate) fn topic_of(&self, topic: &TopicRef) -> Option<Topic> {
        match topic {
            TopicRef::All => Some(Topic::broadcast()),
            TopicRef::Own => Some(Topic::channel(self.channel)),
            TopicRef::User => self.user.as_deref().map(Topic::user),
            TopicRef::Named(name) => Some(Topic::from_stored(name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use tidings_core::{CloseCode, Epoch, Offset};

    use super::*;

    #[test]
    fn json_frames() {
        let data = Payload::new("hi \"you\"\u{2028}");
        let closed = Closed::new(CloseCode::GO_AWAY, "Go away!");
        let cases = [
            (
                Frame::Open {
                    transport: "sse",
                    pos: "a:1:2".into(),
                },
                r#"{"type":"open","transport":"sse","pos":"a:1:2"}"#,
            ),
            (
                Frame::Message {
                    pos: "a:1:3".into(),
                    data: &data,
                },
                r#"{"type":"message","pos":"a:1:3","data":"hi \"you\"\u2028"}"#,
            ),
            (Frame::Heartbeat, r#"{"type":"heartbeat"}"#),
            (
                Frame::Gap {
                    pos: "a:1:9".into(),
                    missed: Some(4),
                },
                r#"{"type":"gap","pos":"a:1:9","missed":4}"#,
            ),
            (
                Frame::Gap {
                    pos: "a:2:9".into(),
                    missed: None,
                },
                r#"{"type":"gap","pos":"a:2:9","missed":null}"#,
            ),
            (Frame::End, r#"{"type":"end"}"#),
            (
                Frame::Close(&closed),
                r#"{"type":"close","code":3000,"reason":"Go away!","reconnect":false}"#,
            ),
        ];
        for (frame, expected) in cases {
            assert_eq!(frame.json(), expected);
            serde_json::from_str::<serde_json::Value>(&frame.json()).expect("valid JSON");
        }
    }

    #[test]
    fn sse_events() {
        let data = Payload::new("one\ntwo\r\nthree");
        let message = Frame::Message {
            pos: "a:1:3".into(),
            data: &data,
        };
        assert_eq!(
            message.sse(),
            "id: a:1:3\ndata: one\ndata: two\ndata: three\n\n"
        );
        let closed = Closed::new(CloseCode::GO_AWAY, "Go away!");
        assert_eq!(
            Frame::Close(&closed).sse(),
            "event: close\ndata: {\"code\":3000,\"reason\":\"Go away!\",\"reconnect\":false}\n\n"
        );
        assert_eq!(Frame::Heartbeat.sse(), "event: heartbeat\ndata:\n\n");
    }

    #[test]
    fn positions_abbreviate_the_channels_own_topics() {
        let id = ChannelId::random();
        let at = |o| Cursor::new(Epoch(0xa), Offset(o));
        let mut tracker = Tracker::new(
            id,
            Some("ann".into()),
            [
                (Topic::broadcast(), at(1)),
                (Topic::channel(id), at(2)),
                (Topic::user("ann"), at(3)),
            ],
        );
        tracker.advance(&Topic::new("room").expect("topic"), at(4));
        let position = Position::decode(&tracker.position()).expect("decodes");
        let topics: Vec<_> = position
            .entries
            .iter()
            .map(|(t, _)| tracker.topic_of(t).expect("known"))
            .collect();
        assert_eq!(topics.len(), 4);
        assert!(tracker.position().starts_with("a:a:1,"));
    }
}
