//! The native protocol (`docs/protocol.md`): negotiation, the four transports with positions
//! and resume, sends, and the JS client the library serves.
//!
//! A native session is a channel found by its token (the store's alias `native:<token>`). Each
//! transport connection takes the channel over from the one before it, reads from the position
//! the client sent (or the saved cursors), and when it ends without a close leaves the channel
//! for [`Config::resume`](crate::Config::resume) so the client can come back.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tidings_core::{CloseCode, Position};

use crate::channel::Closed;
use crate::error::Error;
use crate::handshake::Handshake;
use crate::http_util::{method_not_allowed, request_origin, send_body_limit};
use crate::router::admit;
use crate::session::{self, Opened, Reader, Session};
use crate::sockjs::cors;
use crate::store::random_id;
use crate::store::{Alias, ChannelState};
use crate::tidings::Shared;
use crate::transport::websocket::{self, Flavor, Opening};

pub(crate) mod frames;
pub(crate) mod receive;

use frames::{Frame, Tracker};

/// The browser client, served at `<prefix>/tidings.js`.
const SCRIPT: &str = include_str!("tidings.js");

/// `Cache-Control` of every native answer: never stored, never transformed by a proxy (a
/// compressing proxy would hold a stream back).
pub(crate) const NO_STORE: &str = "no-store, no-transform";

/// An error answer: a status and `{"error": code, "message": text}`.
#[derive(Debug)]
pub(crate) struct Failure {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Failure {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Failure {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Failure::new(StatusCode::BAD_REQUEST, "bad-request", message)
    }

    fn unknown_session() -> Self {
        Failure::new(
            StatusCode::NOT_FOUND,
            "unknown-session",
            "no session has this token (never issued, or expired): negotiate a new one",
        )
    }
}

impl From<&Error> for Failure {
    fn from(error: &Error) -> Self {
        let code = match error {
            Error::TooManyChannels { .. } => "too-many-channels",
            Error::MessageTooLarge { .. } => "too-large",
            Error::UnknownChannel => "unknown-session",
            _ => "unavailable",
        };
        Failure::new(error.status(), code, error.to_string())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body<'a> {
            error: &'a str,
            message: &'a str,
        }
        let body = serde_json::to_string(&Body {
            error: self.code,
            message: &self.message,
        })
        .unwrap_or_default();
        let mut response = (self.status, body).into_response();
        json_headers(response.headers_mut());
        response
    }
}

fn json_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_STORE));
}

/// The value of query parameter `name`.
fn query(parts: &Parts, name: &str) -> Option<String> {
    let query = parts.uri.query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// Finds the session a request's token names, and checks the request is allowed to use it:
/// its origin, and the auth hook's user against the one the token was issued to.
async fn resolve(shared: &Arc<Shared>, parts: &Parts) -> Result<ChannelState, Response> {
    if !shared.config.origin_allowed(request_origin(&parts.headers)) {
        return Err(
            Failure::new(StatusCode::FORBIDDEN, "origin", "origin not allowed").into_response(),
        );
    }
    let Some(token) = query(parts, "token") else {
        return Err(Failure::bad_request("the token parameter is missing").into_response());
    };
    // Tokens are 32 hex digits; anything else cannot name a session.
    let Ok(token) = token.parse() else {
        return Err(Failure::unknown_session().into_response());
    };
    let state = match shared
        .hub
        .store()
        .channel_by_alias(&Alias::Native(token))
        .await
    {
        Ok(Some(state)) => state,
        Ok(None) => return Err(Failure::unknown_session().into_response()),
        Err(error) => return Err(Failure::from(&Error::from(error)).into_response()),
    };
    let handshake = Handshake::new(
        parts.method.clone(),
        parts.uri.clone(),
        parts.headers.clone(),
    );
    let identity = (shared.handlers.auth)(handshake)
        .await
        .map_err(IntoResponse::into_response)?;
    if identity.user != state.user {
        return Err(Failure::new(
            StatusCode::FORBIDDEN,
            "wrong-user",
            "this session belongs to another user",
        )
        .into_response());
    }
    Ok(state)
}

/// Moves the cursors of `state` to the client's position, `pos`.
fn apply_position(state: &mut ChannelState, pos: Option<&str>) -> Result<(), Failure> {
    let Some(pos) = pos.filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    let position = Position::decode(pos).map_err(|_| Failure::bad_request("malformed position"))?;
    let names = Tracker::new(state.id, state.user.clone(), []);
    for (topic, cursor) in position.entries {
        // Topics the channel no longer follows are ignored.
        if let Some(topic) = names.topic_of(&topic)
            && let Some(saved) = state.topics.get_mut(&topic)
        {
            *saved = cursor;
        }
    }
    Ok(())
}

/// Takes over the session for a new transport connection, from the client's position.
async fn take_over(
    shared: &Arc<Shared>,
    mut state: ChannelState,
    pos: Option<&str>,
) -> Result<(Session, Reader, Tracker), Response> {
    apply_position(&mut state, pos).map_err(IntoResponse::into_response)?;
    let (session, reader) = session::take_over(shared, &state, random_id())
        .await
        .map_err(|e| Failure::from(&e).into_response())?;
    let tracker = Tracker::new(state.id, state.user.clone(), reader.cursors());
    Ok((session, reader, tracker))
}

/// `<prefix>/tidings.js`.
pub(crate) async fn script(method: Method) -> Response {
    if method != Method::GET {
        return method_not_allowed("GET");
    }
    let mut response = SCRIPT.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    // Revalidated on every load, so a page never runs a client older than its server.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// What `negotiate` answers.
#[derive(Serialize)]
struct Negotiated {
    token: String,
    transports: Vec<&'static str>,
    heartbeat_ms: u128,
    poll_timeout_ms: u128,
    resume_ms: u128,
    max_message_size: usize,
    response_limit: usize,
}

/// `POST <prefix>/native/negotiate`: admits the client, creates its session, and says what the
/// service offers.
pub(crate) async fn negotiate(shared: Arc<Shared>, request: Request) -> Response {
    let (parts, _body) = request.into_parts();
    match parts.method {
        Method::POST => {}
        Method::OPTIONS => return cors::preflight(&parts.headers, "OPTIONS, POST"),
        _ => return method_not_allowed("OPTIONS, POST"),
    }
    let request_headers = parts.headers.clone();
    let handshake = Handshake::new(parts.method, parts.uri, parts.headers);
    let identity = match admit(&shared, handshake).await {
        Ok(identity) => identity,
        Err(response) => return response,
    };
    let token = random_id();
    let created = session::open(&shared, identity, Some(Alias::Native(token))).await;
    let (session, reader) = match created {
        Ok(Opened::Created(session, reader)) => (session, reader),
        // 128 random bits do not collide.
        Ok(Opened::Found(_)) => {
            return Failure::new(StatusCode::CONFLICT, "conflict", "try again").into_response();
        }
        Err(error) => return Failure::from(&error).into_response(),
    };
    // The client has `resume` to connect its first transport, which starts from here (the
    // heads at negotiation) unless the client brings a position.
    drop(reader);
    let touched = shared
        .hub
        .store()
        .touch(session.channel.id(), shared.config.resume)
        .await;
    if let Err(error) = touched {
        return Failure::from(&Error::from(error)).into_response();
    }
    let config = &shared.config;
    let mut transports = vec!["sse", "streaming", "polling"];
    if config.websocket {
        transports.insert(0, "websocket");
    }
    let body = Negotiated {
        token: token.to_string(),
        transports,
        heartbeat_ms: config.heartbeat.as_millis(),
        poll_timeout_ms: receive::poll_timeout(config).as_millis(),
        resume_ms: config.resume.as_millis(),
        max_message_size: config.max_message_size,
        response_limit: config.response_limit,
    };
    let mut response = serde_json::to_string(&body)
        .unwrap_or_default()
        .into_response();
    json_headers(response.headers_mut());
    cors::allow(&request_headers, response.headers_mut());
    response
}

/// `GET <prefix>/native/ws`: the WebSocket transport.
pub(crate) async fn ws(shared: Arc<Shared>, request: Request) -> Response {
    if !shared.config.websocket {
        return Failure::new(StatusCode::NOT_FOUND, "no-websocket", "WebSocket is off")
            .into_response();
    }
    if request.method() != Method::GET {
        return method_not_allowed("GET");
    }
    let (mut parts, _body) = request.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let state = match resolve(&shared, &parts).await {
        Ok(state) => state,
        Err(response) => return response,
    };
    let upgrade = upgrade
        .read_buffer_size(crate::transport::websocket::READ_BUFFER)
        .max_message_size(
            shared
                .config
                .max_message_size
                .saturating_mul(2)
                .saturating_add(1024),
        );
    if state.ended {
        let closed = session::close_of(&state);
        return upgrade.on_upgrade(move |mut socket| async move {
            use futures::SinkExt;
            let frame = Frame::Close(&closed).json();
            let _ = socket.send(axum::extract::ws::Message::text(frame)).await;
            let _ = socket.close().await;
        });
    }
    let pos = query(&parts, "pos");
    let (session, reader, tracker) = match take_over(&shared, state, pos.as_deref()).await {
        Ok(taken) => taken,
        Err(response) => return response,
    };
    upgrade.on_upgrade(move |socket| {
        websocket::serve(
            shared,
            socket,
            Opening::Attached(session, reader),
            Flavor::Native(tracker),
        )
    })
}

/// `POST <prefix>/native/send`: messages for `on_message`, a JSON array of strings.
pub(crate) async fn send(shared: Arc<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    match parts.method {
        Method::POST => {}
        Method::OPTIONS => return cors::preflight(&parts.headers, "OPTIONS, POST"),
        _ => return method_not_allowed("OPTIONS, POST"),
    }
    let mut response = match deliver(&shared, &parts, body).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(response) => response,
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_STORE));
    cors::allow(&parts.headers, response.headers_mut());
    response
}

async fn deliver(shared: &Arc<Shared>, parts: &Parts, body: Body) -> Result<(), Response> {
    let state = resolve(shared, parts).await?;
    let max = shared.config.max_message_size;
    let limit = send_body_limit(max);
    let too_large =
        |size: usize| Failure::from(&Error::MessageTooLarge { size, limit: max }).into_response();
    let body = to_bytes(body, limit)
        .await
        .map_err(|_| too_large(limit + 1))?;
    let messages: Vec<String> = serde_json::from_slice(&body).map_err(|_| {
        Failure::bad_request("the body must be a JSON array of strings").into_response()
    })?;
    if let Some(size) = messages.iter().map(String::len).find(|len| *len > max) {
        return Err(too_large(size));
    }
    // A closed session takes no more messages, but the client is not at fault.
    if state.closed.is_none() {
        let session = Session::of(shared, &state);
        for message in messages {
            session.incoming(message).await;
        }
    }
    Ok(())
}

/// `POST <prefix>/native/close`: the client ends its session (`on_close` sees 1000).
pub(crate) async fn close(shared: Arc<Shared>, request: Request) -> Response {
    let (parts, _body) = request.into_parts();
    if parts.method != Method::POST {
        return method_not_allowed("POST");
    }
    let state = match resolve(&shared, &parts).await {
        Ok(state) => state,
        Err(response) => return response,
    };
    let closed = Closed::new(CloseCode::NORMAL, "Client closed");
    // The close record ends a transport still attached; `finish` reports it once.
    if let Err(error) = shared
        .hub
        .close_with(state.id, closed.code, &closed.reason)
        .await
    {
        return Failure::from(&error).into_response();
    }
    let linger = shared.config.disconnect_delay;
    Session::of(&shared, &state)
        .finish(&[], closed, linger)
        .await;
    let mut response = StatusCode::NO_CONTENT.into_response();
    cors::allow(&parts.headers, response.headers_mut());
    response
}
