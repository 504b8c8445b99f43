//! What the HTTP transports of both protocols share: a request attached to a channel, which
//! waits for the channel's next delivery or a heartbeat of silence, keeps the channel alive
//! meanwhile, and lets go of it when the response ends, or when the client goes away.

use std::pin::Pin;
use std::time::Duration;

use tidings_core::ids::Id128;
use tidings_core::{CloseCode, Cursor};
use tokio::time::{Instant, Sleep, sleep_until};

use crate::channel::Closed;
use crate::error::Error;
use crate::session::{Delivery, Reader, Session};
use crate::store::Topic;

/// What a receiver has to write next.
pub(crate) enum Step {
    /// What the reader delivered (a store error arrives as the close it causes).
    Delivery(Delivery),
    /// Nothing for a heartbeat.
    Heartbeat,
}

/// How a request holds its channel: what it locks, what it saves, and what a dropped request
/// does to the session.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Holding {
    /// SockJS: the request holds the session's receiver lock; the server's cursors are the
    /// session's position, saved when the request ends; a request the client drops ends the
    /// session with 1002, as sockjs-node does.
    Lock(Id128),
    /// Native: the client's position is the truth, so nothing is saved (what the server wrote
    /// may never have arrived); a dropped request leaves the session for the client to resume
    /// within this long.
    Position(Duration),
}

/// A request attached to a channel: the one receiver of a SockJS session (holding its receiver
/// lock), or the current connection of a native one.
///
/// Dropped before it was detached or closed, it does what its [`Holding`] says: that happens
/// when hyper drops the request because the client went away.
pub(crate) struct Receiver {
    pub(crate) session: Session,
    pub(crate) reader: Reader,
    holding: Holding,
    last_write: Instant,
    /// One timer entry per request, re-armed lazily as in the WebSocket transport.
    timer: Pin<Box<Sleep>>,
    /// Cleared once the request let go of the session on purpose.
    attached: bool,
}

impl Receiver {
    pub(crate) fn new(session: Session, reader: Reader, holding: Holding) -> Self {
        let heartbeat = session.shared.config.heartbeat;
        let now = Instant::now();
        Receiver {
            session,
            reader,
            holding,
            last_write: now,
            timer: Box::pin(sleep_until(now + heartbeat)),
            attached: true,
        }
    }

    /// Waits for messages, the close, or a heartbeat of silence; keeps the channel and the lock
    /// alive meanwhile.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`Reader::next`] is.
    pub(crate) async fn step(&mut self) -> Step {
        let heartbeat = self.session.shared.config.heartbeat;
        loop {
            tokio::select! {
                delivery = self.reader.next() => {
                    self.last_write = Instant::now();
                    let delivery = match delivery {
                        Ok(delivery) => delivery,
                        // A native client resumes from its own position: a store that failed
                        // for a moment ends this response (as a takeover does), not the session.
                        Err(Error::Store(_)) if matches!(self.holding, Holding::Position(_)) => {
                            Delivery::TakenOver
                        }
                        Err(error) => Delivery::Close(Closed::by(error.close_code())),
                    };
                    return Step::Delivery(delivery);
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
            if let Holding::Lock(lock) = self.holding {
                shared
                    .hub
                    .store()
                    .acquire_receiver(self.session.channel.id(), lock, shared.session_ttl())
                    .await?;
            }
            Ok::<_, Error>(())
        };
        if let Err(error) = renewed.await {
            tracing::warn!(%error, "could not renew a session");
        }
    }

    /// The request ended without a close: the session waits `wait` for the next one.
    pub(crate) async fn detach(&mut self, wait: Duration) {
        self.attached = false;
        let store = self.session.shared.hub.store();
        let id = self.session.channel.id();
        let detached = async {
            match self.holding {
                Holding::Lock(lock) => {
                    self.session.detach(&self.reader, wait).await?;
                    store.release_receiver(id, lock).await?;
                }
                Holding::Position(_) => {
                    store.touch(id, wait).await?;
                }
            }
            Ok::<_, Error>(())
        };
        if let Err(error) = detached.await {
            tracing::warn!(%error, "could not detach from a session");
        }
    }

    /// The session closed: it lingers for `disconnect_delay`, answering its close.
    pub(crate) async fn close(&mut self, closed: Closed) {
        self.attached = false;
        let linger = self.session.shared.config.disconnect_delay;
        let cursors = self.reader.cursors();
        end(self.session.clone(), self.lock(), cursors, closed, linger).await;
    }

    fn lock(&self) -> Option<Id128> {
        match self.holding {
            Holding::Lock(lock) => Some(lock),
            Holding::Position(_) => None,
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if !self.attached {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let session = self.session.clone();
        match self.holding {
            // sockjs-node forgets a session whose receiving request was aborted: the client's
            // next request starts a new one.
            Holding::Lock(lock) => {
                let closed = Closed::by(CloseCode::INTERRUPTED);
                runtime.spawn(end(session, Some(lock), Vec::new(), closed, Duration::ZERO));
            }
            Holding::Position(wait) => {
                runtime.spawn(async move {
                    let store = session.shared.hub.store();
                    if let Err(error) = store.touch(session.channel.id(), wait).await {
                        tracing::warn!(%error, "could not detach from a session");
                    }
                });
            }
        }
    }
}

/// Ends the session and lets go of its receiver lock.
async fn end(
    session: Session,
    lock: Option<Id128>,
    cursors: Vec<(Topic, Cursor)>,
    closed: Closed,
    linger: Duration,
) {
    let store = session.shared.hub.store().clone();
    let id = session.channel.id();
    session.finish(&cursors, closed, linger).await;
    if let Some(lock) = lock
        && let Err(error) = store.release_receiver(id, lock).await
    {
        tracing::warn!(%error, "could not release a receiver");
    }
}
