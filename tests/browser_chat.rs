//! The chat demo (`examples/chat`) in Debian's Chromium, as people use it, and the native JS
//! client's `persist`, close-code and network handling:
//!
//! - two people see each other online, write to each other alone, and a private message sent
//!   while its recipient was away arrives on their next visit, once, with nothing older handed
//!   again; the server's `POST /send` reaches one person, and a bad name is refused with a JSON
//!   error;
//! - a new page shows the room's last 50 messages, in order;
//! - a page that reloads, with `persist`, resumes its session instead of starting a new one,
//!   and receives what was published while it reloaded, once each, in order.
//! - a server close whose code says "reconnect" (3002) gets a new session and a gap; an
//!   application's close (4000) ends the client for good;
//! - taken off the network, the client waits for it, and reconnects the moment the browser says
//!   it is back, resuming its session.
//!
//! The chat cases build and start the chat example (`--addr 127.0.0.1:0 --heartbeat-ms 1000`,
//! reading the address it prints) and open its page; the `persist` case serves a page of its
//! own next to a Tidings service in this process. Both drive Chromium through
//! `tests/browser/native_driver.mjs`.
//!
//! Needs chromium and the node packages of `tests/browser`; `bash tests/run-all.sh` installs
//! both and runs these.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tidings::store::Store;
use tidings::{MemoryStore, Tidings};
use tidings_tests::Server;
use tidings_tests::driver::Browser;
use tidings_tests::example::Chat;
use tidings_tests::http::Request as HttpRequest;
use tokio::sync::{Semaphore, SemaphorePermit, watch};

/// Cases run one at a time: each has a Chromium and a server busy, the machine has two shared
/// cores, and the client's failure detection runs on timers that a starved browser would trip.
static BROWSERS: Semaphore = Semaphore::const_new(1);

/// How long a page has to show what it is waited for: a message, who is online.
const DELIVERY: Duration = Duration::from_secs(30);
/// How long after the last expected message a page is watched for extra (repeated) ones.
const SETTLE: Duration = Duration::from_millis(700);

/// What a page shows: the chat page's `window.chat`, or the `persist` page's `window.page`,
/// without the functions and the connection object (its skipped transports instead).
const STATE: &str = "(() => { const c = window.chat ?? window.page; if (!c) return null; \
    const { conn, say, join, leave, ...state } = c; const live = conn ?? window.conn; \
    return { ...state, failed: live ? live.failedTransports : null }; })()";

/// One case's browser, and what fails it with everything a page saw.
struct Case {
    label: &'static str,
    started: Instant,
    browser: Browser,
    pages: Vec<&'static str>,
    _permit: SemaphorePermit<'static>,
}

impl Case {
    async fn start(label: &'static str) -> Case {
        let permit = BROWSERS
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let started = Instant::now();
        let browser = Browser::launch().await;
        Case {
            label,
            started,
            browser,
            pages: Vec::new(),
            _permit: permit,
        }
    }

    /// Opens `url` in a new page named `page`.
    async fn open(&mut self, page: &'static str, url: &str) {
        self.browser.open(page, url).await;
        self.pages.push(page);
    }

    /// The value of `expr` on `page`.
    async fn eval(&mut self, page: &str, expr: &str) -> Value {
        self.browser.eval(page, expr).await
    }

    /// Fails the case unless `reloads` saw exactly `want` negotiations (sessions) so far.
    async fn negotiated(self, reloads: &Reloads, want: usize, when: &str) -> Case {
        let got = reloads.negotiations();
        if got != want {
            let why = format!("{got} negotiations {when}, want {want}");
            self.fail("p1", why).await;
        }
        self
    }

    /// Adds `text` to the log of `page`, so the test's steps show among its events.
    async fn note(&mut self, page: &str, text: &str) {
        self.browser.note(page, text).await;
    }

    /// Waits for `expr` on `page`, failing the case with `what` when it does not come.
    async fn expect(mut self, page: &str, expr: &str, within: Duration, what: &str) -> Case {
        if !self.browser.wait(page, expr, within).await {
            let why = format!("{what}: not within {within:?}");
            self.fail(page, why).await;
        }
        self
    }

    /// Panics with `why` and everything `page` saw, after closing the browser.
    async fn fail(mut self, page: &str, why: String) -> ! {
        // First, in case gathering what the page saw fails too.
        eprintln!("{}: {page}: {why}", self.label);
        let state = self.browser.eval(page, STATE).await;
        let log = self.browser.log(page).await;
        let tail = log[log.len().saturating_sub(150)..].join("\n  ");
        let elapsed = self.started.elapsed();
        self.browser.quit().await;
        panic!(
            "{}: page {page}: {why} (after {elapsed:.1?})\n{state}\npage log:\n  {tail}",
            self.label
        );
    }

    /// Ends a passing case.
    async fn finish(mut self) {
        let elapsed = self.started.elapsed();
        // `TIDINGS_TEST_VERBOSE=1 cargo test … -- --nocapture` shows what passing pages saw.
        if std::env::var_os("TIDINGS_TEST_VERBOSE").is_some() {
            for page in self.pages.clone() {
                let log = self.browser.log(page).await;
                eprintln!("{}: page {page}:\n  {}", self.label, log.join("\n  "));
            }
        }
        self.browser.quit().await;
        eprintln!("{}: passed in {elapsed:.1?}", self.label);
    }
}

/// POSTs `body` to `path` of the chat; the status and the body of the answer.
async fn post_to(chat: &Chat, path: &str, body: &str) -> (u16, String) {
    let mut response = HttpRequest::post(path).body(body).send(chat.addr).await;
    let status = response.status();
    (status, response.text().await)
}

/// JS: whether the chat page shows exactly `users` online, in `window.chat.presence` and in
/// the count on the page.
fn online(users: &[&str]) -> String {
    let list = json!(users);
    let count = users.len();
    format!(
        "(() => {{ const p = window.chat?.presence; \
         return !!p && JSON.stringify(p.users) === JSON.stringify({list}) && p.count === {count} \
         && document.getElementById('online-count')?.textContent === '{count}'; }})()"
    )
}

/// JS: whether the chat page holds a private message with `text`.
fn has_private(text: &str) -> String {
    format!(
        "window.chat.privates.some((p) => p.text === {})",
        json!(text)
    )
}

/// A private message as `window.chat.privates` holds it.
fn private(from: &str, to: &str, text: &str) -> Value {
    json!({"from": from, "to": to, "text": text})
}

// ---- 1. Who is online, and private messages ----

/// Alice and Bob, each on a page of their own: both see exactly the two of them online; a
/// private message from Alice reaches Bob; Bob leaves, which Alice sees, and she writes to him
/// again; when Bob comes back that message is handed to him, once, and the one he had already
/// read is not handed again. The server's `POST /send?user=bob` reaches Bob as a private
/// message from `server`, and `POST /send?user=` (no name) is refused: `400` and a JSON error.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium and tests/browser node packages; run bash tests/run-all.sh"]
async fn chat_shows_who_is_online_and_carries_private_messages_to_later_visits() {
    let mut case = Case::start("who is online, private messages").await;
    let chat = Chat::start(1000).await;
    case.open("alice", &chat.url("/?user=alice")).await;
    case.open("bob", &chat.url("/?user=bob")).await;
    let both = online(&["alice", "bob"]);
    case = case
        .expect("alice", &both, DELIVERY, "alice sees alice and bob online")
        .await;
    case = case
        .expect("bob", &both, DELIVERY, "bob sees alice and bob online")
        .await;

    case.note("alice", "alice writes p1 to bob").await;
    case.eval("alice", "window.chat.say('p1', 'bob')").await;
    case = case
        .expect("bob", &has_private("p1"), DELIVERY, "bob gets p1")
        .await;
    let got = case.eval("bob", "window.chat.privates").await;
    if got != json!([private("alice", "bob", "p1")]) {
        case.fail("bob", format!("bob's private messages: {got}"))
            .await;
    }

    case.note("bob", "bob leaves").await;
    case.eval("bob", "window.chat.leave()").await;
    case = case
        .expect("alice", &online(&["alice"]), DELIVERY, "alice sees bob go")
        .await;
    case.note("alice", "alice writes p2 to bob, who is away")
        .await;
    case.eval("alice", "window.chat.say('p2', 'bob')").await;
    // Her own copy comes back once the server has stored it for him.
    case = case
        .expect("alice", &has_private("p2"), DELIVERY, "alice's copy of p2")
        .await;

    case.note("bob", "bob comes back").await;
    if case.eval("bob", "window.chat.join('bob')").await != json!(true) {
        case.fail("bob", "join('bob') refused the name".into())
            .await;
    }
    case = case
        .expect(
            "bob",
            &has_private("p2"),
            DELIVERY,
            "bob gets p2 on his return",
        )
        .await;
    tokio::time::sleep(SETTLE).await;
    let got = case.eval("bob", "window.chat.privates").await;
    if got != json!([private("alice", "bob", "p2")]) {
        let why = format!("back, bob has {got}; want p2 once and not p1 again");
        case.fail("bob", why).await;
    }

    case.note("bob", "POST /send?user=bob").await;
    let (status, body) = post_to(&chat, "/send?user=bob", "from-server").await;
    let answer: Value = serde_json::from_str(&body).unwrap_or_default();
    if status != 200 || !answer["offset"].is_u64() {
        let why = format!("POST /send?user=bob answered {status} {body}");
        case.fail("bob", why).await;
    }
    case = case
        .expect(
            "bob",
            &has_private("from-server"),
            DELIVERY,
            "bob gets from-server",
        )
        .await;
    tokio::time::sleep(SETTLE).await;
    let got = case.eval("bob", "window.chat.privates").await;
    let want = json!([
        private("alice", "bob", "p2"),
        private("server", "bob", "from-server"),
    ]);
    if got != want {
        case.fail("bob", format!("bob has {got}, want {want}"))
            .await;
    }
    // Alice has her copies of what she wrote, and nothing sent to Bob alone.
    let got = case.eval("alice", "window.chat.privates").await;
    let want = json!([private("alice", "bob", "p1"), private("alice", "bob", "p2")]);
    if got != want {
        case.fail("alice", format!("alice has {got}, want {want}"))
            .await;
    }

    let (status, body) = post_to(&chat, "/send?user=", "to nobody").await;
    let answer: Value = serde_json::from_str(&body).unwrap_or_default();
    let error = answer["error"].as_str().unwrap_or_default();
    if status != 400 || !error.starts_with("`user` must name the recipient") {
        let why = format!("POST /send?user= answered {status} {body}; want 400 and a JSON error");
        case.fail("bob", why).await;
    }
    case.finish().await;
}

// ---- 2. The room's history ----

/// 60 messages published to the room before a page opens: the page shows the last 50, `h10`
/// to `h59`, in order, and nothing else.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium and tests/browser node packages; run bash tests/run-all.sh"]
async fn a_new_chat_page_shows_the_last_50_messages() {
    let mut case = Case::start("the last 50 messages").await;
    let chat = Chat::start(1000).await;
    // One at a time, each after the answer to the one before: the room has them in this order.
    for i in 0..60 {
        let (status, body) = post_to(&chat, "/publish", &format!("h{i}")).await;
        let answer: Value = serde_json::from_str(&body).unwrap_or_default();
        assert!(
            status == 200 && answer["offset"].is_u64(),
            "POST /publish h{i} answered {status} {body}"
        );
    }
    case.open("p1", &chat.url("/")).await;
    case = case
        .expect(
            "p1",
            "window.chat.messages.length >= 50",
            DELIVERY,
            "50 messages",
        )
        .await;
    tokio::time::sleep(SETTLE).await;
    let state = case.eval("p1", STATE).await;
    let want: Vec<String> = (10..60).map(|i| format!("h{i}")).collect();
    if state["messages"] != json!(want) {
        let why = format!("want h10 to h59, got {}", state["messages"]);
        case.fail("p1", why).await;
    }
    if state["gaps"] != json!([]) || state["closes"] != json!([]) {
        case.fail("p1", "the page reported a gap or a close".into())
            .await;
    }
    let shown = case
        .eval(
            "p1",
            "document.querySelectorAll('#messages li.message').length",
        )
        .await;
    if shown != json!(50) {
        case.fail("p1", format!("{shown} messages shown, want 50"))
            .await;
    }
    case.finish().await;
}

// ---- 3. A reload with `persist` ----

/// The page of the `persist` case: nothing but its script.
const PERSIST_PAGE: &str = r#"<!doctype html>
<html>
<head>
  <meta charset="utf-8">
  <title>Tidings persist test</title>
  <script type="module" src="/persist_page.mjs"></script>
</head>
<body>
  <p>The native client with <code>persist</code>; see tests/browser_chat.rs.</p>
</body>
</html>
"#;

/// Its script, run in the browser.
const PERSIST_SCRIPT: &str = include_str!("browser/persist_page.mjs");

/// What the server of the `persist` case lets the test see and steer.
#[derive(Clone)]
struct Reloads {
    /// Requests for `/rt/native/negotiate`, from any page: one per new session.
    negotiations: Arc<AtomicUsize>,
    /// Requests for the page's script: one per load of the page.
    loads: watch::Sender<usize>,
    /// Beacons of the page's `pagehide`: one per page left. A page handles nothing after it.
    left: watch::Sender<usize>,
    /// Whether the script is answered. While it is not, a page that loads waits for it before
    /// its client exists: the test publishes meanwhile what the session must not miss.
    released: watch::Sender<bool>,
}

impl Reloads {
    fn new() -> Reloads {
        Reloads {
            negotiations: Arc::new(AtomicUsize::new(0)),
            loads: watch::Sender::new(0),
            left: watch::Sender::new(0),
            released: watch::Sender::new(true),
        }
    }

    fn negotiations(&self) -> usize {
        self.negotiations.load(Ordering::SeqCst)
    }
}

/// Waits until `counter` reaches `count`; false after `within`.
async fn until(counter: &watch::Sender<usize>, count: usize, within: Duration) -> bool {
    let mut counter = counter.subscribe();
    tokio::time::timeout(within, counter.wait_for(|&n| n >= count))
        .await
        .is_ok_and(|reached| reached.is_ok())
}

async fn persist_page() -> Response {
    let headers = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    (headers, PERSIST_PAGE).into_response()
}

async fn persist_script(State(reloads): State<Reloads>) -> Response {
    reloads.loads.send_modify(|n| *n += 1);
    let mut released = reloads.released.subscribe();
    // Fails only once every sender is gone, and `reloads` holds one.
    let _ = released.wait_for(|&released| released).await;
    // Browsers refuse module scripts that are not served as JavaScript.
    let headers = [
        (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    (headers, PERSIST_SCRIPT).into_response()
}

async fn page_left(State(reloads): State<Reloads>) -> StatusCode {
    reloads.left.send_modify(|n| *n += 1);
    StatusCode::NO_CONTENT
}

async fn count_negotiations(
    State(reloads): State<Reloads>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path().ends_with("/native/negotiate") {
        reloads.negotiations.fetch_add(1, Ordering::SeqCst);
    }
    next.run(request).await
}

/// The page of the `persist` cases, its script, and `tidings` at `/rt`, watched by `reloads`.
fn persist_app(tidings: &Tidings, reloads: &Reloads) -> Router {
    Router::new()
        .route("/", get(persist_page))
        .route("/persist_page.mjs", get(persist_script))
        .route("/left", post(page_left))
        // Chromium asks every origin for one; a 404 would be a misleading console error.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .with_state(reloads.clone())
        .nest_service("/rt", tidings.router())
        .layer(middleware::from_fn_with_state(
            reloads.clone(),
            count_negotiations,
        ))
}

/// A page with `persist` gets `m0` to `m4`, then reloads; `m5` to `m9` are published after it
/// left (its `pagehide` beacon came) and before the reloaded page's client starts (the server
/// holds the page's script meanwhile). The reloaded page resumes the session kept in
/// `sessionStorage`, with no second negotiate, and receives exactly `m5` to `m9`: nothing lost,
/// nothing handed twice, no gap.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium and tests/browser node packages; run bash tests/run-all.sh"]
async fn a_reload_resumes_without_losing_or_repeating_messages() {
    let mut case = Case::start("a reload with persist").await;
    let tidings = tidings_tests::builder()
        .heartbeat(Duration::from_secs(1))
        .build();
    let hub = tidings.hub();
    let reloads = Reloads::new();
    let server = Server::start(persist_app(&tidings, &reloads)).await;
    let publish = |from: usize, to: usize| {
        let hub = hub.clone();
        async move {
            for i in from..to {
                hub.broadcast(format!("m{i}"))
                    .await
                    .unwrap_or_else(|e| panic!("publish m{i}: {e}"));
            }
        }
    };
    let numbered = |from: usize, to: usize| -> Value {
        json!((from..to).map(|i| format!("m{i}")).collect::<Vec<_>>())
    };

    case.open("p1", &format!("{}/", server.http_url())).await;
    case = case
        .expect("p1", "window.page?.transport", DELIVERY, "connected")
        .await;
    publish(0, 5).await;
    case.note("p1", "published m0..=m4").await;
    case = case
        .expect(
            "p1",
            "window.page.messages.length >= 5",
            DELIVERY,
            "m0 to m4",
        )
        .await;
    tokio::time::sleep(SETTLE).await;
    let state = case.eval("p1", STATE).await;
    if state["messages"] != numbered(0, 5) {
        let why = format!(
            "before the reload: want m0 to m4, got {}",
            state["messages"]
        );
        case.fail("p1", why).await;
    }
    case = case.negotiated(&reloads, 1, "before the reload").await;

    // `location.reload()` from the page rather than Playwright's `page.reload()`, which waits
    // for the load event, and so for the script held back below.
    reloads.released.send_replace(false);
    case.note("p1", "reloading").await;
    case.eval(
        "p1",
        "window.beforeReload = true; setTimeout(() => location.reload(), 0); null",
    )
    .await;
    // The old page may be torn down after the new one commits (and asks for its script): until
    // its `pagehide`, it could still take what is published and keep its position.
    if !until(&reloads.left, 1, DELIVERY).await {
        case.fail("p1", "no beacon from the page as it left".into())
            .await;
    }
    if !until(&reloads.loads, 2, DELIVERY).await {
        case.fail("p1", "the page did not load again".into()).await;
    }
    publish(5, 10).await;
    reloads.released.send_replace(true);
    case.note("p1", "published m5..=m9 while the page reloaded")
        .await;

    // Until the new page's script ran, `window.page` is gone or the old one's.
    let back = "!window.beforeReload && window.page?.messages.length >= 5";
    case = case
        .expect("p1", back, DELIVERY, "m5 to m9 after the reload")
        .await;
    tokio::time::sleep(SETTLE).await;
    let state = case.eval("p1", STATE).await;
    if state["messages"] != numbered(5, 10) {
        let why = format!("after the reload: want m5 to m9, got {}", state["messages"]);
        case.fail("p1", why).await;
    }
    if state["gaps"] != json!([]) || state["closes"] != json!([]) {
        case.fail("p1", "the page reported a gap or a close".into())
            .await;
    }
    let when = "after the reload (a new session would be a second)";
    case.negotiated(&reloads, 1, when).await.finish().await;
}

// ---- 4. Server closes that say "reconnect", and others ----

/// A close whose code says "reconnect" in the close-code table (3002: the session expired under
/// the client) makes the client start a new session, report a gap of unknown size, and carry
/// on; an application's close (4000) ends it for good: no new session follows.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium and tests/browser node packages; run bash tests/run-all.sh"]
async fn the_client_reconnects_after_a_close_that_says_so_and_not_after_others() {
    let mut case = Case::start("closes that say reconnect, and others").await;
    let store = MemoryStore::new();
    let builder = Tidings::builder()
        .store(store.clone())
        .heartbeat(Duration::from_secs(1));
    let (builder, opened) = tidings_tests::recording_opens(builder);
    let tidings = builder.build();
    let hub = tidings.hub();
    let reloads = Reloads::new();
    let server = Server::start(persist_app(&tidings, &reloads)).await;
    let nth = |n: usize| opened.lock().expect("lock")[n];

    case.open("p1", &format!("{}/", server.http_url())).await;
    case = case
        .expect("p1", "window.page?.transport", DELIVERY, "connected")
        .await;
    hub.broadcast("m0").await.expect("broadcast");
    case = case
        .expect("p1", "window.page.messages.length >= 1", DELIVERY, "m0")
        .await;

    // The session vanishes from the store (as when it expired): 3002, which says reconnect.
    store.remove_channel(nth(0)).await.expect("remove");
    case.note("p1", "removed the session from the store").await;
    case = case
        .expect("p1", "window.page.gaps.length >= 1", DELIVERY, "a gap")
        .await;
    // The new session exists once its `on_open` ran: what is published after, it receives.
    let deadline = Instant::now() + DELIVERY;
    while opened.lock().expect("lock").len() < 2 {
        if Instant::now() > deadline {
            case.fail("p1", "no new session".into()).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    hub.broadcast("m1").await.expect("broadcast");
    case = case
        .expect("p1", "window.page.messages.includes('m1')", DELIVERY, "m1")
        .await;
    let state = case.eval("p1", STATE).await;
    if state["closes"] != json!([]) || state["gaps"] != json!([null]) {
        case.fail("p1", "want no close and one gap of unknown size".into())
            .await;
    }
    case = case.negotiated(&reloads, 2, "after the 3002").await;

    // The application closes the new session with 4000: no reconnect.
    hub.close(nth(1), 4000, "bye").await.expect("close");
    case = case
        .expect(
            "p1",
            "window.page.closes.length >= 1",
            DELIVERY,
            "the close",
        )
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let state = case.eval("p1", STATE).await;
    if state["closes"] != json!([{"code": 4000, "reason": "bye"}]) {
        case.fail("p1", format!("closes: {}", state["closes"]))
            .await;
    }
    case = case
        .negotiated(&reloads, 2, "after a 4000 (a reconnect would be a third)")
        .await;
    case.finish().await;
}

// ---- 5. Offline, then online ----

/// Taken off the network, the client waits for it to come back rather than spend its
/// attempts; when the browser says it is back (`online`), it reconnects at once, not after its
/// backoff (which has grown meanwhile), resumes its session and gets what was published while
/// it was away, once.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium and tests/browser node packages; run bash tests/run-all.sh"]
async fn the_client_reconnects_as_soon_as_the_network_is_back() {
    let mut case = Case::start("offline, then online").await;
    let tidings = Tidings::builder().heartbeat(Duration::from_secs(1)).build();
    let hub = tidings.hub();
    let reloads = Reloads::new();
    let server = Server::start(persist_app(&tidings, &reloads)).await;

    case.open("p1", &format!("{}/", server.http_url())).await;
    case = case
        .expect("p1", "window.page?.transport", DELIVERY, "connected")
        .await;
    hub.broadcast("m0").await.expect("broadcast");
    case = case
        .expect("p1", "window.page.messages.length >= 1", DELIVERY, "m0")
        .await;
    case.browser.offline("p1", true).await;
    // Offline, the open WebSocket just goes silent: the client gives up on it after
    // `silenceFactor` heartbeats (some 7 s here) and, seeing `navigator.onLine` false, waits for
    // the network, with a fallback attempt only every `backoff.max` (30 s).
    tokio::time::sleep(Duration::from_secs(10)).await;
    hub.broadcast("m1").await.expect("broadcast");
    case.browser.offline("p1", false).await;
    let back = Instant::now();
    case = case
        .expect("p1", "window.page.messages.includes('m1')", DELIVERY, "m1")
        .await;
    let took = back.elapsed();
    tokio::time::sleep(SETTLE).await;
    let state = case.eval("p1", STATE).await;
    if state["messages"] != json!(["m0", "m1"]) || state["gaps"] != json!([]) {
        case.fail("p1", "want m0 and m1 once, no gap".into()).await;
    }
    if took > Duration::from_secs(3) {
        let why = format!("back online, m1 took {took:?}: the client waited for its backoff");
        case.fail("p1", why).await;
    }
    case = case
        .negotiated(&reloads, 1, "back online (a new session would be a second)")
        .await;
    case.finish().await;
}
