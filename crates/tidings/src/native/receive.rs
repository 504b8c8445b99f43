//! The HTTP transports of the native protocol: Server-Sent Events, streaming (newline-delimited
//! JSON) and polling. They differ only in how frames are written and when a response ends.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::frames::{Frame, Tracker};
use super::{NO_STORE, resolve, take_over};
use crate::config::Config;
use crate::http_util::method_not_allowed;
use crate::session;
use crate::session::Delivery;
use crate::sockjs::cors;
use crate::tidings::Shared;
use crate::transport::http::{Holding, Receiver, Step};

/// One of the native HTTP transports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `GET …/native/sse`: `text/event-stream`.
    Sse,
    /// `GET …/native/stream`: one JSON frame per line, until the response limit.
    Stream,
    /// `GET …/native/poll`: a JSON array of frames.
    Poll,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Sse => "sse",
            Kind::Stream => "streaming",
            Kind::Poll => "polling",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Kind::Sse => "text/event-stream",
            Kind::Stream => "application/x-ndjson",
            Kind::Poll => "application/json",
        }
    }

    /// One frame as this transport writes it.
    fn write(self, frame: &Frame<'_>) -> String {
        match self {
            Kind::Sse => frame.sse(),
            Kind::Stream => {
                let mut line = frame.json();
                line.push('\n');
                line
            }
            Kind::Poll => frame.json(),
        }
    }
}

/// The longest a poll waits for something to answer: one heartbeat.
pub(crate) fn poll_timeout(config: &Config) -> Duration {
    config.heartbeat
}

/// Serves one request of a native HTTP transport.
pub(crate) async fn serve(shared: Arc<Shared>, kind: Kind, request: Request) -> Response {
    let (parts, _body) = request.into_parts();
    if parts.method != Method::GET {
        return method_not_allowed("GET");
    }
    let mut response = match attach(&shared, kind, &parts).await {
        Ok(body) => {
            let mut response = Response::new(body);
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(kind.content_type()),
            );
            if kind != Kind::Poll {
                // nginx buffers proxied responses unless told not to.
                headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
            }
            response
        }
        Err(response) => response,
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_STORE));
    cors::allow(&parts.headers, headers);
    response
}

async fn attach(shared: &Arc<Shared>, kind: Kind, parts: &Parts) -> Result<Body, Response> {
    let state = resolve(shared, parts).await?;
    if state.ended {
        // An EventSource reconnects after every response, except one of 204: that stops it.
        if kind == Kind::Sse {
            return Err(StatusCode::NO_CONTENT.into_response());
        }
        let closed = session::close_of(&state);
        let frame = kind.write(&Frame::Close(&closed));
        return Ok(Body::from(match kind {
            Kind::Poll => format!("[{frame}]"),
            _ => frame,
        }));
    }
    let pos = super::query(parts, "pos").or_else(|| {
        let last = parts.headers.get("last-event-id")?;
        last.to_str().ok().map(str::to_owned)
    });
    let (session, reader, tracker) = take_over(shared, state, pos.as_deref()).await?;
    let resume = shared.config.resume;
    let receiver = Receiver::new(session, reader, Holding::Position(resume));
    Ok(match kind {
        Kind::Poll => Body::from(poll(receiver, tracker).await),
        Kind::Sse | Kind::Stream => stream(receiver, tracker, kind),
    })
}

/// Writes what `step` holds with `kind`'s framing; returns the text and whether the response
/// must end after it (a close, or a takeover).
async fn frames(
    receiver: &mut Receiver,
    tracker: &mut Tracker,
    kind: Kind,
    step: Step,
) -> (Vec<String>, bool) {
    match step {
        Step::Delivery(Delivery::Messages(messages)) => {
            let mut out = Vec::with_capacity(messages.len());
            for message in &messages {
                tracker.advance(&message.topic, message.cursor);
                let frame = Frame::Message {
                    pos: tracker.position(),
                    data: &message.payload,
                };
                out.push(kind.write(&frame));
            }
            (out, false)
        }
        Step::Delivery(Delivery::Gap {
            topic,
            cursor,
            missed,
        }) => {
            tracker.advance(&topic, cursor);
            let frame = Frame::Gap {
                pos: tracker.position(),
                missed,
            };
            (vec![kind.write(&frame)], false)
        }
        Step::Heartbeat => (vec![kind.write(&Frame::Heartbeat)], false),
        Step::Delivery(Delivery::Close(closed)) => {
            let frame = kind.write(&Frame::Close(&closed));
            receiver.close(closed).await;
            (vec![frame], true)
        }
        // The client has moved to another connection; this one just ends.
        Step::Delivery(Delivery::TakenOver) => {
            let resume = receiver.session.shared.config.resume;
            receiver.detach(resume).await;
            (vec![kind.write(&Frame::End)], true)
        }
    }
}

/// One poll: `open`, then whatever is pending (or arrives within a heartbeat), then `end`.
async fn poll(mut receiver: Receiver, mut tracker: Tracker) -> String {
    let open = Frame::Open {
        transport: Kind::Poll.name(),
        pos: tracker.position(),
    };
    let mut out = vec![open.json()];
    let mut step = receiver.step().await;
    let ended = loop {
        let gap = matches!(step, Step::Delivery(Delivery::Gap { .. }));
        let (frames, ended) = frames(&mut receiver, &mut tracker, Kind::Poll, step).await;
        out.extend(frames);
        if ended || !gap {
            break ended;
        }
        // After a gap, the messages that follow it, if they are at hand (`step` is cancel
        // safe, so nothing is lost when they are not).
        match tokio::time::timeout(Duration::ZERO, receiver.step()).await {
            Ok(next) => step = next,
            Err(_) => break false,
        }
    };
    if !ended {
        let resume = receiver.session.shared.config.resume;
        receiver.detach(resume).await;
        out.push(Frame::End.json());
    }
    format!("[{}]", out.join(","))
}

/// A streaming response: `open`, then frames, one per chunk, until the close, a takeover, or
/// the response limit (then `end`).
fn stream(mut receiver: Receiver, mut tracker: Tracker, kind: Kind) -> Body {
    let limit = receiver.session.shared.config.response_limit;
    let resume = receiver.session.shared.config.resume;
    Body::from_stream(async_stream::stream! {
        if kind == Kind::Sse {
            // How soon a plain EventSource retries after the response ends.
            yield Ok::<_, std::convert::Infallible>(Bytes::from_static(b"retry: 1000\n\n"));
        }
        let open = Frame::Open { transport: kind.name(), pos: tracker.position() };
        yield Ok(Bytes::from(kind.write(&open)));
        let mut written = 0;
        while written < limit {
            let step = receiver.step().await;
            let (frames, ended) = frames(&mut receiver, &mut tracker, kind, step).await;
            for frame in frames {
                written += frame.len();
                yield Ok(Bytes::from(frame));
            }
            if ended {
                return;
            }
        }
        receiver.detach(resume).await;
        yield Ok(Bytes::from(kind.write(&Frame::End)));
    })
}
