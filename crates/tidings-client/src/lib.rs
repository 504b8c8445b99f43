//! A Rust client of [Tidings](https://docs.rs/tidings)' native protocol (`docs/protocol.md`):
//! the promises of the JS client, for workers, command-line tools and tests.
//!
//! It negotiates a session, then takes the best transport the service offers and the caller
//! allows (WebSocket, Server-Sent Events, streaming, polling). A transport that does not open
//! in time, goes silent past the heartbeat, or arrives in one piece (a buffering proxy) is
//! given up for the next; the better ones are tried again later. Every reconnection resumes
//! from the last position, so the application sees every message once and in order, or a
//! [`Event::Gap`] where the server no longer had them.
//!
//! ```no_run
//! use futures::StreamExt;
//! use tidings_client::{Client, Event};
//!
//! # async fn run() -> Result<(), tidings_client::Error> {
//! let mut connection = Client::builder("http://127.0.0.1:3000/rt")
//!     .query("user", "ann")
//!     .connect()?;
//! connection.send("hello").await?;
//! while let Some(event) = connection.next().await {
//!     match event? {
//!         Event::Message { text, .. } => println!("{text}"),
//!         Event::Open { transport } => eprintln!("on {transport}"),
//!         Event::Gap { missed, .. } => eprintln!("missed {missed:?}"),
//!         Event::Closed { code, reason } => eprintln!("closed {code} {reason}"),
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Resuming after a restart
//!
//! [`Connection::resumption`] is the session's token and the position after the last event the
//! application took; [`Builder::resume`] gives it back to a new client, which goes on from
//! there (or reports a gap of unknown size and starts a new session, when the server no longer
//! knows it).
//!
//! # Cancel safety
//!
//! [`Connection`] is a [`Stream`](futures::Stream): `next()` is cancel safe (an event not yet
//! taken stays for the next call). [`Connection::send`] is cancel safe in that a dropped call
//! either sent its request or did not; a message whose answer was lost may have been
//! delivered. The connection works in a task of its own, which ends when the [`Connection`] is
//! dropped or [`closed`](Connection::close).

mod driver;
mod error;
mod frame;
mod transport;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::{mpsc, watch};
use url::Url;

pub use error::Error;
pub use transport::Transport;

/// What happens on a connection, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A transport opened: the first, and each one after a change of transport.
    Open {
        /// Which.
        transport: Transport,
    },
    /// An application message.
    Message {
        /// Its text.
        text: String,
        /// The position after it, on the last message of each batch the server sent (the unit
        /// of resume); `None` on the others.
        position: Option<String>,
    },
    /// Messages were lost: the server no longer had them when the client came back (away past
    /// retention), or the session was replaced by a new one.
    Gap {
        /// How many, when known.
        missed: Option<u64>,
        /// The position after the gap, when the server gave one.
        position: Option<String>,
    },
    /// The session was closed for good, by the server or the application (the close-code table,
    /// `docs/close-codes.md`); no event follows.
    Closed {
        /// The close code.
        code: u16,
        /// The reason.
        reason: String,
    },
}

/// A session's token and a position in it: what a client needs to resume where another left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resumption {
    /// The session's token.
    pub token: String,
    /// The position after the last batch taken, if any was.
    pub position: Option<String>,
}

/// Entry point: [`Client::builder`].
#[derive(Debug)]
pub struct Client;

impl Client {
    /// A client of the Tidings service at `url` (its prefix: `http://host:port/rt`).
    pub fn builder(url: &str) -> Builder {
        Builder {
            url: url.to_owned(),
            options: Options::default(),
            refused: None,
        }
    }
}

/// How a connection behaves; every setting has a default.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub(crate) transports: Vec<Transport>,
    pub(crate) headers: HeaderMap,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) open_timeout: Duration,
    pub(crate) silence_factor: u32,
    pub(crate) backoff_initial: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) retry_better_after: Duration,
    pub(crate) resume: Option<Resumption>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            transports: Transport::ALL.to_vec(),
            headers: HeaderMap::new(),
            query: Vec::new(),
            open_timeout: Duration::from_secs(5),
            silence_factor: 2,
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            retry_better_after: Duration::from_secs(60),
            resume: None,
        }
    }
}

/// Sets up a connection: [`Client::builder`], then [`connect`](Builder::connect).
#[derive(Clone, Debug)]
pub struct Builder {
    url: String,
    options: Options,
    /// What a setter refused, reported by `connect`.
    refused: Option<Error>,
}

impl Builder {
    /// The transports to use, best first (default: all four, WebSocket first). Those the
    /// service does not offer are skipped.
    pub fn transports(mut self, transports: &[Transport]) -> Self {
        self.options.transports = transports.to_vec();
        self
    }

    /// A header for every request (credentials for the service's auth hook, a cookie).
    /// Invalid names or values are refused by [`connect`](Builder::connect).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => {
                self.options.headers.append(name, value);
            }
            _ => self.refused = Some(Error::Header(name.to_owned())),
        }
        self
    }

    /// A query parameter for every request (`?user=ann` for a service whose auth hook reads
    /// it).
    pub fn query(mut self, name: &str, value: &str) -> Self {
        self.options.query.push((name.to_owned(), value.to_owned()));
        self
    }

    /// How long a transport has to open (default 5 s) before the next is tried.
    pub fn open_timeout(mut self, timeout: Duration) -> Self {
        self.options.open_timeout = timeout;
        self
    }

    /// A transport silent for this many heartbeats (default 2, plus a second) is given up.
    pub fn silence_factor(mut self, heartbeats: u32) -> Self {
        self.options.silence_factor = heartbeats.max(1);
        self
    }

    /// The first and the longest wait between attempts (default 0.5 s and 30 s; each failure
    /// doubles it, with jitter).
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.options.backoff_initial = initial;
        self.options.backoff_max = max.max(initial);
        self
    }

    /// How long after falling back the better transports are tried again (default 60 s).
    pub fn retry_better_after(mut self, after: Duration) -> Self {
        self.options.retry_better_after = after;
        self
    }

    /// Resumes the session `resumption` names (from [`Connection::resumption`] of an earlier
    /// client) instead of negotiating a new one.
    pub fn resume(mut self, resumption: Resumption) -> Self {
        self.options.resume = Some(resumption);
        self
    }

    /// Starts connecting, in a task of its own (so within a Tokio runtime); events come from
    /// the returned [`Connection`]. Fails only on a bad URL or header.
    pub fn connect(self) -> Result<Connection, Error> {
        if let Some(refused) = self.refused {
            return Err(refused);
        }
        let base = Url::parse(&self.url).map_err(|e| Error::Url(format!("{}: {e}", self.url)))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(Error::Url(format!("{}: not http or https", self.url)));
        }
        let http = reqwest::Client::builder()
            .build()
            .map_err(|e| Error::Url(e.to_string()))?;
        let (events_tx, events) = mpsc::channel(EVENTS);
        let resume = self.options.resume.clone();
        let (session_tx, session) = watch::channel(resume.as_ref().map(|r| r.token.clone()));
        let token = resume.as_ref().map(|r| r.token.clone());
        let position = resume.and_then(|r| r.position);
        let query = driver::encoded_query(&self.options.query);
        let headers = self.options.headers.clone();
        let driver = driver::Driver::new(
            http.clone(),
            base.clone(),
            self.options,
            events_tx,
            session_tx,
        );
        let task = tokio::spawn(driver.run());
        Ok(Connection {
            events,
            session,
            token,
            position,
            http,
            base,
            task,
            query,
            headers,
        })
    }
}

/// How many events wait for the application before the connection stops reading.
const EVENTS: usize = 1024;

/// A live connection: a [`Stream`] of [`Event`]s (ending after [`Event::Closed`] or an error),
/// and [`send`](Connection::send).
#[derive(Debug)]
pub struct Connection {
    events: mpsc::Receiver<Result<Event, Error>>,
    /// The driver's session: its token as soon as it is negotiated, for sends.
    session: watch::Receiver<Option<String>>,
    /// The session of the events the application took, and the position after the last batch
    /// of them: what [`Connection::resumption`] gives.
    token: Option<String>,
    position: Option<String>,
    http: reqwest::Client,
    base: Url,
    task: tokio::task::JoinHandle<()>,
    query: String,
    /// The caller's headers, for sends and the close too.
    headers: HeaderMap,
}

impl Connection {
    /// Sends `text` to the service's `on_message`, once the session exists (waiting for it).
    pub async fn send(&self, text: &str) -> Result<(), Error> {
        self.send_all(&[text]).await
    }

    /// Sends several messages in one request, in order.
    pub async fn send_all(&self, texts: &[&str]) -> Result<(), Error> {
        let token = self.token().await?;
        let mut url = driver::endpoint(&self.base, "native/send", &self.query);
        url.query_pairs_mut().append_pair("token", &token);
        let body = serde_json::to_string(texts).map_err(|e| Error::Protocol(e.to_string()))?;
        let request = self.http.post(url).headers(self.headers.clone()).body(body);
        let response = request.send().await?;
        transport::checked(response)
            .await
            .map(|_| ())
            .map_err(driver::failure_error)
    }

    /// The session's token and the position after the last batch the application took from
    /// this connection: give it to [`Builder::resume`] to go on from there. `None` before the
    /// session exists.
    pub fn resumption(&self) -> Option<Resumption> {
        Some(Resumption {
            token: self.token.clone()?,
            position: self.position.clone(),
        })
    }

    /// Ends the session (the service's `on_close` sees 1000) and the connection.
    pub async fn close(mut self) -> Result<(), Error> {
        self.task.abort();
        let Some(token) = self.session.borrow().clone() else {
            return Ok(());
        };
        self.events.close();
        let mut url = driver::endpoint(&self.base, "native/close", &self.query);
        url.query_pairs_mut().append_pair("token", &token);
        let request = self.http.post(url).headers(self.headers.clone());
        let response = request.send().await?;
        transport::checked(response)
            .await
            .map(|_| ())
            .map_err(driver::failure_error)
    }

    async fn token(&self) -> Result<String, Error> {
        let mut session = self.session.clone();
        let token = session
            .wait_for(Option::is_some)
            .await
            .map_err(|_| Error::Closed)?;
        token.clone().ok_or(Error::Closed)
    }
}

impl Stream for Connection {
    type Item = Result<Event, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.events.poll_recv(cx);
        match &polled {
            Poll::Ready(Some(Ok(Event::Message {
                position: Some(position),
                ..
            }))) => self.position = Some(position.clone()),
            Poll::Ready(Some(Ok(Event::Gap {
                position: Some(position),
                ..
            }))) => self.position = Some(position.clone()),
            // The session was replaced by a new one: nothing to resume until it opens.
            Poll::Ready(Some(Ok(Event::Gap { position: None, .. }))) => {
                self.token = None;
                self.position = None;
            }
            // Every session's first transport opens with an `Open` (the driver sees to it).
            Poll::Ready(Some(Ok(Event::Open { .. }))) if self.token.is_none() => {
                let token = self.session.borrow().clone();
                self.token = token;
            }
            _ => {}
        }
        polled
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}
