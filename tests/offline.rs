//! What a channel is handed first when it opens, on every transport.
//!
//! - Offline delivery: what is sent to a user while none of the user's channels is open goes to
//!   the next channel the user opens, on any transport and any node sharing the store, once; a
//!   second tab is not handed it again; what fell out of retention is a gap (native) or is read
//!   past (the protocols with no word for it).
//! - History on subscribe: a channel subscribed with the last N messages of a room gets them
//!   first, in order, once, then what follows.
//!
//! Runs on the store [`tidings_tests::two_nodes`] picks: the `MemoryStore`, or Redis with
//! `TIDINGS_TEST_STORE=redis` (two stores on one prefix: two nodes).

use std::time::Duration;

use axum::Router;
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tidings::{Builder, Identity, Retention, Tidings};
use tidings_tests::http::Request;
use tidings_tests::{Server, Ws, connect, next_text, percent_encode};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// How long a test waits for a message it expects.
const WAIT: Duration = Duration::from_secs(5);
/// How long a tab must stay quiet to show it was handed nothing.
const QUIET: Duration = Duration::from_millis(400);
/// How long a channel outlives a client gone without a word (SockJS's disconnect delay, the
/// native resume time): short, so a left tab is gone soon.
const LINGER: Duration = Duration::from_millis(300);

/// Every way a browser or a script reaches a channel.
#[derive(Clone, Copy, Debug)]
enum Via {
    Raw,
    SockJsWebSocket,
    SockJsStreaming,
    SockJsEventSource,
    SockJsPolling,
    NativeWebSocket,
    NativeSse,
    NativeStream,
    NativePoll,
}

const EVERY: [Via; 9] = [
    Via::Raw,
    Via::SockJsWebSocket,
    Via::SockJsStreaming,
    Via::SockJsEventSource,
    Via::SockJsPolling,
    Via::NativeWebSocket,
    Via::NativeSse,
    Via::NativeStream,
    Via::NativePoll,
];

/// A node: users come from `?user=`.
fn node(builder: Builder, retention: usize) -> Tidings {
    builder
        .retention(Retention {
            messages: retention,
            bytes: 1 << 20,
            age: None,
        })
        .disconnect_delay(LINGER)
        .resume(LINGER)
        // A connected native session is renewed every heartbeat: one well within `resume`.
        .heartbeat(LINGER / 3)
        .auth(|handshake| async move {
            Ok(handshake
                .query("user")
                .map_or_else(Identity::anonymous, Identity::user))
        })
        .build()
}

async fn serve(tidings: &Tidings) -> Server {
    Server::start(Router::new().nest_service("/rt", tidings.router())).await
}

/// What a tab hears: a message's text, or `gap:<missed>`.
type Heard = mpsc::UnboundedReceiver<String>;

/// One browser tab: a channel of a user on one transport, read by a task of its own.
struct Tab {
    via: Via,
    heard: Heard,
    task: JoinHandle<()>,
    /// A WebSocket's sender, to leave with a close.
    closer: Option<mpsc::UnboundedSender<()>>,
}

impl Tab {
    async fn open(server: &Server, via: Via, user: &str) -> Tab {
        let (tx, heard) = mpsc::unbounded_channel();
        let (closer, close) = mpsc::unbounded_channel();
        let addr = server.addr;
        let session = format!("{:x}", rand::random::<u64>());
        let q = format!("user={user}");
        let task = match via {
            Via::Raw => {
                let ws = connect(&server.ws_url(&format!("/rt/websocket?{q}"))).await;
                tokio::spawn(read_ws(ws, close, tx, |text| vec![text]))
            }
            Via::SockJsWebSocket => {
                let url = server.ws_url(&format!("/rt/000/{session}/websocket?{q}"));
                let ws = connect(&url).await;
                tokio::spawn(read_ws(ws, close, tx, |frame| sockjs_messages(&frame)))
            }
            Via::SockJsStreaming | Via::SockJsEventSource => {
                let (method, transport) = match via {
                    Via::SockJsStreaming => ("POST", "xhr_streaming"),
                    _ => ("GET", "eventsource"),
                };
                let path = format!("/rt/000/{session}/{transport}?{q}");
                let response = Request::new(method, &path).send(addr).await;
                tokio::spawn(read_lines(response, tx, |line| {
                    let frame = line.strip_prefix("data: ").unwrap_or(line);
                    sockjs_messages(frame.trim_end())
                }))
            }
            Via::SockJsPolling => tokio::spawn(async move {
                let path = format!("/rt/000/{session}/xhr?{q}");
                loop {
                    let body = Request::post(&path).send(addr).await.text().await;
                    for text in sockjs_messages(body.trim_end()) {
                        let _ = tx.send(text);
                    }
                }
            }),
            Via::NativeWebSocket => {
                let token = negotiate(server, &q).await;
                let url = server.ws_url(&format!("/rt/native/ws?v=2&token={token}&{q}"));
                let ws = connect(&url).await;
                tokio::spawn(read_ws(ws, close, tx, |frame| native_messages(&frame)))
            }
            Via::NativeSse | Via::NativeStream => {
                let token = negotiate(server, &q).await;
                let transport = match via {
                    Via::NativeSse => "sse",
                    _ => "stream",
                };
                let path = format!("/rt/native/{transport}?v=2&token={token}&{q}");
                let response = Request::get(&path).send(addr).await;
                tokio::spawn(read_lines(response, tx, |line| {
                    let frame = line.strip_prefix("data: ").unwrap_or(line);
                    native_messages(frame.trim_end())
                }))
            }
            Via::NativePoll => {
                let token = negotiate(server, &q).await;
                tokio::spawn(async move {
                    let mut pos: Option<String> = None;
                    loop {
                        let mut path = format!("/rt/native/poll?v=2&token={token}&{q}");
                        if let Some(pos) = &pos {
                            path.push_str(&format!("&pos={}", percent_encode(pos)));
                        }
                        let body = Request::get(&path).send(addr).await.text().await;
                        let frames: Vec<Value> = serde_json::from_str(&body).expect("JSON");
                        for frame in &frames {
                            if let Some(p) = frame["pos"].as_str() {
                                pos = Some(p.to_owned());
                            }
                            for text in native_messages(&frame.to_string()) {
                                let _ = tx.send(text);
                            }
                        }
                    }
                })
            }
        };
        let closer =
            matches!(via, Via::Raw | Via::SockJsWebSocket | Via::NativeWebSocket).then_some(closer);
        Tab {
            via,
            heard,
            task,
            closer,
        }
    }

    /// The next `n` things heard, failing the test if they do not come within [`WAIT`].
    async fn hear(&mut self, n: usize) -> Vec<String> {
        let mut got = Vec::new();
        while got.len() < n {
            match tokio::time::timeout(WAIT, self.heard.recv()).await {
                Ok(Some(text)) => got.push(text),
                _ => panic!("{:?}: heard {got:?}, expected {n}", self.via),
            }
        }
        got
    }

    /// Fails the test if anything is heard within [`QUIET`].
    async fn hears_nothing(&mut self) {
        if let Ok(Some(text)) = tokio::time::timeout(QUIET, self.heard.recv()).await {
            panic!("{:?}: expected nothing, heard {text:?}", self.via);
        }
    }

    /// Leaves: a WebSocket closes with 1000 (its channel ends), an HTTP transport is dropped
    /// (its channel ends once [`LINGER`] passes); then waits that out.
    async fn leave(self) {
        if let Some(closer) = &self.closer {
            let _ = closer.send(());
        } else {
            self.task.abort();
        }
        tokio::time::sleep(LINGER * 4).await;
        self.task.abort();
    }
}

async fn negotiate(server: &Server, query: &str) -> String {
    let path = format!("/rt/native/negotiate?v=2&{query}");
    let body = Request::post(&path).send(server.addr).await.text().await;
    let value: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{body:?}: {e}"));
    value["token"].as_str().expect("a token").to_owned()
}

/// Reads a WebSocket until it ends, or closes it with 1000 when asked.
async fn read_ws(
    mut ws: Ws,
    mut close: mpsc::UnboundedReceiver<()>,
    tx: mpsc::UnboundedSender<String>,
    messages: impl Fn(String) -> Vec<String>,
) {
    loop {
        tokio::select! {
            text = next_text(&mut ws) => {
                let Some(text) = text else { return };
                if text.starts_with("close") {
                    return;
                }
                for text in messages(text) {
                    let _ = tx.send(text);
                }
            }
            _ = close.recv() => {
                let _ = ws.send(Message::Close(None)).await;
                while ws.next().await.is_some() {}
                return;
            }
        }
    }
}

/// Reads a streaming response line by line until it ends.
async fn read_lines(
    mut response: tidings_tests::http::Response,
    tx: mpsc::UnboundedSender<String>,
    messages: impl Fn(&str) -> Vec<String>,
) {
    let mut buffer = String::new();
    while let Some(chunk) = response.next_chunk(Duration::from_secs(3600)).await {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find('\n') {
            let line: String = buffer.drain(..=end).collect();
            for text in messages(&line) {
                let _ = tx.send(text);
            }
        }
    }
}

/// The messages of a SockJS frame (`a[...]`); none for the others.
fn sockjs_messages(frame: &str) -> Vec<String> {
    match frame.strip_prefix('a') {
        Some(array) => serde_json::from_str(array).unwrap_or_else(|e| panic!("{frame:?}: {e}")),
        None => Vec::new(),
    }
}

/// The messages of a native frame, and a gap as `gap:<missed>`.
fn native_messages(frame: &str) -> Vec<String> {
    let Ok(frame) = serde_json::from_str::<Value>(frame) else {
        return Vec::new();
    };
    match frame["type"].as_str() {
        Some("messages") => frame["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|d| d.as_str().expect("a string").to_owned())
            .collect(),
        Some("gap") => vec![format!("gap:{}", frame["missed"])],
        _ => Vec::new(),
    }
}

fn texts(range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    range.map(|n| format!("m{n}")).collect()
}

#[tokio::test]
async fn what_a_user_was_sent_offline_reaches_the_next_channel_once_on_every_transport() {
    let [one, two] = tidings_tests::two_nodes();
    let (first, second) = (node(one, 100), node(two, 100));
    let (a, b) = (serve(&first).await, serve(&second).await);
    for via in EVERY {
        let user = format!("ann-{via:?}");
        let hub = first.hub();
        for n in 1..=2 {
            hub.send_to_user(&user, format!("m{n}"))
                .await
                .expect("send");
        }
        // The next channel, on the other node: the backlog, in order.
        let mut tab = Tab::open(&b, via, &user).await;
        assert_eq!(tab.hear(2).await, texts(1..=2), "{via:?}: the backlog");
        // A second tab while the first is open: not handed the backlog again; both get what
        // follows.
        let mut second_tab = Tab::open(&a, via, &user).await;
        second_tab.hears_nothing().await;
        hub.send_to_user(&user, "m3").await.expect("send");
        assert_eq!(tab.hear(1).await, texts(3..=3), "{via:?}: the first tab");
        assert_eq!(
            second_tab.hear(1).await,
            texts(3..=3),
            "{via:?}: the second"
        );
        tab.leave().await;
        second_tab.leave().await;
        // Gone again: the next channel is handed only what came since.
        hub.send_to_user(&user, "m4").await.expect("send");
        let mut back = Tab::open(&b, via, &user).await;
        assert_eq!(
            back.hear(1).await,
            texts(4..=4),
            "{via:?}: only what is new"
        );
        back.hears_nothing().await;
        back.leave().await;
    }
}

#[tokio::test]
async fn what_fell_out_of_retention_offline_is_a_gap_or_read_past() {
    let [one, two] = tidings_tests::two_nodes();
    let (first, second) = (node(one, 50), node(two, 50));
    let b = serve(&second).await;
    for via in EVERY {
        let user = format!("bob-{via:?}");
        for n in 1..=52 {
            let hub = first.hub();
            hub.send_to_user(&user, format!("m{n}"))
                .await
                .expect("send");
        }
        let mut tab = Tab::open(&b, via, &user).await;
        let mut expected = texts(3..=52);
        if matches!(
            via,
            Via::NativeWebSocket | Via::NativeSse | Via::NativeStream | Via::NativePoll
        ) {
            expected.insert(0, "gap:2".to_owned());
        }
        assert_eq!(tab.hear(expected.len()).await, expected, "{via:?}");
        tab.hears_nothing().await;
        tab.leave().await;
    }
}

#[tokio::test]
async fn history_on_subscribe_comes_first_once_on_every_transport() {
    let room = tidings::Topic::new("room").expect("a topic name");
    let [builder, _] = tidings_tests::two_nodes();
    let builder = tidings_tests::with_history_on_open(builder, &room, 3);
    let tidings = node(builder, 100);
    let server = serve(&tidings).await;
    let hub = tidings.hub();
    for n in 1..=5 {
        hub.publish(&room, format!("m{n}")).await.expect("publish");
    }
    // Each tab comes after one more message: its history is the 3 before it.
    for (next, via) in (6..).zip(EVERY) {
        let mut tab = Tab::open(&server, via, &format!("reader-{via:?}")).await;
        let history = texts(next - 3..=next - 1);
        assert_eq!(tab.hear(3).await, history, "{via:?}: the last 3");
        hub.publish(&room, format!("m{next}"))
            .await
            .expect("publish");
        assert_eq!(
            tab.hear(1).await,
            texts(next..=next),
            "{via:?}: then what follows"
        );
        tab.hears_nothing().await;
        tab.task.abort();
    }
}
