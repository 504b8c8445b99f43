//! WebSocket transports: SockJS framing (`<prefix>/<server>/<session>/websocket`) and raw
//! (`<prefix>/websocket`, one WebSocket message per application message).
//!
//! The connection loop is generic over `Sink + Stream` of axum WebSocket messages, so it can be
//! driven in tests without a socket.

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use futures::{Sink, SinkExt, Stream, StreamExt};
use tidings_core::CloseCode;
use tidings_core::sockjs;
use tokio::time::{Instant, sleep_until};

use crate::channel::Closed;
use crate::handshake::Identity;
use crate::message::Payload;
use crate::session::{self, Delivery, Reader, Session};
use crate::tidings::Shared;

/// Which WebSocket endpoint a connection came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// SockJS frames: `o`, `h`, `a[…]`, `c[…]`; client sends JSON arrays of strings.
    SockJs,
    /// One text message per application message, no framing; heartbeats are pings.
    Raw,
}

/// What ended the loop, and whether the close still has to be written.
enum End {
    /// Write this close to the client, then stop.
    Close(Closed),
    /// The connection is already gone (or must be dropped without a close); record this.
    Gone(Closed),
}

/// Serves one WebSocket connection until it ends.
pub(crate) async fn serve<S, E>(shared: Arc<Shared>, mut socket: S, identity: Identity, flavor: Flavor)
where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Unpin,
{
    let (session, mut reader) = match session::open(&shared, identity).await {
        Ok(opened) => opened,
        Err(error) => {
            tracing::warn!(%error, "could not open a channel");
            let _ = write_close(&mut socket, flavor, &Closed::by(error.close_code())).await;
            return;
        }
    };
    let end = if flavor == Flavor::SockJs && socket.send(text(sockjs::OPEN)).await.is_err() {
        End::Gone(Closed::by(CloseCode::INTERRUPTED))
    } else {
        run(&shared, &session, &mut reader, &mut socket, flavor).await
    };
    let closed = match end {
        End::Close(closed) => {
            let _ = write_close(&mut socket, flavor, &closed).await;
            closed
        }
        End::Gone(closed) => closed,
    };
    session.finish(Some(&reader), closed).await;
}

async fn run<S, E>(shared: &Shared, session: &Session, reader: &mut Reader, socket: &mut S, flavor: Flavor) -> End
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
                    Some(Ok(Message::Close(_))) => return End::Gone(Closed::by(CloseCode::NORMAL)),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Binary(_))) => return End::Close(Closed::new(CloseCode::INVALID_PAYLOAD, "Binary messages are not supported")),
                    Some(Err(_)) | None => return End::Gone(Closed::by(CloseCode::INTERRUPTED)),
                };
                if text.len() > max {
                    return End::Close(Closed::by(CloseCode::TOO_BIG));
                }
                match flavor {
                    Flavor::Raw => session.incoming(text.as_str().to_owned()).await,
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
                    Err(error) => return End::Close(Closed::by(error.close_code())),
                }
            }
            () = &mut timer => {
                if last_write.elapsed() >= heartbeat {
                    let beat = match flavor {
                        Flavor::SockJs => text(sockjs::HEARTBEAT),
                        Flavor::Raw => Message::Ping(Default::default()),
                    };
                    if socket.send(beat).await.is_err() {
                        return End::Gone(Closed::by(CloseCode::INTERRUPTED));
                    }
                    last_write = Instant::now();
                    if let Err(error) = session.keep_alive().await {
                        tracing::warn!(%error, "could not renew a channel");
                    }
                }
                timer.as_mut().reset(last_write + heartbeat);
            }
        }
    }
}

fn text(s: &'static str) -> Message {
    Message::Text(Utf8Bytes::from_static(s))
}

async fn write_messages<S: Sink<Message> + Unpin>(socket: &mut S, flavor: Flavor, messages: &[Payload]) -> Result<(), S::Error> {
    match (flavor, messages) {
        (Flavor::SockJs, [one]) => socket.send(Message::Text(one.sockjs_ws_frame().clone())).await,
        (Flavor::SockJs, many) => {
            let encoded: Vec<_> = many.iter().map(Payload::sockjs).collect();
            let frame = sockjs::messages_frame(&encoded);
            // Built from `str` pieces, so always UTF-8.
            let frame = Utf8Bytes::try_from(frame).unwrap_or_default();
            socket.send(Message::Text(frame)).await
        }
        (Flavor::Raw, many) => {
            for message in many {
                socket.feed(Message::Text(message.ws_text().clone())).await?;
            }
            socket.flush().await
        }
    }
}

async fn write_close<S: Sink<Message> + Unpin>(socket: &mut S, flavor: Flavor, closed: &Closed) -> Result<(), S::Error> {
    let reason = tidings_core::close::truncate_reason(&closed.reason);
    if flavor == Flavor::SockJs {
        socket.send(Message::Text(sockjs::close_frame(closed.code, reason).into())).await?;
    }
    // SockJS-only codes such as 2010 are not valid in a WebSocket close frame.
    let code = if valid_in_websocket(closed.code) { closed.code.as_u16() } else { 1000 };
    let frame = CloseFrame { code, reason: reason.into() };
    socket.send(Message::Close(Some(frame))).await?;
    socket.close().await
}

fn valid_in_websocket(code: CloseCode) -> bool {
    matches!(code.as_u16(), 1000..=1003 | 1007..=1014 | 3000..=4999)
}
