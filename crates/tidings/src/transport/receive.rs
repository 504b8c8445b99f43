//! A receiving HTTP request, for every protocol and every body framing: it writes the
//! protocol's frames for what its [`Attachment`] delivers, wrapped by its [`Framing`], one step
//! and done when polling, until the close or the response limit when streaming.
//!
//! Nothing here holds delivery state between requests: what was delivered is the attachment's
//! to save, so the next request may be served by another node sharing the store.

use std::convert::Infallible;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::Either;
use tidings_core::CloseCode;

use super::cors;
use super::framing::Framing;
use crate::engine::attachment::{Attachment, Step};
use crate::engine::channel::Closed;
use crate::engine::metrics::ConnectionMeter;
use crate::engine::reader::Delivery;
use crate::protocol::{Frame, Protocol};
use tracing::Instrument;

/// Where a receiving request finds its client, which says how long a poll may wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Start {
    /// The session was created by this request: the protocol says so (`opened`, SockJS's `o`),
    /// and a poll answers with that alone, as sockjs-node does.
    Created,
    /// The client has no position yet (native): a poll answers at once with what the
    /// connection starts with (the native `open`) and whatever is already at hand, so that a
    /// client in a quiet room opens without waiting for a message.
    Unplaced,
    /// The client goes on from where it was: a poll waits for something to answer.
    Resumed,
}

/// Serves one receiving request: 200 with the frames of `protocol` for what `attachment`
/// delivers, wrapped by `framing`, with the framing's headers and CORS where it needs them.
/// Caching and cookies are the caller's.
///
/// The head is made from `request` at once, and the future keeps nothing of it: a poll may
/// wait a heartbeat for its answer, and whatever of the request lived that long would keep the
/// server's read buffer for the request alive beside the one it reads the connection with next
/// (8 KiB per waiting poll; see [`detached`](super::respond::detached)).
pub(crate) fn respond<P: Protocol>(
    attachment: Attachment,
    protocol: P,
    framing: Framing,
    start: Start,
    request: &HeaderMap,
) -> impl Future<Output = Response> + Send + use<P> {
    let (head, _) = response(&framing, request, Body::empty()).into_parts();
    // Combinators rather than an `async` block, which would keep a second copy of the poll's
    // state for as long as it waits.
    let body = if framing.streaming() {
        let body = stream(attachment, protocol, framing, start == Start::Created);
        Either::Left(std::future::ready(body))
    } else {
        let span = attachment.span(P::NAME, framing.name());
        Either::Right(poll(attachment, protocol, framing, start).instrument(span))
    };
    body.map(move |body| Response::from_parts(head, body))
}

/// Answers a receiving request for a session that will not deliver to it (it has ended, or
/// another request is receiving): the prelude, then `closed` as the protocol writes it, each a
/// chunk of its own.
pub(crate) fn refuse<P: Protocol>(
    mut protocol: P,
    framing: Framing,
    closed: &Closed,
    request: &HeaderMap,
) -> Response {
    let mut frames = Vec::new();
    protocol.close(closed, &mut frames);
    let body = match framing.prelude().filter(|_| framing.streaming()) {
        Some(prelude) => {
            let chunks = std::iter::once(prelude).chain(frames.iter().map(|f| framing.chunk(f)));
            let chunks: Vec<_> = chunks.map(Ok::<_, Infallible>).collect();
            Body::from_stream(futures::stream::iter(chunks))
        }
        None if framing.streaming() => Body::from(
            frames
                .iter()
                .map(|f| framing.chunk(f))
                .collect::<Vec<_>>()
                .concat(),
        ),
        None => Body::from(framing.body(&frames)),
    };
    response(&framing, request, body)
}

fn response(framing: &Framing, request: &HeaderMap, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    framing.headers(headers);
    if framing.cors() {
        cors::allow(request, headers);
    }
    response
}

/// What writing one step did to the response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wrote {
    /// Frames for one step (messages, a heartbeat).
    Step,
    /// A gap: the messages after it are still to come.
    Gap,
    /// The close: the response ends after it.
    Close,
    /// The connection ends without a close (taken over): the response ends after it.
    End,
}

/// Writes the frames of `step` to `frames`, and lets go of the session when the step ends the
/// connection.
async fn write_step<P: Protocol>(
    attachment: &mut Attachment,
    protocol: &mut P,
    step: Step,
    (frames, meter): (&mut Vec<Frame>, &ConnectionMeter),
) -> Wrote {
    let closed = match step {
        Step::Delivery(Delivery::Messages(messages)) => {
            meter.delivered(messages.len());
            protocol.messages(&messages, frames);
            return Wrote::Step;
        }
        Step::Heartbeat => {
            protocol.heartbeat(frames);
            return Wrote::Step;
        }
        // The node shuts down: a session that goes on ends this response the way it would end
        // for the client to come back (to another node); any other closes with 1001.
        Step::Shutdown => match attachment.ending(Closed::by(CloseCode::GOING_AWAY)) {
            Some(closed) => closed,
            None => {
                attachment.detach().await;
                protocol.end(frames);
                return Wrote::End;
            }
        },
        Step::Delivery(Delivery::Gap(missed)) => {
            if protocol.gap(&missed, frames) {
                meter.gap();
                return Wrote::Gap;
            }
            Closed::by(CloseCode::LAGGED)
        }
        Step::Delivery(Delivery::TakenOver) => {
            attachment.detach().await;
            protocol.end(frames);
            return Wrote::End;
        }
        Step::Delivery(Delivery::Close(closed)) => closed,
    };
    protocol.close(&closed, frames);
    attachment.close(closed).await;
    Wrote::Close
}

/// One polling response: what the connection starts with, then one step (`opened` for a
/// session this request created; only one at hand for a client without a position; after a
/// gap, also the messages that follow it when they are at hand), then the protocol's end unless
/// the session closed.
async fn poll<P: Protocol>(
    mut attachment: Attachment,
    mut protocol: P,
    framing: Framing,
    start: Start,
) -> Body {
    let meter = ConnectionMeter::new(P::NAME, framing.name());
    let mut frames = Vec::new();
    protocol.start(&mut frames);
    let first = match start {
        Start::Created => {
            protocol.opened(&mut frames);
            None
        }
        Start::Unplaced => attachment.at_hand().await,
        Start::Resumed => Some(attachment.step().await),
    };
    if let Some(mut step) = first {
        loop {
            match write_step(&mut attachment, &mut protocol, step, (&mut frames, &meter)).await {
                Wrote::Close | Wrote::End => {
                    return Body::from(metered(framing.body(&frames), &meter));
                }
                Wrote::Step => break,
                // What the store holds after the gap already; a store read, so that a remote
                // store (Redis) answers it too, where a zero timeout would catch nothing.
                Wrote::Gap => match attachment.at_hand().await {
                    Some(next) => step = next,
                    None => break,
                },
            }
        }
    }
    if let Some(cursors) = attachment.reader.caught_up() {
        protocol.reached(&cursors);
    }
    attachment.detach().await;
    protocol.end(&mut frames);
    Body::from(metered(framing.body(&frames), &meter))
}

/// `body`, counted in `meter`.
fn metered(body: Bytes, meter: &ConnectionMeter) -> Bytes {
    meter.wrote(body.len());
    body
}

/// A streaming response: the prelude, what the connection starts with, then frames, one per
/// chunk, until the close, a takeover, or `response_limit` bytes of frames (then the protocol's
/// end).
fn stream<P: Protocol>(
    mut attachment: Attachment,
    mut protocol: P,
    framing: Framing,
    fresh: bool,
) -> Body {
    let limit = attachment.session.engine.config.response_limit;
    // What it logs, it logs in the connection's span: each of its awaits runs in it.
    let span = attachment.span(P::NAME, framing.name());
    Body::from_stream(async_stream::stream! {
        let meter = ConnectionMeter::new(P::NAME, framing.name());
        if let Some(prelude) = framing.prelude() {
            meter.wrote(prelude.len());
            yield Ok::<_, Infallible>(prelude);
        }
        let mut frames = Vec::new();
        protocol.start(&mut frames);
        if fresh {
            protocol.opened(&mut frames);
        }
        // Framed bytes count from the first frame on, not the prelude (as sockjs-node counts).
        let mut written = 0;
        let mut ended = false;
        loop {
            for frame in frames.drain(..) {
                let chunk = framing.chunk(&frame);
                written += chunk.len();
                meter.wrote(chunk.len());
                // A frame counts as delivered once hyper has taken it: as far as a server can know.
                yield Ok(chunk);
            }
            if ended || written >= limit {
                break;
            }
            let step = attachment.step().instrument(span.clone()).await;
            let wrote = write_step(&mut attachment, &mut protocol, step, (&mut frames, &meter))
                .instrument(span.clone())
                .await;
            ended = matches!(wrote, Wrote::Close | Wrote::End);
        }
        if !ended {
            if let Some(cursors) = attachment.reader.caught_up() {
                protocol.reached(&cursors);
            }
            attachment.detach().instrument(span.clone()).await;
            protocol.end(&mut frames);
            for frame in frames.drain(..) {
                let chunk = framing.chunk(&frame);
                meter.wrote(chunk.len());
                yield Ok(chunk);
            }
        }
    })
}
