//! STOMP for the tests: a client on a WebSocket, for tests that need one beside the client
//! under test (to publish, or to watch what a destination receives), the session trait every
//! test client implements, and the STOMP example as a child process.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use tokio::process::Child;

use crate::example::Running;
use crate::{Ws, next_text, send_text};

/// How long any one answer may take.
const ANSWER: Duration = Duration::from_secs(10);
/// How long the example may take to start (it is built before).
const START: Duration = Duration::from_secs(20);

/// The STOMP example (`examples/stomp`) on a free port, running; killed when dropped.
pub struct StompExample {
    /// Where it listens.
    pub addr: SocketAddr,
    _process: Child,
}

impl StompExample {
    /// Builds (once) and starts the example with heart-beats every `heartbeat_ms`.
    pub async fn start(heartbeat_ms: u64) -> StompExample {
        let heartbeat = heartbeat_ms.to_string();
        let args = ["--addr", "127.0.0.1:0", "--heartbeat-ms", &heartbeat];
        let mut example = Running::start("stomp", &args).await;
        let line = example.line(START).await;
        let addr = line
            .trim()
            .strip_prefix("stomp on http://")
            .and_then(|rest| rest.strip_suffix('/'))
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from the stomp example: {line:?}"));
        StompExample {
            addr,
            _process: example.drain(),
        }
    }

    /// A STOMP client of the test's own, as `user`, on the example's raw WebSocket.
    pub async fn client(&self, user: &str) -> StompClient {
        let url = format!("ws://{}/stomp/websocket?user={user}", self.addr);
        StompClient::connect(&url, "").await
    }
}

/// What a test does with a STOMP session, whatever carries its frames: it implements `send`
/// and `next`, and gets the rest.
#[allow(
    async_fn_in_trait,
    reason = "test clients, awaited in the test that made them; no Send bound needed"
)]
pub trait StompSession {
    /// Sends one frame as it is.
    async fn send(&mut self, frame: &str);

    /// The next frame from the server (sessions that see heart-beats may skip them).
    async fn next(&mut self) -> String;

    /// Sends CONNECT (offering 1.2) with the extra `headers` (each `name:value\n`), and checks
    /// that the answer is CONNECTED.
    async fn handshake(&mut self, headers: &str) {
        self.send(&format!("CONNECT\naccept-version:1.2\n{headers}\n\0"))
            .await;
        let connected = self.next().await;
        assert!(connected.starts_with("CONNECTED\n"), "{connected:?}");
    }

    /// Sends `frame` (a command line, then headers and body) with the header
    /// `receipt:<receipt>`, and waits for its RECEIPT, which must come next.
    async fn with_receipt(&mut self, frame: &str, receipt: &str) {
        let (command, rest) = frame.split_once('\n').expect("a command line");
        self.send(&format!("{command}\nreceipt:{receipt}\n{rest}"))
            .await;
        let answer = self.next().await;
        assert_eq!(answer, format!("RECEIPT\nreceipt-id:{receipt}\n\n\0"));
    }

    /// SENDs `body` to `destination`, and waits until the server has taken it.
    async fn publish(&mut self, destination: &str, body: &str) {
        let frame = format!("SEND\ndestination:{destination}\n\n{body}\0");
        self.with_receipt(&frame, &fresh_receipt()).await;
    }

    /// Subscribes to `destination` under the id `id`, once the server has taken it.
    async fn subscribe(&mut self, id: &str, destination: &str) {
        let frame = format!("SUBSCRIBE\nid:{id}\ndestination:{destination}\n\n\0");
        self.with_receipt(&frame, &fresh_receipt()).await;
    }

    /// The body of the next frame, which must be a MESSAGE.
    async fn next_body(&mut self) -> String {
        let frame = self.next().await;
        message_body(&frame).to_owned()
    }
}

/// A receipt id no other in this test process has.
fn fresh_receipt() -> String {
    static RECEIPTS: AtomicU64 = AtomicU64::new(0);
    format!("t-{}", RECEIPTS.fetch_add(1, Ordering::Relaxed))
}

/// A connected STOMP 1.2 client on a WebSocket; skips heart-beats.
pub struct StompClient {
    ws: Ws,
    /// Frames read but not yet taken: a WebSocket message may hold several.
    frames: VecDeque<String>,
}

impl StompClient {
    /// Opens `url` (`ws://…/stomp/websocket`, offering `v12.stomp`) and connects with the
    /// extra CONNECT `headers` (each `name:value\n`).
    pub async fn connect(url: &str, headers: &str) -> StompClient {
        let mut request = url.into_client_request().expect("a WebSocket URL");
        request.headers_mut().insert(
            "sec-websocket-protocol",
            "v12.stomp".parse().expect("a header value"),
        );
        let (ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"));
        let mut client = StompClient {
            ws,
            frames: VecDeque::new(),
        };
        client.handshake(headers).await;
        client
    }

    /// Whether nothing but heart-beats arrives for `quiet`.
    pub async fn silent_for(&mut self, quiet: Duration) -> bool {
        if !self.frames.is_empty() {
            return false;
        }
        let deadline = tokio::time::Instant::now() + quiet;
        loop {
            match tokio::time::timeout_at(deadline, next_text(&mut self.ws)).await {
                Err(_) => return true,
                Ok(Some(text)) if text == "\n" => continue,
                Ok(_) => return false,
            }
        }
    }
}

impl StompSession for StompClient {
    async fn send(&mut self, frame: &str) {
        send_text(&mut self.ws, frame).await;
    }

    /// Panics when no frame comes in time.
    async fn next(&mut self) -> String {
        loop {
            while let Some(frame) = self.frames.pop_front() {
                if frame != "\n" {
                    return frame;
                }
            }
            let text = tokio::time::timeout(ANSWER, next_text(&mut self.ws))
                .await
                .expect("a STOMP frame in time")
                .expect("the connection is open");
            self.frames
                .extend(split_frames(&text).into_iter().map(str::to_owned));
        }
    }
}

/// The body of `frame`, which must be a MESSAGE (without its NUL).
pub fn message_body(frame: &str) -> &str {
    assert!(frame.starts_with("MESSAGE\n"), "{frame:?}");
    let (_, body) = frame.split_once("\n\n").unwrap_or_default();
    body.trim_end_matches('\0')
}

/// The value of the first header `name` of `frame`, if it has one (unescaped values only).
pub fn header<'a>(frame: &'a str, name: &str) -> Option<&'a str> {
    let (head, _) = frame.split_once("\n\n")?;
    head.lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value)
}

/// The frames of one message from the server, in order: each whole, with its NUL, and each
/// heart-beat EOL as a `"\n"` of its own. A body ends where its `content-length` says, else at
/// the first NUL. Anything else (a close, as `next_text` reports it) is one item.
pub fn split_frames(text: &str) -> Vec<&str> {
    let mut frames = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('\n') {
            frames.push("\n");
            rest = after;
            continue;
        }
        let Some(head_end) = rest.find("\n\n") else {
            frames.push(rest);
            break;
        };
        let body_start = head_end + 2;
        let length = rest[..head_end]
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|n| n.parse::<usize>().ok());
        let end = match length {
            Some(length) => body_start + length,
            None => rest[body_start..]
                .find('\0')
                .map_or(rest.len(), |at| body_start + at),
        };
        let end = (end + 1).min(rest.len());
        let Some(frame) = rest.get(..end) else {
            panic!("a content-length that ends inside a character: {rest:?}");
        };
        frames.push(frame);
        rest = &rest[end..];
    }
    frames
}
