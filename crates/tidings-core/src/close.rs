//! The one table of close codes.
//!
//! Every transport closes a session with a code from this table (or an application code) and the
//! code means the same thing everywhere: in a SockJS `c[code,"reason"]` frame, in a WebSocket
//! close frame, and in the native protocol's close event. Each code says whether a client should
//! reconnect. The reserved WebSocket codes 1004, 1005, 1006 and 1015 can never be constructed, so
//! they are never sent.

use std::fmt;

/// A close code that may be sent on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(u16);

/// One row of the close-code table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseInfo {
    /// The code.
    pub code: CloseCode,
    /// The reason text Tidings sends with it.
    pub reason: &'static str,
    /// Whether a client should reconnect after it.
    pub reconnect: bool,
    /// When Tidings sends it.
    pub when: &'static str,
}

/// Why a number cannot be used as an application close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "close code {0} is not available to applications: use 1000, 3000, or 3100-4999 \
     (3001-3099 are Tidings' own, the rest is reserved by RFC 6455 or SockJS)"
)]
pub struct InvalidCloseCode(pub u16);

/// The longest reason, in bytes, that fits a WebSocket close frame (125 minus the code).
pub const MAX_REASON_BYTES: usize = 123;

macro_rules! table {
    ($( $(#[$doc:meta])* $name:ident = $code:literal, $reason:literal, $reconnect:literal, $when:literal; )*) => {
        impl CloseCode {
            $( $(#[$doc])* pub const $name: CloseCode = CloseCode($code); )*
        }

        /// Every code Tidings itself sends, with its meaning.
        pub const TABLE: &[CloseInfo] = &[
            $( CloseInfo { code: CloseCode::$name, reason: $reason, reconnect: $reconnect, when: $when }, )*
        ];
    };
}

table! {
    /// The session ended normally (the application or the client closed it).
    NORMAL = 1000, "Normal closure", false, "the application or the client ended the session";
    /// The server is shutting down.
    GOING_AWAY = 1001, "Server shutting down", true, "the server is shutting down";
    /// The receiving connection of a known session was lost.
    INTERRUPTED = 1002, "Connection interrupted", true, "a receiving request of a still-known session was dropped";
    /// The client sent a frame that is not valid for the protocol (broken JSON).
    INVALID_PAYLOAD = 1007, "Broken JSON encoding", false, "the client sent a malformed frame";
    /// The request was refused by policy (origin or authentication).
    POLICY = 1008, "Policy violation", false, "policy refused the channel after the handshake (the per-user channel limit); origins and credentials are refused with an HTTP status before it";
    /// The client sent a message over the configured size limit.
    TOO_BIG = 1009, "Message too big", false, "the client sent a message over `max_message_size`";
    /// An internal error ended the session.
    INTERNAL = 1011, "Internal error", true, "an internal error ended the session";
    /// The session store is unavailable; retry after a backoff.
    TRY_AGAIN = 1013, "Try again later", true, "the session store is unavailable";
    /// A second receiving connection was refused while one is attached (SockJS).
    ANOTHER_CONNECTION = 2010, "Another connection still open", false, "a second receiving request arrived while one is attached";
    /// The close code of the SockJS reference `/close` service, an application code.
    GO_AWAY = 3000, "Go away!", false, "never by Tidings itself: the reference `/close` service uses it";
    /// The client fell behind the retained window and missed messages.
    LAGGED = 3001, "Missed messages", true, "the client fell behind the retained window or `max_lag`";
    /// The session is unknown or expired.
    SESSION_EXPIRED = 3002, "Session expired", true, "the session is unknown or expired";
    /// The client stopped answering heartbeats.
    TIMEOUT = 3003, "Heartbeat timeout", true, "a WebSocket client answered no ping or took no write within `client_timeout`, or a STOMP client sent nothing for three of its agreed heart-beat intervals";
}

impl CloseCode {
    /// A code an application may close a session with: 1000, 3000, or 3100–4999.
    pub fn app(code: u16) -> Result<Self, InvalidCloseCode> {
        match code {
            1000 | 3000 | 3100..=4999 => Ok(CloseCode(code)),
            _ => Err(InvalidCloseCode(code)),
        }
    }

    /// A code read back from storage or a trusted peer: any code of [`TABLE`] or an application
    /// code. Reserved codes are refused.
    pub fn from_stored(code: u16) -> Result<Self, InvalidCloseCode> {
        let known = TABLE.iter().any(|row| row.code.0 == code);
        if known {
            Ok(CloseCode(code))
        } else {
            CloseCode::app(code)
        }
    }

    /// The number sent on the wire.
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// This code's row of [`TABLE`], if Tidings defines it.
    pub fn info(self) -> Option<&'static CloseInfo> {
        TABLE.iter().find(|row| row.code == self)
    }

    /// Whether a client should reconnect after this code.
    ///
    /// Application codes (other than those in [`TABLE`]) say no: the application closed the
    /// session on purpose.
    pub fn reconnect(self) -> bool {
        self.info().is_some_and(|row| row.reconnect)
    }

    /// The reason text Tidings sends with this code when nobody gave one.
    pub fn default_reason(self) -> &'static str {
        self.info().map_or("", |row| row.reason)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Cuts `reason` to at most [`MAX_REASON_BYTES`] on a character boundary.
pub fn truncate_reason(reason: &str) -> &str {
    if reason.len() <= MAX_REASON_BYTES {
        return reason;
    }
    let mut end = MAX_REASON_BYTES;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_codes_are_never_in_the_table() {
        for row in TABLE {
            assert!(![1004, 1005, 1006, 1015].contains(&row.code.as_u16()));
        }
    }

    #[test]
    fn app_codes() {
        assert_eq!(CloseCode::app(3000), Ok(CloseCode::GO_AWAY));
        assert!(CloseCode::app(4999).is_ok());
        for bad in [0, 999, 1001, 1005, 1006, 1015, 2010, 3001, 3099, 5000] {
            assert_eq!(CloseCode::app(bad), Err(InvalidCloseCode(bad)));
        }
    }

    #[test]
    fn reconnect_flags() {
        assert!(CloseCode::LAGGED.reconnect());
        assert!(!CloseCode::ANOTHER_CONNECTION.reconnect());
        assert!(!CloseCode::app(4000).unwrap().reconnect());
    }

    #[test]
    fn reasons_are_truncated_on_char_boundaries() {
        let long = "é".repeat(100);
        let cut = truncate_reason(&long);
        assert!(cut.len() <= MAX_REASON_BYTES);
        assert!(long.starts_with(cut));
    }
}
