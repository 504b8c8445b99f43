//! The native protocol's routes (`docs/protocol.md`): negotiation, the four transports with
//! positions and resume, sends, the close, and the JS client the library serves.
//!
//! A native session is a channel found by its token (the store's alias [`Alias::Native`]). Each
//! transport connection takes the channel over from the one before it, reads from the position
//! the client sent (or the saved cursors), and when it ends without a close leaves the channel
//! for [`Config::resume`](crate::Config::resume) so the client can come back.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures::FutureExt;
use futures::future::Either;
use serde::Serialize;
use tidings_core::CloseCode;
use tidings_store::{Alias, ChannelState, random_id};

use super::admission::{self, Refused};
use super::handshake::Handshake;
use super::state::Routes;
use crate::engine::attachment::{Attachment, Holding};
use crate::engine::channel::Closed;
use crate::engine::config::Config;
use crate::engine::error::Error;
use crate::engine::session::{self, Opened, Session};
use crate::protocol::native::{self, Native, Tracker};
use crate::protocol::raw::Raw;
use crate::transport::framing::Framing;
use crate::transport::receive::Start;
use crate::transport::respond::{detached, method_not_allowed};
use crate::transport::send::{self, SendBody};
use crate::transport::{cors, receive, websocket};

/// The browser client, served at `<prefix>/tidings.js`.
const SCRIPT: &str = include_str!("tidings.js");

/// The client's TypeScript declarations, served at `<prefix>/tidings.d.ts`.
const TYPES: &str = include_str!("tidings.d.ts");

/// The version of the native protocol this server speaks. Every request names the version its
/// client speaks (`v=2`); any other is refused, so that a page still running an older client
/// after a deploy is told to reload rather than losing messages it cannot read.
const VERSION: u32 = 2;

/// `Cache-Control` of every native answer: never stored, never transformed by a proxy (a
/// compressing proxy would hold a stream back).
const NO_STORE: &str = "no-store, no-transform";

/// The native routes of a service.
pub(crate) fn routes() -> Router<Arc<Routes>> {
    Router::new()
        .route("/tidings.js", any(script))
        .route("/tidings.d.ts", any(types))
        .route("/native/negotiate", any(negotiate))
        .route("/native/ws", any(ws))
        .route("/native/send", any(send))
        .route("/native/close", any(close))
        // Each HTTP transport: its body framing, and its name in the `open` frame.
        .route(
            "/native/sse",
            any(|s, r| receive_on(s, Framing::Sse, "sse", r)),
        )
        .route(
            "/native/stream",
            any(|s, r| receive_on(s, Framing::Ndjson, "streaming", r)),
        )
        .route(
            "/native/poll",
            any(|s, r| receive_on(s, Framing::JsonArray, "polling", r)),
        )
}

/// An error answer: a status and `{"error": code, "message": text}`.
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Failure {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
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

/// An [`Error`] in the native protocol's form: its status and code, as `Error` maps them.
impl From<&Error> for Failure {
    fn from(error: &Error) -> Self {
        Failure::new(error.status(), error.code(), error.to_string())
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

/// Refuses a request whose client speaks another version of the protocol.
fn check_version(parts: &Parts) -> Result<(), Failure> {
    let spoken = query(parts, "v");
    match &spoken {
        Some(v) if v.parse() == Ok(VERSION) => Ok(()),
        _ => Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "unsupported-version",
            format!(
                "this client speaks version {} of the native protocol, the server version \
                 {VERSION}: load the current client (reload the page)",
                spoken.as_deref().unwrap_or("1")
            ),
        )),
    }
}

/// Admission's refusal, as the native protocol answers it.
fn refused(refused: Refused) -> Response {
    match refused {
        Refused::Origin => {
            Failure::new(StatusCode::FORBIDDEN, "origin", "origin not allowed").into_response()
        }
        Refused::Auth(rejection) => rejection.into_response(),
        Refused::Error(error) => Failure::from(&error).into_response(),
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

/// Finds the session a request's token names, and checks the request may use it: its origin,
/// the auth hook, and the hook's user against the one the token was issued to.
async fn resolve(routes: &Routes, parts: &Parts) -> Result<ChannelState, Response> {
    admission::check_origin(routes, &parts.headers).map_err(refused)?;
    check_version(parts).map_err(IntoResponse::into_response)?;
    let Some(token) = query(parts, "token") else {
        return Err(Failure::bad_request("the token parameter is missing").into_response());
    };
    // Tokens are 32 hex digits; anything else cannot name a session.
    let Ok(token) = token.parse() else {
        return Err(Failure::unknown_session().into_response());
    };
    let store = routes.engine.store();
    let state = match store.channel_by_alias(&Alias::Native(token)).await {
        Ok(Some(state)) => state,
        Ok(None) => return Err(Failure::unknown_session().into_response()),
        Err(error) => return Err(Failure::from(&Error::from(error)).into_response()),
    };
    let handshake = Handshake::new(
        parts.method.clone(),
        parts.uri.clone(),
        parts.headers.clone(),
    );
    let identity = admission::authenticate(routes, handshake)
        .await
        .map_err(refused)?;
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

/// The transports a native client can say it gave up (`fb=`), as metric labels.
const TRANSPORTS: [&str; 4] = ["websocket", "sse", "streaming", "polling"];

/// Takes over the session for a new transport connection `transport`, from the client's
/// position `pos`; `parts` may say the client gave up another transport for it.
async fn take_over(
    routes: &Routes,
    mut state: ChannelState,
    parts: &Parts,
    pos: Option<&str>,
    transport: &'static str,
) -> Result<(Attachment, Native), Response> {
    native::resume_at(&mut state, pos.unwrap_or_default())
        .map_err(|_| Failure::bad_request("malformed position").into_response())?;
    // Only the four names count, so a client cannot make label values up.
    if let Some(gave_up) = query(parts, "fb")
        && let Some(&from) = TRANSPORTS.iter().find(|&&t| t == gave_up && t != transport)
    {
        crate::engine::metrics::fell_back(from, transport);
    }
    // A poll always comes back with its position: that is how polling goes on, not a resume.
    if pos.is_some() && transport != "polling" {
        crate::engine::metrics::resumed();
    }
    let (session, reader) = session::take_over(&routes.engine, &state, random_id())
        .await
        .map_err(|e| Failure::from(&e).into_response())?;
    let tracker = Tracker::new(state.id, state.user.as_deref(), reader.cursors());
    let attachment = Attachment::new(session, reader, Holding::Resumable);
    Ok((attachment, Native::new(transport, tracker)))
}

/// `<prefix>/tidings.js`.
async fn script(method: Method) -> Response {
    client_file(method, SCRIPT, "text/javascript; charset=utf-8")
}

/// `<prefix>/tidings.d.ts`.
async fn types(method: Method) -> Response {
    client_file(method, TYPES, "application/typescript; charset=utf-8")
}

/// A file of the client, answered to GET.
fn client_file(method: Method, body: &'static str, content_type: &'static str) -> Response {
    if method != Method::GET {
        return method_not_allowed("GET");
    }
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Revalidated on every load, so a page never runs a client older than its server.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The longest a poll waits for something to answer: one heartbeat.
fn poll_timeout(config: &Config) -> Duration {
    config.heartbeat
}

/// What `negotiate` answers.
#[derive(Serialize)]
struct Negotiated {
    version: u32,
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
async fn negotiate(State(routes): State<Arc<Routes>>, request: Request) -> Response {
    let (parts, _body) = request.into_parts();
    match parts.method {
        Method::POST => {}
        Method::OPTIONS => return cors::preflight(&parts.headers, "OPTIONS, POST"),
        _ => return method_not_allowed("OPTIONS, POST"),
    }
    if let Err(failure) = check_version(&parts) {
        return failure.into_response();
    }
    let request_headers = parts.headers.clone();
    let handshake = Handshake::new(parts.method, parts.uri, parts.headers);
    let token = random_id();
    let session = match admission::open(&routes, handshake, Some(Alias::Native(token))).await {
        // The client has `resume` to connect its first transport, which starts from here (the
        // heads at negotiation) unless the client brings a position.
        Ok(Opened::Created(session, _reader)) => session,
        // 128 random bits do not collide.
        Ok(Opened::Found(_)) => {
            return Failure::new(StatusCode::CONFLICT, "conflict", "try again").into_response();
        }
        Err(refusal) => return refused(refusal),
    };
    let config = &routes.engine.config;
    if let Err(error) = session.touch(config.resume).await {
        return Failure::from(&error).into_response();
    }
    let mut transports = vec!["sse", "streaming", "polling"];
    if config.websocket {
        transports.insert(0, "websocket");
    }
    let body = Negotiated {
        version: VERSION,
        token: token.to_string(),
        transports,
        heartbeat_ms: config.heartbeat.as_millis(),
        poll_timeout_ms: poll_timeout(config).as_millis(),
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
async fn ws(State(routes): State<Arc<Routes>>, request: Request) -> Response {
    let config = &routes.engine.config;
    if !config.websocket {
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
    let state = match resolve(&routes, &parts).await {
        Ok(state) => state,
        Err(response) => return response,
    };
    let upgrade = upgrade
        .read_buffer_size(websocket::READ_BUFFER)
        .max_message_size(websocket::max_frame(config.max_message_size));
    if state.ended {
        let closed = Closed::of(&state);
        let protocol = Native::new("websocket", Tracker::new(state.id, None, []));
        return upgrade.on_upgrade(move |socket| websocket::refuse(socket, protocol, closed));
    }
    let pos = query(&parts, "pos");
    let (attachment, protocol) =
        match take_over(&routes, state, &parts, pos.as_deref(), "websocket").await {
            Ok(taken) => taken,
            Err(response) => return response,
        };
    let held = Box::new((attachment, protocol));
    upgrade.on_upgrade(move |socket| websocket::serve(socket, held, false))
}

/// One request of a native HTTP transport: Server-Sent Events, streaming or polling.
///
/// A poll waits up to a heartbeat with this future: combinators rather than an `async fn`,
/// which would keep room for the takeover's state and a second copy of the answer's beside the
/// answer itself (10 KiB per waiting poll, measured).
fn receive_on(
    State(routes): State<Arc<Routes>>,
    framing: Framing,
    transport: &'static str,
    request: Request,
) -> impl Future<Output = Response> + Send {
    let (parts, _body) = request.into_parts();
    if parts.method != Method::GET {
        return Either::Left(std::future::ready(method_not_allowed("GET")));
    }
    // What the answer needs of the request, copied: a poll waits with it, and keeps nothing
    // else of the request.
    let request = detached(&parts.headers, &[header::ORIGIN]);
    // Taking the session over is boxed: its state is freed once taken, where inline it would
    // size the future for as long as the poll waits.
    let taken = async move { Box::pin(receive(&routes, framing, transport, parts)).await };
    let answered = taken.then(|taken| match taken {
        Ok(answer) => Either::Left(answer),
        Err(response) => Either::Right(std::future::ready(response)),
    });
    Either::Right(answered.map(move |mut response| {
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_STORE));
        cors::allow(&request, headers);
        response
    }))
}

/// Takes the session over for a receiving request: the answer to await, which holds nothing of
/// the request; or (`Err`) the response at once, a refusal or what an ended session answers.
async fn receive(
    routes: &Routes,
    framing: Framing,
    transport: &'static str,
    parts: Parts,
) -> Result<impl Future<Output = Response> + Send + use<>, Response> {
    let parts = &parts;
    let state = resolve(routes, parts).await?;
    if state.ended {
        // An EventSource reconnects after every response, except one of 204: that stops it.
        if framing == Framing::Sse {
            return Err(StatusCode::NO_CONTENT.into_response());
        }
        let protocol = Native::new(transport, Tracker::new(state.id, None, []));
        return Err(receive::refuse(
            protocol,
            framing,
            &Closed::of(&state),
            &parts.headers,
        ));
    }
    let pos = query(parts, "pos").or_else(|| {
        let last = parts.headers.get("last-event-id")?;
        last.to_str().ok().map(str::to_owned)
    });
    // A client without a position has nothing to wait for yet: a poll answers `open` at once,
    // and the next, from that position, waits for what follows.
    let start = match pos {
        None => Start::Unplaced,
        Some(_) => Start::Resumed,
    };
    let (attachment, protocol) = take_over(routes, state, parts, pos.as_deref(), transport).await?;
    Ok(receive::respond(
        attachment,
        protocol,
        framing,
        start,
        &parts.headers,
    ))
}

/// `POST <prefix>/native/send`: messages for `on_message`, a JSON array of strings.
async fn send(State(routes): State<Arc<Routes>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    match parts.method {
        Method::POST => {}
        Method::OPTIONS => return cors::preflight(&parts.headers, "OPTIONS, POST"),
        _ => return method_not_allowed("OPTIONS, POST"),
    }
    let engine = &routes.engine;
    let delivered = async {
        let state = resolve(&routes, &parts).await?;
        let max = engine.config.max_message_size;
        // Each message of a native send is an application message, as on a raw WebSocket.
        send::deliver(
            engine,
            &state,
            &mut Raw,
            SendBody::JsonArray,
            &parts.headers,
            body,
        )
        .await
        .map_err(|refused| match refused {
            send::SendError::BodyTooLarge { limit } => Failure::from(&Error::MessageTooLarge {
                size: limit + 1,
                limit: max,
            })
            .into_response(),
            send::SendError::Payload(_) => {
                Failure::bad_request("the body must be a JSON array of strings").into_response()
            }
            send::SendError::MessageTooLarge(error) => Failure::from(&error).into_response(),
        })
    };
    let mut response = match delivered.await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(response) => response,
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_STORE));
    cors::allow(&parts.headers, response.headers_mut());
    response
}

/// `POST <prefix>/native/close`: the client ends its session (`on_close` sees 1000).
async fn close(State(routes): State<Arc<Routes>>, request: Request) -> Response {
    let (parts, _body) = request.into_parts();
    if parts.method != Method::POST {
        return method_not_allowed("POST");
    }
    let state = match resolve(&routes, &parts).await {
        Ok(state) => state,
        Err(response) => return response,
    };
    let engine = &routes.engine;
    let closed = Closed::new(CloseCode::NORMAL, "Client closed");
    // The close record ends a transport still attached; `finish` reports it once.
    if let Err(error) = engine
        .hub
        .close_with(state.id, closed.code, &closed.reason)
        .await
    {
        return Failure::from(&error).into_response();
    }
    let linger = engine.config.disconnect_delay;
    Session::of(engine, &state)
        .finish(&[], closed, linger)
        .await;
    let mut response = StatusCode::NO_CONTENT.into_response();
    cors::allow(&parts.headers, response.headers_mut());
    response
}
