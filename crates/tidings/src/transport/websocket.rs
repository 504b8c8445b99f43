//! The WebSocket transport: one loop for every protocol. It writes the protocol's frames, one
//! WebSocket text message each, hands what the client sends to the protocol to read, and leaves
//! what becomes of the session to the connection's [`Attachment`].
//!
//! The loop is generic over `Sink + Stream` of axum WebSocket messages, so it can be driven in
//! tests without a socket.

use axum::extract::ws::{CloseFrame, Message};
use futures::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use std::time::Duration;
use tidings_core::CloseCode;

use tokio::time::Instant;

use crate::engine::attachment::{Attachment, Step};
use crate::engine::channel::Closed;
use crate::engine::metrics::ConnectionMeter;
use crate::engine::reader::Delivery;
use crate::protocol::{Frame, Protocol};
use tracing::Instrument;

/// The read buffer of every WebSocket connection. tungstenite's default of 128 KiB becomes
/// resident on every connection (its spare capacity is zero-filled on each read); clients send
/// little, so 1 KiB is enough to read them, and larger messages still arrive whole. With 4 KiB an
/// idle connection cost 10.2 KiB of server memory (docs/benchmarks.md).
pub(crate) const READ_BUFFER: usize = 1024;

/// The largest WebSocket message the layer below reads for a service whose messages may be
/// `max_message_size` bytes: above it, so an oversized message gets our close code rather than a
/// protocol error; far above it, the layer stops reading.
pub(crate) fn max_frame(max_message_size: usize) -> usize {
    max_message_size.saturating_mul(2).saturating_add(1024)
}

/// What ended the loop.
enum End {
    /// Write this close to the client, then stop.
    Close(Closed),
    /// The connection is gone, or must be dropped without a word: `Closed` says how.
    Gone(Closed),
    /// The client sent a close frame; answer it.
    ClientClosed(Closed),
    /// The connection ends without a close, the session goes on (another connection took it
    /// over, or the store failed under a resumable one).
    Detach,
    /// The connection ends under a session that goes on (the node shuts down, the client
    /// stopped answering): the protocol's end, then a close frame with this code, and the
    /// session waits for its client to come back, here or elsewhere.
    Leave(Closed),
}

/// How the connection ends when the session's [`Attachment::ending`] says: closed with
/// `closed`, or left for its client to resume.
fn ending(attachment: &Attachment, closed: Closed) -> End {
    match attachment.ending(closed.clone()) {
        Some(closed) => End::Close(closed),
        None => End::Leave(closed),
    }
}

/// How the application hears of a close the client started: the client's code when it is one
/// that may travel on the wire, else 1000.
fn client_close(frame: Option<CloseFrame>) -> Closed {
    match frame.map(|f| (CloseCode::from_stored(f.code), f.reason)) {
        Some((Ok(code), reason)) => Closed::new(code, reason.as_str()),
        _ => Closed::by(CloseCode::NORMAL),
    }
}

/// Serves one WebSocket connection of a channel until it ends: `held` is its attachment and the
/// protocol to speak. `fresh`: the channel was opened for this connection. What it logs is in
/// the connection's span ([`Attachment::span`]).
///
/// `held` comes boxed because the routes call this from `WebSocketUpgrade::on_upgrade`'s
/// callback, and axum keeps the callback's slot beside the future it returns for as long as the
/// connection lives: unboxed, the attachment and protocol would be kept twice (some 400 bytes
/// per connection, more for STOMP). Not an `async fn` for the same reason: one would keep its
/// own copy of what it hands on (some 900 bytes per connection).
#[allow(
    clippy::boxed_local,
    reason = "boxed by the upgrade callbacks that call it, so that axum keeps 8 bytes twice"
)]
pub(crate) fn serve<S, E, P>(
    socket: S,
    held: Box<(Attachment, P)>,
    fresh: bool,
) -> impl Future<Output = ()>
where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Unpin,
    P: Protocol,
{
    let (attachment, protocol) = *held;
    let span = attachment.span(P::NAME, "websocket");
    serve_in_span(socket, attachment, protocol, fresh).instrument(span)
}

async fn serve_in_span<S, E, P>(
    mut socket: S,
    mut attachment: Attachment,
    mut protocol: P,
    fresh: bool,
) where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Unpin,
    P: Protocol,
{
    let within = attachment.session.engine.config.client_timeout;
    let meter = ConnectionMeter::new(P::NAME, "websocket");
    let mut frames = Vec::new();
    protocol.start(&mut frames);
    if fresh {
        protocol.opened(&mut frames);
    }
    let end = match write(&mut socket, &mut frames, within, &meter).await {
        Ok(()) => {
            let connection = (&mut socket, &mut frames, &meter);
            run(&mut attachment, &mut protocol, connection).await
        }
        Err(end) => end,
    };
    // What is written at the end is bounded as every write is: a client that stopped reading
    // does not hold the session's end up.
    match end {
        End::Close(closed) => {
            bounded(within, write_close(&mut socket, &mut protocol, &closed)).await;
            attachment.close(closed).await;
        }
        End::ClientClosed(closed) => {
            // Flushes the close reply the WebSocket layer queued when the client's close arrived.
            bounded(within, socket.close()).await;
            attachment.client_closed(closed).await;
        }
        // Dropped with the socket, without a close frame.
        End::Gone(closed) => attachment.lost(closed).await,
        End::Detach => {
            bounded(within, socket.close()).await;
            attachment.detach().await;
        }
        End::Leave(closed) => {
            protocol.end(&mut frames);
            bounded(within, async {
                if send_all(&mut socket, &mut frames).await.is_ok() {
                    let _ = close_frame(&mut socket, &closed).await;
                }
            })
            .await;
            attachment.detach().await;
        }
    }
}

/// Runs `write` for at most `within`; what it came to does not matter any more.
async fn bounded<T>(within: Duration, write: impl Future<Output = T>) {
    let _ = tokio::time::timeout(within, write).await;
}

/// Writes `frames` within `within`: a client that takes nothing for that long has stopped
/// reading, and its connection is dropped as timed out (3003).
async fn write<S: Sink<Message> + Unpin>(
    socket: &mut S,
    frames: &mut Vec<Frame>,
    within: Duration,
    meter: &ConnectionMeter,
) -> Result<(), End> {
    meter.wrote(frames.iter().map(|f| f.text().len()).sum());
    taken(within, send_all(socket, frames)).await
}

/// What a write came to, given `within` to be taken.
async fn taken<E>(within: Duration, write: impl Future<Output = Result<(), E>>) -> Result<(), End> {
    match tokio::time::timeout(within, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(End::Gone(Closed::by(CloseCode::INTERRUPTED))),
        Err(_) => Err(End::Gone(Closed::new(
            CloseCode::TIMEOUT,
            "Client stopped reading",
        ))),
    }
}

async fn run<S, E, P>(
    attachment: &mut Attachment,
    protocol: &mut P,
    (socket, frames, meter): (&mut S, &mut Vec<Frame>, &ConnectionMeter),
) -> End
where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Unpin,
    P: Protocol,
{
    let config = &attachment.session.engine.config;
    let (max, within) = (config.max_message_size, config.client_timeout);
    let mut heard = Instant::now();
    // When a ping went out unanswered: by then the client must have sent something.
    let mut answer_by: Option<Instant> = None;
    loop {
        let quiet = protocol.quiet_limit().map(|limit| heard + limit);
        tokio::select! {
            () = silence(quiet) => {
                return End::Close(Closed::new(CloseCode::TIMEOUT, "Client heart-beats stopped"));
            }
            () = silence(answer_by) => {
                return ending(attachment, Closed::new(CloseCode::TIMEOUT, "Client stopped answering pings"));
            }
            incoming = socket.next() => {
                // Anything the client sends answers the ping.
                answer_by = None;
                let (messages, end) = take_incoming(incoming, socket, protocol, (max, &mut heard));
                if !messages.is_empty() {
                    protocol.receive(&attachment.session, messages).await;
                }
                if let Some(end) = end {
                    return end;
                }
            }
            step = attachment.step() => {
                match step {
                    Step::Delivery(Delivery::Messages(messages)) => {
                        meter.delivered(messages.len());
                        protocol.messages(&messages, frames);
                    }
                    Step::Delivery(Delivery::Gap(missed)) => {
                        if !protocol.gap(&missed, frames) {
                            return End::Close(Closed::by(CloseCode::LAGGED));
                        }
                        meter.gap();
                    }
                    Step::Delivery(Delivery::Close(closed)) => return End::Close(closed),
                    Step::Delivery(Delivery::TakenOver) => return End::Detach,
                    Step::Shutdown => return ending(attachment, Closed::by(CloseCode::GOING_AWAY)),
                    Step::Heartbeat => {
                        // The protocol's heartbeat if it has one, and always a ping, which every
                        // WebSocket client answers by itself: one that does not within
                        // `client_timeout` is gone.
                        protocol.heartbeat(frames);
                        if let Err(end) = write(socket, frames, within, meter).await {
                            return end;
                        }
                        let ping = socket.send(Message::Ping(Default::default()));
                        if let Err(end) = taken(within, ping).await {
                            return end;
                        }
                        answer_by.get_or_insert(Instant::now() + within);
                    }
                }
                if let Err(end) = write(socket, frames, within, meter).await {
                    return end;
                }
            }
        }
    }
}

/// The most client messages handed to the application at once.
const BATCH_MESSAGES: usize = 256;

/// The messages of `first` and of the WebSocket messages already received after it (up to
/// [`BATCH_MESSAGES`]), decoded by `protocol`, to be handed over together; and how the
/// connection ends, if one of them ends it (after the messages before it are handed over).
/// Only what the client sends of its own (not the pongs its WebSocket layer answers by itself)
/// moves `heard`, which keeps a protocol's heart-beats going.
fn take_incoming<S, E, P>(
    first: Option<Result<Message, E>>,
    socket: &mut S,
    protocol: &mut P,
    (max, heard): (usize, &mut Instant),
) -> (Vec<String>, Option<End>)
where
    S: Stream<Item = Result<Message, E>> + Unpin,
    P: Protocol,
{
    let mut messages = Vec::new();
    let mut next = first;
    loop {
        let text = match next {
            Some(Ok(Message::Text(text))) => {
                *heard = Instant::now();
                Some(text)
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => None,
            Some(Ok(Message::Close(frame))) => {
                return (messages, Some(End::ClientClosed(client_close(frame))));
            }
            Some(Ok(Message::Binary(_))) => {
                let closed = Closed::new(
                    CloseCode::INVALID_PAYLOAD,
                    "Binary messages are not supported",
                );
                return (messages, Some(End::Close(closed)));
            }
            Some(Err(_)) | None => {
                return (
                    messages,
                    Some(End::Gone(Closed::by(CloseCode::INTERRUPTED))),
                );
            }
        };
        if let Some(text) = text {
            if text.len() > max {
                return (messages, Some(End::Close(Closed::by(CloseCode::TOO_BIG))));
            }
            match protocol.decode(&text) {
                Ok(decoded) => messages.extend(decoded),
                Err(closed) => return (messages, Some(End::Gone(closed))),
            }
        }
        if messages.len() >= BATCH_MESSAGES {
            return (messages, None);
        }
        match socket.next().now_or_never() {
            Some(item) => next = item,
            None => return (messages, None),
        }
    }
}

/// Resolves at `deadline`; never without one.
async fn silence(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Writes `frames`, one text message each, with one flush, and empties the buffer for reuse.
async fn send_all<S: Sink<Message> + Unpin>(
    socket: &mut S,
    frames: &mut Vec<Frame>,
) -> Result<(), S::Error> {
    if frames.is_empty() {
        return Ok(());
    }
    for frame in frames.drain(..) {
        socket.feed(Message::Text(frame.into_text())).await?;
    }
    socket.flush().await
}

/// The protocol's close, then a WebSocket close frame with the same code where the code may
/// travel in one.
async fn write_close<S: Sink<Message> + Unpin, P: Protocol>(
    socket: &mut S,
    protocol: &mut P,
    closed: &Closed,
) -> Result<(), S::Error> {
    let mut frames = Vec::new();
    protocol.close(closed, &mut frames);
    send_all(socket, &mut frames).await?;
    close_frame(socket, closed).await
}

/// A WebSocket close frame for `closed`, then the close of the sink.
async fn close_frame<S: Sink<Message> + Unpin>(
    socket: &mut S,
    closed: &Closed,
) -> Result<(), S::Error> {
    // SockJS-only codes such as 2010 are not valid in a WebSocket close frame.
    let code = if valid_in_websocket(closed.code) {
        closed.code.as_u16()
    } else {
        1000
    };
    let frame = CloseFrame {
        code,
        reason: tidings_core::close::truncate_reason(&closed.reason).into(),
    };
    socket.send(Message::Close(Some(frame))).await?;
    socket.close().await
}

fn valid_in_websocket(code: CloseCode) -> bool {
    matches!(code.as_u16(), 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Writes what a session that has ended answers, then closes: the protocol's close and a
/// WebSocket close frame.
pub(crate) async fn refuse<S: Sink<Message> + Unpin, P: Protocol>(
    mut socket: S,
    mut protocol: P,
    closed: Closed,
) {
    let _ = write_close(&mut socket, &mut protocol, &closed).await;
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use futures::channel::mpsc;

    use super::*;
    use crate::engine::attachment::Holding;
    use crate::engine::config::Config;
    use crate::engine::context::{Engine, Handlers, testing};
    use crate::engine::identity::Identity;
    use crate::engine::session::{self, Opened};
    use crate::protocol::raw::Raw;
    use crate::protocol::sockjs::SockJs;
    use axum::extract::ws::Utf8Bytes;
    use std::sync::Arc;

    /// A WebSocket stand-in: what the test pushes is what the server reads, and what the server
    /// writes comes out of the other end.
    struct Duplex {
        incoming: mpsc::UnboundedReceiver<Message>,
        outgoing: mpsc::UnboundedSender<Message>,
    }

    impl Stream for Duplex {
        type Item = Result<Message, Infallible>;

        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            self.incoming.poll_next_unpin(cx).map(|m| m.map(Ok))
        }
    }

    impl Sink<Message> for Duplex {
        type Error = mpsc::SendError;

        fn poll_ready(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            self.outgoing.poll_ready_unpin(cx)
        }

        fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
            self.outgoing.start_send_unpin(item)
        }

        fn poll_flush(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            self.outgoing.poll_flush_unpin(cx)
        }

        fn poll_close(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            self.outgoing.poll_close_unpin(cx)
        }
    }

    /// Opens a channel on `engine` and serves it over a [`Duplex`] in `protocol`.
    async fn start<P: Protocol>(
        engine: &Arc<Engine>,
        protocol: P,
    ) -> (
        mpsc::UnboundedSender<Message>,
        mpsc::UnboundedReceiver<Message>,
    ) {
        let (to_server, incoming) = mpsc::unbounded();
        let (outgoing, from_server) = mpsc::unbounded();
        let socket = Duplex { incoming, outgoing };
        let Ok(Opened::Created(session, reader)) =
            session::open(engine, Identity::anonymous(), None).await
        else {
            panic!("a channel without an alias is created");
        };
        let attachment = Attachment::new(session, reader, Holding::Connection);
        tokio::spawn(serve(socket, Box::new((attachment, protocol)), true));
        (to_server, from_server)
    }

    /// These clients never answer the server's pings: the tests that are not about that give
    /// them all the time they need.
    const PATIENT: Duration = Duration::from_secs(3600);

    fn echo() -> Arc<Engine> {
        let config = Config {
            client_timeout: PATIENT,
            ..Config::default()
        };
        testing::engine(config, testing::echo())
    }

    fn text(s: &'static str) -> Message {
        Message::Text(Utf8Bytes::from_static(s))
    }

    fn with_heartbeat(heartbeat: Duration, disconnect_delay: Duration) -> Config {
        Config {
            heartbeat,
            disconnect_delay,
            client_timeout: PATIENT,
            ..Config::default()
        }
    }

    /// The next message but pings (which follow every heartbeat).
    async fn next(rx: &mut mpsc::UnboundedReceiver<Message>) -> Message {
        loop {
            match rx.next().await.expect("server wrote something") {
                Message::Ping(_) => continue,
                message => return message,
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeat_after_exactly_the_configured_idle_time() {
        let engine = echo();
        let (to_server, mut from_server) = start(&engine, SockJs).await;
        assert_eq!(next(&mut from_server).await, text("o"));
        let opened = Instant::now();
        assert_eq!(next(&mut from_server).await, text("h"));
        assert_eq!(opened.elapsed(), Duration::from_secs(25));

        // Traffic postpones the heartbeat: it comes 25 s after the last write, not on a grid.
        tokio::time::sleep(Duration::from_secs(10)).await;
        to_server.unbounded_send(text(r#"["x"]"#)).expect("send");
        assert_eq!(next(&mut from_server).await, text(r#"a["x"]"#));
        let echoed = Instant::now();
        assert_eq!(next(&mut from_server).await, text("h"));
        assert_eq!(echoed.elapsed(), Duration::from_secs(25));
    }

    #[tokio::test(start_paused = true)]
    async fn raw_heartbeat_is_a_ping() {
        let config = with_heartbeat(Duration::from_secs(5), Duration::from_secs(5));
        let engine = testing::engine(config, Handlers::default());
        let (_to_server, mut from_server) = start(&engine, Raw).await;
        let opened = Instant::now();
        let first = from_server.next().await.expect("a ping");
        assert!(matches!(first, Message::Ping(_)), "{first:?}");
        assert_eq!(opened.elapsed(), Duration::from_secs(5));
    }

    /// A client that answers no ping (a dead peer, a half-open connection) is closed with 3003
    /// `client_timeout` after the first ping it left unanswered; one that answers stays.
    #[tokio::test(start_paused = true)]
    async fn a_client_that_answers_no_ping_is_closed_with_3003() {
        let (tx, mut closes) = tokio::sync::mpsc::unbounded_channel();
        let config = Config {
            heartbeat: Duration::from_secs(5),
            client_timeout: Duration::from_secs(10),
            ..Config::default()
        };
        let handlers = Handlers {
            close: Some(testing::report_closes(tx)),
            ..Handlers::default()
        };
        let engine = testing::engine(config, handlers);
        let (answering, mut answered) = start(&engine, Raw).await;
        let (_silent, mut unanswered) = start(&engine, Raw).await;
        let opened = Instant::now();
        let silent_closed = async {
            loop {
                match unanswered.next().await.expect("a message") {
                    Message::Ping(_) => continue,
                    Message::Close(frame) => return frame.map(|f| (f.code, f.reason.to_string())),
                    other => panic!("{other:?}"),
                }
            }
        };
        let answer = async {
            while let Some(message) = answered.next().await {
                if let Message::Ping(data) = message {
                    let _ = answering.unbounded_send(Message::Pong(data));
                }
            }
        };
        let closed = tokio::select! {
            closed = silent_closed => closed,
            () = answer => panic!("the answering client was closed"),
        };
        assert_eq!(
            closed,
            Some((3003, "Client stopped answering pings".to_owned()))
        );
        // The first ping at 5 s, then 10 s to answer it.
        assert_eq!(opened.elapsed(), Duration::from_secs(15));
        let (_, code) = closes.recv().await.expect("a close");
        assert_eq!(code, CloseCode::TIMEOUT);
        assert_eq!(engine.hub.online().await.expect("online").channels, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_heartbeats_is_not_swept() {
        let config = with_heartbeat(Duration::from_secs(1), Duration::from_secs(1));
        let engine = testing::engine(config, Handlers::default());
        let (_to_server, mut from_server) = start(&engine, SockJs).await;
        assert_eq!(next(&mut from_server).await, text("o"));
        for _ in 0..30 {
            assert_eq!(next(&mut from_server).await, text("h"));
        }
        assert_eq!(engine.hub.online().await.expect("online").channels, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_connection_is_not_swept() {
        let (tx, mut closes) = tokio::sync::mpsc::unbounded_channel();
        let config = with_heartbeat(Duration::from_secs(1), Duration::from_secs(1));
        let handlers = Handlers {
            close: Some(testing::report_closes(tx)),
            ..testing::echo()
        };
        let engine = testing::engine(config, handlers);
        let (to_server, mut from_server) = start(&engine, SockJs).await;
        assert_eq!(next(&mut from_server).await, text("o"));
        // Output more often than the heartbeat, so no heartbeat is ever due, for 20 TTLs.
        for i in 0..120 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            to_server
                .unbounded_send(Message::Text(format!(r#"["{i}"]"#).into()))
                .expect("send");
            assert_eq!(
                next(&mut from_server).await,
                Message::Text(format!(r#"a["{i}"]"#).into())
            );
        }
        assert_eq!(engine.hub.online().await.expect("online").channels, 1);
        to_server
            .unbounded_send(Message::Close(None))
            .expect("close");
        assert_eq!(
            closes.recv().await.map(|(_, code)| code),
            Some(CloseCode::NORMAL)
        );
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(closes.try_recv().is_err(), "on_close must run once");
    }

    #[tokio::test]
    async fn client_close_removes_the_channel() {
        let engine = echo();
        let mut events = engine.hub.events();
        let (to_server, mut from_server) = start(&engine, SockJs).await;
        assert_eq!(next(&mut from_server).await, text("o"));
        to_server
            .unbounded_send(Message::Close(None))
            .expect("send");
        loop {
            if let Ok(crate::engine::hub::Event::Disconnected { code, .. }) = events.recv().await {
                assert_eq!(code, CloseCode::NORMAL);
                break;
            }
        }
        assert_eq!(engine.hub.online().await.expect("online").channels, 0);
    }
}
