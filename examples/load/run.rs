//! One measurement: start a server child, connect the subscribers, make sure each one is
//! subscribed, publish, and collect what every subscriber saw.
//!
//! Every measured message is `M<tag> <seq> <micros> <padding>`: the publisher writes its
//! sequence number and the time it sent it (microseconds on this process's monotonic clock),
//! and each subscriber takes the latency on receipt from the same clock. Before measuring, the
//! publisher sends probes (`P<tag>`) until every subscriber has seen one; only then is a
//! subscriber known to be following the topic, so messages it could not have received do not
//! count against it.
//!
//! Subscribers are tasks on this process's runtime and read with the lean client of
//! `client.rs`. The publisher has a thread of its own, so that however busy the subscribers
//! keep the runtime, the operating system still wakes it on time for its next send.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until, timeout_at};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{Connection, Event};
use crate::server::{self, ServerKind, ServerProcess};

type Ws = WebSocketStream<TcpStream>;

/// Largest latency the histograms track, in microseconds; longer ones are recorded as this.
const MAX_LATENCY_US: u64 = 600_000_000;

/// How a client talks to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `/broadcast/<server>/<session>/websocket`: `o`, `h`, `a[…]`, `c[…]` frames.
    SockJs,
    /// `/broadcast/websocket`: one text message per application message.
    Raw,
}

/// What is measured: a server and the framing its clients use.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Target {
    /// Its name in the report.
    pub(crate) name: &'static str,
    pub(crate) server: ServerKind,
    pub(crate) framing: Framing,
}

/// The knobs of a run, from the command line.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub(crate) subscribers: usize,
    pub(crate) messages: u64,
    /// Messages per second; 0 publishes as fast as the connection takes them.
    pub(crate) rate: u64,
    pub(crate) size: usize,
    pub(crate) retention: usize,
    pub(crate) timeout: Duration,
    pub(crate) connect_concurrency: usize,
    /// The CPU for server children, when pinning.
    pub(crate) server_cpu: Option<usize>,
}

/// What one run measured.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) target: &'static str,
    pub(crate) subscribers: usize,
    /// Measured messages the publisher sent (all of them unless the timeout hit first).
    pub(crate) published: u64,
    /// Unique measured messages received, summed over subscribers.
    pub(crate) delivered: u64,
    /// From the first measured send to the last measured receipt.
    pub(crate) elapsed: Duration,
    /// From the first to the last measured send.
    pub(crate) publish_elapsed: Duration,
    pub(crate) latency: Histogram<u64>,
    pub(crate) lost: u64,
    pub(crate) duplicated: u64,
    pub(crate) out_of_order: u64,
    /// Connections that ended before the run did, by close code (0: no close frame).
    pub(crate) closed: BTreeMap<u16, usize>,
    pub(crate) timed_out: bool,
    pub(crate) rss_before_kib: Option<u64>,
    pub(crate) rss_after_kib: Option<u64>,
    /// CPU time of the server and of this process while messages were in flight.
    pub(crate) server_cpu: Option<Duration>,
    pub(crate) load_cpu: Option<Duration>,
}

impl Outcome {
    pub(crate) fn delivered_per_sec(&self) -> f64 {
        per_sec(self.delivered, self.elapsed)
    }

    pub(crate) fn published_per_sec(&self) -> f64 {
        per_sec(self.published, self.publish_elapsed)
    }

    pub(crate) fn rss_per_connection_kib(&self) -> Option<f64> {
        let (before, after) = (self.rss_before_kib?, self.rss_after_kib?);
        Some(after.saturating_sub(before) as f64 / self.subscribers.max(1) as f64)
    }

    /// Share of one CPU the process used while messages were in flight, in percent.
    pub(crate) fn cpu_percent(&self, cpu: Option<Duration>) -> Option<f64> {
        let wall = self.elapsed.as_secs_f64();
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

/// State every task of a run shares.
struct Shared {
    /// The clock publisher and subscribers both read.
    clock: Instant,
    tag: String,
    subscribers: usize,
    /// Messages each subscriber must get to be complete.
    messages: u64,
    /// Subscribers that have seen a probe.
    ready: AtomicUsize,
    /// Subscribers that are complete or whose connection ended.
    finished: AtomicUsize,
    finished_changed: Notify,
    /// Set when the run's time is up: the publisher sends nothing more.
    halt: AtomicBool,
    /// Measured messages sent, and the first and last send times (µs on `clock`).
    published: AtomicU64,
    first_send_us: AtomicU64,
    last_send_us: AtomicU64,
    /// Unique measured messages received, over all subscribers.
    delivered: AtomicU64,
}

impl Shared {
    fn micros(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

/// Measures `target` under `plan`. `run` distinguishes this run's messages from any other's.
pub(crate) async fn measure(target: Target, plan: &Plan, run: usize) -> Result<Outcome, Failed> {
    let server = ServerProcess::start(target.server, plan.retention, plan.server_cpu).await?;
    let result = drive(target, plan, run, &server).await;
    server.stop().await;
    result
}

/// Readings taken while the run was under way.
struct Readings {
    rss_after_kib: Option<u64>,
    timed_out: bool,
    server_cpu: Option<Duration>,
    load_cpu: Option<Duration>,
}

async fn drive(
    target: Target,
    plan: &Plan,
    run: usize,
    server: &ServerProcess,
) -> Result<Outcome, Failed> {
    let deadline = Instant::now() + plan.timeout;
    let addr = server.addr().to_string();
    let shared = Arc::new(Shared {
        clock: Instant::now(),
        tag: format!("{run}.{}", std::process::id()),
        subscribers: plan.subscribers,
        messages: plan.messages,
        ready: AtomicUsize::new(0),
        finished: AtomicUsize::new(0),
        finished_changed: Notify::new(),
        halt: AtomicBool::new(false),
        published: AtomicU64::new(0),
        first_send_us: AtomicU64::new(0),
        last_send_us: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
    });
    let (stop_tx, stop) = watch::channel(false);
    let mut publisher = Publisher::start(
        addr.clone(),
        target.framing,
        shared.clone(),
        plan,
        stop.clone(),
    );
    let rss_before_kib = match timeout_at(deadline, &mut publisher.connected).await {
        Ok(Ok(Ok(()))) => server.rss_kib(),
        Ok(Ok(Err(error))) => return Err(Failed(format!("publisher: {error}"))),
        Ok(Err(_)) => return Err(Failed("the publisher thread ended".into())),
        Err(_) => return Err(Failed("timed out connecting the publisher".into())),
    };

    let (connected_tx, mut connected) =
        mpsc::channel::<Result<(), String>>(plan.subscribers.max(1));
    let gate = Arc::new(Semaphore::new(plan.connect_concurrency.max(1)));
    let subscribers: Vec<JoinHandle<Subscriber>> = (0..plan.subscribers)
        .map(|i| {
            let (addr, shared, gate, stop, connected) = (
                addr.clone(),
                shared.clone(),
                gate.clone(),
                stop.clone(),
                connected_tx.clone(),
            );
            tokio::spawn(subscribe(
                i,
                addr,
                target.framing,
                shared,
                gate,
                connected,
                stop,
            ))
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
        publisher.probe(deadline).await?;
        let rss_after_kib = server.rss_kib();
        let (server_cpu0, load_cpu0) = (server.cpu_time(), server::cpu_time("self"));
        publisher.publish();
        let mut timed_out = false;
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
        let (server_cpu1, load_cpu1) = (server.cpu_time(), server::cpu_time("self"));
        Ok(Readings {
            rss_after_kib,
            timed_out,
            server_cpu: diff(server_cpu0, server_cpu1),
            load_cpu: diff(load_cpu0, load_cpu1),
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
    for s in seen {
        delivered += s.unique;
        lost += published.saturating_sub(s.unique);
        duplicated += s.duplicated;
        out_of_order += s.out_of_order;
        last_receipt = last_receipt.max(s.last_receipt_us);
        // Every histogram has the same bounds, so adding cannot fail.
        let _ = latency.add(&s.latency);
        if let Some(code) = s.closed {
            *closed.entry(code).or_default() += 1;
        }
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
        rss_before_kib,
        rss_after_kib: readings.rss_after_kib,
        server_cpu: readings.server_cpu,
        load_cpu: readings.load_cpu,
    }
}

fn histogram() -> Histogram<u64> {
    // Two significant digits: 1% resolution, small enough to keep one per subscriber.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 2).expect("constant histogram bounds are valid")
}

fn path(framing: Framing, index: usize) -> String {
    match framing {
        Framing::Raw => "/broadcast/websocket".to_owned(),
        Framing::SockJs => format!("/broadcast/{:03}/load-{index}/websocket", index % 1000),
    }
}

fn describe_io(error: &io::Error) -> String {
    match error.raw_os_error() {
        Some(24) => format!(
            "{error}: this process ran out of file descriptors; raise the limit with `ulimit -n` \
             (each run needs about one per subscriber, plus a few)"
        ),
        Some(99) => format!("{error}: out of local ports for 127.0.0.1"),
        _ => error.to_string(),
    }
}

async fn tcp(addr: &str) -> Result<TcpStream, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| describe_io(&e))?;
    tcp.set_nodelay(true).map_err(|e| describe_io(&e))?;
    Ok(tcp)
}

/// What one subscriber saw.
struct Subscriber {
    /// `seen[seq]`: whether measured message `seq` arrived.
    seen: Vec<bool>,
    unique: u64,
    duplicated: u64,
    out_of_order: u64,
    highest: Option<u64>,
    last_receipt_us: u64,
    latency: Histogram<u64>,
    ready: bool,
    /// Set when the connection ended during the run: its close code, 0 without one.
    closed: Option<u16>,
    /// Whether it has been counted in `Shared::finished`.
    finished: bool,
}

impl Subscriber {
    fn new(messages: u64) -> Self {
        Subscriber {
            seen: vec![false; usize::try_from(messages).unwrap_or(usize::MAX)],
            unique: 0,
            duplicated: 0,
            out_of_order: 0,
            highest: None,
            last_receipt_us: 0,
            latency: histogram(),
            ready: false,
            closed: None,
            finished: false,
        }
    }

    /// Reads one text frame received at `now`. Returns false once the connection is closed.
    fn frame(&mut self, text: &str, framing: Framing, shared: &Shared, now: u64) -> bool {
        match framing {
            Framing::Raw => self.message(text, shared, now),
            Framing::SockJs => match text.as_bytes().first() {
                Some(b'a') => self.messages(&text[1..], shared, now),
                Some(b'c') => {
                    let code = serde_json::from_str::<(u16, String)>(&text[1..])
                        .map_or(0, |(code, _)| code);
                    self.closed = Some(code);
                    return false;
                }
                // `o` was read on connect; `h` is a heartbeat.
                _ => {}
            },
        }
        true
    }

    /// Reads the `[…]` of a SockJS `a[…]` frame.
    fn messages(&mut self, array: &str, shared: &Shared, now: u64) {
        if !sockjs_messages(array, |m| self.message(m, shared, now)) {
            eprintln!("load: malformed SockJS frame a{array:?}");
        }
    }

    fn message(&mut self, text: &str, shared: &Shared, now: u64) {
        if let Some(rest) = text.strip_prefix('M') {
            let mut fields = rest.split(' ');
            if fields.next() != Some(shared.tag.as_str()) {
                return;
            }
            let seq = fields.next().and_then(|f| f.parse::<u64>().ok());
            let sent = fields.next().and_then(|f| f.parse::<u64>().ok());
            if let (Some(seq), Some(sent)) = (seq, sent) {
                self.measured(seq, sent, shared, now);
            }
        } else if !self.ready && text.strip_prefix('P') == Some(shared.tag.as_str()) {
            self.ready = true;
            shared.ready.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn measured(&mut self, seq: u64, sent_us: u64, shared: &Shared, now: u64) {
        let Some(slot) = usize::try_from(seq).ok().and_then(|i| self.seen.get_mut(i)) else {
            return;
        };
        if *slot {
            self.duplicated += 1;
            return;
        }
        *slot = true;
        self.unique += 1;
        shared.delivered.fetch_add(1, Ordering::Relaxed);
        if self.highest.is_some_and(|h| seq < h) {
            self.out_of_order += 1;
        }
        self.highest = self.highest.max(Some(seq));
        self.last_receipt_us = now;
        self.latency
            .saturating_record(now.saturating_sub(sent_us).max(1));
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

/// Calls `each` with every string of a SockJS `[…]` array of strings. Returns false if it is
/// not one.
fn sockjs_messages(array: &str, mut each: impl FnMut(&str)) -> bool {
    // Without a backslash there is no escape, and so no quote inside a string: `","` can only
    // separate two of them. The publisher's messages always take this path.
    if !array.contains('\\')
        && let Some(inner) = array
            .strip_prefix("[\"")
            .and_then(|a| a.strip_suffix("\"]"))
    {
        inner.split("\",\"").for_each(each);
        return true;
    }
    match serde_json::from_str::<Vec<String>>(array) {
        Ok(messages) => {
            messages.iter().for_each(|m| each(m));
            true
        }
        Err(_) => false,
    }
}

/// Opens a subscriber's WebSocket; for SockJS, waits for the open frame.
async fn open(addr: &str, framing: Framing, index: usize) -> Result<Connection, String> {
    let tcp = tcp(addr).await?;
    let mut connection = Connection::handshake(tcp, addr, &path(framing, index))
        .await
        .map_err(|e| describe_io(&e))?;
    if framing == Framing::SockJs {
        loop {
            let mut first = None;
            connection
                .drain(|event| {
                    first = Some(matches!(event, Event::Text("o")));
                    false
                })
                .await
                .map_err(|e| e.to_string())?;
            match first {
                Some(true) => break,
                Some(false) => return Err("the first SockJS frame was not `o`".into()),
                None if connection.fill().await.map_err(|e| e.to_string())? => {}
                None => return Err("closed before the SockJS open frame".into()),
            }
        }
    }
    Ok(connection)
}

/// One subscriber: connects (at most `gate`'s permits at a time), reports, then reads until
/// told to stop or the connection ends.
async fn subscribe(
    index: usize,
    addr: String,
    framing: Framing,
    shared: Arc<Shared>,
    gate: Arc<Semaphore>,
    connected: mpsc::Sender<Result<(), String>>,
    mut stop: watch::Receiver<bool>,
) -> Subscriber {
    let mut me = Subscriber::new(shared.messages);
    let opened = {
        let Ok(_permit) = gate.acquire().await else {
            return me;
        };
        open(&addr, framing, index).await
    };
    let mut connection = match opened {
        Ok(connection) => {
            let _ = connected.send(Ok(())).await;
            connection
        }
        Err(error) => {
            let _ = connected.send(Err(error)).await;
            return me;
        }
    };
    drop(connected);
    loop {
        // Everything one read returned arrived at the same time.
        let now = shared.micros();
        let drained = connection
            .drain(|event| match event {
                Event::Text(text) => me.frame(text, framing, &shared, now),
                Event::Close(code) => {
                    me.closed = Some(code);
                    false
                }
            })
            .await;
        if drained.is_err() {
            me.closed.get_or_insert(0);
        }
        if me.closed.is_some() {
            me.finish(&shared);
            break;
        }
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            filled = connection.fill() => {
                if !matches!(filled, Ok(true)) {
                    me.closed.get_or_insert(0);
                }
            }
        }
    }
    me
}

/// The publisher's thread, and the steps the run takes it through.
struct Publisher {
    connected: oneshot::Receiver<Result<(), String>>,
    probe: Option<oneshot::Sender<Instant>>,
    probed: Option<oneshot::Receiver<Result<(), String>>>,
    publish: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The publisher thread's ends of the steps.
struct Steps {
    connected: oneshot::Sender<Result<(), String>>,
    probe: oneshot::Receiver<Instant>,
    probed: oneshot::Sender<Result<(), String>>,
    publish: oneshot::Receiver<()>,
}

impl Publisher {
    /// Starts the thread; it connects at once and reports on `connected`. It ends when `stop`
    /// is set or any step is dropped.
    fn start(
        addr: String,
        framing: Framing,
        shared: Arc<Shared>,
        plan: &Plan,
        mut stop: watch::Receiver<bool>,
    ) -> Publisher {
        let (connected_tx, connected) = oneshot::channel();
        let (probe, probe_rx) = oneshot::channel();
        let (probed_tx, probed) = oneshot::channel();
        let (publish, publish_rx) = oneshot::channel();
        let steps = Steps {
            connected: connected_tx,
            probe: probe_rx,
            probed: probed_tx,
            publish: publish_rx,
        };
        let (rate, size) = (plan.rate, plan.size);
        let thread = std::thread::Builder::new()
            .name("publisher".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = steps
                            .connected
                            .send(Err(format!("cannot start a runtime: {error}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    tokio::select! {
                        _ = stop.wait_for(|stopped| *stopped) => {}
                        () = publisher(&addr, framing, &shared, rate, size, steps) => {}
                    }
                });
            });
        let thread = match thread {
            Ok(thread) => Some(thread),
            Err(error) => {
                eprintln!("load: cannot start the publisher thread: {error}");
                None
            }
        };
        Publisher {
            connected,
            probe: Some(probe),
            probed: Some(probed),
            publish: Some(publish),
            thread,
        }
    }

    /// Has the publisher send probes until every subscriber has seen one.
    async fn probe(&mut self, deadline: Instant) -> Result<(), Failed> {
        if let Some(probe) = self.probe.take() {
            let _ = probe.send(deadline);
        }
        let Some(probed) = self.probed.take() else {
            return Err(Failed("probed twice".into()));
        };
        match probed.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(Failed(error)),
            Err(_) => Err(Failed("the publisher thread ended".into())),
        }
    }

    /// Lets the publisher send the measured messages.
    fn publish(&mut self) {
        if let Some(publish) = self.publish.take() {
            let _ = publish.send(());
        }
    }

    /// Waits for the thread to end (the run must have set `stop` or dropped a step).
    async fn join(mut self) {
        self.probe = None;
        self.publish = None;
        if let Some(thread) = self.thread.take() {
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                tokio::task::spawn_blocking(move || thread.join()),
            )
            .await;
        }
    }
}

async fn publisher(
    addr: &str,
    framing: Framing,
    shared: &Shared,
    rate: u64,
    size: usize,
    steps: Steps,
) {
    let ws = match connect_publisher(addr, framing).await {
        Ok(ws) => {
            let _ = steps.connected.send(Ok(()));
            ws
        }
        Err(error) => {
            let _ = steps.connected.send(Err(error));
            return;
        }
    };
    // The publisher is a session like any other, so it is sent every message too: it must read
    // them, or the server's writes to it would stall its reads of what it publishes.
    let (mut sink, stream) = ws.split();
    tokio::spawn(discard(stream));
    let Ok(deadline) = steps.probe.await else {
        return;
    };
    let probed = probe(&mut sink, framing, shared, deadline).await;
    let ok = probed.is_ok();
    if steps.probed.send(probed).is_err() || !ok || steps.publish.await.is_err() {
        return;
    }
    publish(&mut sink, framing, shared, rate, size).await;
    // Keep reading until the run stops.
    std::future::pending::<()>().await;
}

async fn connect_publisher(addr: &str, framing: Framing) -> Result<Ws, String> {
    let tcp = tcp(addr).await?;
    let url = format!("ws://{addr}{}", path(framing, usize::MAX));
    let (mut ws, _) = tokio_tungstenite::client_async(url, tcp)
        .await
        .map_err(|e| e.to_string())?;
    if framing == Framing::SockJs {
        match ws.next().await {
            Some(Ok(Message::Text(text))) if text.as_str() == "o" => {}
            other => return Err(format!("expected the SockJS open frame, got {other:?}")),
        }
    }
    Ok(ws)
}

/// Reads and discards what the server sends the publisher.
async fn discard(mut stream: SplitStream<Ws>) {
    while let Some(Ok(_)) = stream.next().await {}
}

fn encode(text: String, framing: Framing) -> Message {
    match framing {
        Framing::Raw => Message::text(text),
        Framing::SockJs => Message::text(serde_json::Value::from(vec![text]).to_string()),
    }
}

/// Sends probes until every subscriber has seen one.
async fn probe(
    sink: &mut SplitSink<Ws, Message>,
    framing: Framing,
    shared: &Shared,
    deadline: Instant,
) -> Result<(), String> {
    let subscribers = shared.subscribers;
    while shared.ready.load(Ordering::Acquire) < subscribers {
        if Instant::now() >= deadline {
            let ready = shared.ready.load(Ordering::Acquire);
            return Err(format!(
                "timed out: {ready} of {subscribers} subscribers saw a probe"
            ));
        }
        sink.send(encode(format!("P{}", shared.tag), framing))
            .await
            .map_err(|e| format!("publisher: {e}"))?;
        sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Sends the measured messages, at `rate` per second or, with 0, as fast as the connection
/// takes them.
async fn publish(
    sink: &mut SplitSink<Ws, Message>,
    framing: Framing,
    shared: &Shared,
    rate: u64,
    size: usize,
) {
    let begin = Instant::now();
    for seq in 0..shared.messages {
        if rate > 0 {
            // Scheduled from the start, not from the previous send, so timer granularity does
            // not slow the rate down: late messages go out back to back.
            let due = begin + Duration::from_secs_f64(seq as f64 / rate as f64);
            if due > Instant::now() {
                sleep_until(due).await;
            }
        }
        if shared.halt.load(Ordering::Acquire) {
            return;
        }
        let now = shared.micros();
        let mut text = format!("M{} {seq} {now} ", shared.tag);
        if text.len() < size {
            text.extend(std::iter::repeat_n('x', size - text.len()));
        }
        if sink.send(encode(text, framing)).await.is_err() {
            return;
        }
        if seq == 0 {
            shared.first_send_us.store(now, Ordering::Release);
        }
        shared.last_send_us.store(now, Ordering::Release);
        shared.published.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(array: &str) -> Option<Vec<String>> {
        let mut out = Vec::new();
        sockjs_messages(array, |m| out.push(m.to_owned())).then_some(out)
    }

    #[test]
    fn sockjs_arrays_with_and_without_escapes() {
        assert_eq!(
            split(r#"["a b","c"]"#),
            Some(vec!["a b".to_owned(), "c".to_owned()])
        );
        assert_eq!(split(r#"["x\",\"y"]"#), Some(vec![r#"x","y"#.to_owned()]));
        assert_eq!(split("nope"), None);
    }
}
