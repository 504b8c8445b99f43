//! The task behind a [`Connection`](crate::Connection): negotiates, picks a transport, reads
//! its frames into events, and on every end reconnects from the last position: at once after a
//! clean end, after a jittered backoff after a failure, on the next transport when one never
//! opened.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, timeout};
use url::Url;

use crate::error::Error;
use crate::frame::Frame;
use crate::transport::{Failure, Target, Transport, checked};
use crate::{Event, Options};

/// A streaming response whose first frame took longer than this, and whose end came right after
/// it, was held back by a buffering proxy.
const BUFFERED: Duration = Duration::from_secs(1);
/// "Right after", for [`BUFFERED`].
const AT_ONCE: Duration = Duration::from_millis(50);
/// What the client assumes of a session it resumes without negotiating (the defaults).
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(25);

/// What `negotiate` answers (the members this client uses).
#[derive(Deserialize)]
struct Negotiated {
    token: String,
    transports: Vec<String>,
    heartbeat_ms: u64,
    poll_timeout_ms: u64,
}

/// How one transport connection ended.
enum Outcome {
    /// Cleanly (`end`, a poll answered): reconnect at once.
    Ended,
    /// The session is closed.
    Closed {
        code: u16,
        reason: String,
        reconnect: bool,
    },
    /// The network or the server failed it. `step_down`: it never opened, went silent or
    /// arrived buffered, so the next transport is tried; otherwise it is tried again.
    Lost { step_down: bool, why: String },
    /// The server no longer knows the session.
    UnknownSession,
    /// Nothing to retry.
    Fatal(Error),
    /// The application dropped its connection.
    Stopped,
}

pub(crate) struct Driver {
    http: reqwest::Client,
    base: Url,
    options: Options,
    query: String,
    events: mpsc::Sender<Result<Event, Error>>,
    /// The session's token, for `send`, `close` and `resumption`.
    session: watch::Sender<Option<String>>,
    token: Option<String>,
    /// The position after the last frame read.
    pos: Option<String>,
    /// What the service offers, and its timing.
    offered: Vec<Transport>,
    heartbeat: Duration,
    poll_timeout: Duration,
    /// Transports that did not open, and since when the client is on a worse one.
    failed: HashSet<Transport>,
    fell_back: Option<Instant>,
    /// The transport last given up, told to the server (`fb=`) by the next connection.
    gave_up: Option<Transport>,
    /// The transport that opened last.
    current: Option<Transport>,
    /// Failures in a row, for the backoff.
    attempt: u32,
}

impl Driver {
    pub(crate) fn new(
        http: reqwest::Client,
        base: Url,
        options: Options,
        events: mpsc::Sender<Result<Event, Error>>,
        session: watch::Sender<Option<String>>,
    ) -> Driver {
        let resume = options.resume.clone();
        Driver {
            http,
            query: encoded_query(&options.query),
            base,
            events,
            session,
            token: resume.as_ref().map(|r| r.token.clone()),
            pos: resume.and_then(|r| r.position),
            offered: Transport::ALL.to_vec(),
            heartbeat: DEFAULT_HEARTBEAT,
            poll_timeout: DEFAULT_HEARTBEAT,
            failed: HashSet::new(),
            fell_back: None,
            gave_up: None,
            current: None,
            attempt: 0,
            options,
        }
    }

    pub(crate) async fn run(mut self) {
        loop {
            if self.token.is_none() {
                match self.negotiate().await {
                    Ok(()) => {}
                    Err(Failure::Fatal(error)) => {
                        let _ = self.events.send(Err(error)).await;
                        return;
                    }
                    Err(Failure::UnknownSession | Failure::Broken(_)) => {
                        self.back_off().await;
                        continue;
                    }
                }
            }
            let transport = match self.pick() {
                Ok(transport) => transport,
                Err(error) => {
                    let _ = self.events.send(Err(error)).await;
                    return;
                }
            };
            match self.connection(transport).await {
                Outcome::Ended => {}
                Outcome::Closed {
                    code,
                    reason,
                    reconnect,
                } => {
                    if !reconnect {
                        // `send` and `resumption` see the session is gone.
                        self.session.send_replace(None);
                        let _ = self.events.send(Ok(Event::Closed { code, reason })).await;
                        return;
                    }
                    tracing::debug!(code, %reason, "session closed by the server: a new one");
                    if !self.replace_session().await {
                        return;
                    }
                    self.back_off().await;
                }
                Outcome::UnknownSession => {
                    if !self.replace_session().await {
                        return;
                    }
                }
                Outcome::Lost { step_down, why } => {
                    tracing::debug!(%transport, step_down, %why, "transport lost");
                    if step_down {
                        self.failed.insert(transport);
                        self.fell_back.get_or_insert_with(Instant::now);
                        self.gave_up = Some(transport);
                    }
                    self.back_off().await;
                }
                Outcome::Fatal(error) => {
                    let _ = self.events.send(Err(error)).await;
                    return;
                }
                Outcome::Stopped => return,
            }
        }
    }

    async fn negotiate(&mut self) -> Result<(), Failure> {
        let url = endpoint(&self.base, "native/negotiate", &self.query);
        let response = self
            .http
            .post(url)
            .headers(self.options.headers.clone())
            .send()
            .await
            .map_err(|e| Failure::Broken(e.to_string()))?;
        let body = checked(response)
            .await?
            .text()
            .await
            .map_err(|e| Failure::Broken(e.to_string()))?;
        let negotiated: Negotiated = serde_json::from_str(&body)
            .map_err(|e| Failure::Fatal(Error::Protocol(format!("negotiate: {e}"))))?;
        self.offered = negotiated
            .transports
            .iter()
            .filter_map(|name| Transport::from_name(name))
            .collect();
        self.heartbeat = Duration::from_millis(negotiated.heartbeat_ms);
        self.poll_timeout = Duration::from_millis(negotiated.poll_timeout_ms);
        self.token = Some(negotiated.token.clone());
        self.pos = None;
        self.session.send_replace(Some(negotiated.token));
        Ok(())
    }

    /// Forgets the session (closed, or unknown to the server): the next loop negotiates a new
    /// one, and the application is told it may have missed messages. False once the
    /// application is gone.
    async fn replace_session(&mut self) -> bool {
        self.token = None;
        self.pos = None;
        // The new session's first transport says `Open`, even the same transport again.
        self.current = None;
        self.session.send_replace(None);
        let gap = Event::Gap {
            missed: None,
            position: None,
        };
        self.events.send(Ok(gap)).await.is_ok()
    }

    /// The best transport allowed, offered, and not failed; the failed ones again once
    /// `retry_better_after` has passed, or when all have failed.
    fn pick(&mut self) -> Result<Transport, Error> {
        if self
            .fell_back
            .is_some_and(|since| since.elapsed() >= self.options.retry_better_after)
        {
            self.failed.clear();
            self.fell_back = None;
        }
        let usable: Vec<Transport> = (self.options.transports.iter().copied())
            .filter(|t| self.offered.contains(t))
            .collect();
        let Some(&first) = usable.first() else {
            return Err(Error::Refused {
                status: 0,
                message: "no transport both allowed and offered".into(),
            });
        };
        match usable.iter().find(|t| !self.failed.contains(t)) {
            Some(&transport) => Ok(transport),
            None => {
                self.failed.clear();
                Ok(first)
            }
        }
    }

    /// One connection of `transport`, from the current position, until it ends.
    async fn connection(&mut self, transport: Transport) -> Outcome {
        let Some(token) = self.token.clone() else {
            return Outcome::UnknownSession;
        };
        let target = Target {
            http: &self.http,
            base: &self.base,
            headers: &self.options.headers,
            query: &self.query,
            token: &token,
            pos: self.pos.as_deref(),
            gave_up: self.gave_up.take().filter(|&t| t != transport),
        };
        let started = Instant::now();
        // A poll may wait `poll_timeout` before it answers at all.
        let open_within = match transport {
            Transport::Polling => self.poll_timeout + self.options.open_timeout,
            _ => self.options.open_timeout,
        };
        let mut frames = match timeout(open_within, target.open(transport)).await {
            Err(_) => return lost(true, "did not open in time"),
            Ok(Err(failure)) => return outcome(failure, true),
            Ok(Ok(frames)) => frames,
        };
        let silence = self.heartbeat * self.options.silence_factor + Duration::from_secs(1);
        let mut opened_at: Option<Instant> = None;
        loop {
            let within = match opened_at {
                None => open_within.saturating_sub(started.elapsed()),
                Some(_) if transport == Transport::Polling => open_within,
                Some(_) => silence,
            };
            let frame = match timeout(within, frames.next()).await {
                Err(_) if opened_at.is_none() => return lost(true, "did not open in time"),
                Err(_) => return lost(true, "went silent"),
                Ok(None) => return lost(opened_at.is_none(), "ended without a word"),
                Ok(Some(Err(failure))) => return outcome(failure, opened_at.is_none()),
                Ok(Some(Ok(frame))) => frame,
            };
            if opened_at.is_none() && !matches!(frame, Frame::Open { .. } | Frame::Close { .. }) {
                let why = format!("{frame:?} before `open`");
                return Outcome::Fatal(Error::Protocol(why));
            }
            let position = frame.position().map(str::to_owned);
            match frame {
                Frame::Open { .. } => {
                    opened_at = Some(Instant::now());
                    self.attempt = 0;
                    if self.current != Some(transport) {
                        self.current = Some(transport);
                        if !self.emit(Event::Open { transport }).await {
                            return Outcome::Stopped;
                        }
                    }
                }
                Frame::Messages { data, .. } => {
                    let last = data.len() - 1;
                    for (i, text) in data.into_iter().enumerate() {
                        let position = if i == last { position.clone() } else { None };
                        if !self.emit(Event::Message { text, position }).await {
                            return Outcome::Stopped;
                        }
                    }
                }
                Frame::Gap { missed, .. } => {
                    let gap = Event::Gap {
                        missed,
                        position: position.clone(),
                    };
                    if !self.emit(gap).await {
                        return Outcome::Stopped;
                    }
                }
                Frame::End { .. } => {
                    if let Some(position) = position {
                        self.pos = Some(position);
                    }
                    let first = opened_at.unwrap_or(started);
                    let streaming = matches!(transport, Transport::Sse | Transport::Streaming);
                    if streaming && first - started > BUFFERED && first.elapsed() < AT_ONCE {
                        return lost(true, "arrived in one piece: a proxy buffers it");
                    }
                    return Outcome::Ended;
                }
                Frame::Close {
                    code,
                    reason,
                    reconnect,
                } => {
                    return Outcome::Closed {
                        code,
                        reason,
                        reconnect,
                    };
                }
                Frame::Heartbeat | Frame::Other => {}
            }
            if let Some(position) = position {
                self.pos = Some(position);
            }
        }
    }

    /// Hands `event` to the application; false once it is gone.
    async fn emit(&self, event: Event) -> bool {
        self.events.send(Ok(event)).await.is_ok()
    }

    /// Waits before the next attempt: `backoff_initial` doubled per failure in a row, up to
    /// `backoff_max`, between half and all of it (jitter, so that clients a server dropped
    /// together do not come back together).
    async fn back_off(&mut self) {
        let exponent = self.attempt.min(16);
        self.attempt = self.attempt.saturating_add(1);
        let full = self
            .options
            .backoff_initial
            .saturating_mul(1 << exponent)
            .min(self.options.backoff_max);
        let delay = full.mul_f64(0.5 + rand::random::<f64>() / 2.0);
        tokio::time::sleep(delay).await;
    }
}

fn lost(step_down: bool, why: &str) -> Outcome {
    Outcome::Lost {
        step_down,
        why: why.to_owned(),
    }
}

/// What `failure` of a connection means; `step_down` when it had not opened.
fn outcome(failure: Failure, step_down: bool) -> Outcome {
    match failure {
        Failure::UnknownSession => Outcome::UnknownSession,
        Failure::Fatal(error) => Outcome::Fatal(error),
        Failure::Broken(why) => Outcome::Lost { step_down, why },
    }
}

/// What a failed `send` or `close` reports.
pub(crate) fn failure_error(failure: Failure) -> Error {
    match failure {
        Failure::UnknownSession => Error::Closed,
        Failure::Fatal(error) => error,
        Failure::Broken(why) => Error::Unavailable(why),
    }
}

/// `<base>/<path>?v=2&<query>`.
pub(crate) fn endpoint(base: &Url, path: &str, query: &str) -> Url {
    let mut url = base.clone();
    url.set_path(&format!("{}/{path}", base.path().trim_end_matches('/')));
    let mut all = String::from("v=2");
    if !query.is_empty() {
        all.push('&');
        all.push_str(query);
    }
    url.set_query(Some(&all));
    url
}

/// The caller's query parameters, form-encoded.
pub(crate) fn encoded_query(pairs: &[(String, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}
