//! One connection holding a channel: it waits for the channel's next delivery or a heartbeat of
//! silence, keeps the channel alive meanwhile, and decides what becomes of the session when the
//! connection ends, whichever transport and protocol carry it.

use std::pin::Pin;
use std::time::Duration;

use tidings_core::ids::Id128;
use tidings_core::{CloseCode, Cursor};
use tokio::time::{Instant, Sleep, sleep_until};

use crate::engine::channel::Closed;
use crate::engine::error::Error;
use crate::engine::reader::{Delivery, Reader};
use crate::engine::session::Session;
use tidings_store::Topic;

/// What a connection has to write next.
#[derive(Debug)]
pub(crate) enum Step {
    /// What the reader delivered (a store error arrives as what it causes: a close, or for a
    /// resumable connection, [`Delivery::TakenOver`]).
    Delivery(Delivery),
    /// Nothing for a heartbeat.
    Heartbeat,
}

/// How a connection holds its channel: what keeps it alive, what is saved, and what becomes of
/// the session when the connection ends.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Holding {
    /// The session is this connection (SockJS and raw WebSocket): it ends when the connection
    /// does, and nothing can come back for it.
    Connection,
    /// One request of a session that spans requests (SockJS over HTTP): it holds the session's
    /// receiver lock; the server's cursors are the session's position, saved when the request
    /// ends; a request the client drops ends the session with 1002, as sockjs-node does.
    Lock(Id128),
    /// One connection of a resumable session (the native protocol): the client's position is
    /// the truth, so nothing is saved (what the server wrote may never have arrived); when the
    /// connection ends without a close, the session waits [`Config::resume`] for the client to
    /// come back, and a store that fails for a moment ends the connection, not the session.
    ///
    /// [`Config::resume`]: crate::Config::resume
    Resumable,
}

/// A connection attached to a channel.
///
/// Dropped before it let go of the channel on purpose (hyper drops a response whose client went
/// away; a WebSocket upgrade that never completes drops its handler), it does what its
/// [`Holding`] says of a lost connection.
pub(crate) struct Attachment {
    pub(crate) session: Session,
    pub(crate) reader: Reader,
    holding: Holding,
    last_write: Instant,
    /// One timer entry per connection on Tokio's shared timer wheel, re-armed lazily: writes
    /// only record the time, and the timer moves itself forward when it fires early.
    timer: Pin<Box<Sleep>>,
    /// Cleared once the connection let go of the session on purpose.
    attached: bool,
}

impl Attachment {
    pub(crate) fn new(session: Session, reader: Reader, holding: Holding) -> Self {
        let heartbeat = session.engine.config.heartbeat;
        let now = Instant::now();
        Attachment {
            session,
            reader,
            holding,
            last_write: now,
            timer: Box::pin(sleep_until(now + heartbeat)),
            attached: true,
        }
    }

    /// Waits for messages, the close, or a heartbeat of silence; keeps the channel (and the
    /// receiver lock) alive meanwhile.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`Reader::next`] is: a transport `select!`s on it and its socket.
    pub(crate) async fn step(&mut self) -> Step {
        let heartbeat = self.session.engine.config.heartbeat;
        loop {
            tokio::select! {
                delivery = self.reader.next() => {
                    self.last_write = Instant::now();
                    let delivery = match delivery {
                        Ok(delivery) => delivery,
                        // The client resumes from its own position: a store that failed for a
                        // moment ends this connection (as a takeover does), not the session.
                        Err(Error::Store(_)) if matches!(self.holding, Holding::Resumable) => {
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
                    // The timer fires at least once per heartbeat, busy or idle, so this renews
                    // the channel in the store well within its time to live.
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
        let engine = &self.session.engine;
        let renewed = async {
            self.session.touch(engine.session_ttl()).await?;
            if let Holding::Lock(lock) = self.holding {
                engine
                    .store()
                    .acquire_receiver(self.session.channel.id(), lock, engine.session_ttl())
                    .await?;
            }
            Ok::<_, Error>(())
        };
        if let Err(error) = renewed.await {
            tracing::warn!(%error, "could not renew a session");
        }
    }

    /// The connection ended without a close and the client is expected back: a request of a
    /// SockJS session that completed, a resumable connection the client left or another took
    /// over. A session that is its connection ends, as if lost.
    pub(crate) async fn detach(&mut self) {
        self.attached = false;
        let engine = self.session.engine.clone();
        let id = self.session.channel.id();
        let detached = async {
            match self.holding {
                Holding::Lock(lock) => {
                    self.session.save(&self.reader).await?;
                    self.session.touch(engine.config.disconnect_delay).await?;
                    engine.store().release_receiver(id, lock).await?;
                }
                Holding::Resumable => self.session.touch(engine.config.resume).await?,
                Holding::Connection => {
                    let closed = Closed::by(CloseCode::INTERNAL);
                    self.end(closed, Duration::ZERO).await;
                }
            }
            Ok::<_, Error>(())
        };
        if let Err(error) = detached.await {
            tracing::warn!(%error, "could not detach from a session");
        }
    }

    /// The session closed (its close was, or is being, written): it ends, and lingers for
    /// `disconnect_delay` answering its close, unless it is its connection.
    pub(crate) async fn close(&mut self, closed: Closed) {
        self.attached = false;
        let linger = match self.holding {
            Holding::Connection => Duration::ZERO,
            Holding::Lock(_) | Holding::Resumable => self.session.engine.config.disconnect_delay,
        };
        self.end(closed, linger).await;
    }

    /// The connection is gone (the network, or the client sent something that ends it without
    /// a word): `closed` says how, for the sessions that end with it.
    pub(crate) async fn lost(&mut self, closed: Closed) {
        self.attached = false;
        match self.holding {
            Holding::Resumable => self.detach().await,
            Holding::Connection | Holding::Lock(_) => self.end(closed, Duration::ZERO).await,
        }
    }

    /// The client closed the connection with `closed`. A resumable session's client leaves a
    /// connection with a code of its own when it moves to another; only 1000 ends the session.
    pub(crate) async fn client_closed(&mut self, closed: Closed) {
        match self.holding {
            Holding::Resumable if closed.code != CloseCode::NORMAL => self.detach().await,
            _ => self.close(closed).await,
        }
    }

    async fn end(&mut self, closed: Closed, linger: Duration) {
        // A channel removed at once has no use for its cursors.
        let cursors = if linger.is_zero() {
            Vec::new()
        } else {
            self.reader.cursors()
        };
        end(self.session.clone(), self.lock(), cursors, closed, linger).await;
    }

    fn lock(&self) -> Option<Id128> {
        match self.holding {
            Holding::Lock(lock) => Some(lock),
            Holding::Connection | Holding::Resumable => None,
        }
    }
}

impl Drop for Attachment {
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
            Holding::Connection | Holding::Lock(_) => {
                let closed = Closed::by(CloseCode::INTERRUPTED);
                runtime.spawn(end(
                    session,
                    self.lock(),
                    Vec::new(),
                    closed,
                    Duration::ZERO,
                ));
            }
            Holding::Resumable => {
                runtime.spawn(async move {
                    let resume = session.engine.config.resume;
                    if let Err(error) = session.touch(resume).await {
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
    let store = session.engine.store().clone();
    let id = session.channel.id();
    session.finish(&cursors, closed, linger).await;
    if let Some(lock) = lock
        && let Err(error) = store.release_receiver(id, lock).await
    {
        tracing::warn!(%error, "could not release a receiver");
    }
}
