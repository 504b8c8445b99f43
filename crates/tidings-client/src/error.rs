//! What can go wrong, typed.

/// Why a connection could not go on, or a call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL given is not an `http://` or `https://` URL.
    #[error("bad URL: {0}")]
    Url(String),
    /// A header given to [`Builder::header`](crate::Builder::header) has an invalid name or
    /// value.
    #[error("bad header {0:?}")]
    Header(String),
    /// The server answered a request with an error that retrying will not cure: the auth hook
    /// refused (its status), the origin or the user is not allowed, another protocol version.
    #[error("refused with {status}: {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The protocol's error code (`wrong-user`, `unsupported-version`, …), or the auth
        /// hook's text.
        message: String,
    },
    /// The server sent something the protocol does not allow (a malformed frame).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The network, or a server error (5xx): the client retries by itself; this is what a
    /// call that cannot wait reports.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The connection is closed: by [`Connection::close`](crate::Connection::close), or by the
    /// server for good.
    #[error("the connection is closed")]
    Closed,
}

impl From<reqwest::Error> for Error {
    fn from(error: reqwest::Error) -> Self {
        Error::Unavailable(error.to_string())
    }
}
