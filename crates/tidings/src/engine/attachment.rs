//! One connection holding a channel: it waits for the channel's next delivery or a heartbeat of
//! silence, keeps the channel alive meanwhile, and decides what becomes of the session when the
//! connection ends, whichever transport and protocol carry it.

use std::pin::Pin;
use std::time::Duration;

use futures::future::BoxFuture;
use tidings_core::ids::Id128;
use tidings_core::{CloseCode, Cursor};
use tidings_store::Topic;
use tokio::time::{Instant, Sleep, sleep_until};

use crate::engine::channel::Closed;
use crate::engine::error::Error;
use crate::engine::reader::{Delivery, Reader};
use crate::engine::session::Session;
use crate::engine::shutdown::Watch;

/// What a connection has to write next.
#[derive(Debug)]
pub(crate) enum Step {
    /// What the reader delivered (a store error arrives as what it causes: a close, or for a
    /// resumable connection, [`Delivery::TakenOver`]).
    Delivery(Delivery),
    /// Nothing for a heartbeat.
    Heartbeat,
    /// The node is shutting down: the connection ends as [`Attachment::shutdown`] says.
    Shutdown,
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
    /// When the last renewal started; `None` before the first, which comes at the first
    /// heartbeat, or at once for a native session whose `resume` is shorter than its time to
    /// live.
    renewed: Option<Instant>,
    /// The renewal of the channel (and lock) in the store under way, if any. Kept here, not in
    /// a spawned task, so that a renewal never reaches the store after the connection let go
    /// of the lock (it is dropped first), which would take the lock for a request that is gone.
    renewal: Option<BoxFuture<'static, ()>>,
    /// Cleared once the connection let go of the session on purpose.
    attached: bool,
    /// The node's shutdown, and this connection's place in its count.
    shutdown: Watch,
}

impl Attachment {
    pub(crate) fn new(session: Session, reader: Reader, holding: Holding) -> Self {
        let engine = &session.engine;
        let heartbeat = engine.config.heartbeat;
        let now = Instant::now();
        let shutdown = engine.shutdown.enter();
        // A native session its client left lives for `resume` in the store: when that is
        // shorter than its time to live, the first heartbeat's renewal could come too late.
        let renew_now =
            matches!(holding, Holding::Resumable) && engine.config.resume < engine.session_ttl();
        let renewal: Option<BoxFuture<'static, ()>> =
            renew_now.then(|| Box::pin(renew(session.clone(), None)) as _);
        Attachment {
            session,
            reader,
            holding,
            last_write: now,
            timer: Box::pin(sleep_until(now + heartbeat)),
            renewed: renew_now.then_some(now),
            renewal,
            attached: true,
            shutdown,
        }
    }

    /// Waits for messages, the close, a heartbeat of silence, or the node's shutdown; keeps the
    /// channel (and the receiver lock) alive meanwhile.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a transport `select!`s on it and its socket. [`Reader::next`] keeps what a
    /// cancelled call read, and a renewal under way is kept in the attachment, not in the call.
    pub(crate) async fn step(&mut self) -> Step {
        let heartbeat = self.session.engine.config.heartbeat;
        loop {
            tokio::select! {
                delivery = self.reader.next() => {
                    self.last_write = Instant::now();
                    return Step::Delivery(self.delivery(delivery));
                }
                () = &mut self.timer => {
                    let due = self.last_write.elapsed() >= heartbeat;
                    if due {
                        self.last_write = Instant::now();
                    }
                    self.timer.as_mut().reset(self.last_write + heartbeat);
                    // The timer fires at least once per heartbeat, busy or idle, so renewing at
                    // the first firing from half a heartbeat before `renew_every` heartbeats
                    // since the last renewal renews the channel every `renew_every` heartbeats
                    // when idle, and never more than half a heartbeat later, within its time to
                    // live. The heartbeat does not wait for the store's round trip.
                    let every = heartbeat * self.session.engine.renew_every();
                    let due_renewal = self
                        .renewed
                        .is_none_or(|at| at.elapsed() >= every - heartbeat / 2);
                    if self.renewal.is_none() && due_renewal {
                        self.renewed = Some(Instant::now());
                        self.renewal = Some(Box::pin(renew(self.session.clone(), self.lock())));
                    }
                    if due {
                        return Step::Heartbeat;
                    }
                }
                () = renewing(&mut self.renewal) => {
                    self.renewal = None;
                }
                () = self.shutdown.requested() => return Step::Shutdown,
            }
        }
    }

    /// What is ready for this connection now, without waiting: a delivery, or `None`.
    pub(crate) async fn at_hand(&mut self) -> Option<Step> {
        let ready = self.reader.at_hand().await.transpose()?;
        self.last_write = Instant::now();
        Some(Step::Delivery(self.delivery(ready)))
    }

    /// A span for what this connection logs: its channel's id and user, its protocol and
    /// transport, so a log line can be followed to its client.
    pub(crate) fn span(&self, protocol: &'static str, transport: &'static str) -> tracing::Span {
        let channel = &self.session.channel;
        tracing::info_span!(
            "connection",
            channel = %channel.id(),
            user = channel.user().unwrap_or_default(),
            protocol,
            transport
        )
    }

    /// What the reader's answer is to this connection.
    fn delivery(&self, read: Result<Delivery, Error>) -> Delivery {
        match read {
            Ok(delivery) => delivery,
            // The client resumes from its own position: a store that failed for a moment ends
            // this connection (as a takeover does), not the session.
            Err(Error::Store(_)) if matches!(self.holding, Holding::Resumable) => {
                Delivery::TakenOver
            }
            Err(error) => Delivery::Close(Closed::by(error.close_code())),
        }
    }

    /// What a connection that the server ends with `closed` (the node shuts down; the client
    /// stopped answering) does to its session: `None`, it goes on (a resumable session, whose
    /// client comes back where it left off, to this node or another: the transport ends the
    /// connection the protocol's way for that, and detaches); otherwise the session closes with
    /// `closed`, as any close.
    pub(crate) fn ending(&self, closed: Closed) -> Option<Closed> {
        match self.holding {
            Holding::Resumable => None,
            Holding::Connection | Holding::Lock(_) => Some(closed),
        }
    }

    /// The connection ended without a close and the client is expected back: a request of a
    /// SockJS session that completed, a resumable connection the client left or another took
    /// over. A session that is its connection ends, as if lost.
    pub(crate) async fn detach(&mut self) {
        self.let_go();
        let engine = self.session.engine.clone();
        let id = self.session.channel.id();
        let detached = async {
            match self.holding {
                Holding::Lock(lock) => {
                    self.session.save(&self.reader).await?;
                    self.session.touch(engine.config.disconnect_delay).await?;
                    engine.store().release_receiver(id, lock).await?;
                }
                Holding::Resumable => {
                    let delivered = self.final_cursors(Duration::ZERO);
                    self.session.leave(&delivered, engine.config.resume).await?;
                }
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
        self.let_go();
        let linger = match self.holding {
            Holding::Connection => Duration::ZERO,
            Holding::Lock(_) | Holding::Resumable => self.session.engine.config.disconnect_delay,
        };
        self.end(closed, linger).await;
    }

    /// The connection is gone (the network, or the client sent something that ends it without
    /// a word): `closed` says how, for the sessions that end with it.
    pub(crate) async fn lost(&mut self, closed: Closed) {
        self.let_go();
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

    /// The connection lets go of the session on purpose: a renewal under way is dropped (a
    /// store call it sent is ahead of what follows; one it has not sent never will be).
    fn let_go(&mut self) {
        self.attached = false;
        self.renewal = None;
    }

    async fn end(&mut self, closed: Closed, linger: Duration) {
        let cursors = self.final_cursors(linger);
        end(self.session.clone(), self.lock(), cursors, closed, linger).await;
    }

    /// The cursors to save as the session ends: all of them when it lingers, else only its
    /// user's topic's, which outlives the channel as that topic's delivered mark (see
    /// [`Store::create_channel`](tidings_store::Store::create_channel)).
    fn final_cursors(&self, linger: Duration) -> Vec<(Topic, Cursor)> {
        let mut cursors = self.reader.cursors();
        if linger.is_zero() {
            let user = self.session.channel.user().map(Topic::user);
            cursors.retain(|(topic, _)| Some(topic) == user.as_ref());
        }
        cursors
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
                let cursors = self.final_cursors(Duration::ZERO);
                runtime.spawn(end(session, self.lock(), cursors, closed, Duration::ZERO));
            }
            Holding::Resumable => {
                let delivered = self.final_cursors(Duration::ZERO);
                runtime.spawn(async move {
                    let resume = session.engine.config.resume;
                    if let Err(error) = session.leave(&delivered, resume).await {
                        tracing::warn!(%error, "could not detach from a session");
                    }
                });
            }
        }
    }
}

/// Waits for the renewal under way; never finishes when there is none.
async fn renewing(renewal: &mut Option<BoxFuture<'static, ()>>) {
    match renewal {
        Some(renewal) => renewal.await,
        None => std::future::pending().await,
    }
}

/// Renews the channel of `session` in the store, and the receiver lock `lock` when given.
async fn renew(session: Session, lock: Option<Id128>) {
    let engine = &session.engine;
    let ttl = engine.session_ttl();
    let renewed = async {
        session.touch(ttl).await?;
        if let Some(lock) = lock {
            let id = session.channel.id();
            engine.store().acquire_receiver(id, lock, ttl).await?;
        }
        Ok::<_, Error>(())
    };
    if let Err(error) = renewed.await {
        tracing::warn!(%error, "could not renew a session");
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use tidings_core::{CloseCode, Cursor, Offset};
    use tidings_store::{
        Alias, ChannelId, ChannelState, Creation, MemoryStore, Presence, ReadBatch, Record,
        Retention, Store, StoreError, Subscription, Topic,
    };
    use tokio::sync::watch;

    use super::*;
    use crate::engine::config::Config;
    use crate::engine::context::{Engine, Handlers};
    use crate::engine::identity::Identity;
    use crate::engine::session::{self, Opened};

    /// A `MemoryStore` whose `touch` takes a second, as a remote store's round trip might, and
    /// counts the touches that completed.
    struct SlowTouch {
        inner: MemoryStore,
        touched: Arc<AtomicUsize>,
    }

    #[async_trait]
    impl Store for SlowTouch {
        async fn touch(&self, id: ChannelId, ttl: Duration) -> Result<bool, StoreError> {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let touched = self.inner.touch(id, ttl).await;
            self.touched.fetch_add(1, Ordering::SeqCst);
            touched
        }
        async fn append(&self, t: &Topic, r: Record, k: Retention) -> Result<Offset, StoreError> {
            self.inner.append(t, r, k).await
        }
        async fn append_batch(
            &self,
            t: &Topic,
            r: Vec<Record>,
            k: Retention,
        ) -> Result<Vec<Offset>, StoreError> {
            self.inner.append_batch(t, r, k).await
        }
        async fn read(&self, t: &Topic, c: Cursor, max: usize) -> Result<ReadBatch, StoreError> {
            self.inner.read(t, c, max).await
        }
        async fn watch(&self, t: &Topic) -> Result<watch::Receiver<Cursor>, StoreError> {
            self.inner.watch(t).await
        }
        async fn create_channel(
            &self,
            state: ChannelState,
            ttl: Duration,
            max: usize,
        ) -> Result<Creation, StoreError> {
            self.inner.create_channel(state, ttl, max).await
        }
        async fn channel(&self, id: ChannelId) -> Result<Option<ChannelState>, StoreError> {
            self.inner.channel(id).await
        }
        async fn channel_by_alias(&self, a: &Alias) -> Result<Option<ChannelState>, StoreError> {
            self.inner.channel_by_alias(a).await
        }
        async fn subscribe(
            &self,
            id: ChannelId,
            t: &Topic,
            how: &Subscription,
        ) -> Result<Option<Cursor>, StoreError> {
            self.inner.subscribe(id, t, how).await
        }
        async fn unsubscribe(&self, id: ChannelId, t: &Topic) -> Result<bool, StoreError> {
            self.inner.unsubscribe(id, t).await
        }
        async fn save_cursors(
            &self,
            id: ChannelId,
            c: &[(Topic, Cursor)],
        ) -> Result<(), StoreError> {
            self.inner.save_cursors(id, c).await
        }
        async fn mark_closed(
            &self,
            id: ChannelId,
            c: CloseCode,
            r: &str,
        ) -> Result<bool, StoreError> {
            self.inner.mark_closed(id, c, r).await
        }
        async fn end_channel(&self, id: ChannelId, linger: Duration) -> Result<bool, StoreError> {
            self.inner.end_channel(id, linger).await
        }
        async fn remove_channel(&self, id: ChannelId) -> Result<Option<ChannelState>, StoreError> {
            self.inner.remove_channel(id).await
        }
        async fn take_expired(&self, max: usize) -> Result<Vec<ChannelState>, StoreError> {
            self.inner.take_expired(max).await
        }
        async fn drop_idle_topics(&self, idle: Duration, max: usize) -> Result<usize, StoreError> {
            self.inner.drop_idle_topics(idle, max).await
        }
        async fn acquire_receiver(
            &self,
            id: ChannelId,
            holder: Id128,
            ttl: Duration,
        ) -> Result<bool, StoreError> {
            self.inner.acquire_receiver(id, holder, ttl).await
        }
        async fn release_receiver(&self, id: ChannelId, holder: Id128) -> Result<(), StoreError> {
            self.inner.release_receiver(id, holder).await
        }
        async fn presence(&self, t: &Topic) -> Result<Presence, StoreError> {
            self.inner.presence(t).await
        }
        async fn online(&self) -> Result<Presence, StoreError> {
            self.inner.online().await
        }
        async fn user_channels(&self, user: &str) -> Result<Vec<ChannelId>, StoreError> {
            self.inner.user_channels(user).await
        }
    }

    /// A new channel's connection on a `SlowTouch` store with `config`, and the store's count of
    /// completed touches.
    async fn attached(config: Config) -> (Attachment, Arc<AtomicUsize>) {
        let touched = Arc::new(AtomicUsize::new(0));
        let store = SlowTouch {
            inner: MemoryStore::new(),
            touched: touched.clone(),
        };
        let engine = Arc::new(Engine::new(config, Arc::new(store), Handlers::default()));
        let Ok(Opened::Created(session, reader)) =
            session::open(&engine, Identity::anonymous(), None).await
        else {
            panic!("a channel without an alias is created");
        };
        (
            Attachment::new(session, reader, Holding::Connection),
            touched,
        )
    }

    /// A client that keeps talking cancels `step` again and again (the WebSocket loop `select!`s
    /// on both): heartbeats must still come on time, and the renewals, each a second long, must
    /// still complete.
    #[tokio::test(start_paused = true)]
    async fn heartbeats_and_renewals_survive_a_step_cancelled_every_300_ms() {
        let config = Config {
            heartbeat: Duration::from_secs(2),
            ..Config::default()
        };
        let (mut attachment, touched) = attached(config).await;
        let started = Instant::now();
        let mut client = tokio::time::interval(Duration::from_millis(300));
        let mut heartbeats = Vec::new();
        while started.elapsed() < Duration::from_secs(20) {
            tokio::select! {
                step = attachment.step() => {
                    assert!(matches!(step, Step::Heartbeat), "only heartbeats: {step:?}");
                    heartbeats.push(started.elapsed().as_secs());
                }
                _ = client.tick() => {}
            }
        }
        assert_eq!(heartbeats, (1..=10).map(|n| n * 2).collect::<Vec<_>>());
        assert!(
            touched.load(Ordering::SeqCst) >= 9,
            "a renewal per heartbeat completed: {}",
            touched.load(Ordering::SeqCst)
        );
        attachment.close(Closed::by(CloseCode::NORMAL)).await;
    }

    /// With `renew_every` 4, a connection renews its channel every fourth heartbeat, never
    /// further apart, busy or idle.
    #[tokio::test(start_paused = true)]
    async fn renewals_come_every_renew_every_heartbeats() {
        let config = Config {
            heartbeat: Duration::from_secs(2),
            renew_every: 4,
            ..Config::default()
        };
        let (mut attachment, touched) = attached(config).await;
        assert_eq!(
            attachment.session.engine.session_ttl(),
            Duration::from_secs(2 * 5 + 5)
        );
        let started = Instant::now();
        // Idle for 40 s, then a client talking every 300 ms for 40 s more.
        let mut client = tokio::time::interval(Duration::from_millis(300));
        let mut renewals = Vec::new();
        let mut seen = 0;
        while started.elapsed() < Duration::from_secs(80) {
            let talking = started.elapsed() >= Duration::from_secs(40);
            tokio::select! {
                step = attachment.step() => {
                    assert!(matches!(step, Step::Heartbeat), "only heartbeats: {step:?}");
                }
                _ = client.tick(), if talking => {}
            }
            let now = touched.load(Ordering::SeqCst);
            if now > seen {
                seen = now;
                renewals.push(started.elapsed().as_secs());
            }
        }
        // Each touch takes a second: renewals start at 2 s (the first heartbeat), then 10, 18,
        // … s, and are seen done a second later, at the next step.
        assert!(
            (9..=11).contains(&renewals.len()),
            "one renewal per 4 heartbeats of 2 s over 80 s: {renewals:?}"
        );
        for pair in renewals.windows(2) {
            assert!(
                pair[1] - pair[0] <= 8,
                "renewals at most 8 s apart: {renewals:?}"
            );
        }
        attachment.close(Closed::by(CloseCode::NORMAL)).await;
    }
}
