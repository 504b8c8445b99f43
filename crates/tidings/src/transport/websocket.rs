//! WebSocket transports: SockJS framing (`<prefix>/<server>/<session>/websocket`) and raw
//! (`<prefix>/websocket`, one WebSocket message per application message).
//!
//! The connection loop is generic over `Sink + Stream` of axum WebSocket messages, so it can be
//! driven in tests without a socket.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use futures::{Sink, SinkExt, Stream, StreamExt};
use tidings_core::CloseCode;
use tidings_core::sockjs;
use tokio::time::{Instant, sleep_until};

use crate::channel::Closed;
use crate::handshake::Identity;
use crate::native::frames::{Frame, Tracker};
use crate::session::{self, Delivered, Delivery, Opened, Reader, Session};
use crate::tidings::Shared;

/// The read buffer of every WebSocket connection. tungstenite's default of 128 KiB becomes
/// resident on every connection (its spare capacity is zero-filled on each read); clients send
/// little, so 1 KiB is enough to read them, and larger messages still arrive whole. With 4 KiB an
/// idle connection cost 10.2 KiB of server memory (docs/benchmarks.md).
pub(crate) const READ_BUFFER: usize = 1024;

/// Which WebSocket endpoint a connection came in on.
#[derive(Debug)]
pub(crate) enum Flavor {
    /// SockJS frames: `o`, `h`, `a[…]`, `c[…]`; client sends JSON arrays of strings.
    SockJs,
    /// One text message per application message, no framing; heartbeats are pings.
    Raw,
    /// Native protocol frames (JSON, with positions); client messages verbatim. The session
    /// outlives the connection: it ends only by a close, and otherwise waits for the client
    /// to resume.
    Native(Tracker),
}

/// The channel a WebSocket connection serves.
pub(crate) enum Opening {
    /// Open a new channel for this identity when the connection starts.
    New(Identity),
    /// A channel already open (native resume), with its reader.
    Attached(Session, Reader),
}

/// What ended the loop, and whether the close still has to be written.
enum End {
    /// Write this close to the client, then stop.
    Close(Closed),
    /// The connection is already gone (or must be dropped without a close); record this.
    Gone(Closed),
    /// The client sent a close frame; answer it, then record this.
    ClientClosed(Closed),
    /// The connection ended but the session goes on (native): another connection took it over,
    /// or the client may resume it.
    Detach,
}

/// How the application hears of a close the client started: the client's code when it is one
/// that may travel on the wire, else 1000.
fn client_close(frame: Option<CloseFrame>) -> Closed {
    match frame.map(|f| (CloseCode::from_stored(f.code), f.reason)) {
        Some((Ok(code), reason)) => Closed::new(code, reason.as_str()),
        _ => Closed::by(CloseCode::NORMAL),
    }
}

/// Serves one WebSocket connection until it ends.
pub(crate) async fn serve<S, E>(
    shared: Arc<Shared>,
    mut socket: S,
    opening: Opening,
    mut flavor: Flavor,
) where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Unpin,
{
    let (session, mut reader) = match opening {
        Opening::Attached(session, reader) => (session, reader),
        // Without an alias there is nothing another request could have created first.
        Opening::New(identity) => match session::open(&shared, identity, None).await {
            Ok(Opened::Created(session, reader)) => (session, reader),
            Ok(Opened::Found(_)) => {
                let _ = write_close(&mut socket, &flavor, &Closed::by(CloseCode::INTERNAL)).await;
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "could not open a channel");
                let _ = write_close(&mut socket, &flavor, &Closed::by(error.close_code())).await;
                return;
            }
        },
    };
    let greeting = match &flavor {
        Flavor::SockJs => Some(text(sockjs::OPEN)),
        Flavor::Raw => None,
        Flavor::Native(tracker) => Some(Message::text(
            Frame::Open {
                transport: "websocket",
                pos: tracker.position(),
            }
            .json(),
        )),
    };
    let greeted = match greeting {
        Some(greeting) => socket.send(greeting).await.is_ok(),
        None => true,
    };
    let end = if greeted {
        run(&shared, &session, &mut reader, &mut socket, &mut flavor).await
    } else {
        End::Gone(Closed::by(CloseCode::INTERRUPTED))
    };
    let native = matches!(flavor, Flavor::Native(_));
    let closed = match end {
        End::Close(closed) => {
            let _ = write_close(&mut socket, &flavor, &closed).await;
            closed
        }
        End::ClientClosed(closed) => {
            // Flushes the close reply the WebSocket layer queued when the client's close arrived.
            let _ = socket.close().await;
            // A native client closes a connection it is leaving with a code of its own; only
            // 1000 ends the session.
            if native && closed.code != CloseCode::NORMAL {
                return detach(&shared, &session).await;
            }
            closed
        }
        End::Gone(_) | End::Detach if native => {
            let _ = socket.close().await;
            return detach(&shared, &session).await;
        }
        End::Gone(closed) => closed,
        End::Detach => Closed::by(CloseCode::INTERNAL),
    };
    // A WebSocket session is its connection: nothing can come back for it. A closed native
    // session answers its close for `disconnect_delay`.
    let linger = if native {
        shared.config.disconnect_delay
    } else {
        Duration::ZERO
    };
    session.finish(&reader.cursors(), closed, linger).await;
}

/// A native connection ended without a close: the session waits for the client to resume. The
/// cursors are not saved: what this connection wrote may never have arrived, and the client's
/// position says what did.
async fn detach(shared: &Shared, session: &Session) {
    let store = shared.hub.store();
    if let Err(error) = store
        .touch(session.channel.id(), shared.config.resume)
        .await
    {
        tracing::warn!(%error, "could not detach from a session");
    }
}

async fn run<S, E>(
    shared: &Shared,
    session: &Session,
    reader: &mut Reader,
    socket: &mut S,
    flavor: &mut Flavor,
) -> End
where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Unpin,
{
    let heartbeat = shared.config.heartbeat;
    let max = shared.config.max_message_size;
    // One timer entry per connection on Tokio's shared timer wheel, re-armed lazily: writes
    // only record the time, and the timer moves itself forward when it fires early.
    let mut last_write = Instant::now();
    let timer = sleep_until(last_write + heartbeat);
    tokio::pin!(timer);
    loop {
        tokio::select! {
            incoming = socket.next() => {
                let text = match incoming {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(frame))) => return End::ClientClosed(client_close(frame)),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Binary(_))) => return End::Close(Closed::new(CloseCode::INVALID_PAYLOAD, "Binary messages are not supported")),
                    Some(Err(_)) | None => return End::Gone(Closed::by(CloseCode::INTERRUPTED)),
                };
                if text.len() > max {
                    return End::Close(Closed::by(CloseCode::TOO_BIG));
                }
                match flavor {
                    Flavor::Raw | Flavor::Native(_) => session.incoming(text.as_str().to_owned()).await,
                    Flavor::SockJs => match sockjs::parse_ws_message(&text) {
                        Ok(messages) => {
                            for message in messages {
                                session.incoming(message).await;
                            }
                        }
                        // sockjs-node drops the connection on a broken frame; so do we, and the
                        // application sees why.
                        Err(_) => return End::Gone(Closed::by(CloseCode::INVALID_PAYLOAD)),
                    },
                }
            }
            delivery = reader.next() => {
                match delivery {
                    Ok(Delivery::Messages(messages)) => {
                        if write_messages(socket, flavor, &messages).await.is_err() {
                            return End::Gone(Closed::by(CloseCode::INTERRUPTED));
                        }
                        last_write = Instant::now();
                    }
                    Ok(Delivery::Close(closed)) => return End::Close(closed),
                    Ok(Delivery::TakenOver) => return End::Detach,
                    Ok(Delivery::Gap { topic, cursor, missed }) => {
                        let Flavor::Native(tracker) = flavor else {
                            // Only native readers report gaps.
                            return End::Close(Closed::by(CloseCode::LAGGED));
                        };
                        tracker.advance(&topic, cursor);
                        let gap = Frame::Gap { pos: tracker.position(), missed };
                        if socket.send(Message::text(gap.json())).await.is_err() {
                            return End::Gone(Closed::by(CloseCode::INTERRUPTED));
                        }
                        last_write = Instant::now();
                    }
                    // A native client resumes from its own position: a store that failed for a
                    // moment ends this connection, not the session.
                    Err(crate::Error::Store(_)) if matches!(flavor, Flavor::Native(_)) => {
                        return End::Detach;
                    }
                    Err(error) => return End::Close(Closed::by(error.close_code())),
                }
            }
            () = &mut timer => {
                if last_write.elapsed() >= heartbeat {
                    let beat = match flavor {
                        Flavor::SockJs => text(sockjs::HEARTBEAT),
                        Flavor::Raw => Message::Ping(Default::default()),
                        // A text frame, so that a browser script can tell the connection is alive.
                        Flavor::Native(_) => Message::text(Frame::Heartbeat.json()),
                    };
                    if socket.send(beat).await.is_err() {
                        return End::Gone(Closed::by(CloseCode::INTERRUPTED));
                    }
                    last_write = Instant::now();
                }
                // The timer fires at least once per heartbeat, busy or idle, so this renews the
                // channel in the store well within its time to live.
                if let Err(error) = session.keep_alive().await {
                    tracing::warn!(%error, "could not renew a channel");
                }
                timer.as_mut().reset(last_write + heartbeat);
            }
        }
    }
}

fn text(s: &'static str) -> Message {
    Message::Text(Utf8Bytes::from_static(s))
}

async fn write_messages<S: Sink<Message> + Unpin>(
    socket: &mut S,
    flavor: &mut Flavor,
    messages: &[Delivered],
) -> Result<(), S::Error> {
    match (flavor, messages) {
        (Flavor::SockJs, [one]) => {
            socket
                .send(Message::Text(utf8(one.payload.sockjs().frame())))
                .await
        }
        (Flavor::SockJs, many) => {
            let encoded: Vec<_> = many.iter().map(|d| d.payload.sockjs()).collect();
            let frame = sockjs::messages_frame(&encoded);
            // Built from `str` pieces, so always UTF-8.
            let frame = Utf8Bytes::try_from(frame).unwrap_or_default();
            socket.send(Message::Text(frame)).await
        }
        (Flavor::Native(tracker), many) => {
            for message in many {
                tracker.advance(&message.topic, message.cursor);
                let frame = Frame::Message {
                    pos: tracker.position(),
                    data: &message.payload,
                };
                socket.feed(Message::text(frame.json())).await?;
            }
            socket.flush().await
        }
        (Flavor::Raw, many) => {
            for message in many {
                socket
                    .feed(Message::Text(utf8(message.payload.text_bytes())))
                    .await?;
            }
            socket.flush().await
        }
    }
}

/// Shared bytes as a WebSocket text message. They are always UTF-8 (built from `str`), but
/// axum's text type checks again: about 6 ns for a 40-byte frame, once per recipient.
fn utf8(bytes: &bytes::Bytes) -> Utf8Bytes {
    Utf8Bytes::try_from(bytes.clone()).unwrap_or_default()
}

async fn write_close<S: Sink<Message> + Unpin>(
    socket: &mut S,
    flavor: &Flavor,
    closed: &Closed,
) -> Result<(), S::Error> {
    let reason = tidings_core::close::truncate_reason(&closed.reason);
    match flavor {
        Flavor::SockJs => {
            socket
                .send(Message::Text(
                    sockjs::close_frame(closed.code, reason).into(),
                ))
                .await?;
        }
        Flavor::Native(_) => {
            socket
                .send(Message::text(Frame::Close(closed).json()))
                .await?
        }
        Flavor::Raw => {}
    }
    // SockJS-only codes such as 2010 are not valid in a WebSocket close frame.
    let code = if valid_in_websocket(closed.code) {
        closed.code.as_u16()
    } else {
        1000
    };
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    socket.send(Message::Close(Some(frame))).await?;
    socket.close().await
}

fn valid_in_websocket(code: CloseCode) -> bool {
    matches!(code.as_u16(), 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use futures::channel::mpsc;

    use super::*;
    use crate::Tidings;

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

    fn start(
        tidings: &Tidings,
        flavor: Flavor,
    ) -> (
        mpsc::UnboundedSender<Message>,
        mpsc::UnboundedReceiver<Message>,
    ) {
        let (to_server, incoming) = mpsc::unbounded();
        let (outgoing, from_server) = mpsc::unbounded();
        let socket = Duplex { incoming, outgoing };
        tokio::spawn(serve(
            tidings.shared_for_tests(),
            socket,
            Opening::New(Identity::anonymous()),
            flavor,
        ));
        (to_server, from_server)
    }

    fn echo() -> Tidings {
        Tidings::builder()
            .on_message(|channel, text| async move {
                channel.send(text).await.expect("echo");
            })
            .build()
    }

    async fn next(rx: &mut mpsc::UnboundedReceiver<Message>) -> Message {
        rx.next().await.expect("server wrote something")
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeat_after_exactly_the_configured_idle_time() {
        let tidings = echo();
        let (to_server, mut from_server) = start(&tidings, Flavor::SockJs);
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
        let tidings = Tidings::builder().heartbeat(Duration::from_secs(5)).build();
        let (_to_server, mut from_server) = start(&tidings, Flavor::Raw);
        let opened = Instant::now();
        assert!(matches!(next(&mut from_server).await, Message::Ping(_)));
        assert_eq!(opened.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_heartbeats_is_not_swept() {
        let tidings = Tidings::builder()
            .heartbeat(Duration::from_secs(1))
            .disconnect_delay(Duration::from_secs(1))
            .build();
        let (_to_server, mut from_server) = start(&tidings, Flavor::SockJs);
        assert_eq!(next(&mut from_server).await, text("o"));
        for _ in 0..30 {
            assert_eq!(next(&mut from_server).await, text("h"));
        }
        assert_eq!(tidings.hub().online().await.expect("online").channels, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_connection_is_not_swept() {
        let (tx, mut closes) = tokio::sync::mpsc::unbounded_channel();
        let tidings = Tidings::builder()
            .heartbeat(Duration::from_secs(1))
            .disconnect_delay(Duration::from_secs(1))
            .on_message(|channel, text| async move {
                channel.send(text).await.expect("echo");
            })
            .on_close(move |_, closed| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(closed.code);
                }
            })
            .build();
        let (to_server, mut from_server) = start(&tidings, Flavor::SockJs);
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
        assert_eq!(tidings.hub().online().await.expect("online").channels, 1);
        to_server
            .unbounded_send(Message::Close(None))
            .expect("close");
        assert_eq!(closes.recv().await, Some(CloseCode::NORMAL));
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(closes.try_recv().is_err(), "on_close must run once");
    }

    #[tokio::test]
    async fn client_close_removes_the_channel() {
        let tidings = echo();
        let mut events = tidings.hub().events();
        let (to_server, mut from_server) = start(&tidings, Flavor::SockJs);
        assert_eq!(next(&mut from_server).await, text("o"));
        to_server
            .unbounded_send(Message::Close(None))
            .expect("send");
        loop {
            if let Ok(crate::Event::Disconnected { code, .. }) = events.recv().await {
                assert_eq!(code, CloseCode::NORMAL);
                break;
            }
        }
        assert_eq!(tidings.hub().online().await.expect("online").channels, 0);
    }
}
