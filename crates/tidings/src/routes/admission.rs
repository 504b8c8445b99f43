//! Admission: the one path every request that opens or uses a channel passes. The origin is
//! checked, the auth hook says who the client is, and a new channel is created with the
//! per-user limit checked by the store in the same step.

use axum::response::{IntoResponse, Response};

use super::handshake::{Handshake, Rejection};
use super::state::Routes;
use crate::engine::error::Error;
use crate::engine::identity::Identity;
use crate::engine::session::{self, Opened};
use tidings_store::Alias;

/// Why admission refused a request. Each protocol answers it in its own form.
#[derive(Debug)]
pub(crate) enum Refused {
    /// The request's `Origin` is not in `allowed_origins`.
    Origin,
    /// The auth hook refused; its answer is the response.
    Auth(Rejection),
    /// Opening the channel failed: the user has too many open, or the store failed.
    Error(Error),
}

impl Refused {
    /// The answer as plain text (SockJS and raw WebSocket requests).
    pub(crate) fn into_plain(self) -> Response {
        match self {
            Refused::Origin => crate::transport::respond::plain(
                axum::http::StatusCode::FORBIDDEN,
                "Origin not allowed\n",
            ),
            Refused::Auth(rejection) => rejection.into_response(),
            Refused::Error(error) => error.into_response(),
        }
    }
}

/// Who the client of `handshake` is: its origin checked, then the auth hook's answer.
pub(crate) async fn identify(routes: &Routes, handshake: Handshake) -> Result<Identity, Refused> {
    if !routes.engine.config.origin_allowed(handshake.origin()) {
        return Err(Refused::Origin);
    }
    (routes.auth)(handshake).await.map_err(Refused::Auth)
}

/// Admits the client of `handshake` and opens a channel for it, found again later by `alias`
/// when given (when another request opened that one first, it is what is found).
pub(crate) async fn open(
    routes: &Routes,
    handshake: Handshake,
    alias: Option<Alias>,
) -> Result<Opened, Refused> {
    let identity = identify(routes, handshake).await?;
    session::open(&routes.engine, identity, alias)
        .await
        .map_err(Refused::Error)
}
