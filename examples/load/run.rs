//! One measurement: start a server child, open the sessions, make sure each one is following
//! the broadcast topic, then fan out, echo or hold idle, and collect what every session saw.
//!
//! Every measured message is `M<tag> <seq> <micros> <padding>`: the sender writes its sequence
//! number and the time it sent it (microseconds on this process's monotonic clock), and each
//! subscriber takes the latency on receipt from the same clock. Before measuring, the publisher
//! sends probes (`P<tag>`) until every subscriber has seen one; only then is a subscriber known
//! to be following the topic, so messages it could not have received do not count against it.
//! An idle run ends with a second round of probes (`F<tag>`): a session that gets one was still
//! open and delivering after the hold.
//!
//! Subscribers are tasks on this process's runtime, each reading one session of the transport
//! under test (`transport.rs`). The publisher is a WebSocket session on a thread of its own
//! (`publisher.rs`); in an echo run, subscriber 0 sends instead, over its own transport. With
//! several nodes (`--nodes`, on Redis), subscriber `i` connects to node `i % nodes` and the
//! publisher to node 0, so every message crosses Redis to reach the other nodes' sessions.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use clap::ValueEnum;
use hdrhistogram::Histogram;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until, timeout_at};

use crate::publisher::{Framing, Publisher};
use crate::server::{self, ServerKind, ServerOptions, Servers};
use crate::transport::{Event, Session, Transport};

/// Largest latency the histograms track, in microseconds; longer ones are recorded as this.
const MAX_LATENCY_US: u64 = 600_000_000;
/// How long the last round of probes of an idle run may take.
const FINAL_PROBE: Duration = Duration::from_secs(15);

/// What a run does once every session is open and following the topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mode {
    /// The publisher sends `--messages` to every session, at `--rate` or as fast as possible.
    Fanout,
    /// The sessions are held open for `--duration` with only heartbeats flowing.
    Idle,
    /// Subscriber 0 sends `--messages` over its own transport, each after the last came back.
    Echo,
}

impl Mode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Fanout => "fanout",
            Mode::Idle => "idle",
            Mode::Echo => "echo",
        }
    }
}

/// What is measured: a server and the transport its sessions use.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Target {
    /// Its name in the report.
    pub(crate) name: &'static str,
    pub(crate) server: ServerKind,
    pub(crate) transport: Transport,
}

/// The knobs of a run, from the command line.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub(crate) mode: Mode,
    pub(crate) subscribers: usize,
    pub(crate) messages: u64,
    /// Messages per second; 0 publishes as fast as the connection takes them.
    pub(crate) rate: u64,
    pub(crate) size: usize,
    /// How long an idle run holds its sessions.
    pub(crate) hold: Duration,
    pub(crate) timeout: Duration,
    pub(crate) connect_concurrency: usize,
    /// How server children are started.
    pub(crate) server: ServerOptions,
    /// Tidings server children per run, sharing one Redis; the baseline always runs one.
    pub(crate) nodes: usize,
}

/// What one run measured.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) target: &'static str,
    pub(crate) subscribers: usize,
    /// Measured messages sent (all of them unless the timeout hit first).
    pub(crate) published: u64,
    /// Unique measured messages received, summed over subscribers.
    pub(crate) delivered: u64,
    /// From the first measured send to the last measured receipt.
    pub(crate) elapsed: Duration,
    /// From the first to the last measured send.
    pub(crate) publish_elapsed: Duration,
    /// Delivery latency over every subscriber; in an echo run, subscriber 0's round trips.
    pub(crate) latency: Histogram<u64>,
    pub(crate) lost: u64,
    pub(crate) duplicated: u64,
    pub(crate) out_of_order: u64,
    /// Sessions that ended before the run did, by close code (0: no close frame).
    pub(crate) closed: BTreeMap<u16, usize>,
    pub(crate) timed_out: bool,
    /// Heartbeats received: the fewest any session got, and the total.
    pub(crate) heartbeats_min: u64,
    pub(crate) heartbeats: u64,
    /// Idle runs: sessions that got the probe sent after the hold.
    pub(crate) alive_at_end: Option<usize>,
    /// Server `VmRSS` before the sessions opened, once all were open, and after an idle hold.
    pub(crate) rss_before_kib: Option<u64>,
    pub(crate) rss_connected_kib: Option<u64>,
    pub(crate) rss_end_kib: Option<u64>,
    /// CPU time of the server and of this process over `cpu_wall`: while messages were in
    /// flight, or during an idle hold.
    pub(crate) server_cpu: Option<Duration>,
    pub(crate) load_cpu: Option<Duration>,
    pub(crate) cpu_wall: Duration,
    /// How long opening every session took.
    pub(crate) connect_elapsed: Duration,
}

impl Outcome {
    pub(crate) fn delivered_per_sec(&self) -> f64 {
        per_sec(self.delivered, self.elapsed)
    }

    pub(crate) fn published_per_sec(&self) -> f64 {
        per_sec(self.published, self.publish_elapsed)
    }

    /// Growth of the server's RSS per session: by the end of an idle hold, else once all were
    /// open.
    pub(crate) fn rss_per_session_kib(&self) -> Option<f64> {
        let before = self.rss_before_kib?;
        let after = self.rss_end_kib.or(self.rss_connected_kib)?;
        Some(after.saturating_sub(before) as f64 / self.subscribers.max(1) as f64)
    }

    /// Share of one CPU the process used over `cpu_wall`, in percent.
    pub(crate) fn cpu_percent(&self, cpu: Option<Duration>) -> Option<f64> {
        let wall = self.cpu_wall.as_secs_f64();
        (wall > 0.0).then_some(cpu?.as_secs_f64() / wall * 100.0)
    }

    /// Server CPU time per delivered message, in microseconds.
    pub(crate) fn server_us_per_delivery(&self) -> Option<f64> {
        (self.delivered > 0).then_some(self.server_cpu?.as_secs_f64() * 1e6 / self.delivered as f64)
    }
}

fn per_sec(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

/// Why a run could not measure anything.
#[derive(Debug)]
pub(crate) struct Failed(pub(crate) String);

impl From<io::Error> for Failed {
    fn from(error: io::Error) -> Self {
        Failed(error.to_string())
    }
}

/// A round of probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Round {
    /// Before measuring: every session follows the topic.
    Ready,
    /// After an idle hold: every session is still open and delivering.
    Final,
}

impl Round {
    pub(crate) fn prefix(self) -> char {
        match self {
            Round::Ready => 'P',
            Round::Final => 'F',
        }
    }
}

/// State every task of a run shares.
pub(crate) struct Shared {
    /// The clock senders and subscribers both read.
    clock: Instant,
    pub(crate) tag: String,
    pub(crate) subscribers: usize,
    /// Messages each subscriber must get to be complete.
    pub(crate) messages: u64,
    /// Subscribers that have seen a probe of each round.
    ready: AtomicUsize,
    alive: AtomicUsize,
    /// Subscribers that are complete or whose connection ended.
    finished: AtomicUsize,
    finished_changed: Notify,
    /// Set when the run's time is up: nothing more is sent.
    pub(crate) halt: AtomicBool,
    /// Measured messages sent, and the first and last send times (µs on `clock`).
    published: AtomicU64,
    first_send_us: AtomicU64,
    last_send_us: AtomicU64,
    /// Unique measured messages received, over all subscribers.
    delivered: AtomicU64,
}

impl Shared {
    pub(crate) fn micros(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// The count of subscribers that have seen a probe of `round`.
    pub(crate) fn seen(&self, round: Round) -> &AtomicUsize {
        match round {
            Round::Ready => &self.ready,
            Round::Final => &self.alive,
        }
    }

    /// Records that measured message `seq` was sent at `now`.
    pub(crate) fn sent(&self, seq: u64, now: u64) {
        if seq == 0 {
            self.first_send_us.store(now, Ordering::Release);
        }
        self.last_send_us.store(now, Ordering::Release);
        self.published.fetch_add(1, Ordering::AcqRel);
    }
}

/// The text of measured message `seq`, sent at `now`, padded to `size` bytes.
pub(crate) fn message_text(shared: &Shared, seq: u64, now: u64, size: usize) -> String {
    let mut text = format!("M{} {seq} {now} ", shared.tag);
    if text.len() < size {
        text.extend(std::iter::repeat_n('x', size - text.len()));
    }
    text
}

/// Measures `target` under `plan`. `run` distinguishes this run's messages from any other's.
pub(crate) async fn measure(target: Target, plan: &Plan, run: usize) -> Result<Outcome, Failed> {
    // The baseline's broadcast lives in its process: it cannot span nodes.
    let nodes = match target.server {
        ServerKind::Tidings => plan.nodes,
        ServerKind::Baseline => 1,
    };
    let options = ServerOptions {
        prefix: Some(format!("load:{}:{run}:", std::process::id())),
        ..plan.server.clone()
    };
    let servers = Servers::start(target.server, &options, nodes).await?;
    let result = drive(target, plan, run, &servers).await;
    servers.stop().await;
    result
}

/// Readings taken while the run was under way.
struct Readings {
    rss_connected_kib: Option<u64>,
    rss_end_kib: Option<u64>,
    timed_out: bool,
    alive_at_end: Option<usize>,
    server_cpu: Option<Duration>,
    load_cpu: Option<Duration>,
    cpu_wall: Duration,
    connect_elapsed: Duration,
}

async fn drive(
    target: Target,
    plan: &Plan,
    run: usize,
    server: &Servers,
) -> Result<Outcome, Failed> {
    let hold = if plan.mode == Mode::Idle {
        plan.hold + FINAL_PROBE
    } else {
        Duration::ZERO
    };
    let deadline = Instant::now() + plan.timeout + hold;
    let addrs: Vec<String> = server.addrs().iter().map(ToString::to_string).collect();
    let messages = if plan.mode == Mode::Idle {
        0
    } else {
        plan.messages
    };
    let shared = Arc::new(Shared {
        clock: Instant::now(),
        tag: format!("{run}.{}", std::process::id()),
        subscribers: plan.subscribers,
        messages,
        ready: AtomicUsize::new(0),
        alive: AtomicUsize::new(0),
        finished: AtomicUsize::new(0),
        finished_changed: Notify::new(),
        halt: AtomicBool::new(false),
        published: AtomicU64::new(0),
        first_send_us: AtomicU64::new(0),
        last_send_us: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
    });
    let (stop_tx, stop) = watch::channel(false);
    let framing = match target.transport {
        Transport::SockjsWs => Framing::SockJs,
        Transport::StompWs => Framing::Stomp,
        _ => Framing::Raw,
    };
    let mut publisher = Publisher::start(
        addrs[0].clone(),
        framing,
        shared.clone(),
        plan.rate,
        plan.size,
        stop.clone(),
    );
    let rss_before_kib = match timeout_at(deadline, &mut publisher.connected).await {
        Ok(Ok(Ok(()))) => server.rss_kib(),
        Ok(Ok(Err(error))) => return Err(Failed(format!("publisher: {error}"))),
        Ok(Err(_)) => return Err(Failed("the publisher thread ended".into())),
        Err(_) => return Err(Failed("timed out connecting the publisher".into())),
    };

    let connect_start = Instant::now();
    let (connected_tx, mut connected) =
        mpsc::channel::<Result<(), String>>(plan.subscribers.max(1));
    let gate = Arc::new(Semaphore::new(plan.connect_concurrency.max(1)));
    let (go_tx, go_rx) = oneshot::channel();
    let mut go_rx = (plan.mode == Mode::Echo).then_some(go_rx);
    let subscribers: Vec<JoinHandle<Subscriber>> = (0..plan.subscribers)
        .map(|index| {
            let context = Context {
                index,
                addr: addrs[index % addrs.len()].clone(),
                transport: target.transport,
                size: plan.size,
                shared: shared.clone(),
                gate: gate.clone(),
                connected: connected_tx.clone(),
                stop: stop.clone(),
                go: if index == 0 { go_rx.take() } else { None },
            };
            tokio::spawn(subscribe(context))
        })
        .collect();
    drop(connected_tx);

    let readings = async {
        let mut failures = Vec::new();
        for _ in 0..plan.subscribers {
            match timeout_at(deadline, connected.recv()).await {
                Ok(Some(Ok(()))) => {}
                Ok(Some(Err(error))) => failures.push(error),
                Ok(None) => break,
                Err(_) => return Err(Failed("timed out connecting subscribers".into())),
            }
        }
        if let Some(first) = failures.first() {
            let n = failures.len();
            return Err(Failed(format!(
                "{n} of {} subscribers failed to connect; first: {first}",
                plan.subscribers
            )));
        }
        publisher.probe(Round::Ready, deadline).await?;
        let connect_elapsed = connect_start.elapsed();
        let rss_connected_kib = server.rss_kib();
        let (server_cpu0, load_cpu0) = (server.cpu_time(), server::cpu_time("self"));
        let started = Instant::now();
        let (mut timed_out, mut rss_end_kib, mut alive_at_end) = (false, None, None);
        let mut cpu_end = None;
        match plan.mode {
            Mode::Fanout | Mode::Echo => {
                if plan.mode == Mode::Fanout {
                    publisher.publish();
                } else {
                    let _ = go_tx.send(());
                }
                while shared.finished.load(Ordering::Acquire) < plan.subscribers {
                    if timeout_at(deadline, shared.finished_changed.notified())
                        .await
                        .is_err()
                    {
                        timed_out = true;
                        break;
                    }
                }
                if timed_out {
                    shared.halt.store(true, Ordering::Release);
                    settle(&shared).await;
                }
            }
            Mode::Idle => {
                sleep_until((started + plan.hold).min(deadline)).await;
                rss_end_kib = server.rss_kib();
                cpu_end = Some((
                    server.cpu_time(),
                    server::cpu_time("self"),
                    started.elapsed(),
                ));
                // Every session still open must get this; how many did is the result, so a
                // timeout here is not a failure of the run.
                let end = (Instant::now() + FINAL_PROBE).min(deadline);
                timed_out = publisher.probe(Round::Final, end).await.is_err();
                alive_at_end = Some(shared.alive.load(Ordering::Acquire));
            }
        }
        let (server_cpu1, load_cpu1, cpu_wall) = cpu_end.unwrap_or_else(|| {
            (
                server.cpu_time(),
                server::cpu_time("self"),
                started.elapsed(),
            )
        });
        Ok(Readings {
            rss_connected_kib,
            rss_end_kib,
            timed_out,
            alive_at_end,
            server_cpu: diff(server_cpu0, server_cpu1),
            load_cpu: diff(load_cpu0, load_cpu1),
            cpu_wall,
            connect_elapsed,
        })
    }
    .await;

    // However the run went, stop every task and gather what the subscribers saw.
    let _ = stop_tx.send(true);
    let mut seen = Vec::with_capacity(subscribers.len());
    for handle in subscribers {
        let abort = handle.abort_handle();
        match tokio::time::timeout(Duration::from_secs(5), handle).await {
            Ok(Ok(subscriber)) => seen.push(subscriber),
            _ => abort.abort(),
        }
    }
    publisher.join().await;
    let readings = readings?;
    Ok(tally(
        target,
        plan,
        &shared,
        &seen,
        &readings,
        rss_before_kib,
    ))
}

/// After a timeout, gives messages already sent a moment to arrive, so that only what did not
/// arrive counts as lost: waits until nothing has been delivered for 100 ms, at most 1 s.
async fn settle(shared: &Shared) {
    let end = Instant::now() + Duration::from_secs(1);
    let mut delivered = shared.delivered.load(Ordering::Relaxed);
    while Instant::now() < end {
        sleep(Duration::from_millis(100)).await;
        let now = shared.delivered.load(Ordering::Relaxed);
        if now == delivered {
            break;
        }
        delivered = now;
    }
}

fn diff(before: Option<Duration>, after: Option<Duration>) -> Option<Duration> {
    Some(after?.saturating_sub(before?))
}

fn tally(
    target: Target,
    plan: &Plan,
    shared: &Shared,
    seen: &[Subscriber],
    readings: &Readings,
    rss_before_kib: Option<u64>,
) -> Outcome {
    let published = shared.published.load(Ordering::Acquire);
    let first = shared.first_send_us.load(Ordering::Acquire);
    let last_send = shared.last_send_us.load(Ordering::Acquire);
    let mut latency = histogram();
    let (mut delivered, mut duplicated, mut out_of_order) = (0, 0, 0);
    // A subscriber whose task could not be collected counts as having received nothing.
    let mut lost = published * (plan.subscribers - seen.len()) as u64;
    let mut closed = BTreeMap::new();
    let mut last_receipt = first;
    let (mut heartbeats, mut heartbeats_min) = (0, u64::MAX);
    for s in seen {
        delivered += s.unique;
        lost += published.saturating_sub(s.unique);
        duplicated += s.duplicated;
        out_of_order += s.out_of_order;
        last_receipt = last_receipt.max(s.last_receipt_us);
        heartbeats += s.heartbeats;
        heartbeats_min = heartbeats_min.min(s.heartbeats);
        // In an echo run the latency that matters is the sender's round trip.
        if plan.mode != Mode::Echo || s.index == 0 {
            // Every histogram has the same bounds, so adding cannot fail.
            let _ = latency.add(&s.latency);
        }
        if let Some(code) = s.closed {
            *closed.entry(code).or_default() += 1;
        }
    }
    if seen.len() < plan.subscribers {
        heartbeats_min = 0;
    }
    Outcome {
        target: target.name,
        subscribers: plan.subscribers,
        published,
        delivered,
        elapsed: Duration::from_micros(last_receipt.saturating_sub(first)),
        publish_elapsed: Duration::from_micros(last_send.saturating_sub(first)),
        latency,
        lost,
        duplicated,
        out_of_order,
        closed,
        timed_out: readings.timed_out,
        heartbeats_min: heartbeats_min.min(heartbeats),
        heartbeats,
        alive_at_end: readings.alive_at_end,
        rss_before_kib,
        rss_connected_kib: readings.rss_connected_kib,
        rss_end_kib: readings.rss_end_kib,
        server_cpu: readings.server_cpu,
        load_cpu: readings.load_cpu,
        cpu_wall: readings.cpu_wall,
        connect_elapsed: readings.connect_elapsed,
    }
}

fn histogram() -> Histogram<u64> {
    // Two significant digits: 1% resolution, small enough to keep one per subscriber.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 2).expect("constant histogram bounds are valid")
}

/// What one subscriber saw.
struct Subscriber {
    index: usize,
    /// Bit `seq` is set once measured message `seq` arrived.
    seen: Vec<u64>,
    unique: u64,
    duplicated: u64,
    out_of_order: u64,
    highest: Option<u64>,
    last_receipt_us: u64,
    latency: Histogram<u64>,
    heartbeats: u64,
    ready: bool,
    alive: bool,
    /// Set when the session ended during the run: its close code, 0 without one.
    closed: Option<u16>,
    /// Whether it has been counted in `Shared::finished`.
    finished: bool,
    /// Echo runs, subscriber 0: the message sent and not yet back.
    awaiting: Option<u64>,
}

impl Subscriber {
    fn new(index: usize, messages: u64) -> Self {
        let words = usize::try_from(messages.div_ceil(64)).unwrap_or(usize::MAX);
        Subscriber {
            index,
            seen: vec![0; words],
            unique: 0,
            duplicated: 0,
            out_of_order: 0,
            highest: None,
            last_receipt_us: 0,
            latency: histogram(),
            heartbeats: 0,
            ready: false,
            alive: false,
            closed: None,
            finished: false,
            awaiting: None,
        }
    }

    /// One event of the session, read at `now`. Returns false once the session is closed.
    fn event(&mut self, event: Event<'_>, shared: &Shared, now: u64) -> bool {
        match event {
            Event::Message(text) => self.message(text, shared, now),
            Event::Heartbeat => self.heartbeats += 1,
            Event::Closed(code) => {
                self.closed = Some(code);
                return false;
            }
        }
        true
    }

    fn message(&mut self, text: &str, shared: &Shared, now: u64) {
        // Parsed by hand: at millions of messages a second, splitting and `parse` were the
        // largest part of the load side's CPU time.
        let Some((&kind, rest)) = text.as_bytes().split_first() else {
            return;
        };
        let Some(rest) = rest.strip_prefix(shared.tag.as_bytes()) else {
            return;
        };
        match kind {
            b'M' => {
                let fields = rest
                    .strip_prefix(b" ")
                    .and_then(number)
                    .and_then(|(seq, rest)| Some((seq, number(rest.strip_prefix(b" ")?)?.0)));
                if let Some((seq, sent)) = fields {
                    self.measured(seq, sent, shared, now);
                }
            }
            b'P' if !self.ready && rest.is_empty() => {
                self.ready = true;
                shared.ready.fetch_add(1, Ordering::AcqRel);
            }
            b'F' if !self.alive && rest.is_empty() => {
                self.alive = true;
                shared.alive.fetch_add(1, Ordering::AcqRel);
            }
            _ => {}
        }
    }

    fn measured(&mut self, seq: u64, sent_us: u64, shared: &Shared, now: u64) {
        let Some(word) = usize::try_from(seq / 64)
            .ok()
            .and_then(|i| self.seen.get_mut(i))
        else {
            return;
        };
        let bit = 1 << (seq % 64);
        if *word & bit != 0 {
            self.duplicated += 1;
            return;
        }
        *word |= bit;
        self.unique += 1;
        shared.delivered.fetch_add(1, Ordering::Relaxed);
        if self.highest.is_some_and(|h| seq < h) {
            self.out_of_order += 1;
        }
        self.highest = self.highest.max(Some(seq));
        self.last_receipt_us = now;
        self.latency
            .saturating_record(now.saturating_sub(sent_us).max(1));
        if self.awaiting == Some(seq) {
            self.awaiting = None;
        }
        if self.unique == shared.messages {
            self.finish(shared);
        }
    }

    fn finish(&mut self, shared: &Shared) {
        if !self.finished {
            self.finished = true;
            shared.finished.fetch_add(1, Ordering::AcqRel);
            shared.finished_changed.notify_one();
        }
    }
}

/// The decimal number `bytes` starts with, and what follows it.
fn number(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let mut n: u64 = 0;
    for &digit in &bytes[..digits] {
        n = n.checked_mul(10)?.checked_add(u64::from(digit - b'0'))?;
    }
    Some((n, &bytes[digits..]))
}

/// What one subscriber task needs.
struct Context {
    index: usize,
    addr: String,
    transport: Transport,
    size: usize,
    shared: Arc<Shared>,
    /// Limits how many sessions open at the same time.
    gate: Arc<Semaphore>,
    /// Told whether the session opened.
    connected: mpsc::Sender<Result<(), String>>,
    stop: watch::Receiver<bool>,
    /// Echo runs, subscriber 0: fires when it is to start sending.
    go: Option<oneshot::Receiver<()>>,
}

/// One subscriber: opens its session (at most `gate`'s permits at a time), reports, then reads
/// until told to stop or the session ends; the echo sender also sends.
async fn subscribe(mut context: Context) -> Subscriber {
    let shared = context.shared.clone();
    let mut me = Subscriber::new(context.index, shared.messages);
    let opened = {
        let Ok(_permit) = context.gate.acquire().await else {
            return me;
        };
        // Session ids may not hold the tag's `.`.
        let run = format!("load-{}", shared.tag.replace('.', "-"));
        Session::open(&context.addr, context.transport, &run, context.index).await
    };
    let mut session = match opened {
        Ok(session) => {
            let _ = context.connected.send(Ok(())).await;
            session
        }
        Err(error) => {
            let _ = context.connected.send(Err(error)).await;
            return me;
        }
    };
    drop(context.connected);
    // Echo: the next sequence number to send, once started.
    let mut next_echo = None;
    loop {
        // Everything one read returned arrived at the same time.
        let now = shared.micros();
        let drained = session.drain(|event| me.event(event, &shared, now)).await;
        if drained.is_err() {
            me.closed.get_or_insert(0);
        }
        if me.closed.is_some() {
            me.finish(&shared);
            break;
        }
        if let Some(seq) = next_echo
            && me.awaiting.is_none()
            && seq < shared.messages
            && !shared.halt.load(Ordering::Acquire)
        {
            let now = shared.micros();
            if session
                .send(&message_text(&shared, seq, now, context.size))
                .await
                .is_err()
            {
                me.closed.get_or_insert(0);
                me.finish(&shared);
                break;
            }
            shared.sent(seq, now);
            me.awaiting = Some(seq);
            next_echo = Some(seq + 1);
            // The message may already be back; drain before waiting for more.
            continue;
        }
        tokio::select! {
            biased;
            _ = context.stop.changed() => break,
            _ = started(&mut context.go), if context.go.is_some() => {
                context.go = None;
                next_echo = Some(0);
            }
            filled = session.fill() => {
                if !matches!(filled, Ok(true)) {
                    me.closed.get_or_insert(0);
                }
            }
        }
    }
    me
}

/// Waits until `go` fires (or its sender is gone).
async fn started(go: &mut Option<oneshot::Receiver<()>>) {
    if let Some(go) = go {
        let _ = go.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_what_follows() {
        assert_eq!(number(b"123 45"), Some((123, &b" 45"[..])));
        assert_eq!(number(b"7"), Some((7, &b""[..])));
        assert_eq!(number(b" 7"), None);
        assert_eq!(number(b"99999999999999999999999"), None);
    }
}
