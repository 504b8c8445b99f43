//! Offsets and epochs of topics.

use std::fmt;

/// The position of a message in a topic: assigned on append, strictly increasing, never reused
/// within an epoch. The first message of a topic has offset 1; offset 0 means "before anything".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Offset(pub u64);

impl Offset {
    /// The position before the first message.
    pub const ZERO: Offset = Offset(0);

    /// The offset right after this one.
    pub const fn next(self) -> Offset {
        Offset(self.0 + 1)
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Identifies one life of a topic. A store that lost its topics (a restart of an in-memory
/// store, a flushed Redis) starts a new epoch, so a cursor from before is recognised as stale
/// instead of being matched against unrelated offsets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Epoch(pub u64);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A reader's place in one topic: the last offset it has seen, in an epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Cursor {
    /// The epoch the offset belongs to.
    pub epoch: Epoch,
    /// The last offset delivered to the reader.
    pub offset: Offset,
}

impl Cursor {
    /// A cursor at `offset` in `epoch`.
    pub const fn new(epoch: Epoch, offset: Offset) -> Self {
        Cursor { epoch, offset }
    }
}

/// Which topic an entry of a [`Position`] is about. The topics every channel follows are
/// abbreviated relative to the channel, which keeps positions short.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TopicRef {
    /// The broadcast topic, `$all`.
    All,
    /// The topic of the channel's own user.
    User,
    /// The channel's private topic.
    Own,
    /// Any other topic, by name.
    Named(String),
}

impl TopicRef {
    /// Appends the part of a [`Position`] entry that comes before the offset, `<ref>:<epoch>:`,
    /// so that an encoder that keeps it can write an entry with a copy and a number.
    pub fn push_prefix(&self, epoch: Epoch, out: &mut String) {
        match self {
            TopicRef::All => out.push('a'),
            TopicRef::User => out.push('u'),
            TopicRef::Own => out.push('c'),
            TopicRef::Named(name) => {
                out.push('t');
                out.extend(form_urlencoded::byte_serialize(name.as_bytes()));
            }
        }
        out.push(':');
        out.push_str(&format!("{:x}", epoch.0));
        out.push(':');
    }
}

/// Where a client is in its channel's stream: a cursor for each topic the channel follows.
///
/// The native protocol hands a client its position with every message; the client sends the
/// last one back when it reconnects, and delivery resumes right after it. Encoded as
/// `entry(,entry)*` with `entry = ref:epoch-hex:offset` and `ref` one of `a`, `u`, `c` or `t`
/// followed by the URL-encoded topic name, so a position is safe in a URL query and in an SSE
/// `id:` line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// The cursors, one per topic.
    pub entries: Vec<(TopicRef, Cursor)>,
}

/// A string that is not a [`Position`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed position")]
pub struct InvalidPosition;

impl Position {
    /// The longest encoded position accepted, in bytes.
    pub const MAX_LEN: usize = 16 * 1024;

    /// The position as text.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(self.entries.len() * 24);
        for (i, (topic, cursor)) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            topic.push_prefix(cursor.epoch, &mut out);
            out.push_str(&cursor.offset.0.to_string());
        }
        out
    }

    /// Reads a position written by [`Position::encode`].
    pub fn decode(text: &str) -> Result<Self, InvalidPosition> {
        if text.len() > Self::MAX_LEN {
            return Err(InvalidPosition);
        }
        if text.is_empty() {
            return Ok(Position::default());
        }
        let entries = text
            .split(',')
            .map(|entry| {
                let mut fields = entry.split(':');
                let (Some(topic), Some(epoch), Some(offset), None) =
                    (fields.next(), fields.next(), fields.next(), fields.next())
                else {
                    return Err(InvalidPosition);
                };
                let topic = match topic {
                    "a" => TopicRef::All,
                    "u" => TopicRef::User,
                    "c" => TopicRef::Own,
                    named => TopicRef::Named(decode_name(
                        named.strip_prefix('t').ok_or(InvalidPosition)?,
                    )?),
                };
                // Plain digits only: the integer parsers would also take a leading `+`.
                if !epoch.bytes().all(|b| b.is_ascii_hexdigit())
                    || !offset.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(InvalidPosition);
                }
                let epoch = u64::from_str_radix(epoch, 16).map_err(|_| InvalidPosition)?;
                let offset = offset.parse::<u64>().map_err(|_| InvalidPosition)?;
                Ok((topic, Cursor::new(Epoch(epoch), Offset(offset))))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Position { entries })
    }
}

fn decode_name(encoded: &str) -> Result<String, InvalidPosition> {
    if encoded.is_empty()
        || !encoded.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'*' | b'-' | b'.' | b'_' | b'%' | b'+')
        })
    {
        return Err(InvalidPosition);
    }
    let query = format!("n={encoded}");
    form_urlencoded::parse(query.as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .ok_or(InvalidPosition)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn topic_ref() -> impl Strategy<Value = TopicRef> {
        prop_oneof![
            Just(TopicRef::All),
            Just(TopicRef::User),
            Just(TopicRef::Own),
            "\\PC{1,30}".prop_map(TopicRef::Named),
        ]
    }

    proptest! {
        #[test]
        fn round_trips(entries in proptest::collection::vec((topic_ref(), any::<u64>(), any::<u64>()), 0..8)) {
            let position = Position {
                entries: entries
                    .into_iter()
                    .map(|(t, e, o)| (t, Cursor::new(Epoch(e), Offset(o))))
                    .collect(),
            };
            let text = position.encode();
            prop_assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b"%+*._:,-".contains(&b)));
            prop_assert_eq!(Position::decode(&text), Ok(position));
        }

        #[test]
        fn decoding_never_panics(text in "\\PC{0,60}") {
            let _ = Position::decode(&text);
        }
    }

    #[test]
    fn encoding_is_short_for_the_usual_topics() {
        let position = Position {
            entries: vec![
                (TopicRef::All, Cursor::new(Epoch(0xabc), Offset(17))),
                (
                    TopicRef::Named("room 1".into()),
                    Cursor::new(Epoch(1), Offset(3)),
                ),
            ],
        };
        assert_eq!(position.encode(), "a:abc:17,troom+1:1:3");
    }

    #[test]
    fn malformed_positions_are_refused() {
        for text in [
            "x", "a:1", "a:1:2:3", "a:zz:1", "a:1:-1", "a:1:+1", "t:1:1", "a:1:1,", "q:1:1",
        ] {
            assert_eq!(Position::decode(text), Err(InvalidPosition), "{text}");
        }
    }
}
