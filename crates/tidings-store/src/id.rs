//! Channel ids.

use std::fmt;
use std::str::FromStr;

use tidings_core::ids::{Id128, InvalidId};

/// The id of a channel: 128 random bits, unguessable, printed as 32 hex digits.
///
/// SockJS session ids are chosen by the client and never shown to the application; a channel
/// always gets its own id from the server.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId(Id128);

impl ChannelId {
    /// A fresh id from the operating system's CSPRNG (through `rand`'s thread-local generator).
    pub fn random() -> Self {
        ChannelId(random_id())
    }
}

/// 128 random bits from the operating system's CSPRNG: tokens, receiver-lock holders.
pub fn random_id() -> Id128 {
    Id128::from_bytes(rand::random())
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelId({})", self.0)
    }
}

impl FromStr for ChannelId {
    type Err = InvalidId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(ChannelId)
    }
}
