//! What the engine runs on: the options, the hub and the application's handlers.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use tidings_store::Store;

use crate::engine::channel::{Channel, Closed};
use crate::engine::config::Config;
use crate::engine::hub::{Event, Hub};
use crate::engine::shutdown::Shutdown;
use crate::engine::timed::Timed;

/// Runs when a channel opens.
pub(crate) type OpenHandler = Arc<dyn Fn(Channel) -> BoxFuture<'static, ()> + Send + Sync>;
/// Runs for the messages a client sends: one at a time, or every message that arrived together.
#[derive(Clone)]
pub(crate) enum MessageHandler {
    /// [`Builder::on_message`](crate::Builder::on_message).
    Each(Arc<dyn Fn(Channel, String) -> BoxFuture<'static, ()> + Send + Sync>),
    /// [`Builder::on_messages`](crate::Builder::on_messages).
    Batch(Arc<dyn Fn(Channel, Vec<String>) -> BoxFuture<'static, ()> + Send + Sync>),
}
/// Runs once when a channel has closed.
pub(crate) type CloseHandler = Arc<dyn Fn(Channel, Closed) -> BoxFuture<'static, ()> + Send + Sync>;

/// The application's handlers; each is optional.
#[derive(Default)]
pub(crate) struct Handlers {
    pub(crate) open: Option<OpenHandler>,
    pub(crate) message: Option<MessageHandler>,
    pub(crate) close: Option<CloseHandler>,
}

/// One service's engine: shared by every route, transport and session of the service.
pub(crate) struct Engine {
    pub(crate) config: Config,
    pub(crate) hub: Hub,
    pub(crate) handlers: Handlers,
    /// Set once the sweeper task runs ([`sweeper::ensure`](crate::engine::sweeper::ensure)).
    pub(crate) sweeper: OnceLock<()>,
    /// This node's shutdown, which every connection watches.
    pub(crate) shutdown: Shutdown,
}

impl Engine {
    pub(crate) fn new(config: Config, store: Arc<dyn Store>, handlers: Handlers) -> Self {
        let store: Arc<dyn Store> = Arc::new(Timed::new(store));
        let hub = Hub::new(store, config.retention, config.offline_age);
        Engine {
            config,
            hub,
            handlers,
            sweeper: OnceLock::new(),
            shutdown: Shutdown::new(),
        }
    }

    /// The store behind the service.
    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        self.hub.store()
    }

    /// How many heartbeats apart a connection renews its channel in the store.
    pub(crate) fn renew_every(&self) -> u32 {
        self.config.renew_every.max(1)
    }

    /// How long a channel lives in the store without a sign of life from its connection: a
    /// renewal starts at most `renew_every` and a half heartbeats after the last, and has the
    /// rest of a heartbeat (and the disconnect delay) to reach the store.
    pub(crate) fn session_ttl(&self) -> Duration {
        self.config.heartbeat * (self.renew_every() + 1) + self.config.disconnect_delay
    }

    /// Tells the application a channel ended.
    pub(crate) async fn closed(&self, channel: Channel, closed: Closed) {
        crate::engine::metrics::session_closed(closed.code);
        self.hub.emit(Event::Disconnected {
            channel: channel.id(),
            user: channel.user().map(str::to_owned),
            code: closed.code,
        });
        if let Some(on_close) = &self.handlers.close {
            on_close(channel, closed).await;
        }
    }
}

/// Engines for the tests of the layers above, without the service that builds them.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use tidings_core::CloseCode;
    use tidings_store::MemoryStore;

    /// An engine on a fresh `MemoryStore`.
    pub(crate) fn engine(config: Config, handlers: Handlers) -> Arc<Engine> {
        Arc::new(Engine::new(config, Arc::new(MemoryStore::new()), handlers))
    }

    /// Handlers that send every message back to the channel it came from.
    pub(crate) fn echo() -> Handlers {
        let message = MessageHandler::Each(Arc::new(|channel, text| {
            Box::pin(async move {
                channel.send(text).await.expect("echo");
            })
        }));
        Handlers {
            message: Some(message),
            ..Handlers::default()
        }
    }

    /// A close handler that reports each close's code on `tx`.
    pub(crate) fn report_closes(
        tx: tokio::sync::mpsc::UnboundedSender<(tidings_store::ChannelId, CloseCode)>,
    ) -> CloseHandler {
        Arc::new(move |channel, closed| {
            let tx = tx.clone();
            Box::pin(async move {
                let _ = tx.send((channel.id(), closed.code));
            })
        })
    }
}
