//! The crate's error type, and the one place where errors become HTTP statuses, machine-readable
//! codes and close codes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tidings_core::CloseCode;
use tidings_core::close::InvalidCloseCode;
use tidings_store::{InvalidTopic, StoreError};

/// Everything that can go wrong in Tidings.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The session store failed or is unreachable.
    #[error("session store: {0}")]
    Store(StoreError),
    /// A message is larger than the configured limit.
    #[error("message of {size} bytes is over the limit of {limit} bytes")]
    MessageTooLarge {
        /// The message's size in bytes.
        size: usize,
        /// The limit in force.
        limit: usize,
    },
    /// A close code an application may not use.
    #[error(transparent)]
    InvalidCloseCode(#[from] InvalidCloseCode),
    /// A topic name an application may not use.
    #[error(transparent)]
    InvalidTopic(#[from] InvalidTopic),
    /// The channel is unknown to the store (never existed, closed, or expired).
    #[error("unknown channel")]
    UnknownChannel,
    /// A STOMP destination the broker does not serve.
    #[error("{0}")]
    InvalidDestination(String),
    /// The user already has the maximum number of channels open.
    #[error("user has {limit} channels open already")]
    TooManyChannels {
        /// The limit in force.
        limit: usize,
    },
}

impl From<StoreError> for Error {
    /// Counted in `tidings_store_errors_total`: every store failure the engine meets passes here.
    fn from(error: StoreError) -> Self {
        crate::engine::metrics::store_error();
        Error::Store(error)
    }
}

impl Error {
    /// The HTTP status an HTTP request that failed with this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::MessageTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::InvalidCloseCode(_) | Error::InvalidTopic(_) | Error::InvalidDestination(_) => {
                StatusCode::BAD_REQUEST
            }
            Error::UnknownChannel => StatusCode::NOT_FOUND,
            Error::TooManyChannels { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// A short machine-readable name of the error, for protocols that send one (the native
    /// protocol's `{"error": …}`): `unavailable`, `too-large`, `bad-request`,
    /// `unknown-session`, `too-many-channels`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Store(_) => "unavailable",
            Error::MessageTooLarge { .. } => "too-large",
            Error::InvalidCloseCode(_) | Error::InvalidTopic(_) | Error::InvalidDestination(_) => {
                "bad-request"
            }
            Error::UnknownChannel => "unknown-session",
            Error::TooManyChannels { .. } => "too-many-channels",
        }
    }

    /// The close code a session that failed with this error is closed with.
    pub fn close_code(&self) -> CloseCode {
        match self {
            Error::Store(_) => CloseCode::TRY_AGAIN,
            Error::MessageTooLarge { .. } => CloseCode::TOO_BIG,
            Error::UnknownChannel => CloseCode::SESSION_EXPIRED,
            Error::TooManyChannels { .. } => CloseCode::POLICY,
            Error::InvalidCloseCode(_) | Error::InvalidTopic(_) | Error::InvalidDestination(_) => {
                CloseCode::INTERNAL
            }
        }
    }
}

/// The error as an HTTP answer: [`Error::status`] with the error's text and a newline as
/// `text/plain` (what SockJS clients are answered with; the native protocol wraps the same status
/// and [`Error::code`] in JSON).
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let mut response = format!("{self}\n").into_response();
        *response.status_mut() = self.status();
        response.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("text/plain; charset=UTF-8"),
        );
        response
    }
}
