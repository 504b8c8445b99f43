//! The native JS client (`/rt/tidings.js`) in Debian's Chromium, against the real chat example
//! (`examples/chat`), behind the restrictive proxy of `tidings_tests::proxy`: which transport it
//! ends on behind each kind of middlebox, that it resumes on every transport when cut off
//! mid-stream, that it reports a gap when it was away longer than the retained history, and
//! that a plain browser `EventSource` resumes by itself with `Last-Event-ID`.
//!
//! Each case builds and starts the chat example (`--addr 127.0.0.1:0`, reading the address it
//! prints), puts a [`Proxy`] in front of it, and runs `tests/browser/native_driver.mjs`, which
//! opens pages in Chromium and answers the test's questions about them over stdin/stdout. The
//! test publishes numbered messages (`m0`, `m1`, …) itself, from a session of its own that
//! negotiates and POSTs to `/rt/native/send` on the server directly, so the browser only ever
//! receives; every case then requires the page to have received exactly the messages
//! published, once each, in order.
//!
//! Needs chromium and the node packages of `tests/browser`; `bash tests/run-all.sh` installs
//! both and runs these.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tidings_tests::driver::Browser;
use tidings_tests::example::Chat;
use tidings_tests::http::Request;
use tidings_tests::proxy::{Mode, Proxy};
use tokio::sync::Semaphore;

/// Cases run one at a time: each has a Chromium, the chat server and the proxy busy, the
/// machine has two shared cores, and the client's failure detection runs on timers that a
/// starved browser would trip.
static BROWSERS: Semaphore = Semaphore::const_new(1);

/// How long a page has to get a message that was published, once connected.
const DELIVERY: Duration = Duration::from_secs(30);
/// How long after the last expected message the page is watched for extra (repeated) ones.
const SETTLE: Duration = Duration::from_millis(700);

/// A session of the test's own on the chat server, which publishes `m0`, `m1`, … in order.
struct Publisher {
    server: SocketAddr,
    token: String,
    sent: usize,
}

impl Publisher {
    async fn new(server: SocketAddr) -> Publisher {
        let mut response = Request::post("/rt/native/negotiate?v=2").send(server).await;
        let status = response.status();
        let body = response.text().await;
        assert_eq!(status, 200, "negotiate: {body}");
        let info: Value = serde_json::from_str(&body).expect("negotiate answers JSON");
        let token = info["token"].as_str().expect("token").to_owned();
        Publisher {
            server,
            token,
            sent: 0,
        }
    }

    /// Publishes the next `count` messages, `per_request` to a POST.
    async fn publish(&mut self, count: usize, per_request: usize) {
        let end = self.sent + count;
        while self.sent < end {
            let n = per_request.min(end - self.sent);
            let batch: Vec<String> = (self.sent..self.sent + n)
                .map(|i| format!("m{i}"))
                .collect();
            let body = serde_json::to_string(&batch).expect("JSON");
            let path = format!("/rt/native/send?v=2&token={}", self.token);
            let mut response = Request::post(&path)
                .header("Content-Type", "application/json")
                .body(body)
                .send(self.server)
                .await;
            let status = response.status();
            let text = response.text().await;
            assert_eq!(status, 204, "send {:?}..: {text}", batch.first());
            self.sent += n;
        }
    }
}

/// What the chat page (`window.chat`) shows, plus what the test recorded on it.
/// What the chat page (`window.chat`) shows, plus what the test recorded on it; on the plain
/// EventSource page, what its script recorded (`window.es`).
const CHAT_STATE: &str = "(() => { const c = window.chat; if (!c) return window.es ?? null; \
    return { messages: c.messages, transport: c.transport, gaps: c.gaps, closes: c.closes, \
    failed: c.conn ? c.conn.failedTransports : null, events: window.testEvents ?? null }; })()";

/// The messages a page state holds.
fn messages(state: &Value) -> Vec<String> {
    state["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|v| v.as_str().unwrap_or("<not a string>").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// `m<from>` up to `m<to - 1>`.
fn numbered(from: usize, to: usize) -> Vec<String> {
    (from..to).map(|i| format!("m{i}")).collect()
}

/// Whether `got` is exactly `want`, and if not, how they differ.
fn compare(got: &[String], want: &[String]) -> Result<(), String> {
    if got == want {
        return Ok(());
    }
    let mut out = format!("got {} messages, want {}", got.len(), want.len());
    let mut seen = std::collections::HashSet::new();
    let dups: Vec<&str> = got
        .iter()
        .filter(|m| !seen.insert(m.as_str()))
        .map(String::as_str)
        .collect();
    if !dups.is_empty() {
        let _ = write!(
            out,
            "; {} repeated, first: {:?}",
            dups.len(),
            &dups[..dups.len().min(10)]
        );
    }
    let missing: Vec<&str> = want
        .iter()
        .filter(|m| !seen.contains(m.as_str()))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        let _ = write!(
            out,
            "; {} missing, first: {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
    }
    if let Some(i) = got.iter().zip(want).position(|(g, w)| g != w) {
        let around = |v: &[String]| v[i.saturating_sub(3)..(i + 4).min(v.len())].join(" ");
        let _ = write!(
            out,
            "; first difference at index {i}: got [{}], want [{}]",
            around(got),
            around(want)
        );
    }
    Err(out)
}

/// Everything about a page for a failure message: its state, then the tail of its log.
async fn describe(browser: &mut Browser, page: &str) -> String {
    let state = browser.eval(page, CHAT_STATE).await;
    let log = browser.log(page).await;
    let tail = &log[log.len().saturating_sub(200)..];
    let msgs = messages(&state);
    let mut rest = state.clone();
    if let Some(fields) = rest.as_object_mut() {
        fields.remove("messages");
        fields.remove("ids");
    }
    let edge = |v: &[String]| v.join(" ");
    format!(
        "page {page}: {rest}\n\
         {} messages, first [{}], last [{}]\n\
         page log ({} lines, last {}):\n  {}",
        msgs.len(),
        edge(&msgs[..msgs.len().min(8)]),
        edge(&msgs[msgs.len().saturating_sub(8)..]),
        log.len(),
        tail.len(),
        tail.join("\n  ")
    )
}

/// One case's browser, server and proxy, and the checks that end it.
struct Case {
    label: String,
    browser: Browser,
    chat: Chat,
    proxy: Proxy,
    publisher: Publisher,
    started: Instant,
    _permit: tokio::sync::SemaphorePermit<'static>,
}

impl Case {
    async fn start(label: String, heartbeat_ms: u64, mode: Mode) -> Case {
        let permit = BROWSERS.acquire().await.expect("semaphore never closes");
        let started = Instant::now();
        let chat = Chat::start(heartbeat_ms).await;
        let proxy = Proxy::start(chat.addr, mode).await;
        let publisher = Publisher::new(chat.addr).await;
        let browser = Browser::launch().await;
        Case {
            label,
            browser,
            chat,
            proxy,
            publisher,
            started,
            _permit: permit,
        }
    }

    /// The page through the proxy.
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy.addr)
    }

    /// Panics with `why` and everything the page saw, after closing the browser.
    async fn fail(mut self, page: &str, why: String) -> ! {
        // First, in case gathering what the page saw fails too.
        eprintln!("{}: {why}", self.label);
        let seen = describe(&mut self.browser, page).await;
        let label = self.label.clone();
        let elapsed = self.started.elapsed();
        self.browser.quit().await;
        panic!("{label}: {why} (after {elapsed:.1?})\n{seen}");
    }

    /// Waits until the chat page has `count` messages, then a little longer for extra ones,
    /// and returns its state.
    async fn settle(&mut self, page: &str, count: usize, within: Duration) -> Value {
        let expr = format!("window.chat.messages.length >= {count}");
        self.browser.wait(page, &expr, within).await;
        tokio::time::sleep(SETTLE).await;
        self.browser.eval(page, CHAT_STATE).await
    }

    /// Waits for `expr` on `page`, failing the case with `what` when it does not come.
    async fn expect(mut self, page: &str, expr: &str, within: Duration, what: &str) -> Case {
        if !self.browser.wait(page, expr, within).await {
            let why = format!("{what}: not within {within:?}");
            self.fail(page, why).await;
        }
        self
    }

    /// Publishes the next `count` messages, `per_request` to a POST, and notes it in the log
    /// of page `p1`.
    async fn publish(&mut self, count: usize, per_request: usize) {
        let first = self.publisher.sent;
        self.publisher.publish(count, per_request).await;
        let text = format!("published m{first}..=m{}", self.publisher.sent - 1);
        self.browser.note("p1", &text).await;
    }

    /// Cuts every connection through the proxy, noting it in the log of page `p1`.
    async fn cut(&mut self) {
        let open = self.proxy.connections();
        self.proxy.cut_all();
        let text = format!("cut {open} connection(s) at the proxy");
        self.browser.note("p1", &text).await;
    }

    /// Ends a passing case.
    async fn finish(mut self) {
        let elapsed = self.started.elapsed();
        // `TIDINGS_TEST_VERBOSE=1 cargo test … -- --nocapture` shows what passing pages saw.
        if std::env::var_os("TIDINGS_TEST_VERBOSE").is_some() {
            eprintln!(
                "{}\n{}",
                self.label,
                describe(&mut self.browser, "p1").await
            );
        }
        self.browser.quit().await;
        drop(self.proxy);
        drop(self.chat);
        eprintln!("{}: passed in {elapsed:.1?}", self.label);
    }
}

/// How many times the client behind the page saw its transport connection drop (and
/// reconnected).
async fn drops(browser: &mut Browser, page: &str) -> usize {
    browser
        .log(page)
        .await
        .iter()
        .filter(|l| l.contains("tidings: ") && l.contains(" dropped: "))
        .count()
}

const NEGOTIATED: &str = "performance.getEntriesByType('resource')\
    .some((e) => e.name.includes('/rt/native/negotiate'))";

// ---- 1. The chat page in `auto` mode behind each kind of proxy ----

/// How the publishing goes in a proxy case.
#[derive(Clone, Copy)]
enum Publish {
    /// All 500 at once, once the page is on its first transport.
    Connected,
    /// While the client is still finding a transport that works: from right after the page
    /// negotiated, 10 messages every 100 ms.
    DuringFallback,
    /// Once connected, 5 bursts of 100 with a pause of this long after each, so an idle
    /// timeout cuts the connection between bursts.
    Bursts(Duration),
}

async fn behind_proxy(
    label: &str,
    mode: Mode,
    heartbeat_ms: u64,
    publish: Publish,
    ends_on: &[&str],
) {
    const COUNT: usize = 500;
    let mut case = Case::start(format!("{label} ({mode:?})"), heartbeat_ms, mode).await;
    let url = case.url("/");
    case.browser.open("p1", &url).await;
    match publish {
        Publish::Connected => {
            case = case
                .expect("p1", "window.chat.transport", DELIVERY, "connected")
                .await;
            case.publish(COUNT, 10).await;
        }
        Publish::DuringFallback => {
            case = case.expect("p1", NEGOTIATED, DELIVERY, "negotiated").await;
            for _ in 0..COUNT / 10 {
                case.publish(10, 10).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Publish::Bursts(pause) => {
            case = case
                .expect("p1", "window.chat.transport", DELIVERY, "connected")
                .await;
            for _ in 0..5 {
                case.publish(COUNT / 5, 10).await;
                tokio::time::sleep(pause).await;
            }
        }
    }
    let state = case.settle("p1", COUNT, DELIVERY).await;
    if let Err(why) = compare(&messages(&state), &numbered(0, COUNT)) {
        case.fail("p1", why).await;
    }
    let transport = state["transport"].as_str().unwrap_or("none");
    if !ends_on.contains(&transport) {
        let why = format!("ended on {transport}, want one of {ends_on:?}");
        case.fail("p1", why).await;
    }
    if state["closes"] != json!([]) || state["gaps"] != json!([]) {
        case.fail("p1", "the connection closed or reported a gap".into())
            .await;
    }
    // The page told the node which transport it gave up (`fb=`), and the node counted it.
    let from_websocket: f64 = (case.chat.scrape().await)
        .iter()
        .filter(|(series, _)| {
            series.starts_with(r#"tidings_transport_fallbacks_total{from="websocket""#)
        })
        .map(|(_, count)| count)
        .sum();
    // Behind an idle timeout the WebSocket may or may not be given up: that case is not checked.
    let gave_up = !ends_on.contains(&"websocket");
    let checked = gave_up || mode == Mode::Pass;
    if checked && gave_up != (from_websocket >= 1.0) {
        let why = format!("{from_websocket} fallbacks from websocket counted");
        case.fail("p1", why).await;
    }
    if matches!(publish, Publish::Bursts(_)) && drops(&mut case.browser, "p1").await == 0 {
        let why = "the proxy never cut the connection (no reconnect seen)".into();
        case.fail("p1", why).await;
    }
    case.finish().await;
}

/// `proxy_case!(test_name, "label", mode, Publish, &["transport", …])`: one ignored test, the
/// chat page behind a `mode` proxy (heartbeat 1 s), ending on one of the transports.
macro_rules! proxy_case {
    ($name:ident, $label:literal, $mode:expr, $publish:expr, $ends_on:expr) => {
        #[tokio::test(flavor = "multi_thread")]
        #[ignore = "needs chromium and tests/browser node packages; run bash tests/run-all.sh"]
        async fn $name() {
            behind_proxy($label, $mode, 1000, $publish, $ends_on).await;
        }
    };
}

proxy_case!(
    proxy_pass_stays_on_websocket,
    "pass",
    Mode::Pass,
    Publish::Connected,
    &["websocket"]
);
// Published once the page is on its last transport: SSE at once; SSE after about 3 s (when
// the proxy drops the WebSocket it accepted and starved); polling after about 10 s (two open
// timeouts, SSE's and streaming's, whose responses the proxy holds).
proxy_case!(
    proxy_block_upgrade_falls_back_to_sse,
    "block upgrade",
    Mode::BlockUpgrade,
    Publish::Connected,
    &["sse", "streaming"]
);
proxy_case!(
    proxy_kill_websocket_falls_back_to_sse,
    "kill websocket",
    Mode::KillWebSocket,
    Publish::Connected,
    &["sse", "streaming"]
);
proxy_case!(
    proxy_buffer_falls_back_to_polling,
    "buffer",
    Mode::Buffer,
    Publish::Connected,
    &["polling"]
);
// The same, publishing from right after the page negotiated, while it is still finding a
// transport that works: what the server wrote on the connections the proxy refused, starved
// or held must still reach the page, once, on the transport it ends on.
//
// Known to fail (kill websocket always, buffer about one run in five) while the server saves a
// session's cursors when a native connection is taken over or a WebSocket ends without a
// close: the client has no position before its first `open` frame, so its first working
// transport starts from those cursors, past what the starved or held connection "delivered".
proxy_case!(
    proxy_block_upgrade_publish_during_fallback,
    "block upgrade, publishing during the fallback",
    Mode::BlockUpgrade,
    Publish::DuringFallback,
    &["sse", "streaming"]
);
proxy_case!(
    proxy_kill_websocket_publish_during_fallback,
    "kill websocket, publishing during the fallback",
    Mode::KillWebSocket,
    Publish::DuringFallback,
    &["sse", "streaming"]
);
proxy_case!(
    proxy_buffer_publish_during_fallback,
    "buffer, publishing during the fallback",
    Mode::Buffer,
    Publish::DuringFallback,
    &["polling"]
);

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium and tests/browser node packages; run bash tests/run-all.sh"]
async fn proxy_idle_timeout_reconnects() {
    // Heartbeats (5 s) are rarer than the proxy's idle limit (2 s): every pause between
    // bursts gets the connection cut.
    behind_proxy(
        "idle timeout",
        Mode::IdleTimeout(Duration::from_millis(2000)),
        5000,
        Publish::Bursts(Duration::from_millis(3000)),
        &["websocket", "sse", "streaming", "polling"],
    )
    .await;
}

// ---- Polling opens at once in a quiet room ----

/// The chat page forced onto polling, with nothing published, connects in a few seconds: its
/// first poll answers `open` at once instead of after a heartbeat (25 s here).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium and tests/browser node packages; run bash tests/run-all.sh"]
async fn polling_opens_at_once_in_a_quiet_room() {
    let mut case = Case::start("polling in a quiet room".into(), 25_000, Mode::Pass).await;
    let url = case.url("/?transport=polling");
    case.browser.open("p1", &url).await;
    let on = "window.chat.transport === 'polling'";
    case = case
        .expect("p1", on, Duration::from_secs(5), "connected on polling")
        .await;
    case.publish(1, 1).await;
    let state = case.settle("p1", 1, DELIVERY).await;
    if let Err(why) = compare(&messages(&state), &numbered(0, 1)) {
        case.fail("p1", why).await;
    }
    case.finish().await;
}

// ---- 2. Resume on each transport when the proxy drops everything mid-stream ----

async fn resume(transport: &str) {
    const COUNT: usize = 300;
    let label = format!("resume on {transport}");
    let mut case = Case::start(label, 1000, Mode::Pass).await;
    let url = case.url(&format!("/?transport={transport}"));
    case.browser.open("p1", &url).await;
    let on = format!("window.chat.transport === '{transport}'");
    case = case.expect("p1", &on, DELIVERY, "connected").await;
    let mut cuts = 0;
    while case.publisher.sent < COUNT {
        case.publish(10, 10).await;
        if case.publisher.sent % 100 == 0 && case.publisher.sent < COUNT {
            case.cut().await;
            cuts += 1;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(cuts, 2);
    let state = case.settle("p1", COUNT, DELIVERY).await;
    if let Err(why) = compare(&messages(&state), &numbered(0, COUNT)) {
        case.fail("p1", why).await;
    }
    if state["transport"] != json!(transport)
        || state["closes"] != json!([])
        || state["gaps"] != json!([])
    {
        case.fail(
            "p1",
            format!("did not stay on {transport} without gaps or closes"),
        )
        .await;
    }
    // A poll in flight is cut like a stream; between polls there may be nothing to cut.
    if transport != "polling" && drops(&mut case.browser, "p1").await == 0 {
        case.fail("p1", "no connection was cut (no reconnect seen)".into())
            .await;
    }
    case.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium and tests/browser node packages; run bash tests/run-all.sh"]
async fn resume_websocket() {
    resume("websocket").await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium and tests/browser node packages; run bash tests/run-all.sh"]
async fn resume_sse() {
    resume("sse").await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium and tests/browser node packages; run bash tests/run-all.sh"]
async fn resume_streaming() {
    resume("streaming").await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium and tests/browser node packages; run bash tests/run-all.sh"]
async fn resume_polling() {
    resume("polling").await;
}

// ---- 3. Away for longer than the retained history (1000 messages) ----

async fn away_past_retention(transport: &str) {
    const BEFORE: usize = 10;
    const AWAY: usize = 1500;
    /// The chat example retains this many messages.
    const RETAINED: usize = 1000;
    let label = format!("away past retention on {transport}");
    let mut case = Case::start(label, 1000, Mode::Pass).await;
    let url = case.url(&format!("/?transport={transport}"));
    case.browser.open("p1", &url).await;
    let on = format!("window.chat.transport === '{transport}'");
    case = case.expect("p1", &on, DELIVERY, "connected").await;
    // Where in the message list each gap came.
    case.browser
        .eval(
            "p1",
            "window.testEvents = []; window.chat.conn.addEventListener('gap', (e) => \
             window.testEvents.push({ gap: e.detail.missed, at: window.chat.messages.length }))",
        )
        .await;
    case.publish(BEFORE, 10).await;
    let state = case.settle("p1", BEFORE, DELIVERY).await;
    if let Err(why) = compare(&messages(&state), &numbered(0, BEFORE)) {
        case.fail("p1", why).await;
    }

    // Away: every request the page makes fails, and what it had open is cut.
    case.browser.block("p1").await;
    case.cut().await;
    case = case.unblock_after_publishing(BEFORE, AWAY).await;
    let total = BEFORE + AWAY;
    let last = format!("window.chat.messages.includes('m{}')", total - 1);
    case = case
        .expect("p1", &last, Duration::from_secs(60), "back")
        .await;
    tokio::time::sleep(SETTLE).await;
    let state = case.browser.eval("p1", CHAT_STATE).await;
    let got = messages(&state);
    // The page got the first `at` messages, then a gap of exactly the ones no longer
    // retained, then the last RETAINED, each once and in order. `at` is usually BEFORE, but
    // can be more: a request already on its way when the page was blocked is not blocked,
    // and Chromium resends a GET whose kept-alive connection was cut, by itself.
    let events = state["events"].as_array().cloned().unwrap_or_default();
    let [event] = events.as_slice() else {
        let why = format!("want exactly one gap, got {}", state["events"]);
        case.fail("p1", why).await;
    };
    let at = event["at"].as_u64().and_then(|n| usize::try_from(n).ok());
    let missed = event["gap"].as_u64().and_then(|n| usize::try_from(n).ok());
    let (Some(at), Some(missed)) = (at, missed) else {
        let why = format!("the gap says no count or place: {event}");
        case.fail("p1", why).await;
    };
    let mut want = numbered(0, at);
    want.extend(numbered(total - RETAINED, total));
    if let Err(why) = compare(&got, &want) {
        case.fail("p1", format!("{why} (gap of {missed} after {at} messages)"))
            .await;
    }
    if at < BEFORE || missed == 0 || at + missed != total - RETAINED {
        let why = format!(
            "the gap of {missed} after {at} messages does not cover exactly m{at}..m{}",
            total - RETAINED - 1
        );
        case.fail("p1", why).await;
    }
    if state["transport"] != json!(transport) || state["closes"] != json!([]) {
        case.fail("p1", format!("did not come back on {transport}"))
            .await;
    }
    case.finish().await;
}

impl Case {
    /// Publishes `count` messages after the first `from` while the page is blocked, then lets
    /// it through again.
    async fn unblock_after_publishing(mut self, from: usize, count: usize) -> Case {
        assert_eq!(self.publisher.sent, from);
        // Let the client notice it is cut off before anything is published.
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.publish(count, 100).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.browser.unblock("p1").await;
        self
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium and tests/browser node packages; run bash tests/run-all.sh"]
async fn away_past_retention_websocket() {
    away_past_retention("websocket").await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium and tests/browser node packages; run bash tests/run-all.sh"]
async fn away_past_retention_sse() {
    away_past_retention("sse").await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium and tests/browser node packages; run bash tests/run-all.sh"]
async fn away_past_retention_streaming() {
    away_past_retention("streaming").await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium and tests/browser node packages; run bash tests/run-all.sh"]
async fn away_past_retention_polling() {
    away_past_retention("polling").await;
}

// ---- 4. A plain EventSource, no Tidings client ----

/// Negotiates, then follows the session with nothing but `new EventSource(…)`, recording what
/// it gets in `window.es`.
const PLAIN_EVENTSOURCE: &str = "(async () => {
  const es = (window.es = { messages: [], ids: [], opens: 0, errors: 0 });
  const res = await fetch('/rt/native/negotiate?v=2', { method: 'POST' });
  const { token } = await res.json();
  const source = new EventSource('/rt/native/sse?v=2&token=' + encodeURIComponent(token));
  window.source = source;
  // Every event is one JSON frame; a batch of messages carries its position as its id.
  source.onmessage = (e) => {
    const frame = JSON.parse(e.data);
    if (frame.type === 'open') es.opens += 1;
    if (frame.type === 'messages') {
      es.messages.push(...frame.data);
      es.ids.push(e.lastEventId);
    }
  };
  source.onerror = () => { es.errors += 1; };
  return token;
})()";

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium and tests/browser node packages; run bash tests/run-all.sh"]
async fn plain_eventsource_resumes_with_last_event_id() {
    const COUNT: usize = 300;
    let mut case = Case::start("plain EventSource".into(), 1000, Mode::Pass).await;
    // Any page of the proxy's origin will do: the script runs in it.
    let url = case.url("/rt/tidings.js");
    case.browser.open("p1", &url).await;
    case.browser.eval("p1", PLAIN_EVENTSOURCE).await;
    case = case
        .expect("p1", "window.es.opens > 0", DELIVERY, "the stream opened")
        .await;
    // Cut after m99 and m199; the EventSource retries a second later (`retry: 1000`), so
    // the next 50 are published while it is away; it must be back before the next cut.
    let mut cuts = 0;
    while case.publisher.sent < COUNT {
        case.publish(10, 10).await;
        let sent = case.publisher.sent;
        if sent % 100 == 0 && sent < COUNT {
            case.cut().await;
            cuts += 1;
        } else if sent % 100 == 50 && cuts > 0 {
            let back = format!("window.es.opens > {cuts}");
            case = case.expect("p1", &back, DELIVERY, "reopened").await;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let expr = format!("window.es.messages.length >= {COUNT}");
    case.browser.wait("p1", &expr, DELIVERY).await;
    tokio::time::sleep(SETTLE).await;
    let state = case.browser.eval("p1", CHAT_STATE).await;
    if let Err(why) = compare(&messages(&state), &numbered(0, COUNT)) {
        case.fail("p1", why).await;
    }
    // Both cuts were seen and recovered from by the EventSource itself.
    let (opens, errors) = (state["opens"].as_u64(), state["errors"].as_u64());
    if opens < Some(3) || errors < Some(2) {
        let why = format!("want 3 opens and 2 errors (two cuts), got {opens:?} and {errors:?}");
        case.fail("p1", why).await;
    }
    let resumed = case
        .browser
        .log("p1")
        .await
        .iter()
        .filter(|l| l.contains("/native/sse") && l.contains("last-event-id="))
        .count();
    if resumed < 2 {
        let why = format!("want 2 reconnects sending Last-Event-ID, saw {resumed}");
        case.fail("p1", why).await;
    }
    case.finish().await;
}
