//! The SockJS routes (`SOCKJS-NOTES.md`): the greeting, `/info` ([`info`]), the iframe page
//! ([`iframe`]), the raw WebSocket, and every session URL, each a transport carrying the SockJS
//! protocol (the raw WebSocket carries the raw one). Session URLs set the `JSESSIONID` cookie
//! ([`cookie`]) on services that want it.
//!
//! A SockJS session over HTTP is a channel found by its client-chosen id (the store's alias),
//! across requests. A receiving request finds it, or creates it (after admission) and writes `o`
//! first; a session that has ended is answered with its close frame again; only one request
//! receives at a time (the store's receiver lock), a second gets `c[2010,…]`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures::FutureExt;
use futures::future::Either;
use tidings_core::CloseCode;
use tidings_store::{Alias, ChannelState, random_id};

use super::admission;
use super::handshake::Handshake;
use super::state::Routes;
use crate::engine::attachment::{Attachment, Holding};
use crate::engine::channel::Closed;
use crate::engine::session::{self, Opened};
use crate::protocol::Protocol;
use crate::protocol::raw::Raw;
use crate::protocol::sockjs::SockJs;
use crate::transport::callback::Callback;
use crate::transport::framing::Framing;
use crate::transport::receive::Start;
use crate::transport::respond::{detached, method_not_allowed, not_found, plain};
use crate::transport::send::{self, SendBody, SendError};
use crate::transport::{cache, cors, receive, websocket};

pub(crate) mod cookie;
pub(crate) mod iframe;
pub(crate) mod info;

/// What SockJS carries: the protocol of its sessions and of the raw WebSocket beside them.
/// Plain SockJS carries application messages ([`Plain`]); STOMP over SockJS carries STOMP
/// frames (`routes/stomp.rs`).
pub(crate) trait Dialect: Clone + Send + Sync + 'static {
    /// The protocol of a SockJS session, on every SockJS transport.
    type Session: Protocol;
    /// The protocol of the raw WebSocket at `<prefix>/websocket`.
    type Raw: Protocol;

    /// The protocol for a request of a session: one found in the store as `state`, or, with
    /// `None`, one this request creates.
    fn session(&self, state: Option<&ChannelState>) -> Self::Session;

    /// The protocol for a new raw WebSocket connection.
    fn raw(&self) -> Self::Raw;

    /// The WebSocket subprotocols the raw WebSocket accepts, in the order of preference: the
    /// first of them the client offers is answered. A client offering none is served too.
    fn subprotocols(&self) -> &'static [&'static str] {
        &[]
    }

    /// Whether a WebSocket upgrade at `<prefix>` itself is the raw WebSocket too (as a Spring
    /// STOMP endpoint without SockJS is); otherwise `<prefix>` is only the greeting.
    fn websocket_at_root(&self) -> bool {
        false
    }
}

/// Plain SockJS: each SockJS message is an application message.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Plain;

impl Dialect for Plain {
    type Session = SockJs;
    type Raw = Raw;

    fn session(&self, _state: Option<&ChannelState>) -> SockJs {
        SockJs
    }

    fn raw(&self) -> Raw {
        Raw
    }
}

/// The SockJS routes of a service, carrying `dialect`.
pub(crate) fn routes<D: Dialect>(routes: &Routes, dialect: D) -> Router<Arc<Routes>> {
    let page = Arc::new(iframe::Page::new(&routes.engine.config.sockjs_url));
    let (root, raw, ws, session) = (dialect.clone(), dialect.clone(), dialect.clone(), dialect);
    Router::new()
        .route(
            "/",
            any(move |state, request: Request| {
                let root = root.clone();
                async move {
                    if root.websocket_at_root() && request.headers().contains_key(header::UPGRADE) {
                        raw_websocket(state, root, request).await
                    } else {
                        greeting(request.method().clone()).await
                    }
                }
            }),
        )
        .route("/info", any(info::serve))
        // Every other single segment: the iframe page under its names, 404 for the rest.
        .route(
            "/{file}",
            any(move |method: Method, uri: Uri, headers: HeaderMap| {
                std::future::ready(page.serve(&method, &uri, &headers))
            }),
        )
        .route(
            "/websocket",
            any(move |state, request| raw_websocket(state, raw.clone(), request)),
        )
        .route(
            "/{server}/{session}/websocket",
            any(move |state, path, request| sockjs_websocket(state, ws.clone(), path, request)),
        )
        .route(
            "/{server}/{session}/{transport}",
            any(move |state, path, request| session_url(state, session.clone(), path, request)),
        )
}

async fn greeting(method: Method) -> Response {
    match method {
        Method::GET => plain(StatusCode::OK, "Welcome to SockJS!\n"),
        _ => method_not_allowed("GET"),
    }
}

/// A `<server>` or `<session>` path segment: non-empty, without `.` (or `/`).
fn session_segment(segment: &str) -> bool {
    !segment.is_empty() && !segment.contains(['.', '/'])
}

async fn raw_websocket<D: Dialect>(
    State(routes): State<Arc<Routes>>,
    dialect: D,
    request: Request,
) -> Response {
    let subprotocols = dialect.subprotocols();
    websocket(routes, request, dialect.raw(), subprotocols).await
}

async fn sockjs_websocket<D: Dialect>(
    State(routes): State<Arc<Routes>>,
    dialect: D,
    Path((server, session)): Path<(String, String)>,
    request: Request,
) -> Response {
    if !session_segment(&server) || !session_segment(&session) {
        return not_found();
    }
    let protocol = dialect.session(None);
    websocket(routes, request, protocol, &[]).await
}

/// A WebSocket session: one channel per connection (SockJS sessions over WebSocket are their
/// connection; the session id is not kept), opened before the upgrade so that a refusal is an
/// HTTP answer.
async fn websocket<P: Protocol>(
    routes: Arc<Routes>,
    request: Request,
    protocol: P,
    subprotocols: &'static [&'static str],
) -> Response {
    let config = &routes.engine.config;
    if !config.websocket {
        return not_found();
    }
    if request.method() != Method::GET {
        return method_not_allowed("GET");
    }
    let (mut parts, _body) = request.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => upgrade,
        Err(_) => return bad_upgrade(&parts.headers),
    };
    let handshake = Handshake::new(parts.method, parts.uri, parts.headers);
    let attachment = match admission::open(&routes, handshake, None).await {
        Ok(Opened::Created(session, reader)) => {
            Attachment::new(session, reader, Holding::Connection)
        }
        // Without an alias there is nothing another request could have created first.
        Ok(Opened::Found(_)) => return not_found(),
        Err(refused) => return refused.into_plain(),
    };
    let held = Box::new((attachment, protocol));
    upgrade
        .protocols(subprotocols.iter().copied())
        .read_buffer_size(websocket::READ_BUFFER)
        .max_message_size(websocket::max_frame(config.max_message_size))
        // An upgrade that fails drops the attachment, which ends the channel.
        .on_upgrade(move |socket| websocket::serve(socket, held, true))
}

fn bad_upgrade(headers: &HeaderMap) -> Response {
    let has = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|v| v.trim().eq_ignore_ascii_case(token))
    };
    let body = if !has(header::UPGRADE, "websocket") {
        "Can \"Upgrade\" only to \"WebSocket\".\n"
    } else if !has(header::CONNECTION, "upgrade") {
        "\"Connection\" must be \"Upgrade\".\n"
    } else {
        "Not a valid websocket request\n"
    };
    plain(StatusCode::BAD_REQUEST, body)
}

/// Every session URL but the WebSocket one: the receiving transports, the sends, their
/// preflights.
///
/// Not an `async fn`: a poll waits up to a heartbeat with the future this returns, which holds
/// only what its branch needs (a receive: its answer; an `async fn` would keep room for every
/// branch's state and a second copy of the answer's).
fn session_url<D: Dialect>(
    State(routes): State<Arc<Routes>>,
    dialect: D,
    Path((server, session, transport)): Path<(String, String, String)>,
    request: Request,
) -> impl Future<Output = Response> + Send {
    let now = |response: Response| Either::Left(std::future::ready(response));
    if !session_segment(&server) || !session_segment(&session) {
        return now(not_found());
    }
    let (parts, body) = request.into_parts();
    let config = &routes.engine.config;
    let framing = match (transport.as_str(), &parts.method) {
        ("xhr", &Method::POST) => Framing::Xhr,
        ("xhr_streaming", &Method::POST) => Framing::XhrStreaming,
        ("eventsource", &Method::GET) => Framing::EventSource,
        ("htmlfile" | "jsonp", &Method::GET) => match Callback::from_uri(&parts.uri) {
            Ok(callback) if transport == "htmlfile" => Framing::HtmlFile(callback),
            Ok(callback) => Framing::Jsonp(callback),
            Err(error) => return now(error.response()),
        },
        ("xhr_send" | "jsonp_send", &Method::POST) => {
            let format = if transport == "xhr_send" {
                SendBody::JsonArray
            } else {
                SendBody::Form
            };
            let sent = async move {
                let headers = &parts.headers;
                send(&routes, &dialect, format, &session, headers, body).await
            };
            // Boxed: a send is short, and its state would otherwise size every receive's.
            return Either::Right(Either::Left(Box::pin(sent)));
        }
        ("xhr" | "xhr_streaming" | "xhr_send", &Method::OPTIONS) => {
            let mut response = cors::preflight(&parts.headers, "OPTIONS, POST");
            cookie::set_jsessionid(config, &parts.headers, response.headers_mut());
            return now(response);
        }
        ("xhr" | "xhr_streaming" | "xhr_send", _) => {
            return now(method_not_allowed("OPTIONS, POST"));
        }
        ("jsonp_send", _) => return now(method_not_allowed("POST")),
        ("eventsource" | "htmlfile" | "jsonp", _) => return now(method_not_allowed("GET")),
        _ => return now(not_found()),
    };
    // What the answer needs of the request, copied: a poll waits with it.
    let request = detached(&parts.headers, &[header::ORIGIN, header::COOKIE]);
    drop(body);
    let service = routes.clone();
    // Finding the session is boxed: its state is freed once found, where inline it would size
    // the future for as long as the poll waits.
    let attached = async move { Box::pin(attach(&routes, &session, parts)).await };
    let answered = attached.then(move |attached| match attached {
        Ok(Attached::Session(attachment, fresh, state)) => {
            let protocol = dialect.session(state.as_ref());
            let start = if fresh {
                Start::Created
            } else {
                Start::Resumed
            };
            let answer = receive::respond(*attachment, protocol, framing, start, &request);
            Either::Left(answer.map(|response| (response, request)))
        }
        Ok(Attached::Refused(closed, state)) => {
            let protocol = dialect.session(state.as_ref());
            let response = receive::refuse(protocol, framing, &closed, &request);
            Either::Right(std::future::ready((response, request)))
        }
        Err(response) => Either::Right(std::future::ready((response, request))),
    });
    Either::Right(Either::Right(answered.map(
        move |(mut response, request)| {
            if response.status() == StatusCode::OK {
                let headers = response.headers_mut();
                cache::never(headers);
                cookie::set_jsessionid(&service.engine.config, &request, headers);
            }
            response
        },
    )))
}

/// What a receiving request attached to, with the session's state as it was found.
enum Attached {
    /// The live session, whether this request created it, and its state when it did not.
    Session(Box<Attachment>, bool, Option<ChannelState>),
    /// Only a close to write: the session has ended, or another request is receiving.
    Refused(Closed, Option<ChannelState>),
}

/// Finds the session `key`, or creates it, and takes its receiver lock.
async fn attach(routes: &Routes, key: &str, parts: Parts) -> Result<Attached, Response> {
    let engine = &routes.engine;
    let store = engine.store();
    let alias = Alias::SockJs(key.to_owned());
    let found = store
        .channel_by_alias(&alias)
        .await
        .map_err(|e| crate::engine::error::Error::from(e).into_response())?;
    let opened = match found {
        Some(state) => Opened::Found(state),
        None => {
            let handshake = Handshake::new(parts.method, parts.uri, parts.headers);
            admission::open(routes, handshake, Some(alias))
                .await
                .map_err(admission::Refused::into_plain)?
        }
    };
    let (session, reader, state) = match opened {
        Opened::Created(session, reader) => (session, reader, None),
        // Another request created it, now or before.
        Opened::Found(state) => match existing(routes, &state).await? {
            Some((session, reader)) => (session, reader, Some(state)),
            None => return Ok(Attached::Refused(Closed::of(&state), Some(state))),
        },
    };
    let holder = random_id();
    let locked = store
        .acquire_receiver(session.channel.id(), holder, engine.session_ttl())
        .await
        .map_err(|e| crate::engine::error::Error::from(e).into_response())?;
    if !locked {
        let closed = Closed::by(CloseCode::ANOTHER_CONNECTION);
        return Ok(Attached::Refused(closed, state));
    }
    let attachment = Attachment::new(session, reader, Holding::Lock(holder));
    let fresh = state.is_none();
    Ok(Attached::Session(Box::new(attachment), fresh, state))
}

/// A reader for a stored session, or `None` when it has ended.
async fn existing(
    routes: &Routes,
    state: &ChannelState,
) -> Result<Option<(session::Session, crate::engine::reader::Reader)>, Response> {
    if state.ended {
        return Ok(None);
    }
    session::attach(&routes.engine, state)
        .await
        .map(Some)
        .map_err(IntoResponse::into_response)
}

/// `POST …/xhr_send` and `POST …/jsonp_send`: messages for the session `key`, which a receiving
/// request created. A closed session still answers sends until it is forgotten, as sockjs-node
/// does; what it is sent goes nowhere.
async fn send<D: Dialect>(
    routes: &Routes,
    dialect: &D,
    format: SendBody,
    key: &str,
    request: &HeaderMap,
    body: Body,
) -> Response {
    let engine = &routes.engine;
    let delivered = async {
        admission::check_origin(routes, request).map_err(admission::Refused::into_plain)?;
        let alias = Alias::SockJs(key.to_owned());
        let state = match engine.store().channel_by_alias(&alias).await {
            Ok(Some(state)) => state,
            Ok(None) => return Err(not_found()),
            Err(error) => return Err(crate::engine::error::Error::from(error).into_response()),
        };
        let mut protocol = dialect.session(Some(&state));
        send::deliver(engine, &state, &mut protocol, format, request, body)
            .await
            .map_err(|refused| match refused {
                SendError::BodyTooLarge { limit } => plain(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("Request body over {limit} bytes.\n"),
                ),
                SendError::Payload(error) => {
                    plain(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
                }
                SendError::MessageTooLarge(error) => error.into_response(),
            })
    };
    let mut response = match delivered.await {
        // No body, yet a content type: what sockjs-node answers.
        Ok(()) if format == SendBody::JsonArray => plain(StatusCode::NO_CONTENT, Body::empty()),
        // 200 with a body rather than 204: old browsers' form posts trip over an empty answer.
        Ok(()) => plain(StatusCode::OK, "ok"),
        Err(response) => response,
    };
    let headers = response.headers_mut();
    cache::never(headers);
    if format == SendBody::JsonArray {
        cors::allow(request, headers);
    }
    cookie::set_jsessionid(&engine.config, request, headers);
    response
}
