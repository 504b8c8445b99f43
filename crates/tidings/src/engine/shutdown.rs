//! Shutting a node down: every connection it serves hears of it once, in its own protocol's
//! way, and the node can wait until they are all gone.

use std::time::Duration;

use tokio::sync::watch;

/// A node's shutdown signal and the count of its connections.
pub(crate) struct Shutdown {
    signal: watch::Sender<bool>,
    live: watch::Sender<usize>,
}

impl Shutdown {
    pub(crate) fn new() -> Self {
        Shutdown {
            signal: watch::Sender::new(false),
            live: watch::Sender::new(0),
        }
    }

    /// A connection's place in the count, with its watch on the signal; it leaves the count
    /// when dropped.
    pub(crate) fn enter(&self) -> Watch {
        self.live.send_modify(|live| *live += 1);
        Watch {
            signal: self.signal.subscribe(),
            live: self.live.clone(),
        }
    }

    /// Tells every connection, and every one that comes after, to end.
    pub(crate) fn begin(&self) {
        self.signal.send_replace(true);
    }

    /// Waits until no connection is left, or `within` has passed; returns how many are left.
    pub(crate) async fn drained(&self, within: Duration) -> usize {
        let mut live = self.live.subscribe();
        let _ = tokio::time::timeout(within, live.wait_for(|live| *live == 0)).await;
        *self.live.borrow()
    }
}

/// One connection's watch on the shutdown signal.
pub(crate) struct Watch {
    signal: watch::Receiver<bool>,
    live: watch::Sender<usize>,
}

impl Watch {
    /// Resolves once the node shuts down (at once if it already has).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`watch::Receiver::wait_for`] is.
    pub(crate) async fn requested(&mut self) {
        if self.signal.wait_for(|down| *down).await.is_err() {
            // The engine is gone, and with it any shutdown to wait for.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.live.send_modify(|live| *live = live.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_hear_the_signal_and_are_counted_until_dropped() {
        let shutdown = Shutdown::new();
        let mut first = shutdown.enter();
        let second = shutdown.enter();
        assert_eq!(shutdown.drained(Duration::ZERO).await, 2);
        shutdown.begin();
        first.requested().await;
        // One that comes after the signal hears it at once.
        let mut late = shutdown.enter();
        late.requested().await;
        drop((first, second, late));
        assert_eq!(shutdown.drained(Duration::from_secs(1)).await, 0);
    }
}
