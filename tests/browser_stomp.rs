//! The real STOMP clients in Debian's Chromium against the STOMP chat example
//! (`examples/stomp`, its own page): `@stomp/stompjs` 7 over a plain WebSocket and over
//! `sockjs-client` on each of its transports, and the legacy `stompjs` 2.3.3 (STOMP 1.1).
//!
//! Each case starts the example with one-second heart-beats behind a pass-through
//! [`Proxy`] (so the test can pull the network out from under the pages), opens pages as
//! different users, and checks: topic pub/sub, user destinations reaching every session of
//! one user and no one else, the `/app/echo` round trip, receipts, heart-beats keeping an
//! idle connection up for more than three intervals, and the automatic reconnect after every
//! connection is cut (`@stomp/stompjs`'s own; the page's for stompjs 2.3.3, which has none),
//! resuming with nothing lost or repeated. The test publishes from a STOMP client of its own,
//! straight to the example.
//!
//! Needs chromium and the node packages of `tests/browser`; `bash tests/run-all.sh` installs
//! both and runs these.

use std::time::Duration;

use serde_json::{Value, json};
use tidings_tests::driver::Browser;
use tidings_tests::proxy::{Mode, Proxy};
use tidings_tests::stomp::{StompExample, StompSession};
use tokio::sync::Semaphore;

/// One case at a time: each has a Chromium and the example busy on two shared cores.
static BROWSERS: Semaphore = Semaphore::const_new(1);

/// The heart-beat interval of the example and the pages, in milliseconds.
const HEARTBEAT_MS: u64 = 1000;
/// How long anything the test waits for may take.
const WAIT: Duration = Duration::from_secs(20);
const ROOM: &str = "/topic/rooms/lobby";

/// Chromium with pages on the example, through the proxy.
struct Pages {
    browser: Browser,
    proxy: Proxy,
    /// The query every page adds: which client and transport.
    how: String,
}

impl Pages {
    async fn open(&mut self, page: &str, who: &str) {
        let url = format!(
            "http://{}/?{who}&{}&hb={HEARTBEAT_MS}&reconnect=300",
            self.proxy.addr, self.how
        );
        self.browser.open(page, &url).await;
        self.until(page, "window.chat && chat.connected", "connected")
            .await;
    }

    async fn eval(&mut self, page: &str, expr: &str) -> Value {
        self.browser.eval(page, expr).await
    }

    /// Waits until `expr` is truthy on `page`; panics with the page's log when it does not
    /// become so.
    async fn until(&mut self, page: &str, expr: &str, what: &str) {
        if !self.browser.wait(page, expr, WAIT).await {
            let log = self.browser.log(page).await.join("\n");
            let chat = self.eval(page, "JSON.stringify(window.chat)").await;
            panic!(
                "{page} ({}): not {what} in {WAIT:?}\n{chat}\n{log}",
                self.how
            );
        }
    }

    /// The bodies `page` received on `destination`, in order.
    async fn bodies(&mut self, page: &str, destination: &str) -> Vec<String> {
        let expr = format!("(chat.received[{destination:?}] ?? []).map((m) => m.body)");
        let value = self.eval(page, &expr).await;
        serde_json::from_value(value).expect("a list of strings")
    }

    /// Waits until `page` has `count` messages on `destination`, then returns their bodies.
    async fn wait_bodies(&mut self, page: &str, destination: &str, count: usize) -> Vec<String> {
        let expr = format!("(chat.received[{destination:?}] ?? []).length >= {count}");
        self.until(page, &expr, &format!("{count} on {destination}"))
            .await;
        self.bodies(page, destination).await
    }

    async fn send(&mut self, page: &str, destination: &str, body: &str, receipt: &str) {
        let expr = format!("chat.send({destination:?}, {body:?}, {{ receipt: {receipt:?} }})");
        self.eval(page, &expr).await;
    }
}

/// Runs the checks every client and transport must pass.
async fn case(how: &str, version: &str) {
    let _permit = BROWSERS
        .acquire()
        .await
        .expect("the semaphore is never closed");
    let example = StompExample::start(HEARTBEAT_MS).await;
    let proxy = Proxy::start(example.addr, Mode::Pass).await;
    let mut pages = Pages {
        browser: Browser::launch().await,
        proxy,
        how: how.to_owned(),
    };
    // alice twice (one session on the endpoint URL's user, one through CONNECT's login), bob,
    // and carol, who must see nothing of the others' private messages.
    pages.open("alice", "user=alice").await;
    pages.open("alice2", "login=alice").await;
    pages.open("bob", "user=bob").await;
    pages.open("carol", "user=carol").await;
    for page in ["alice", "alice2", "bob", "carol"] {
        assert_eq!(pages.eval(page, "chat.version").await, json!(version));
    }
    assert_eq!(pages.eval("alice2", "chat.user").await, json!("alice"));

    // Topic pub/sub, with a receipt.
    let mut tester = example.client("tester").await;
    tester.subscribe("room", ROOM).await;
    pages
        .send("bob", "/app/rooms/lobby", "hello room", "r1")
        .await;
    assert_eq!(tester.next_body().await, "hello room");
    for page in ["alice", "alice2", "bob", "carol"] {
        assert_eq!(pages.wait_bodies(page, ROOM, 1).await, ["hello room"]);
    }
    pages
        .until("bob", "chat.receipts.includes('r1')", "given receipt r1")
        .await;

    // A private message reaches both of alice's sessions (and bob's copy), not carol.
    pages.send("bob", "/app/private/alice", "psst", "r2").await;
    for page in ["alice", "alice2", "bob"] {
        let got = pages.wait_bodies(page, "/user/queue/private", 1).await;
        assert_eq!(got, ["psst"], "{page}");
    }
    // The echo comes back to the sender's user only: both of alice's sessions.
    pages.send("alice2", "/app/echo", "echo?", "r3").await;
    for page in ["alice", "alice2"] {
        assert_eq!(
            pages.wait_bodies(page, "/user/queue/echo", 1).await,
            ["echo?"]
        );
    }
    let quiet = Duration::from_millis(500);
    tokio::time::sleep(quiet).await;
    for page in ["bob", "carol"] {
        assert!(pages.bodies(page, "/user/queue/echo").await.is_empty());
    }
    assert!(
        pages
            .bodies("carol", "/user/queue/private")
            .await
            .is_empty()
    );

    // Idle for more than three heart-beat intervals: nobody is dropped.
    tokio::time::sleep(Duration::from_millis(HEARTBEAT_MS * 4)).await;
    for page in ["alice", "bob"] {
        assert_eq!(
            pages.eval(page, "[chat.connected, chat.connects]").await,
            json!([true, 1]),
            "{page} stayed connected while idle"
        );
    }

    // Every connection is cut; what is published while alice is away comes after her
    // reconnect, once each, in order. Over xhr-polling there may be no reconnect: a cut poll is
    // retried by sockjs-client on the same session (and what it carried is fetched again by the
    // page's resubscribe), and between polls there is nothing to cut.
    let mut tester = example.client("publisher").await;
    for n in 0..3 {
        tester.publish(ROOM, &format!("m{n}")).await;
    }
    pages.wait_bodies("alice", ROOM, 4).await;
    pages.proxy.cut_all();
    for n in 3..8 {
        tester.publish(ROOM, &format!("m{n}")).await;
    }
    pages.wait_bodies("alice", ROOM, 9).await;
    if !how.contains("xhr-polling") {
        assert!(
            pages.eval("alice", "chat.connects").await.as_u64() >= Some(2),
            "alice ({how}) reconnected after the cut"
        );
    }
    for n in 8..10 {
        tester.publish(ROOM, &format!("m{n}")).await;
    }
    let mut expected = vec!["hello room".to_owned()];
    expected.extend((0..10).map(|n| format!("m{n}")));
    for page in ["alice", "bob"] {
        let got = pages.wait_bodies(page, ROOM, expected.len()).await;
        assert_eq!(got, expected, "{page}");
    }
    tokio::time::sleep(quiet).await;
    assert_eq!(pages.bodies("alice", ROOM).await, expected, "nothing twice");
    let errors = pages.eval("alice", "chat.errors").await;
    assert_eq!(errors, json!([]));
    pages.browser.quit().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium and tests/browser node packages; run bash tests/run-all.sh"]
async fn stompjs_7_over_a_websocket() {
    case("transport=websocket", "1.2").await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium and tests/browser node packages; run bash tests/run-all.sh"]
async fn stompjs_7_over_sockjs_websocket() {
    case("transport=websocket-sockjs", "1.2").await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium and tests/browser node packages; run bash tests/run-all.sh"]
async fn stompjs_7_over_sockjs_xhr_streaming() {
    case("transport=xhr-streaming", "1.2").await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium and tests/browser node packages; run bash tests/run-all.sh"]
async fn stompjs_7_over_sockjs_xhr_polling() {
    case("transport=xhr-polling", "1.2").await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium and tests/browser node packages; run bash tests/run-all.sh"]
async fn stompjs_7_over_sockjs_eventsource() {
    case("transport=eventsource", "1.2").await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium and tests/browser node packages; run bash tests/run-all.sh"]
async fn legacy_stompjs_2_3_3_over_a_websocket() {
    case("client=legacy&transport=websocket", "1.1").await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium and tests/browser node packages; run bash tests/run-all.sh"]
async fn legacy_stompjs_2_3_3_over_sockjs() {
    case("client=legacy&transport=sockjs", "1.1").await;
}
