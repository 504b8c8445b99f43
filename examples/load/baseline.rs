//! The yardstick: a plain axum WebSocket broadcast over `tokio::sync::broadcast`, no Tidings.
//!
//! Kept as small as a competent hand-written server would be, and given the same advantages
//! Tidings' raw transport has: every message is encoded once (`Utf8Bytes` is shared), and a
//! connection forwards everything already queued before it flushes once. A connection that
//! falls more than `capacity` messages behind is closed with 3001, as Tidings closes a lagging
//! subscriber.

use axum::Router;
use axum::extract::WebSocketUpgrade;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use axum::routing::any;
use futures::SinkExt;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

/// Most queued messages written before one flush, as Tidings reads at most 256 per batch.
const BATCH: usize = 256;

/// `/broadcast/websocket`: every text message any client sends goes to every connection.
pub(crate) fn router(capacity: usize) -> Router {
    let (tx, _) = broadcast::channel::<Utf8Bytes>(capacity.max(1));
    Router::new().route(
        "/broadcast/websocket",
        any(move |upgrade: WebSocketUpgrade| {
            let tx = tx.clone();
            async move { upgrade.on_upgrade(move |socket| connection(socket, tx)) }
        }),
    )
}

async fn connection(mut socket: WebSocket, tx: broadcast::Sender<Utf8Bytes>) {
    let mut rx = tx.subscribe();
    loop {
        tokio::select! {
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    // No receivers only happens when nobody is connected; nothing to deliver.
                    let _ = tx.send(text);
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            outgoing = rx.recv() => {
                let first = match outgoing {
                    Ok(text) => text,
                    Err(RecvError::Lagged(_)) => return lagged(socket).await,
                    Err(RecvError::Closed) => return,
                };
                if socket.feed(Message::Text(first)).await.is_err() {
                    return;
                }
                for _ in 1..BATCH {
                    match rx.try_recv() {
                        Ok(text) => {
                            if socket.feed(Message::Text(text)).await.is_err() {
                                return;
                            }
                        }
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Lagged(_)) => return lagged(socket).await,
                        Err(TryRecvError::Closed) => return,
                    }
                }
                if socket.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn lagged(mut socket: WebSocket) {
    let frame = CloseFrame {
        code: 3001,
        reason: "Missed messages".into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}
