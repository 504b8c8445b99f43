//! Topic names.

use std::fmt;
use std::sync::Arc;

use crate::id::ChannelId;

/// The name of a topic: an append-only, bounded log of messages with increasing offsets.
///
/// Broadcast, rooms, users and single channels are all topics. The names Tidings uses itself
/// start with `$`; application topics ([`Topic::new`]) may not.
#[derive(Clone, Eq, PartialOrd, Ord)]
pub struct Topic(Arc<str>);

/// By the name, as equality compares it.
impl std::hash::Hash for Topic {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

/// Equal names. Clones of one `Topic` share their name, which settles most comparisons (a
/// reader's deliveries against its own topics) without reading it.
impl PartialEq for Topic {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl Topic {
    /// The longest application topic name, in bytes.
    pub const MAX_LEN: usize = 200;

    /// An application topic (a room). Names are 1 to 200 bytes, without control characters, and
    /// may not start with `$`.
    pub fn new(name: &str) -> Result<Topic, InvalidTopic> {
        let valid = !name.is_empty()
            && name.len() <= Topic::MAX_LEN
            && !name.starts_with('$')
            && !name.chars().any(char::is_control);
        if valid {
            Ok(Topic(name.into()))
        } else {
            Err(InvalidTopic(name.chars().take(Topic::MAX_LEN).collect()))
        }
    }

    /// The topic every channel follows.
    pub fn broadcast() -> Topic {
        Topic("$all".into())
    }

    /// The topic of one user: every channel that user has open follows it.
    pub fn user(user: &str) -> Topic {
        Topic(format!("$user:{user}").into())
    }

    /// Whether this is a user's topic ([`Topic::user`]).
    pub fn is_user(&self) -> bool {
        self.0.starts_with("$user:")
    }

    /// The private topic of one channel.
    pub fn channel(id: ChannelId) -> Topic {
        Topic(format!("$channel:{id}").into())
    }

    /// The name as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The channel this topic is private to, if it is a channel's topic.
    pub fn private_to(&self) -> Option<ChannelId> {
        self.0.strip_prefix("$channel:")?.parse().ok()
    }

    /// Rebuilds a topic from a name a store handed back, bypassing validation.
    pub fn from_stored(name: &str) -> Topic {
        Topic(name.into())
    }
}

/// A name [`Topic::new`] refused (cut to 200 characters).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid topic name {0:?}: 1 to 200 bytes, no control characters, not starting with '$'")]
pub struct InvalidTopic(pub String);

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Topic({:?})", &*self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_names_are_checked() {
        assert!(Topic::new("room-1").is_ok());
        assert!(Topic::new("").is_err());
        assert!(Topic::new("$all").is_err());
        assert!(Topic::new("a\nb").is_err());
        assert!(Topic::new(&"x".repeat(201)).is_err());
    }

    #[test]
    fn private_topics_name_their_channel() {
        let id = ChannelId::random();
        assert_eq!(Topic::channel(id).private_to(), Some(id));
        assert_eq!(Topic::broadcast().private_to(), None);
    }
}
