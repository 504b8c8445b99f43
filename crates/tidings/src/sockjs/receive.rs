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

use std::sync::Arc;

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use tidings_core::{CloseCode, sockjs};

use super::framing::Framing;
use super::{cache, cookie, cors};
use crate::channel::Closed;
use crate::handshake::Handshake;
use crate::router::{admit, error_response};
use crate::session::{self, Delivery, Opened, Reader, Session};
use crate::store::random_id;
use crate::store::{Alias, ChannelState};
use crate::tidings::Shared;
use crate::transport::http::{Holding, Receiver, Step};

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
                stream(*receiver, framing.clone(), fresh)
            } else {
                Body::from(poll(*receiver, &framing, fresh).await)
            };
            respond(&shared, &framing, &request, body)
        }
        Ok(Attached::Refused(closed)) => {
            let frame = framing.frame(sockjs::close_frame(closed.code, &closed.reason));
            // Streaming transports still send the prelude and the frame as chunks of their own.
            let body = match framing.prelude() {
                Some(prelude) => {
                    let chunks = [prelude, frame].map(Ok::<_, std::convert::Infallible>);
                    Body::from_stream(futures::stream::iter(chunks))
                }
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
    Session(Box<Receiver>, bool),
    /// Only a close to write: the session has ended, or another request is receiving.
    Refused(Closed),
}

async fn attach(shared: &Arc<Shared>, key: &str, parts: Parts) -> Result<Attached, Response> {
    let store = shared.hub.store();
    let alias = Alias::SockJs(key.to_owned());
    let found = store
        .channel_by_alias(&alias)
        .await
        .map_err(|e| error_response(&e.into()))?;
    let (session, reader, fresh) = match found {
        Some(state) => match existing(shared, &state).await? {
            Some((session, reader)) => (session, reader, false),
            None => return Ok(Attached::Refused(session::close_of(&state))),
        },
        None => {
            let handshake = Handshake::new(parts.method, parts.uri, parts.headers);
            let identity = admit(shared, handshake).await?;
            match session::open(shared, identity, Some(alias)).await {
                Ok(Opened::Created(session, reader)) => (session, reader, true),
                // Another request created it a moment ago.
                Ok(Opened::Found(state)) => match existing(shared, &state).await? {
                    Some((session, reader)) => (session, reader, false),
                    None => return Ok(Attached::Refused(session::close_of(&state))),
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
    let receiver = Receiver::new(session, reader, Holding::Lock(holder));
    Ok(Attached::Session(Box::new(receiver), fresh))
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
    let wait = receiver.session.shared.config.disconnect_delay;
    if fresh {
        receiver.detach(wait).await;
        return framing.frame(sockjs::OPEN);
    }
    let (frame, closed) = sockjs_frame(receiver.step().await);
    match closed {
        Some(closed) => receiver.close(closed).await,
        None => receiver.detach(wait).await,
    }
    framing.frame(frame)
}

/// A streaming response: the prelude, `o` for a new session, then frames, one per chunk, until
/// the close or the response limit.
fn stream(mut receiver: Receiver, framing: Framing, fresh: bool) -> Body {
    let config = &receiver.session.shared.config;
    let (limit, wait) = (config.response_limit, config.disconnect_delay);
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
            let (frame, closed) = sockjs_frame(receiver.step().await);
            let frame = framing.frame(frame);
            if let Some(closed) = closed {
                receiver.close(closed).await;
                yield Ok(frame);
                return;
            }
            written += frame.len();
            // A frame counts as delivered once hyper has taken it: as far as a server can know.
            yield Ok(frame);
        }
        receiver.detach(wait).await;
    })
}

/// The SockJS frame for what the receiver has next, and the close it carries, if any.
fn sockjs_frame(step: Step) -> (Bytes, Option<Closed>) {
    let closing = |closed: Closed| {
        let frame = sockjs::close_frame(closed.code, &closed.reason);
        (Bytes::from(frame), Some(closed))
    };
    match step {
        Step::Delivery(Delivery::Messages(messages)) => {
            // One message: the frame built when it was published, shared, not copied.
            let encoded: Vec<_> = messages.iter().map(|d| d.payload.sockjs()).collect();
            (sockjs::messages_frame(&encoded), None)
        }
        Step::Heartbeat => (Bytes::from_static(sockjs::HEARTBEAT.as_bytes()), None),
        Step::Delivery(Delivery::Close(closed)) => closing(closed),
        // SockJS readers close on a gap and hold the receiver lock, so neither can happen.
        Step::Delivery(Delivery::Gap { .. }) => closing(Closed::by(CloseCode::LAGGED)),
        Step::Delivery(Delivery::TakenOver) => closing(Closed::by(CloseCode::INTERNAL)),
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
            (
                Method::GET,
                "htmlfile?c=cb",
                true,
                "<script>\np(\"h\");\n</script>\r\n",
            ),
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
