//! The store as the engine uses it: every operation timed into
//! `tidings_store_seconds{operation}` ([`metrics`](crate::engine::metrics)).
//!
//! The histograms are resolved once, at the service's first store operation, so an operation
//! costs two clock reads and a record on a handle: install the metrics recorder before the
//! service serves (a recorder installed later gets no store timings from it).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use metrics::Histogram;
use tidings_core::ids::Id128;
use tidings_core::{CloseCode, Cursor, Offset};
use tidings_store::{
    Alias, ChannelId, ChannelState, Creation, Presence, ReadBatch, Record, Retention, Store,
    StoreError, Subscription, Topic,
};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::engine::metrics::STORE_SECONDS;

macro_rules! timers {
    ($($operation:ident),* $(,)?) => {
        /// One histogram per store operation.
        struct Timers {
            $($operation: Histogram,)*
        }

        impl Timers {
            fn new() -> Self {
                Timers {
                    $($operation: metrics::histogram!(
                        STORE_SECONDS,
                        "operation" => stringify!($operation)
                    ),)*
                }
            }
        }
    };
}

timers!(
    append,
    append_batch,
    read,
    watch,
    create_channel,
    channel,
    channel_by_alias,
    subscribe,
    unsubscribe,
    save_cursors,
    mark_closed,
    end_channel,
    touch,
    remove_channel,
    take_expired,
    drop_idle_topics,
    acquire_receiver,
    release_receiver,
    presence,
    online,
    user_channels,
);

/// A store whose every operation is timed.
pub(crate) struct Timed {
    inner: Arc<dyn Store>,
    timers: OnceLock<Timers>,
}

impl Timed {
    pub(crate) fn new(inner: Arc<dyn Store>) -> Self {
        Timed {
            inner,
            timers: OnceLock::new(),
        }
    }

    fn timers(&self) -> &Timers {
        self.timers.get_or_init(Timers::new)
    }
}

/// Runs `operation`, recording how long it took into `histogram`.
async fn timed<T>(histogram: &Histogram, operation: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let outcome = operation.await;
    histogram.record(started.elapsed().as_secs_f64());
    outcome
}

#[async_trait]
impl Store for Timed {
    async fn append(
        &self,
        topic: &Topic,
        record: Record,
        retention: Retention,
    ) -> Result<Offset, StoreError> {
        let operation = self.inner.append(topic, record, retention);
        timed(&self.timers().append, operation).await
    }

    async fn append_batch(
        &self,
        topic: &Topic,
        records: Vec<Record>,
        retention: Retention,
    ) -> Result<Vec<Offset>, StoreError> {
        let operation = self.inner.append_batch(topic, records, retention);
        timed(&self.timers().append_batch, operation).await
    }

    async fn read(
        &self,
        topic: &Topic,
        cursor: Cursor,
        max: usize,
    ) -> Result<ReadBatch, StoreError> {
        timed(&self.timers().read, self.inner.read(topic, cursor, max)).await
    }

    async fn watch(&self, topic: &Topic) -> Result<watch::Receiver<Cursor>, StoreError> {
        timed(&self.timers().watch, self.inner.watch(topic)).await
    }

    async fn create_channel(
        &self,
        state: ChannelState,
        ttl: Duration,
        max_per_user: usize,
    ) -> Result<Creation, StoreError> {
        let operation = self.inner.create_channel(state, ttl, max_per_user);
        timed(&self.timers().create_channel, operation).await
    }

    async fn channel(&self, id: ChannelId) -> Result<Option<ChannelState>, StoreError> {
        timed(&self.timers().channel, self.inner.channel(id)).await
    }

    async fn channel_by_alias(&self, alias: &Alias) -> Result<Option<ChannelState>, StoreError> {
        let operation = self.inner.channel_by_alias(alias);
        timed(&self.timers().channel_by_alias, operation).await
    }

    async fn subscribe(
        &self,
        id: ChannelId,
        topic: &Topic,
        how: &Subscription,
    ) -> Result<Option<Cursor>, StoreError> {
        timed(
            &self.timers().subscribe,
            self.inner.subscribe(id, topic, how),
        )
        .await
    }

    async fn unsubscribe(&self, id: ChannelId, topic: &Topic) -> Result<bool, StoreError> {
        timed(
            &self.timers().unsubscribe,
            self.inner.unsubscribe(id, topic),
        )
        .await
    }

    async fn save_cursors(
        &self,
        id: ChannelId,
        cursors: &[(Topic, Cursor)],
    ) -> Result<(), StoreError> {
        timed(
            &self.timers().save_cursors,
            self.inner.save_cursors(id, cursors),
        )
        .await
    }

    async fn mark_closed(
        &self,
        id: ChannelId,
        code: CloseCode,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let operation = self.inner.mark_closed(id, code, reason);
        timed(&self.timers().mark_closed, operation).await
    }

    async fn end_channel(&self, id: ChannelId, linger: Duration) -> Result<bool, StoreError> {
        timed(
            &self.timers().end_channel,
            self.inner.end_channel(id, linger),
        )
        .await
    }

    async fn touch(&self, id: ChannelId, ttl: Duration) -> Result<bool, StoreError> {
        timed(&self.timers().touch, self.inner.touch(id, ttl)).await
    }

    async fn remove_channel(&self, id: ChannelId) -> Result<Option<ChannelState>, StoreError> {
        timed(&self.timers().remove_channel, self.inner.remove_channel(id)).await
    }

    async fn take_expired(&self, max: usize) -> Result<Vec<ChannelState>, StoreError> {
        timed(&self.timers().take_expired, self.inner.take_expired(max)).await
    }

    async fn drop_idle_topics(&self, idle: Duration, max: usize) -> Result<usize, StoreError> {
        let operation = self.inner.drop_idle_topics(idle, max);
        timed(&self.timers().drop_idle_topics, operation).await
    }

    async fn acquire_receiver(
        &self,
        id: ChannelId,
        holder: Id128,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let operation = self.inner.acquire_receiver(id, holder, ttl);
        timed(&self.timers().acquire_receiver, operation).await
    }

    async fn release_receiver(&self, id: ChannelId, holder: Id128) -> Result<(), StoreError> {
        let operation = self.inner.release_receiver(id, holder);
        timed(&self.timers().release_receiver, operation).await
    }

    async fn presence(&self, topic: &Topic) -> Result<Presence, StoreError> {
        timed(&self.timers().presence, self.inner.presence(topic)).await
    }

    async fn online(&self) -> Result<Presence, StoreError> {
        timed(&self.timers().online, self.inner.online()).await
    }

    async fn user_channels(&self, user: &str) -> Result<Vec<ChannelId>, StoreError> {
        timed(&self.timers().user_channels, self.inner.user_channels(user)).await
    }
}
