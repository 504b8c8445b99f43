//! STOMP 1.2 (and 1.1, 1.0) with Spring's destination conventions, carried as WebSocket text
//! messages or as SockJS messages (`docs/stomp.md`).
//!
//! Destinations are topics: a broker destination (`/topic/…`, `/queue/…`) is the topic of that
//! name; a user destination (`/user/queue/x`) is a topic of its own per user, which every session
//! of that user subscribing to it follows. A subscription is the channel following the topic,
//! labelled with the client's subscription ids, so every node delivers it with the right
//! `subscription` header. What the server answers (CONNECTED, RECEIPT, ERROR) goes through the
//! channel ([`Session::reply`]): a frame sent over SockJS's `xhr_send` may reach another node
//! than the one the client receives on. The session's negotiated version is the label of the
//! channel's private topic, so a request on any node knows the session is connected.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use futures::future::BoxFuture;
use tidings_core::escape::push_json_string;
use tidings_core::stomp::{Command, Decoder, Frame as StompFrame, Item, Limits, Version};
use tidings_core::{CloseCode, Cursor, Epoch, Offset, sockjs};
use tidings_store::{ChannelState, Payload, Subscription, Topic};

use super::{Frame, Protocol, StompShared, Texts};
use crate::engine::channel::{Channel, Closed};
use crate::engine::error::Error;
use crate::engine::hub::Hub;
use crate::engine::reader::Delivered;
use crate::engine::session::Session;

/// The STOMP side of a service: where destinations go, and the limits on what clients send.
/// The defaults are Spring's (`enableSimpleBroker("/topic", "/queue")`,
/// `setApplicationDestinationPrefixes("/app")`, `setUserDestinationPrefix("/user")`).
#[derive(Clone, Debug)]
pub struct StompConfig {
    /// Destinations the broker delivers to their subscribers. Default `/topic` and `/queue`.
    pub broker_prefixes: Vec<String>,
    /// Destinations a SEND hands to the application ([`on_stomp_send`]). Default `/app`.
    ///
    /// [`on_stomp_send`]: crate::Builder::on_stomp_send
    pub app_prefix: String,
    /// Destinations of one user's sessions: SUBSCRIBE `/user/queue/x` is this session's, SEND to
    /// `/user/{name}/queue/x` reaches every session of `{name}`. Default `/user`.
    pub user_prefix: String,
    /// The largest frame, most headers and longest header line a client may send. Default
    /// 64 KiB, 64, 8 KiB.
    pub limits: Limits,
    /// How often the server asks clients to send heart-beats (CONNECTED's second value, when
    /// the client offers any). A WebSocket client silent for three times the agreed interval
    /// is closed with 3003. Default 10 s.
    pub client_heartbeat: Duration,
    /// On the raw WebSocket, whether frames ready at the same moment (a burst of messages, what
    /// a resumed subscription missed) go out together in one WebSocket message, as the STOMP
    /// clients here all read a stream of frames (`@stomp/stompjs`, `stompjs` 2.3.3, stomp.py,
    /// Spring's own client). `false` sends one frame per WebSocket message, as Spring does, for
    /// a client that expects that. Over SockJS each frame is always a SockJS message of its
    /// own. Default `true`: it costs each recipient one write per burst rather than one per
    /// message.
    pub join_frames: bool,
}

impl Default for StompConfig {
    fn default() -> Self {
        StompConfig {
            broker_prefixes: vec!["/topic".to_owned(), "/queue".to_owned()],
            app_prefix: "/app".to_owned(),
            user_prefix: "/user".to_owned(),
            limits: Limits::default(),
            client_heartbeat: Duration::from_secs(10),
            join_frames: true,
        }
    }
}

/// A SEND to an application destination (under [`StompConfig::app_prefix`]), for the
/// application's handler.
#[derive(Clone, Debug)]
pub struct StompMessage {
    /// The sender's channel.
    pub channel: Channel,
    /// The sender's STOMP user: the one the CONNECT login hook named, else the channel's
    /// (from the auth hook), else none.
    pub user: Option<String>,
    /// The broker, to answer the sender ([`StompBroker::send_to_user`]) or publish anywhere.
    pub broker: StompBroker,
    /// The destination, prefix included (`/app/echo`).
    pub destination: String,
    /// The frame's headers but those a MESSAGE sets itself or that concern this one frame
    /// (`destination`, `content-length`, `receipt`, `transaction`, `message-id`,
    /// `subscription`, `ack`).
    pub headers: Vec<(String, String)>,
    /// The body, as text.
    pub body: String,
}

impl StompMessage {
    /// Publishes `body` to the sender's user destination `destination` (`/queue/echo`: what
    /// its sessions subscribed to `/user/queue/echo` receive), as Spring's `@SendToUser` does:
    /// every session of the sender's user, or only the sender's session when it has no user.
    pub async fn reply(&self, destination: &str, body: impl Into<String>) -> Result<Offset, Error> {
        let user = user_key(self.user.as_deref(), &self.channel);
        self.broker.send_to_user(&user, destination, body).await
    }
}

/// Whose user destinations a session's are: its user's, or, without one, its own.
/// An anonymous session's key starts with `$`, which a SEND from a client cannot name
/// ([`send_topic`]): its user destinations are reachable only by the application.
fn user_key(user: Option<&str>, channel: &Channel) -> String {
    match user {
        Some(user) => user.to_owned(),
        None => format!("${}", channel.id()),
    }
}

/// What a CONNECT (or STOMP) frame offers as credentials, for the login hook.
#[derive(Clone, Debug, Default)]
pub struct StompLogin {
    /// The `login` header.
    pub login: Option<String>,
    /// The `passcode` header.
    pub passcode: Option<String>,
    /// The `host` header.
    pub host: Option<String>,
}

/// Publishes to STOMP destinations from anywhere in the application: what a client's SEND to
/// the destination would publish, on every node. Get one from
/// [`Tidings::stomp`](crate::Tidings::stomp).
#[derive(Clone)]
pub struct StompBroker {
    hub: Hub,
    config: Arc<StompConfig>,
}

impl StompBroker {
    pub(crate) fn new(hub: Hub, config: Arc<StompConfig>) -> Self {
        StompBroker { hub, config }
    }

    /// Publishes `body` to `destination`: a broker destination (`/topic/news`), or a user
    /// destination naming its user (`/user/alice/queue/inbox`, with a `/` in the name written
    /// `%2F`). Fails with [`Error::InvalidDestination`] for any other destination.
    pub async fn send(&self, destination: &str, body: impl Into<String>) -> Result<Offset, Error> {
        self.send_with_headers(destination, Vec::new(), body).await
    }

    /// [`send`](StompBroker::send) with headers that every MESSAGE of it carries. Headers a
    /// MESSAGE sets itself (`destination`, `message-id`, `subscription`, `content-length`, `ack`)
    /// and those that belong to a SEND frame (`receipt`, `transaction`) are dropped.
    pub async fn send_with_headers(
        &self,
        destination: &str,
        headers: Vec<(String, String)>,
        body: impl Into<String>,
    ) -> Result<Offset, Error> {
        let topic = send_topic(&self.config, destination).map_err(Error::InvalidDestination)?;
        let headers = headers
            .into_iter()
            .filter(|(name, _)| !DROPPED.contains(&name.as_str()))
            .collect();
        self.hub
            .publish(&topic, Payload::with_headers(body.into(), headers))
            .await
    }

    /// Publishes `body` to every session of `user` subscribed to the user destination
    /// `destination` (`/queue/echo`: its sessions subscribe to `/user/queue/echo`), as Spring's
    /// `convertAndSendToUser` does. Fails with [`Error::InvalidDestination`] for a destination
    /// outside the broker prefixes, and for a user name that is empty, longer than 128 bytes or
    /// holds control characters.
    pub async fn send_to_user(
        &self,
        user: &str,
        destination: &str,
        body: impl Into<String>,
    ) -> Result<Offset, Error> {
        broker_topic(&self.config, destination).map_err(Error::InvalidDestination)?;
        if let Some(fault) = bad_user_key(user) {
            return Err(Error::InvalidDestination(fault.to_owned()));
        }
        let payload = Payload::with_headers(body.into(), Vec::new());
        self.hub
            .publish(&user_topic(user, destination), payload)
            .await
    }

    /// The configuration of the STOMP service.
    pub fn config(&self) -> &StompConfig {
        &self.config
    }
}

impl std::fmt::Debug for StompBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StompBroker")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What the application set for STOMP: its handler of application destinations and its CONNECT
/// check.
#[derive(Clone, Default)]
pub(crate) struct StompHandlers {
    pub(crate) send: Option<SendHandler>,
    pub(crate) login: Option<LoginHook>,
}

/// Runs for every SEND to an application destination.
pub(crate) type SendHandler = Arc<dyn Fn(StompMessage) -> BoxFuture<'static, ()> + Send + Sync>;
/// Checks a CONNECT's credentials for the channel: `Ok(Some(user))` makes `user` the session's
/// STOMP user, `Ok(None)` keeps the channel's, `Err` refuses the session with its text.
pub(crate) type LoginHook = Arc<
    dyn Fn(Channel, StompLogin) -> BoxFuture<'static, Result<Option<String>, String>> + Send + Sync,
>;

/// Everything a STOMP protocol instance needs of its service.
#[derive(Clone)]
pub(crate) struct StompService {
    pub(crate) broker: StompBroker,
    pub(crate) handlers: StompHandlers,
}

impl StompService {
    fn config(&self) -> &StompConfig {
        &self.broker.config
    }
}

/// How STOMP frames travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Envelope {
    /// Each frame is one WebSocket text message (`<prefix>/websocket`).
    WebSocket,
    /// Each frame is one SockJS message, on every SockJS transport.
    SockJs,
}

/// STOMP on one connection (or one HTTP request of a SockJS session).
pub(crate) struct Stomp {
    envelope: Envelope,
    service: StompService,
    decoder: Decoder,
    /// The negotiated version, once the session is connected (on any connection of it).
    version: Option<Version>,
    /// The STOMP user the login hook named, if it named one.
    login: Option<String>,
    /// The subscriptions of each topic this session follows under a label.
    labels: BTreeMap<Topic, Vec<Sub>>,
    /// Set once the session failed: nothing more the client sends is read.
    failed: bool,
    /// How long the client may stay silent, once it agreed to send heart-beats.
    quiet: Option<Duration>,
    /// Whether the client asked for the server's heart-beats on this WebSocket.
    beats: bool,
}

/// One STOMP subscription of a topic: its id and how the client acknowledges.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Sub {
    id: String,
    /// `ack: client` or `client-individual`: every MESSAGE carries an `ack` header.
    acks: bool,
}

impl Sub {
    /// Subscriptions as the label of their topic: one per line, each its id after `a` (`ack:
    /// auto`) or `c` (the client acknowledges).
    fn label(subs: &[Sub]) -> String {
        let mut label = String::new();
        for (i, sub) in subs.iter().enumerate() {
            if i > 0 {
                label.push('\n');
            }
            label.push(if sub.acks { 'c' } else { 'a' });
            label.push_str(&sub.id);
        }
        label
    }

    /// The subscriptions a label names.
    fn parse(label: &str) -> impl Iterator<Item = Sub> + '_ {
        Sub::each(label).map(|(id, acks)| Sub {
            id: id.to_owned(),
            acks,
        })
    }

    /// The id and `acks` of each subscription a label names, without copying them.
    fn each(label: &str) -> impl Iterator<Item = (&str, bool)> {
        label.split('\n').filter_map(|line| {
            let acks = match line.as_bytes().first()? {
                b'c' => true,
                b'a' => false,
                _ => return None,
            };
            Some((&line[1..], acks))
        })
    }
}

/// The label of a session's private topic: the negotiated version, then the login hook's user
/// on a second line.
fn session_label(version: Version, login: Option<&str>) -> String {
    match login {
        Some(user) => format!("{}\n{user}", version.as_str()),
        None => version.as_str().to_owned(),
    }
}

/// A frame the server refuses: answered with ERROR, then the session is closed.
struct Fault {
    message: String,
    receipt: Option<String>,
    headers: Vec<(String, String)>,
}

impl Fault {
    fn new(message: impl Into<String>, frame: Option<&StompFrame>) -> Self {
        Fault {
            message: message.into(),
            receipt: frame.and_then(|f| f.header("receipt")).map(str::to_owned),
            headers: Vec::new(),
        }
    }
}

impl Stomp {
    /// STOMP for a connection of the session `state` (`None`: a session this connection
    /// opens).
    pub(crate) fn new(
        envelope: Envelope,
        service: StompService,
        state: Option<&ChannelState>,
    ) -> Self {
        let mut stomp = Stomp {
            envelope,
            decoder: Decoder::new(service.config().limits),
            service,
            version: None,
            login: None,
            labels: BTreeMap::new(),
            failed: false,
            quiet: None,
            beats: false,
        };
        let Some(state) = state else {
            return stomp;
        };
        for (topic, label) in &state.labels {
            if topic.private_to() == Some(state.id) {
                let (version, login) = match label.split_once('\n') {
                    Some((version, user)) => (version, Some(user.to_owned())),
                    None => (label.as_str(), None),
                };
                stomp.version = version.parse().ok();
                stomp.login = login;
            } else {
                stomp
                    .labels
                    .insert(topic.clone(), Sub::parse(label).collect());
            }
        }
        if let Some(version) = stomp.version {
            stomp.decoder.set_version(version);
        }
        stomp
    }

    /// The session's STOMP user: the login hook's, else the channel's.
    fn user<'a>(&'a self, session: &'a Session) -> Option<&'a str> {
        self.login.as_deref().or(session.channel.user())
    }

    /// Wraps STOMP frames for the envelope.
    fn wrap(&self, frames: Vec<Piece<'_>>, out: &mut Vec<Frame>) {
        if frames.is_empty() {
            return;
        }
        match self.envelope {
            Envelope::WebSocket if frames.len() > 1 && self.service.config().join_frames => {
                let len = frames.iter().map(|f| f.as_str().len()).sum::<usize>();
                let mut joined = String::with_capacity(len.min(JOINED_LIMIT));
                for frame in &frames {
                    let frame = frame.as_str();
                    if !joined.is_empty() && joined.len() + frame.len() > JOINED_LIMIT {
                        out.push(Frame::new(std::mem::take(&mut joined)));
                    }
                    joined.push_str(frame);
                }
                out.push(Frame::new(joined));
            }
            Envelope::WebSocket => {
                out.extend(frames.into_iter().map(|f| Frame::new(f.into_text())))
            }
            Envelope::SockJs => {
                let len = frames.iter().map(|f| f.as_str().len() + 8).sum::<usize>() + 2;
                let mut array = String::with_capacity(len);
                array.push_str("a[");
                for (i, frame) in frames.iter().enumerate() {
                    if i > 0 {
                        array.push(',');
                    }
                    frame.push_json(&mut array);
                }
                array.push(']');
                out.push(Frame::new(array));
            }
        }
    }

    async fn handle(&mut self, session: &Session, frame: StompFrame) -> Result<(), Fault> {
        let command = frame.command;
        if self.version.is_none() && !matches!(command, Command::Connect | Command::Stomp) {
            return Err(Fault::new(
                format!("{command} before CONNECT: connect first"),
                Some(&frame),
            ));
        }
        match command {
            Command::Connect | Command::Stomp => self.connect(session, &frame).await?,
            Command::Send => self.send(session, &frame).await?,
            Command::Subscribe => self.subscribe(session, &frame).await?,
            Command::Unsubscribe => self.unsubscribe(session, &frame).await?,
            // The simple broker of Spring ignores acknowledgements too: messages are delivered
            // once, in order, and resumed by position, not redelivered.
            Command::Ack | Command::Nack => {}
            Command::Begin | Command::Commit | Command::Abort => {
                return Err(Fault::new(
                    "transactions are not supported (BEGIN, COMMIT, ABORT)",
                    Some(&frame),
                ));
            }
            Command::Disconnect => {
                self.receipt(session, &frame).await?;
                close(session, CloseCode::NORMAL, "Client disconnected").await?;
                self.failed = true;
                return Ok(());
            }
            Command::Connected | Command::Message | Command::Receipt | Command::Error => {
                return Err(Fault::new(
                    format!("{command} is a server frame"),
                    Some(&frame),
                ));
            }
        }
        self.receipt(session, &frame).await
    }

    async fn receipt(&self, session: &Session, frame: &StompFrame) -> Result<(), Fault> {
        if let Some(receipt) = frame.header("receipt") {
            let answer = StompFrame::new(Command::Receipt).with_header("receipt-id", receipt);
            reply(session, &answer).await?;
        }
        Ok(())
    }

    async fn connect(&mut self, session: &Session, frame: &StompFrame) -> Result<(), Fault> {
        if self.version.is_some() {
            return Err(Fault::new("already connected", Some(frame)));
        }
        let Some(version) = Version::negotiate(frame.header("accept-version")) else {
            let mut fault = Fault::new(
                "no version in common: this server speaks STOMP 1.2, 1.1 and 1.0",
                Some(frame),
            );
            fault.headers.push(("version".into(), "1.2,1.1,1.0".into()));
            return Err(fault);
        };
        let mut login = None;
        if let Some(hook) = &self.service.handlers.login {
            let offered = StompLogin {
                login: frame.header("login").map(str::to_owned),
                passcode: frame.header("passcode").map(str::to_owned),
                host: frame.header("host").map(str::to_owned),
            };
            login = hook(session.channel.clone(), offered)
                .await
                .map_err(|message| Fault::new(message, Some(frame)))?;
            if let Some(fault) = login.as_deref().and_then(bad_user) {
                let message = format!("the login hook named a user that cannot be: {fault}");
                return Err(Fault::new(message, Some(frame)));
            }
        }
        let (cx, cy) = heart_beat(frame.header("heart-beat"));
        let engine = &session.engine;
        let sx = if cy > 0 {
            millis(engine.config.heartbeat)
        } else {
            0
        };
        let sy = if cx > 0 {
            millis(self.service.config().client_heartbeat)
        } else {
            0
        };
        self.beats = sx > 0;
        if sy > 0 {
            self.quiet = Some(Duration::from_millis(cx.max(sy)) * 3);
        }
        let private = Topic::channel(session.channel.id());
        let how = Subscription {
            from: None,
            label: Some(session_label(version, login.as_deref())),
        };
        engine
            .hub
            .subscribe_with(session.channel.id(), &private, &how)
            .await
            .map_err(|e| Fault::new(e.to_string(), Some(frame)))?;
        let mut connected = StompFrame::new(Command::Connected)
            .with_header("version", version.as_str())
            .with_header("heart-beat", format!("{sx},{sy}"))
            .with_header("server", concat!("tidings/", env!("CARGO_PKG_VERSION")));
        self.login = login;
        if let Some(user) = self.user(session) {
            connected = connected.with_header("user-name", user);
        }
        self.version = Some(version);
        self.decoder.set_version(version);
        reply(session, &connected).await
    }

    async fn send(&mut self, session: &Session, frame: &StompFrame) -> Result<(), Fault> {
        let Some(destination) = frame.header("destination") else {
            return Err(Fault::new("SEND without a destination header", Some(frame)));
        };
        if frame.header("transaction").is_some() {
            return Err(Fault::new(
                "transactions are not supported (BEGIN, COMMIT, ABORT)",
                Some(frame),
            ));
        }
        let Ok(body) = String::from_utf8(frame.body.clone()) else {
            return Err(Fault::new(
                "the body must be UTF-8 text: binary bodies are not supported",
                Some(frame),
            ));
        };
        let headers: Vec<(String, String)> = frame
            .headers
            .iter()
            .filter(|(name, _)| !DROPPED.contains(&name.as_str()))
            .cloned()
            .collect();
        let config = self.service.config();
        if under(destination, &config.app_prefix) {
            let Some(handler) = &self.service.handlers.send else {
                return Err(Fault::new(
                    format!("no application handles {destination}"),
                    Some(frame),
                ));
            };
            let message = StompMessage {
                channel: session.channel.clone(),
                user: self.user(session).map(str::to_owned),
                broker: self.service.broker.clone(),
                destination: destination.to_owned(),
                headers,
                body,
            };
            handler(message).await;
            return Ok(());
        }
        let topic =
            send_topic(config, destination).map_err(|message| Fault::new(message, Some(frame)))?;
        let payload = Payload::with_headers(body, headers);
        session
            .engine
            .hub
            .publish(&topic, payload)
            .await
            .map_err(|e| Fault::new(e.to_string(), Some(frame)))?;
        Ok(())
    }

    async fn subscribe(&mut self, session: &Session, frame: &StompFrame) -> Result<(), Fault> {
        let (Some(id), Some(destination)) = (frame.header("id"), frame.header("destination"))
        else {
            return Err(Fault::new(
                "SUBSCRIBE needs an id and a destination header",
                Some(frame),
            ));
        };
        if id.contains('\n') {
            return Err(Fault::new(
                "a subscription id may not hold a line feed",
                Some(frame),
            ));
        }
        if self.labels.values().flatten().any(|known| known.id == id) {
            return Err(Fault::new(
                format!("subscription id {id:?} is in use"),
                Some(frame),
            ));
        }
        let acks = match frame.header("ack").unwrap_or("auto") {
            "auto" => false,
            "client" | "client-individual" => true,
            other => {
                return Err(Fault::new(
                    format!("ack must be auto, client or client-individual, not {other:?}"),
                    Some(frame),
                ));
            }
        };
        let user = user_key(self.user(session), &session.channel);
        let topic = subscribe_topic(self.service.config(), destination, &user)
            .map_err(|message| Fault::new(message, Some(frame)))?;
        let from = match frame.header(RESUME_HEADER) {
            Some(id) => Some(parse_message_id(id).ok_or_else(|| {
                Fault::new(
                    format!("{RESUME_HEADER} is not a message-id: {id:?}"),
                    Some(frame),
                )
            })?),
            None => None,
        };
        let subs = self.labels.entry(topic.clone()).or_default();
        subs.push(Sub {
            id: id.to_owned(),
            acks,
        });
        let how = Subscription {
            from,
            label: Some(Sub::label(subs)),
        };
        session
            .engine
            .hub
            .subscribe_with(session.channel.id(), &topic, &how)
            .await
            .map_err(|e| Fault::new(e.to_string(), Some(frame)))
    }

    async fn unsubscribe(&mut self, session: &Session, frame: &StompFrame) -> Result<(), Fault> {
        let Some(id) = frame.header("id") else {
            return Err(Fault::new("UNSUBSCRIBE needs an id header", Some(frame)));
        };
        let found = self
            .labels
            .iter_mut()
            .find(|(_, subs)| subs.iter().any(|sub| sub.id == id));
        // An id that names no subscription (gone already) is not worth closing over.
        let Some((topic, subs)) = found else {
            return Ok(());
        };
        subs.retain(|sub| sub.id != id);
        let topic = topic.clone();
        let hub = &session.engine.hub;
        let channel = session.channel.id();
        let done = if subs.is_empty() {
            self.labels.remove(&topic);
            hub.unsubscribe(channel, &topic).await.map(|_| ())
        } else {
            let how = Subscription {
                from: None,
                label: Some(Sub::label(subs)),
            };
            hub.subscribe_with(channel, &topic, &how).await
        };
        done.map_err(|e| Fault::new(e.to_string(), Some(frame)))
    }

    /// Answers a refused frame with ERROR and closes the session.
    async fn fail(&mut self, session: &Session, fault: Fault) {
        self.failed = true;
        let mut error = StompFrame::new(Command::Error).with_header("message", &fault.message);
        if let Some(receipt) = &fault.receipt {
            error = error.with_header("receipt-id", receipt);
        }
        for (name, value) in fault.headers {
            error = error.with_header(name, value);
        }
        let error = error
            .with_header("content-type", "text/plain")
            .with_body(fault.message.clone());
        let sent = async {
            reply(session, &error).await?;
            close(session, CloseCode::INVALID_PAYLOAD, &fault.message).await
        };
        if sent.await.is_err() {
            tracing::warn!(channel = %session.channel.id(), "could not answer a bad STOMP frame");
        }
    }

    /// Acts on one SockJS or WebSocket message: the frames (and heart-beats) it holds.
    async fn receive_one(&mut self, session: &Session, message: String) {
        if self.failed {
            return;
        }
        if let Err(error) = self.decoder.push(message.as_bytes()) {
            return self
                .fail(session, Fault::new(error.to_string(), None))
                .await;
        }
        loop {
            match self.decoder.next_item() {
                // Each SockJS message holds whole frames: the rest of one could be in an HTTP
                // send that another request (or node) reads.
                Ok(None) if self.envelope == Envelope::SockJs && self.decoder.is_partial() => {
                    let fault = Fault::new(
                        "a STOMP frame must be whole within one SockJS message",
                        None,
                    );
                    return self.fail(session, fault).await;
                }
                Ok(None) => return,
                Ok(Some(Item::Heartbeat)) => {}
                Ok(Some(Item::Frame(frame))) => {
                    if let Err(fault) = self.handle(session, frame).await {
                        return self.fail(session, fault).await;
                    }
                    if self.failed {
                        return;
                    }
                }
                Err(error) => {
                    return self
                        .fail(session, Fault::new(error.to_string(), None))
                        .await;
                }
            }
        }
    }
}

/// The most bytes of frames joined into one WebSocket message ([`StompConfig::join_frames`]):
/// a longer burst goes out in several, each within what clients commonly accept in one
/// message (64 KiB). A frame longer than this alone is one message.
const JOINED_LIMIT: usize = 64 * 1024;

/// Headers of a SEND that do not travel with the message.
const DROPPED: &[&str] = &[
    "destination",
    "content-length",
    "receipt",
    "transaction",
    "message-id",
    "subscription",
    "ack",
];

/// The SUBSCRIBE header that resumes a subscription after a message-id a client saw.
pub const RESUME_HEADER: &str = "resume-after";

/// `client-x,client-y` of a CONNECT's `heart-beat`, in milliseconds (0,0 when absent or bad).
fn heart_beat(header: Option<&str>) -> (u64, u64) {
    let parse = |v: &str| v.trim().parse::<u64>().ok();
    header
        .and_then(|h| h.split_once(','))
        .and_then(|(x, y)| Some((parse(x)?, parse(y)?)))
        .unwrap_or((0, 0))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Whether `destination` is `prefix` or under it (`/app` and `/app/x`, not `/apple`).
fn under(destination: &str, prefix: &str) -> bool {
    destination
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Topic names of user destinations: `$stomp-user:<length of user>:<user><destination>`.
const USER_TOPIC: &str = "$stomp-user:";

/// The topic of `destination` (such as `/queue/x`) of `user`.
pub(crate) fn user_topic(user: &str, destination: &str) -> Topic {
    Topic::from_stored(&format!("{USER_TOPIC}{}:{user}{destination}", user.len()))
}

/// The topic of a broker destination.
fn broker_topic(config: &StompConfig, destination: &str) -> Result<Topic, String> {
    if !config.broker_prefixes.iter().any(|p| under(destination, p)) {
        return Err(format!(
            "no broker destination: {destination:?} is not under {}",
            config.broker_prefixes.join(", ")
        ));
    }
    Topic::new(destination).map_err(|e| e.to_string())
}

/// The longest user name a user destination can name, in bytes.
const MAX_USER: usize = 128;

/// Why `user` cannot be the user of user destinations, if it cannot: it must be 1 to
/// [`MAX_USER`] bytes without control characters, and must not start with `$`, which marks
/// the private key of an anonymous session ([`user_key`]).
fn bad_user(user: &str) -> Option<&'static str> {
    if user.starts_with('$') {
        Some("the user destinations of anonymous sessions are their own")
    } else {
        bad_user_key(user)
    }
}

/// [`bad_user`] without the `$` rule: what the application may name in
/// [`StompBroker::send_to_user`], anonymous sessions' keys included.
fn bad_user_key(user: &str) -> Option<&'static str> {
    if user.is_empty() || user.len() > MAX_USER {
        Some("a user name is 1 to 128 bytes")
    } else if user.contains(char::is_control) {
        Some("a user name has no control characters")
    } else {
        None
    }
}

/// The topic a SEND (from a client or the application) to `destination` publishes to.
pub(crate) fn send_topic(config: &StompConfig, destination: &str) -> Result<Topic, String> {
    if let Some(rest) = destination
        .strip_prefix(&config.user_prefix)
        .and_then(|r| r.strip_prefix('/'))
    {
        let (user, target) = rest
            .split_once('/')
            .ok_or_else(|| format!("a user destination is {}/{{user}}/…", config.user_prefix))?;
        let user = user.replace("%2F", "/").replace("%2f", "/");
        if let Some(fault) = bad_user(&user) {
            return Err(fault.to_owned());
        }
        let target = format!("/{target}");
        broker_topic(config, &target)?;
        return Ok(user_topic(&user, &target));
    }
    broker_topic(config, destination)
}

/// The topic a SUBSCRIBE of `user`'s session to `destination` follows.
fn subscribe_topic(config: &StompConfig, destination: &str, user: &str) -> Result<Topic, String> {
    match destination.strip_prefix(&config.user_prefix) {
        Some(target) if target.starts_with('/') => {
            broker_topic(config, target)?;
            Ok(user_topic(user, target))
        }
        _ => broker_topic(config, destination),
    }
}

/// The destination a MESSAGE of `topic` names: a user topic is `/user/…` to its subscriber.
fn destination_of(config: &StompConfig, topic: &Topic) -> String {
    let name = topic.as_str();
    if let Some(rest) = name.strip_prefix(USER_TOPIC)
        && let Some((len, rest)) = rest.split_once(':')
        && let Ok(len) = len.parse::<usize>()
        && let Some(target) = rest.get(len..)
    {
        return format!("{}{target}", config.user_prefix);
    }
    name.to_owned()
}

/// A message's `message-id`: its position in its topic, `<epoch in hex>-<offset>`.
fn message_id(cursor: Cursor) -> String {
    format!("{:x}-{}", cursor.epoch.0, cursor.offset.0)
}

/// The cursor a `message-id` names.
fn parse_message_id(id: &str) -> Option<Cursor> {
    let (epoch, offset) = id.split_once('-')?;
    let epoch = u64::from_str_radix(epoch, 16).ok()?;
    Some(Cursor::new(Epoch(epoch), Offset(offset.parse().ok()?)))
}

/// One frame of a batch: bytes a message's recipients share, borrowed (joined into one
/// WebSocket message without touching their reference count), or this recipient's own.
enum Piece<'a> {
    /// The common frame of a message ([`StompShared::frame`]).
    Shared(&'a StompShared),
    Own(Utf8Bytes),
}

impl Piece<'_> {
    fn as_str(&self) -> &str {
        match self {
            Piece::Shared(shared) => shared.frame.as_str(),
            Piece::Own(text) => text.as_str(),
        }
    }

    fn into_text(self) -> Utf8Bytes {
        match self {
            Piece::Shared(shared) => shared.frame.clone(),
            Piece::Own(text) => text,
        }
    }

    /// Appends the frame as a quoted JSON string with SockJS's escapes: a shared frame's is
    /// escaped once for all its recipients.
    fn push_json(&self, out: &mut String) {
        match self {
            Piece::Shared(shared) => out.push_str(shared.json.get_or_init(|| {
                let mut json = String::new();
                push_json_string(&mut json, shared.frame.as_str());
                json
            })),
            Piece::Own(text) => push_json_string(out, text.as_str()),
        }
    }
}

impl StompShared {
    /// The MESSAGE frame of `delivered` for the subscription `id`, with `ack: auto`.
    fn new(config: &StompConfig, delivered: &Delivered, id: &str) -> StompShared {
        let payload = &delivered.payload;
        let body = payload.text();
        let mut out = Vec::with_capacity(128 + id.len() + body.len());
        out.extend_from_slice(b"MESSAGE\n");
        push_header(&mut out, "subscription", id);
        let rest = out.len();
        push_header(&mut out, "message-id", &message_id(delivered.cursor));
        push_header(
            &mut out,
            "destination",
            &destination_of(config, &delivered.topic),
        );
        for (name, value) in payload.headers() {
            push_header(&mut out, name, value);
        }
        let mut length = String::new();
        let _ = write!(length, "{}", body.len());
        push_header(&mut out, "content-length", &length);
        out.push(b'\n');
        out.extend_from_slice(body.as_bytes());
        out.push(0);
        StompShared {
            topic: delivered.topic.clone(),
            cursor: delivered.cursor,
            user_prefix: config.user_prefix.as_str().into(),
            common: id.into(),
            json: OnceLock::new(),
            // Built from `str` pieces, so always UTF-8.
            frame: String::from_utf8(out).unwrap_or_default().into(),
            rest,
        }
    }

    /// Whether this is the frame of `delivered` under `config`.
    fn serves(&self, config: &StompConfig, delivered: &Delivered) -> bool {
        self.cursor == delivered.cursor
            && self.topic == delivered.topic
            && *self.user_prefix == *config.user_prefix
    }

    /// The whole frame for the subscription `id`: shared when it is the common one.
    fn frame(&self, id: &str, acks: bool) -> Piece<'_> {
        if !acks && *self.common == *id {
            return Piece::Shared(self);
        }
        let rest = &self.frame.as_str()[self.rest..];
        let mut out = Vec::with_capacity(64 + id.len() + rest.len());
        out.extend_from_slice(b"MESSAGE\n");
        push_header(&mut out, "subscription", id);
        if acks {
            push_header(&mut out, "ack", &message_id(self.cursor));
        }
        out.extend_from_slice(rest.as_bytes());
        // Built from `str` pieces, so always UTF-8.
        Piece::Own(String::from_utf8(out).unwrap_or_default().into())
    }
}

/// Appends the header line `name:value` of a MESSAGE, escaped as 1.2 escapes it whatever the
/// version, as Spring does: values with `:`, `\`, CR or LF are rare, and only 1.0 clients would
/// see the escapes.
fn push_header(out: &mut Vec<u8>, name: &str, value: &str) {
    tidings_core::stomp::push_escaped(out, name, true, Version::V1_2);
    out.push(b':');
    tidings_core::stomp::push_escaped(out, value, true, Version::V1_2);
    out.push(b'\n');
}

async fn reply(session: &Session, frame: &StompFrame) -> Result<(), Fault> {
    let text = String::from_utf8(frame.encode(Version::V1_2)).unwrap_or_default();
    session
        .reply(text)
        .await
        .map_err(|e| Fault::new(e.to_string(), None))
}

async fn close(session: &Session, code: CloseCode, reason: &str) -> Result<(), Fault> {
    session
        .engine
        .hub
        .close_with(session.channel.id(), code, reason)
        .await
        .map_err(|e| Fault::new(e.to_string(), None))
}

impl Protocol for Stomp {
    const NAME: &'static str = "stomp";

    fn opened(&mut self, out: &mut Vec<Frame>) {
        if self.envelope == Envelope::SockJs {
            out.push(Frame::new(Utf8Bytes::from_static(sockjs::OPEN)));
        }
    }

    fn messages(&mut self, messages: &[Delivered], out: &mut Vec<Frame>) {
        let config = self.service.config();
        let mut frames = Vec::with_capacity(messages.len());
        for delivered in messages {
            if delivered.reply {
                frames.push(Piece::Own(Texts::text(&delivered.payload)));
                continue;
            }
            // Only what came through a subscription: a STOMP client has no other way to
            // receive a message (what is sent to the channel itself, `Channel::send`, has none;
            // the label of the private topic is the session's own).
            let Some(label) = &delivered.label else {
                continue;
            };
            if delivered.topic.private_to().is_some() {
                continue;
            }
            let first = Sub::each(label).next().map_or("", |(id, _)| id);
            if let Some(texts) = delivered.payload.shared_form(Texts::build) {
                let shared = texts
                    .stomp
                    .get_or_init(|| StompShared::new(config, delivered, first));
                if shared.serves(config, delivered) {
                    frames.extend(Sub::each(label).map(|(id, acks)| shared.frame(id, acks)));
                    continue;
                }
            }
            // Built apart: the payload holds no texts, or those of another delivery (see
            // `StompShared::topic`).
            let own = StompShared::new(config, delivered, first);
            let built =
                Sub::each(label).map(|(id, acks)| Piece::Own(own.frame(id, acks).into_text()));
            frames.extend(built);
        }
        self.wrap(frames, out);
    }

    /// An EOL, STOMP's heart-beat. Over SockJS always (a SockJS `h` never reaches the STOMP
    /// client, and an EOL between frames is harmless to one that asked for no heart-beats);
    /// on a WebSocket only when the client asked for them, else the transport's ping.
    fn heartbeat(&mut self, out: &mut Vec<Frame>) {
        if self.envelope == Envelope::SockJs || self.beats {
            self.wrap(vec![Piece::Own(Utf8Bytes::from_static("\n"))], out);
        }
    }

    fn close(&mut self, closed: &Closed, out: &mut Vec<Frame>) {
        // A refused frame was answered with its ERROR already (by this instance, or over
        // SockJS by the one that read it); a DISCONNECT with its RECEIPT.
        let answered = self.failed
            || closed.code == CloseCode::NORMAL
            || (self.envelope == Envelope::SockJs && closed.code == CloseCode::INVALID_PAYLOAD);
        if !answered {
            let error = StompFrame::new(Command::Error)
                .with_header("message", &closed.reason)
                .with_header("content-type", "text/plain")
                .with_body(closed.reason.clone());
            let text = String::from_utf8(error.encode(Version::V1_2)).unwrap_or_default();
            self.wrap(vec![Piece::Own(text.into())], out);
        }
        if self.envelope == Envelope::SockJs {
            let reason = tidings_core::close::truncate_reason(&closed.reason);
            out.push(Frame::new(sockjs::close_frame(closed.code, reason)));
        }
    }

    fn decode(&mut self, text: &str) -> Result<Vec<String>, Closed> {
        match self.envelope {
            Envelope::WebSocket => Ok(vec![text.to_owned()]),
            Envelope::SockJs => {
                sockjs::parse_ws_message(text).map_err(|_| Closed::by(CloseCode::INVALID_PAYLOAD))
            }
        }
    }

    async fn receive(&mut self, session: &Session, messages: Vec<String>) {
        for message in messages {
            self.receive_one(session, message).await;
        }
    }

    fn quiet_limit(&self) -> Option<Duration> {
        self.quiet
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_map_to_topics_and_back() {
        let config = StompConfig::default();
        let user = send_topic(&config, "/user/a:b%2Fc/queue/x").expect("a user destination");
        assert_eq!(
            user,
            subscribe_topic(&config, "/user/queue/x", "a:b/c").expect("ok")
        );
        assert_eq!(destination_of(&config, &user), "/user/queue/x");
        let room = send_topic(&config, "/topic/room").expect("broker");
        assert_eq!(room.as_str(), "/topic/room");
        assert_eq!(destination_of(&config, &room), "/topic/room");
        for bad in [
            "/app/x",
            "/topics/x",
            "/user/bob",
            "/user/bob/other/x",
            "chat",
        ] {
            assert!(send_topic(&config, bad).is_err(), "{bad}");
        }
        assert!(under("/app", "/app") && under("/app/x", "/app") && !under("/apple", "/app"));
    }

    #[test]
    fn subscriptions_survive_their_label() {
        let subs = vec![
            Sub {
                id: "sub-0".into(),
                acks: false,
            },
            Sub {
                id: "x:y".into(),
                acks: true,
            },
        ];
        let label = Sub::label(&subs);
        assert_eq!(label, "asub-0\ncx:y");
        assert_eq!(Sub::parse(&label).collect::<Vec<_>>(), subs);
    }

    #[test]
    fn message_ids_are_positions() {
        let cursor = Cursor::new(Epoch(0xabc), Offset(42));
        assert_eq!(message_id(cursor), "abc-42");
        assert_eq!(parse_message_id("abc-42"), Some(cursor));
        assert_eq!(parse_message_id("abc:42"), None);
    }

    #[test]
    fn a_message_frame_is_built_once_for_the_common_subscription_id() {
        let config = StompConfig::default();
        let payload = Payload::with_headers("hi", vec![("x-a".into(), "1:2".into())]);
        let delivered = Delivered {
            payload,
            topic: Topic::new("/topic/t").expect("a topic"),
            cursor: Cursor::new(Epoch(0xe), Offset(7)),
            label: None,
            reply: false,
        };
        let shared = StompShared::new(&config, &delivered, "sub-0");
        let first = shared.frame("sub-0", false);
        assert_eq!(
            first.as_str(),
            "MESSAGE\nsubscription:sub-0\nmessage-id:e-7\ndestination:/topic/t\n\
             x-a:1\\c2\ncontent-length:2\n\nhi\0"
        );
        // The same bytes, not a copy, for every subscriber with that id.
        let again = shared.frame("sub-0", false);
        assert_eq!(again.as_str().as_ptr(), first.as_str().as_ptr());
        // Over SockJS, its JSON string is escaped once and copied after that.
        let (mut one, mut two) = (String::new(), String::new());
        first.push_json(&mut one);
        again.push_json(&mut two);
        let mut expected = String::new();
        push_json_string(&mut expected, first.as_str());
        assert_eq!(
            (one.as_str(), two.as_str()),
            (expected.as_str(), expected.as_str())
        );
        assert!(shared.json.get().is_some());
        let other = shared.frame("x", false);
        assert!(
            other
                .as_str()
                .starts_with("MESSAGE\nsubscription:x\nmessage-id:e-7\n")
        );
        let acks = shared.frame("sub-0", true);
        assert!(
            acks.as_str()
                .starts_with("MESSAGE\nsubscription:sub-0\nack:e-7\nmessage-id:e-7\n")
        );
    }

    #[test]
    fn heart_beats_are_read_leniently() {
        assert_eq!(heart_beat(Some("10000,5000")), (10000, 5000));
        assert_eq!(heart_beat(Some(" 1 , 2 ")), (1, 2));
        assert_eq!(heart_beat(Some("x")), (0, 0));
        assert_eq!(heart_beat(None), (0, 0));
    }
}
