//! The service: a [`Tidings`] and the [`Builder`] that makes one.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::serve::{Listener, ListenerExt};
use futures::future::BoxFuture;
use tidings_store::{MemoryStore, Retention, Store};
use tokio::net::{TcpListener, TcpStream};

use crate::engine::channel::{Channel, Closed};
use crate::engine::config::Config;
use crate::engine::context::{Engine, Handlers, MessageHandler};
use crate::engine::hub::Hub;
use crate::engine::identity::Identity;
use crate::protocol::stomp::{
    StompBroker, StompConfig, StompHandlers, StompLogin, StompMessage, StompService,
};
use crate::routes::handshake::{Handshake, Rejection};
use crate::routes::sockjs::iframe;
use crate::routes::state::{AuthHook, Routes};

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
    routes: Arc<Routes>,
    stomp: Arc<StompConfig>,
    stomp_handlers: StompHandlers,
}

impl Tidings {
    /// A builder with every default; see [`Config`].
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The hub, to publish and manage channels from anywhere in the application.
    pub fn hub(&self) -> Hub {
        self.routes.engine.hub.clone()
    }

    /// The options in force.
    pub fn config(&self) -> &Config {
        &self.routes.engine.config
    }

    /// Ends every connection this node serves, and every one that arrives after, each the way
    /// its protocol says a server going away (close code 1001, docs/close-codes.md); then waits
    /// until they are gone, or `within` has passed, and returns how many were left.
    ///
    /// - Native sessions go on: each connection gets `end` (on a WebSocket, then a close frame
    ///   with 1001), and the client comes back, to another node behind a balancer, from its
    ///   position, with nothing lost.
    /// - SockJS, raw WebSocket and STOMP sessions close with 1001 (`c[1001,"Server shutting
    ///   down"]`, a close frame, a STOMP ERROR): the application's `on_close` sees it, and the
    ///   clients connect anew (a STOMP client resuming with `resume-after`).
    /// - Pending polls are answered the same way at once.
    ///
    /// Only this node's connections: other nodes on the same store go on serving. Call it once
    /// the node stops taking new work, as [`graceful_shutdown`](Tidings::graceful_shutdown)
    /// does for `axum::serve`.
    pub async fn shutdown(&self, within: Duration) -> usize {
        let shutdown = &self.routes.engine.shutdown;
        shutdown.begin();
        shutdown.drained(within).await
    }

    /// A future for [`axum::serve`]'s `with_graceful_shutdown`: waits for `signal` (such as
    /// [`shutdown_signal`](crate::shutdown_signal)), then [`shutdown`](Tidings::shutdown)s this
    /// node's connections within `within` before axum stops. The connections must be ended by
    /// Tidings first: axum's own graceful shutdown waits for HTTP requests, and a WebSocket, a
    /// stream or a poll would hold it up until its client left.
    ///
    /// ```no_run
    /// # async fn run() -> std::io::Result<()> {
    /// use std::time::Duration;
    /// use axum::Router;
    /// use tidings::Tidings;
    ///
    /// let tidings = Tidings::builder().build();
    /// let app = Router::new().nest_service("/rt", tidings.router());
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    /// let stop = tidings.graceful_shutdown(tidings::shutdown_signal(), Duration::from_secs(10));
    /// axum::serve(listener, app).with_graceful_shutdown(stop).await
    /// # }
    /// ```
    pub fn graceful_shutdown(
        &self,
        signal: impl Future<Output = ()> + Send + 'static,
        within: Duration,
    ) -> impl Future<Output = ()> + Send + 'static {
        let tidings = self.clone();
        async move {
            signal.await;
            let left = tidings.shutdown(within).await;
            if left > 0 {
                tracing::warn!(
                    left,
                    "connections still open when the shutdown bound passed"
                );
            }
        }
    }

    /// `listener`, with every connection it accepts set to give up on a client that takes
    /// nothing of what the server writes for [`client_timeout`](Config::client_timeout): the
    /// kernel then closes the connection (`TCP_USER_TIMEOUT`, Linux only; elsewhere the
    /// connections are left as they are). For `axum::serve`.
    ///
    /// This is how the HTTP transports let go of a client that stopped reading (a frozen tab, a
    /// phone in a tunnel): a response blocked on a full socket cannot be interrupted from the
    /// body it is writing, so a Server-Sent Events, streaming or SockJS xhr-streaming response
    /// to such a client would otherwise hang until the client came back. The server writes at
    /// least every `heartbeat`, so a stalled client is cut within `heartbeat + client_timeout`;
    /// its session then goes the way a lost connection's does (a native session stays
    /// resumable; a SockJS one ends). WebSockets time out their stalled writes by themselves.
    ///
    /// ```no_run
    /// # async fn run() -> std::io::Result<()> {
    /// use axum::Router;
    /// use tidings::Tidings;
    ///
    /// let tidings = Tidings::builder().build();
    /// let app = Router::new().nest_service("/rt", tidings.router());
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    /// axum::serve(tidings.listener(listener), app).await
    /// # }
    /// ```
    pub fn listener(
        &self,
        listener: TcpListener,
    ) -> impl Listener<Io = TcpStream, Addr = SocketAddr> {
        let timeout = self.config().client_timeout;
        listener.tap_io(move |tcp| give_up_on_stalled_writes(tcp, timeout))
    }

    /// The routes of this service, to mount under a prefix with
    /// [`nest_service`](Router::nest_service).
    ///
    /// `nest_service` rather than `nest`: SockJS answers both `<prefix>` and `<prefix>/`, and
    /// only `nest_service` hands the latter to this router. Do not wrap the routes in compression
    /// or timeout middleware: both break streaming transports.
    pub fn router(&self) -> Router {
        crate::routes::router(self.routes.clone())
    }

    /// The STOMP endpoint of this service (`docs/stomp.md`), to mount under its own prefix with
    /// [`nest_service`](Router::nest_service), as Spring's `addEndpoint("/stomp").withSockJS()`:
    /// SockJS at `<prefix>` (every SockJS transport), the raw WebSocket at `<prefix>/websocket`
    /// and at `<prefix>` itself. Its channels are this service's: the hub, the store, the auth
    /// hook and the limits are shared with [`router`](Tidings::router).
    ///
    /// ```no_run
    /// use axum::Router;
    /// use tidings::Tidings;
    ///
    /// let tidings = Tidings::builder()
    ///     // Every SEND to /app/… comes back on the sender's /user/queue/echo.
    ///     .on_stomp_send(|message| async move {
    ///         let _ = message.reply("/queue/echo", message.body.clone()).await;
    ///     })
    ///     .build();
    /// let app: Router = Router::new().nest_service("/stomp", tidings.stomp_router());
    /// # let _: Router = app;
    /// ```
    pub fn stomp_router(&self) -> Router {
        let service = StompService {
            broker: self.stomp(),
            handlers: self.stomp_handlers.clone(),
        };
        crate::routes::stomp::router(self.routes.clone(), service)
    }

    /// Publishes to STOMP destinations from anywhere in the application.
    pub fn stomp(&self) -> StompBroker {
        StompBroker::new(self.hub(), self.stomp.clone())
    }
}

/// Makes the kernel close `tcp` once what is written to it stays untaken for `timeout`.
fn give_up_on_stalled_writes(tcp: &mut TcpStream, timeout: Duration) {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "fuchsia"))]
    if let Err(error) = socket2::SockRef::from(&*tcp).set_tcp_user_timeout(Some(timeout)) {
        tracing::warn!(%error, "cannot set TCP_USER_TIMEOUT on a connection");
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "fuchsia")))]
    let _ = (tcp, timeout);
}

/// Resolves when the process is asked to stop: Ctrl-C (SIGINT) or, on Unix, SIGTERM (what
/// `docker stop`, systemd and Kubernetes send). For [`Tidings::graceful_shutdown`].
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                terminate.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
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
    auth: Option<AuthHook>,
    handlers: Handlers,
    stomp: StompConfig,
    stomp_handlers: StompHandlers,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            config: Config::default(),
            store: Arc::new(MemoryStore::new()),
            auth: None,
            handlers: Handlers::default(),
            stomp: StompConfig::default(),
            stomp_handlers: StompHandlers::default(),
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

    /// See [`Config::client_timeout`].
    pub fn client_timeout(mut self, within: Duration) -> Self {
        self.config.client_timeout = within;
        self
    }

    /// See [`Config::disconnect_delay`].
    pub fn disconnect_delay(mut self, delay: Duration) -> Self {
        self.config.disconnect_delay = delay;
        self
    }

    /// See [`Config::renew_every`]. 0 is ignored, with a warning in the log, and the previous
    /// value stays.
    pub fn renew_every(mut self, heartbeats: u32) -> Self {
        if heartbeats == 0 {
            tracing::warn!(
                kept = self.config.renew_every,
                "renew_every ignored: it must be at least 1"
            );
        } else {
            self.config.renew_every = heartbeats;
        }
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

    /// See [`Config::offline_age`].
    pub fn offline_age(mut self, age: Duration) -> Self {
        self.config.offline_age = age;
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
        if iframe::valid_sockjs_url(&url) {
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
        self.auth = Some(Arc::new(move |h| Box::pin(hook(h))));
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
    /// long work instead of awaiting it here. Replaces an [`on_messages`](Builder::on_messages)
    /// handler.
    pub fn on_message<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Channel, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let handler = Arc::new(move |c, m| -> BoxFuture<'static, ()> { Box::pin(handler(c, m)) });
        self.handlers.message = Some(MessageHandler::Each(handler));
        self
    }

    /// Runs for the messages a client sent together, in order: those of one SockJS frame or
    /// HTTP send, and the WebSocket messages already received when the handler is free (up to
    /// 256 at a time). Each channel's next batch waits until this one's future
    /// completes.
    ///
    /// Use it instead of [`on_message`](Builder::on_message) to publish what a client sends with
    /// [`Hub::publish_batch`]: one store operation per batch rather than per message, which on
    /// Redis is the difference between one round trip per message and one per batch. A client
    /// that sends faster than a round trip gets bigger batches, not a longer queue. Replaces an
    /// `on_message` handler.
    ///
    /// ```
    /// use tidings::{Tidings, Topic};
    ///
    /// let tidings = Tidings::builder()
    ///     .on_messages(|channel, texts| async move {
    ///         let everyone = Topic::broadcast();
    ///         if let Err(error) = channel.hub().publish_batch(&everyone, texts).await {
    ///             tracing::warn!(%error, "publish failed");
    ///         }
    ///     })
    ///     .build();
    /// # drop(tidings);
    /// ```
    pub fn on_messages<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Channel, Vec<String>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let handler = Arc::new(move |c, m| -> BoxFuture<'static, ()> { Box::pin(handler(c, m)) });
        self.handlers.message = Some(MessageHandler::Batch(handler));
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

    /// The destinations and limits of the STOMP endpoint ([`Tidings::stomp_router`]). Default:
    /// Spring's ([`StompConfig::default`]).
    pub fn stomp(mut self, config: StompConfig) -> Self {
        self.stomp = config;
        self
    }

    /// Runs for every STOMP SEND to an application destination (`/app/…`), one at a time per
    /// session, in order, as Spring's `@MessageMapping` methods do. Without it, such a SEND is
    /// answered with ERROR.
    pub fn on_stomp_send<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(StompMessage) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.stomp_handlers.send = Some(Arc::new(move |m| Box::pin(handler(m))));
        self
    }

    /// Checks a STOMP CONNECT's `login` and `passcode`: `Ok(Some(user))` makes `user` the
    /// session's STOMP user (its `/user/…` destinations and CONNECTED's `user-name`),
    /// `Ok(None)` keeps the user of the auth hook, `Err(text)` refuses the session with an ERROR
    /// saying `text`. Default: every CONNECT is accepted as the auth hook's user.
    pub fn stomp_login<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Channel, StompLogin) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<String>, String>> + Send + 'static,
    {
        self.stomp_handlers.login = Some(Arc::new(move |c, l| Box::pin(hook(c, l))));
        self
    }

    /// Builds the service. No task is started until the first channel opens.
    pub fn build(self) -> Tidings {
        let engine = Arc::new(Engine::new(self.config, self.store, self.handlers));
        let mut routes = Routes::anonymous(engine);
        if let Some(auth) = self.auth {
            routes.auth = auth;
        }
        Tidings {
            routes: Arc::new(routes),
            stomp: Arc::new(self.stomp),
            stomp_handlers: self.stomp_handlers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
