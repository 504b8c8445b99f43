//! Aliases: the second names channels are found by.

use std::fmt;
use std::str::FromStr;

use tidings_core::ids::Id128;

/// A second name a channel is found by, unique in the store: at most one channel holds an alias
/// at a time ([`Store::create_channel`](crate::Store::create_channel) returns the holder instead
/// of storing a second one).
///
/// Stores that keep aliases as text use [`Display`](fmt::Display) and [`FromStr`]:
/// `sockjs:<session id>` and `native:<token>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Alias {
    /// A SockJS session id, chosen by the client (one non-empty path segment).
    SockJs(String),
    /// A native protocol session's token: 128 random bits the server issued.
    Native(Id128),
}

/// Text that names no [`Alias`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not an alias: {0:?}")]
pub struct InvalidAlias(pub String);

impl fmt::Display for Alias {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Alias::SockJs(session) => write!(f, "sockjs:{session}"),
            Alias::Native(token) => write!(f, "native:{token}"),
        }
    }
}

impl FromStr for Alias {
    type Err = InvalidAlias;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidAlias(s.to_owned());
        match s.split_once(':').ok_or_else(invalid)? {
            ("sockjs", session) if !session.is_empty() => Ok(Alias::SockJs(session.to_owned())),
            ("native", token) => token.parse().map(Alias::Native).map_err(|_| invalid()),
            _ => Err(invalid()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_round_trip_through_text() {
        let aliases = [
            Alias::SockJs("a:b%20c".into()),
            Alias::Native(Id128::from_bytes([0xab; 16])),
        ];
        for alias in aliases {
            assert_eq!(alias.to_string().parse::<Alias>(), Ok(alias));
        }
        for bad in ["", "sockjs:", "native:12", "stomp:x", "nothing"] {
            assert!(bad.parse::<Alias>().is_err(), "{bad}");
        }
    }
}
