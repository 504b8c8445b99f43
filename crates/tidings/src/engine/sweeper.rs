//! The task that closes channels whose connection vanished without a word: a crashed node, a
//! receiver that never came back. One per service, started with its first channel.

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::engine::channel::{Channel, Closed};
use crate::engine::context::Engine;

/// How many expired channels one sweep takes from the store.
const SWEEP_BATCH: usize = 1024;

/// Starts, once, the sweeper of `engine`. It stops when the service is dropped.
pub(crate) fn ensure(engine: &Arc<Engine>) {
    engine.sweeper.get_or_init(|| {
        let weak: Weak<Engine> = Arc::downgrade(engine);
        let every = engine
            .config
            .disconnect_delay
            .min(Duration::from_secs(1))
            .max(Duration::from_millis(10));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(engine) = weak.upgrade() else { return };
                sweep(&engine).await;
            }
        });
    });
}

async fn sweep(engine: &Engine) {
    let idle = engine.config.topic_idle_ttl;
    if let Err(error) = engine.store().drop_idle_topics(idle, SWEEP_BATCH).await {
        tracing::warn!(%error, "could not drop idle topics");
    }
    let expired = match engine.store().take_expired(SWEEP_BATCH).await {
        Ok(expired) => expired,
        Err(error) => {
            tracing::warn!(%error, "could not sweep expired channels");
            return;
        }
    };
    // Ended channels were reported when they ended; they only lingered to answer late
    // requests with their close.
    for state in expired.into_iter().filter(|s| !s.ended) {
        let closed = Closed::of(&state);
        let channel = Channel::new(state.id, state.user, state.attributes, engine.hub.clone());
        engine.closed(channel, closed).await;
    }
}
