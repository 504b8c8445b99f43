//! The service: configuration, handlers, the hub, and the router that serves them.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use axum::Router;

use crate::channel::{Channel, Closed};
use crate::config::{Builder, Config, Handlers};
use crate::hub::{Event, Hub};
use crate::store::Store;

/// How many expired channels one sweep takes from the store.
const SWEEP_BATCH: usize = 1024;

/// A Tidings service: hand its [`router`](Tidings::router) to axum and publish through its
/// [`hub`](Tidings::hub).
///
/// ```no_run
/// use axum::Router;
/// use tidings::Tidings;
///
/// let tidings = Tidings::builder()
///     .on_message(|channel, text| async move {
///         let _ = channel.hub().broadcast(text).await;
///     })
///     .build();
/// let app: Router = Router::new().nest_service("/rt", tidings.router());
/// # let _: Router = app;
/// ```
#[derive(Clone)]
pub struct Tidings {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) hub: Hub,
    pub(crate) handlers: Handlers,
    sweeper: OnceLock<()>,
}

impl Tidings {
    /// A builder with every default; see [`Config`].
    pub fn builder() -> Builder {
        Builder::default()
    }

    pub(crate) fn new(config: Config, store: Arc<dyn Store>, handlers: Handlers) -> Self {
        let hub = Hub::new(store, config.retention);
        Tidings {
            shared: Arc::new(Shared {
                config,
                hub,
                handlers,
                sweeper: OnceLock::new(),
            }),
        }
    }

    /// The hub, to publish and manage channels from anywhere in the application.
    pub fn hub(&self) -> Hub {
        self.shared.hub.clone()
    }

    /// The options in force.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// The routes of this service, to mount under a prefix with
    /// [`nest_service`](Router::nest_service).
    ///
    /// `nest_service` rather than `nest`: SockJS answers both `<prefix>` and `<prefix>/`, and
    /// only `nest_service` hands the latter to this router. Do not wrap the routes in compression
    /// or timeout middleware: both break streaming transports.
    pub fn router(&self) -> Router {
        crate::router::router(self.shared.clone())
    }
}

#[cfg(test)]
impl Tidings {
    pub(crate) fn shared_for_tests(&self) -> Arc<Shared> {
        self.shared.clone()
    }
}

impl Shared {
    /// How long a channel lives in the store without a sign of life from its connection.
    pub(crate) fn session_ttl(&self) -> Duration {
        self.config.heartbeat * 2 + self.config.disconnect_delay
    }

    /// Tells the application a channel ended.
    pub(crate) async fn closed(&self, channel: Channel, closed: Closed) {
        self.hub.emit(Event::Disconnected {
            channel: channel.id(),
            user: channel.user().map(str::to_owned),
            code: closed.code,
        });
        if let Some(on_close) = &self.handlers.close {
            on_close(channel, closed).await;
        }
    }

    /// Starts, once, the task that closes channels whose connection vanished without a word
    /// (a crashed node, a receiver that never came back). It stops when the service is dropped.
    pub(crate) fn ensure_sweeper(self: &Arc<Self>) {
        self.sweeper.get_or_init(|| {
            let weak: Weak<Shared> = Arc::downgrade(self);
            let every = self
                .config
                .disconnect_delay
                .min(Duration::from_secs(1))
                .max(Duration::from_millis(10));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(shared) = weak.upgrade() else { return };
                    shared.sweep().await;
                }
            });
        });
    }

    async fn sweep(&self) {
        let idle = self.config.topic_idle_ttl;
        if let Err(error) = self.hub.store().drop_idle_topics(idle, SWEEP_BATCH).await {
            tracing::warn!(%error, "could not drop idle topics");
        }
        let expired = match self.hub.store().take_expired(SWEEP_BATCH).await {
            Ok(expired) => expired,
            Err(error) => {
                tracing::warn!(%error, "could not sweep expired channels");
                return;
            }
        };
        // Ended channels were reported when they ended; they only lingered to answer late
        // requests with their close.
        for state in expired.into_iter().filter(|s| !s.ended) {
            let closed = crate::session::close_of(&state);
            let channel = Channel::new(state.id, state.user, state.attributes, self.hub.clone());
            self.closed(channel, closed).await;
        }
    }
}
