//! Admission: the checks of requests that open or use a channel, in one place. The origin is
//! checked, the auth hook says who the client is, and a new channel is created with the
//! per-user limit checked by the store in the same step. A SockJS request of a session that
//! exists already is only bound by the session id the client chose, as in sockjs-node; its
//! sends check the origin.

use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use tidings_store::Alias;

use super::handshake::{Handshake, Rejection};
use super::state::Routes;
use crate::engine::error::Error;
use crate::engine::identity::Identity;
use crate::engine::session::{self, Opened};
use crate::transport::respond::request_origin;

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

/// Whether a request with these headers may use a channel: its `Origin` is allowed.
pub(crate) fn check_origin(routes: &Routes, headers: &HeaderMap) -> Result<(), Refused> {
    if routes.engine.config.origin_allowed(request_origin(headers)) {
        Ok(())
    } else {
        Err(Refused::Origin)
    }
}

/// Who the client of `handshake` is, as the auth hook answers. Callers check the origin first.
pub(crate) async fn authenticate(
    routes: &Routes,
    handshake: Handshake,
) -> Result<Identity, Refused> {
    (routes.auth)(handshake).await.map_err(Refused::Auth)
}

/// Who the client of `handshake` is: its origin checked, then the auth hook's answer.
pub(crate) async fn identify(routes: &Routes, handshake: Handshake) -> Result<Identity, Refused> {
    check_origin(routes, handshake.headers())?;
    authenticate(routes, handshake).await
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
