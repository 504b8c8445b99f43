//! Configuration: the builder and its defaults.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::channel::{Channel, Closed};
use crate::handshake::{Handshake, Identity, Rejection};
use crate::store::{MemoryStore, Retention, Store};
use crate::tidings::Tidings;

pub(crate) type AuthHook =
    Arc<dyn Fn(Handshake) -> BoxFuture<'static, Result<Identity, Rejection>> + Send + Sync>;
pub(crate) type OpenHandler = Arc<dyn Fn(Channel) -> BoxFuture<'static, ()> + Send + Sync>;
pub(crate) type MessageHandler =
    Arc<dyn Fn(Channel, String) -> BoxFuture<'static, ()> + Send + Sync>;
pub(crate) type CloseHandler = Arc<dyn Fn(Channel, Closed) -> BoxFuture<'static, ()> + Send + Sync>;

/// Options of one Tidings service. Built by [`Builder`]; every field has a documented default.
#[derive(Clone, Debug)]
pub struct Config {
    /// Send a heartbeat after this long without other output. Default 25 s: below the 60 s
    /// idle timeout of nginx and most load balancers.
    pub heartbeat: Duration,
    /// Close a session that has had no receiving connection for this long. Default 5 s.
    pub disconnect_delay: Duration,
    /// How long a native session with no transport connected waits for its client to come
    /// back with its token and position before it is closed (3002). Default 2 minutes.
    pub resume: Duration,
    /// Largest incoming message, in bytes of its wire frame. Larger messages close the session
    /// with [`CloseCode::TOO_BIG`](crate::CloseCode::TOO_BIG). Default 1 MiB: sockjs-client batches queued sends into one frame, so a
    /// limit near the largest single message would refuse bursts of them.
    pub max_message_size: usize,
    /// How much history every topic keeps. Default 1000 messages or 1 MiB.
    pub retention: Retention,
    /// How many messages a channel may fall behind a topic's head before it is treated as
    /// lagging (SockJS: closed with [`CloseCode::LAGGED`](crate::CloseCode::LAGGED)). Default 1000.
    pub max_lag: u64,
    /// How long a topic that no channel follows is kept after its last message, so a client
    /// that comes back soon can still resume from it. Default 1 hour.
    pub topic_idle_ttl: Duration,
    /// Origins allowed to open channels (`scheme://host[:port]`), or `None` for any.
    /// Default `None`.
    pub allowed_origins: Option<Vec<String>>,
    /// Most channels one user may have open at once. Default 100.
    pub max_channels_per_user: usize,
    /// Whether the WebSocket endpoints are served. Default true.
    pub websocket: bool,
    /// Where the SockJS iframe page (`<prefix>/iframe.html`) loads sockjs-client from. It
    /// should be the same sockjs-client release the application's pages use (the client checks
    /// the versions match), reachable by the browser. Default
    /// [`Config::DEFAULT_SOCKJS_URL`]; set through [`Builder::sockjs_url`], which checks it.
    pub sockjs_url: String,
    /// Whether SockJS sets a `JSESSIONID` cookie on session URLs, for load balancers that keep
    /// a client on one node by that cookie. `/info` reports it to the client (as
    /// `cookie_needed`), which then sends credentials with its XHRs. Default false.
    pub cookie_needed: bool,
    /// How many bytes of frames a SockJS streaming response (xhr-streaming, EventSource,
    /// htmlfile) carries before the server ends it and the client opens the next one, so
    /// the browser can free what it has read. Used by the streaming transports. Default 128 KiB.
    pub response_limit: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            heartbeat: Duration::from_secs(25),
            disconnect_delay: Duration::from_secs(5),
            resume: Duration::from_secs(120),
            max_message_size: 1 << 20,
            retention: Retention::default(),
            max_lag: 1000,
            topic_idle_ttl: Duration::from_secs(3600),
            allowed_origins: None,
            max_channels_per_user: 100,
            websocket: true,
            sockjs_url: Config::DEFAULT_SOCKJS_URL.to_owned(),
            cookie_needed: false,
            response_limit: 128 * 1024,
        }
    }
}

impl Config {
    /// The default [`sockjs_url`](Config::sockjs_url): sockjs-client 1.x from jsDelivr, as
    /// sockjs-node.
    pub const DEFAULT_SOCKJS_URL: &'static str =
        "https://cdn.jsdelivr.net/npm/sockjs-client@1/dist/sockjs.min.js";

    /// Whether a request with this `Origin` header may open a channel.
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        match (&self.allowed_origins, origin) {
            (None, _) => true,
            // Same-origin requests from non-browser clients carry no Origin header.
            (Some(_), None) => true,
            (Some(allowed), Some(origin)) => allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)),
        }
    }
}

pub(crate) struct Handlers {
    pub(crate) auth: AuthHook,
    pub(crate) open: Option<OpenHandler>,
    pub(crate) message: Option<MessageHandler>,
    pub(crate) close: Option<CloseHandler>,
}

/// Builds a [`Tidings`] service.
///
/// ```
/// use std::time::Duration;
/// use tidings::Tidings;
///
/// let tidings = Tidings::builder()
///     .heartbeat(Duration::from_secs(20))
///     .on_message(|channel, text| async move {
///         let _ = channel.send(text).await;
///     })
///     .build();
/// # let _ = tidings;
/// ```
#[must_use]
pub struct Builder {
    config: Config,
    store: Arc<dyn Store>,
    handlers: Handlers,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            config: Config::default(),
            store: Arc::new(MemoryStore::new()),
            handlers: Handlers {
                auth: Arc::new(|_| Box::pin(async { Ok(Identity::anonymous()) })),
                open: None,
                message: None,
                close: None,
            },
        }
    }
}

impl Builder {
    /// See [`Config::heartbeat`].
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.config.heartbeat = every;
        self
    }

    /// See [`Config::resume`].
    pub fn resume(mut self, wait: Duration) -> Self {
        self.config.resume = wait;
        self
    }

    /// See [`Config::disconnect_delay`].
    pub fn disconnect_delay(mut self, delay: Duration) -> Self {
        self.config.disconnect_delay = delay;
        self
    }

    /// See [`Config::max_message_size`].
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.max_message_size = bytes;
        self
    }

    /// See [`Config::retention`].
    pub fn retention(mut self, retention: Retention) -> Self {
        self.config.retention = retention;
        self
    }

    /// See [`Config::max_lag`].
    pub fn max_lag(mut self, messages: u64) -> Self {
        self.config.max_lag = messages;
        self
    }

    /// See [`Config::topic_idle_ttl`].
    pub fn topic_idle_ttl(mut self, ttl: Duration) -> Self {
        self.config.topic_idle_ttl = ttl;
        self
    }

    /// See [`Config::allowed_origins`].
    pub fn allowed_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.allowed_origins = Some(origins.into_iter().map(Into::into).collect());
        self
    }

    /// See [`Config::max_channels_per_user`].
    pub fn max_channels_per_user(mut self, n: usize) -> Self {
        self.config.max_channels_per_user = n;
        self
    }

    /// See [`Config::websocket`].
    pub fn websocket(mut self, enabled: bool) -> Self {
        self.config.websocket = enabled;
        self
    }

    /// See [`Config::sockjs_url`]. The URL must start with `/`, `http://` or `https://` and
    /// contain no whitespace, control characters, `"`, `<` or `>`; any other value is ignored,
    /// with a warning in the log, and the previous one stays.
    pub fn sockjs_url(mut self, url: impl Into<String>) -> Self {
        let url = url.into();
        if crate::sockjs::iframe::valid_sockjs_url(&url) {
            self.config.sockjs_url = url;
        } else {
            tracing::warn!(
                url,
                kept = self.config.sockjs_url,
                "sockjs_url ignored: it must start with `/`, `http://` or `https://`"
            );
        }
        self
    }

    /// See [`Config::cookie_needed`].
    pub fn cookie_needed(mut self, enabled: bool) -> Self {
        self.config.cookie_needed = enabled;
        self
    }

    /// See [`Config::response_limit`].
    pub fn response_limit(mut self, bytes: usize) -> Self {
        self.config.response_limit = bytes;
        self
    }

    /// The store behind the service. Default: a fresh [`MemoryStore`].
    pub fn store(mut self, store: impl Store) -> Self {
        self.store = Arc::new(store);
        self
    }

    /// The auth hook: sees the request that opens a channel and returns who the client is, or a
    /// [`Rejection`] that answers the request. Default: everyone is anonymous.
    pub fn auth<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Handshake) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Identity, Rejection>> + Send + 'static,
    {
        self.handlers.auth = Arc::new(move |h| Box::pin(hook(h)));
        self
    }

    /// Runs when a channel opens, before anything else is delivered to it.
    pub fn on_open<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Channel) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.handlers.open = Some(Arc::new(move |c| Box::pin(handler(c))));
        self
    }

    /// Runs for every message a client sends, one at a time per channel, in order.
    ///
    /// The next message of the same channel waits until this one's future completes, so spawn
    /// long work instead of awaiting it here.
    pub fn on_message<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Channel, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.handlers.message = Some(Arc::new(move |c, m| Box::pin(handler(c, m))));
        self
    }

    /// Runs once when a channel has closed, with the code and reason.
    pub fn on_close<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Channel, Closed) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.handlers.close = Some(Arc::new(move |c, r| Box::pin(handler(c, r))));
        self
    }

    /// Builds the service. No task is started until the first channel opens.
    pub fn build(self) -> Tidings {
        Tidings::new(self.config, self.store, self.handlers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockjs_defaults() {
        let config = Config::default();
        assert_eq!(
            config.sockjs_url,
            "https://cdn.jsdelivr.net/npm/sockjs-client@1/dist/sockjs.min.js"
        );
        assert!(!config.cookie_needed);
        assert_eq!(config.response_limit, 131_072);
    }

    #[test]
    fn invalid_sockjs_url_is_ignored() {
        let builder = Builder::default().sockjs_url("/static/sockjs.min.js");
        assert_eq!(builder.config.sockjs_url, "/static/sockjs.min.js");
        let builder = builder.sockjs_url("sockjs.min.js").sockjs_url("/x\".js");
        assert_eq!(builder.config.sockjs_url, "/static/sockjs.min.js");
        let builder = builder.sockjs_url(String::from("http://localhost/sockjs.js"));
        assert_eq!(builder.config.sockjs_url, "http://localhost/sockjs.js");
    }
}
