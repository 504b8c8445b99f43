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
