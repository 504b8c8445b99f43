//! The receiving requests of SockJS HTTP sessions: xhr, xhr_streaming, eventsource, htmlfile and
//! jsonp. One function serves them all; [`Framing`] is all that differs.
//!
//! A SockJS session is a channel found by its client-chosen id (the store's alias). A receiving
//! request:
//!
//! 1. finds the channel, or creates it (after the origin, auth and per-user checks) and writes
//!    `o` first; a channel that has ended is answered with its close frame again;
//! 2. takes the channel's receiver lock, or answers `c[2010,…]` and leaves the session alone;
//! 3. writes frames from the channel's saved cursors: one and done for polling, until the
//!    response limit for streaming, `h` when nothing was written for a heartbeat;
//! 4. saves the cursors, lets go of the lock and gives the session `disconnect_delay` to send
//!    its next request. A client that drops the request ends the session (1002), as
//!    sockjs-node does.
//!
//! Nothing here holds delivery state between requests, so the next request may be served by
//! another node sharing the store.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use tidings_core::ids::Id128;
use tidings_core::{CloseCode, Cursor, sockjs};
use tokio::time::{Instant, Sleep, sleep_until};

use super::framing::Framing;
use super::{cache, cookie, cors};
use crate::channel::Closed;
use crate::error::Error;
use crate::handshake::Handshake;
use crate::id::random_id;
use crate::message::Payload;
use crate::router::{admit, error_response};
use crate::session::{self, Delivery, Opened, Reader, Session};
use crate::store::ChannelState;
use crate::tidings::Shared;
use crate::topic::Topic;

/// The store alias of the SockJS session `<session>`.
pub(crate) fn alias(session: &str) -> String {
    format!("sockjs:{session}")
}

/// Serves one receiving request for the session `key`.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    framing: Framing,
    key: &str,
    parts: Parts,
) -> Response {
    let request = parts.headers.clone();
    match attach(&shared, key, parts).await {
        Ok(Attached::Session(receiver, fresh)) => {
            let body = if framing.streaming() {
                stream(receiver, framing.clone(), fresh)
            } else {
                Body::from(poll(receiver, &framing, fresh).await)
            };
            respond(&shared, &framing, &request, body)
        }
        Ok(Attached::Refused(closed)) => {
            let frame = framing.frame(&sockjs::close_frame(closed.code, &closed.reason));
            let body = match framing.prelude() {
                Some(prelude) => Body::from([prelude, frame].concat()),
                None => Body::from(frame),
            };
            respond(&shared, &framing, &request, body)
        }
        Err(response) => response,
    }
}

/// What a receiving request attached to.
enum Attached {
    /// The live session, and whether this request created it.
    Session(Receiver, bool),
    /// Only a close to write: the session has ended, or another request is receiving.
    Refused(Closed),
}

async fn attach(shared: &Arc<Shared>, key: &str, parts: Parts) -> Result<Attached, Response> {
    let store = shared.hub.store();
    let alias = alias(key);
    let found = store
        .channel_by_alias(&alias)
        .await
        .map_err(|e| error_response(&e.into()))?;
    let (session, reader, fresh) = match found {
        Some(state) => match existing(shared, &state).await? {
            Some((session, reader)) => (session, reader, false),
            None => return Ok(Attached::Refused(close_of(&state))),
        },
        None => {
            let handshake = Handshake::new(parts.method, parts.uri, parts.headers);
            let identity = admit(shared, handshake).await?;
            match session::open(shared, identity, Some(alias)).await {
                Ok(Opened::Created(session, reader)) => (session, reader, true),
                // Another request created it a moment ago.
                Ok(Opened::Found(state)) => match existing(shared, &state).await? {
                    Some((session, reader)) => (session, reader, false),
                    None => return Ok(Attached::Refused(close_of(&state))),
                },
                Err(error) => return Err(error_response(&error)),
            }
        }
    };
    let holder = random_id();
    let id = session.channel.id();
    let locked = store
        .acquire_receiver(id, holder, shared.session_ttl())
        .await
        .map_err(|e| error_response(&e.into()))?;
    if !locked {
        return Ok(Attached::Refused(Closed::by(CloseCode::ANOTHER_CONNECTION)));
    }
    Ok(Attached::Session(
        Receiver::new(session, reader, holder),
        fresh,
    ))
}

/// A reader for a stored session, or `None` when it has ended.
async fn existing(
    shared: &Arc<Shared>,
    state: &ChannelState,
) -> Result<Option<(Session, Reader)>, Response> {
    if state.ended {
        return Ok(None);
    }
    session::attach(shared, state)
        .await
        .map(Some)
        .map_err(|e| error_response(&e))
}

/// The close an ended session answers every later request with.
fn close_of(state: &ChannelState) -> Closed {
    match &state.closed {
        Some((code, reason)) => Closed::new(*code, reason.as_str()),
        None => Closed::by(CloseCode::SESSION_EXPIRED),
    }
}

/// 200 with `body`, framed for `framing`: never cached, CORS where scripts read it, the cookie
/// where the service wants one.
fn respond(shared: &Shared, framing: &Framing, request: &HeaderMap, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    framing.headers(headers);
    cache::never(headers);
    if framing.cors() {
        cors::allow(request, headers);
    }
    cookie::set_jsessionid(&shared.config, request, headers);
    response
}

/// One polling response: `o` for a new session, else the next messages, the close, or `h`
/// after a heartbeat of silence.
async fn poll(mut receiver: Receiver, framing: &Framing, fresh: bool) -> Bytes {
    if fresh {
        receiver.detach().await;
        return framing.frame(sockjs::OPEN);
    }
    match receiver.step().await {
        Step::Messages(messages) => {
            receiver.detach().await;
            framing.frame(&messages_frame(&messages))
        }
        Step::Heartbeat => {
            receiver.detach().await;
            framing.frame(sockjs::HEARTBEAT)
        }
        Step::Close(closed) => {
            let frame = framing.frame(&sockjs::close_frame(closed.code, &closed.reason));
            receiver.close(closed).await;
            frame
        }
    }
}

/// A streaming response: the prelude, `o` for a new session, then frames, one per chunk, until
/// the close or the response limit.
fn stream(mut receiver: Receiver, framing: Framing, fresh: bool) -> Body {
    let limit = receiver.session.shared.config.response_limit;
    Body::from_stream(async_stream::stream! {
        if let Some(prelude) = framing.prelude() {
            yield Ok::<_, std::convert::Infallible>(prelude);
        }
        // sockjs-node counts framed bytes from `o` on, not the prelude.
        let mut written = 0;
        if fresh {
            let open = framing.frame(sockjs::OPEN);
            written += open.len();
            yield Ok(open);
        }
        while written < limit {
            let frame = match receiver.step().await {
                Step::Messages(messages) => framing.frame(&messages_frame(&messages)),
                Step::Heartbeat => framing.frame(sockjs::HEARTBEAT),
                Step::Close(closed) => {
                    let frame = framing.frame(&sockjs::close_frame(closed.code, &closed.reason));
                    receiver.close(closed).await;
                    yield Ok(frame);
                    return;
                }
            };
            written += frame.len();
            // A frame counts as delivered once hyper has taken it: as far as a server can know.
            yield Ok(frame);
        }
        receiver.detach().await;
    })
}

/// The `a[…]` frame of `messages`.
fn messages_frame(messages: &[Payload]) -> String {
    let encoded: Vec<_> = messages.iter().map(Payload::sockjs).collect();
    let frame = sockjs::messages_frame(&encoded);
    // Built from `str` pieces, so always UTF-8.
    String::from_utf8(frame.to_vec()).unwrap_or_default()
}

/// What a receiver has to write next.
enum Step {
    Messages(Vec<Payload>),
    Close(Closed),
    Heartbeat,
}

/// A request holding a session's receiver lock.
///
/// Dropped before it was detached or closed, it ends its session with 1002: that happens when
/// hyper drops the request because the client went away.
struct Receiver {
    session: Session,
    reader: Reader,
    holder: Id128,
    last_write: Instant,
    /// One timer entry per request, re-armed lazily as in the WebSocket transport.
    timer: Pin<Box<Sleep>>,
    /// Cleared once the request let go of the session on purpose.
    attached: bool,
}

impl Receiver {
    fn new(session: Session, reader: Reader, holder: Id128) -> Self {
        let heartbeat = session.shared.config.heartbeat;
        let now = Instant::now();
        Receiver {
            session,
            reader,
            holder,
            last_write: now,
            timer: Box::pin(sleep_until(now + heartbeat)),
            attached: true,
        }
    }

    /// Waits for messages, the close, or a heartbeat of silence; keeps the channel and the lock
    /// alive meanwhile.
    async fn step(&mut self) -> Step {
        let heartbeat = self.session.shared.config.heartbeat;
        loop {
            tokio::select! {
                delivery = self.reader.next() => {
                    return match delivery {
                        Ok(Delivery::Messages(messages)) => {
                            self.last_write = Instant::now();
                            Step::Messages(messages)
                        }
                        Ok(Delivery::Close(closed)) => Step::Close(closed),
                        Err(error) => Step::Close(Closed::by(error.close_code())),
                    };
                }
                () = &mut self.timer => {
                    let due = self.last_write.elapsed() >= heartbeat;
                    if due {
                        self.last_write = Instant::now();
                    }
                    self.keep_alive().await;
                    let next = self.last_write + heartbeat;
                    self.timer.as_mut().reset(next);
                    if due {
                        return Step::Heartbeat;
                    }
                }
            }
        }
    }

    async fn keep_alive(&self) {
        let shared = &self.session.shared;
        let renewed = async {
            self.session.keep_alive().await?;
            shared
                .hub
                .store()
                .acquire_receiver(self.session.channel.id(), self.holder, shared.session_ttl())
                .await?;
            Ok::<_, Error>(())
        };
        if let Err(error) = renewed.await {
            tracing::warn!(%error, "could not renew a session");
        }
    }

    /// The request ended normally: the session waits `disconnect_delay` for the next one.
    async fn detach(&mut self) {
        self.attached = false;
        let shared = &self.session.shared;
        let store = shared.hub.store();
        let id = self.session.channel.id();
        let detached = async {
            self.session.save(&self.reader).await?;
            store.touch(id, shared.config.disconnect_delay).await?;
            store.release_receiver(id, self.holder).await?;
            Ok::<_, Error>(())
        };
        if let Err(error) = detached.await {
            tracing::warn!(%error, "could not detach from a session");
        }
    }

    /// The session closed: it lingers for `disconnect_delay`, answering its close frame.
    async fn close(&mut self, closed: Closed) {
        self.attached = false;
        let linger = self.session.shared.config.disconnect_delay;
        let cursors = self.reader.cursors();
        end(self.session.clone(), self.holder, cursors, closed, linger).await;
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if !self.attached {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            // sockjs-node forgets a session whose receiving request was aborted: the client's
            // next request starts a new one.
            let closed = Closed::by(CloseCode::INTERRUPTED);
            let session = self.session.clone();
            runtime.spawn(end(
                session,
                self.holder,
                Vec::new(),
                closed,
                Duration::ZERO,
            ));
        }
    }
}

/// Ends the session and lets go of its receiver lock.
async fn end(
    session: Session,
    holder: Id128,
    cursors: Vec<(Topic, Cursor)>,
    closed: Closed,
    linger: Duration,
) {
    let store = session.shared.hub.store().clone();
    let id = session.channel.id();
    session.finish(&cursors, closed, linger).await;
    if let Err(error) = store.release_receiver(id, holder).await {
        tracing::warn!(%error, "could not release a receiver");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::Router;
    use axum::body::Body;
    use axum::http::{Method, Request};
    use futures::StreamExt;
    use tokio::time::Instant;
    use tower::ServiceExt;

    use crate::Tidings;

    /// Sends one request to `router` in process, so time can be paused.
    async fn request(router: &Router, method: Method, uri: &str) -> axum::body::BodyDataStream {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .expect("request");
        let response = router.clone().oneshot(request).await.expect("infallible");
        assert_eq!(response.status(), 200, "{uri}");
        response.into_body().into_data_stream()
    }

    async fn next_chunk(body: &mut axum::body::BodyDataStream) -> String {
        let chunk = body.next().await.expect("a chunk").expect("body");
        String::from_utf8(chunk.to_vec()).expect("utf-8")
    }

    #[tokio::test(start_paused = true)]
    async fn every_transport_beats_after_a_heartbeat_of_silence() {
        let tidings = Tidings::builder().build();
        let router = tidings.router();
        // (method, transport, whether a prelude comes first, the heartbeat as framed)
        let cases = [
            (Method::POST, "xhr", false, "h\n"),
            (Method::POST, "xhr_streaming", true, "h\n"),
            (Method::GET, "eventsource", true, "data: h\r\n\r\n"),
            (Method::GET, "htmlfile?c=cb", true, "<script>\np(\"h\");\n</script>\r\n"),
            (Method::GET, "jsonp?c=cb", false, "/**/cb(\"h\");\r\n"),
        ];
        for (i, (method, transport, prelude, beat)) in cases.into_iter().enumerate() {
            let mut opening = request(&router, Method::POST, &format!("/0/s{i}/xhr")).await;
            assert_eq!(next_chunk(&mut opening).await, "o\n");
            let started = Instant::now();
            let mut body = request(&router, method, &format!("/0/s{i}/{transport}")).await;
            if prelude {
                next_chunk(&mut body).await;
            }
            assert_eq!(next_chunk(&mut body).await, beat, "{transport}");
            let waited = started.elapsed();
            assert!(
                waited >= Duration::from_secs(25) && waited < Duration::from_secs(26),
                "{transport}: beat after {waited:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_unpolled_session_closes_after_the_disconnect_delay_and_its_id_starts_afresh() {
        let (tx, mut closes) = tokio::sync::mpsc::unbounded_channel();
        let tidings = Tidings::builder()
            .on_close(move |_, closed| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send((closed.code, Instant::now()));
                }
            })
            .build();
        let router = tidings.router();
        let mut body = request(&router, Method::POST, "/0/s/xhr").await;
        assert_eq!(next_chunk(&mut body).await, "o\n");
        let detached = Instant::now();
        let (code, at) = closes.recv().await.expect("on_close");
        assert_eq!(code, tidings_core::CloseCode::SESSION_EXPIRED);
        let after = at - detached;
        // Swept on the first pass (every second) after the 5 s delay.
        assert!(
            after >= Duration::from_secs(5) && after <= Duration::from_secs(7),
            "closed after {after:?}"
        );
        let mut body = request(&router, Method::POST, "/0/s/xhr").await;
        assert_eq!(next_chunk(&mut body).await, "o\n");
    }
}
