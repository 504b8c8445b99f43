//! Who a client is, as the auth hook decided.

use std::collections::BTreeMap;

/// Who the auth hook says a client is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub(crate) user: Option<String>,
    pub(crate) attributes: BTreeMap<String, String>,
}

impl Identity {
    /// A client with no user: it gets broadcasts and its own messages, no user topic.
    pub fn anonymous() -> Self {
        Identity::default()
    }

    /// A client acting as `user`: every channel of this user follows the user's topic.
    pub fn user(user: impl Into<String>) -> Self {
        Identity {
            user: Some(user.into()),
            attributes: BTreeMap::new(),
        }
    }

    /// Adds an attribute the application can read from the channel.
    pub fn attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(key.into(), value.into());
        self
    }
}
