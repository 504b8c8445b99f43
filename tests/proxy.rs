//! The restrictive-proxy fixture (`tidings_tests::proxy`) behaves like the middlebox each
//! mode emulates, against a small axum upstream with a plain route, a slow streaming route and
//! a WebSocket echo.
//!
//! Timing assertions use generous bounds: the upstream streams five chunks 200 ms apart, so
//! "incremental" and "held until the end" differ by most of a second.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::extract::ws::{Message as AxumMessage, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::{get, post};
use futures::{SinkExt, StreamExt};
use tidings_tests::proxy::{Mode, Options, Proxy};
use tidings_tests::{Server, Ws};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::{self, Message};

/// Bound on any single wait in these tests.
const WAIT: Duration = Duration::from_secs(5);
/// The streaming route's chunk interval and count.
const TICK: Duration = Duration::from_millis(200);
const CHUNKS: usize = 5;

/// The upstream, and how many WebSocket messages its echo route has received.
async fn upstream() -> (Server, Arc<AtomicUsize>) {
    let received = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route("/plain", get(|| async { "hello" }))
        .route("/stream", get(stream))
        .route("/ws", get(ws))
        .route("/echo", post(|body: String| async move { body }))
        .with_state(received.clone());
    (Server::start(app).await, received)
}

/// `chunk-0\n` … `chunk-4\n`, each after a `TICK` pause; hyper sends each as one HTTP chunk.
async fn stream() -> Response {
    let chunks = futures::stream::unfold(0, |i| async move {
        if i == CHUNKS {
            return None;
        }
        tokio::time::sleep(TICK).await;
        Some((Ok::<_, std::io::Error>(format!("chunk-{i}\n")), i + 1))
    });
    Response::new(Body::from_stream(chunks))
}

async fn ws(upgrade: WebSocketUpgrade, State(received): State<Arc<AtomicUsize>>) -> Response {
    upgrade.on_upgrade(move |socket| echo(socket, received))
}

async fn echo(mut socket: WebSocket, received: Arc<AtomicUsize>) {
    while let Some(Ok(msg)) = socket.recv().await {
        if let AxumMessage::Text(text) = msg {
            received.fetch_add(1, Ordering::SeqCst);
            if socket.send(AxumMessage::Text(text)).await.is_err() {
                return;
            }
        }
    }
}

/// A response read off a raw socket, with when its bytes arrived.
struct Arrivals {
    start: Instant,
    bytes: Vec<u8>,
    /// After each read: when it returned, and how many bytes had arrived by then.
    reads: Vec<(Instant, usize)>,
}

impl Arrivals {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// Time from the request to the first read that brought `needle` in.
    fn until(&self, needle: &str) -> Duration {
        let needle = needle.as_bytes();
        let (at, _) = self
            .reads
            .iter()
            .find(|(_, len)| {
                self.bytes[..*len]
                    .windows(needle.len())
                    .any(|w| w == needle)
            })
            .unwrap_or_else(|| panic!("{:?} never arrived in {:?}", needle, self.text()));
        *at - self.start
    }

    fn first_byte(&self) -> Duration {
        self.reads.first().expect("no bytes").0 - self.start
    }

    fn last_byte(&self) -> Duration {
        self.reads.last().expect("no bytes").0 - self.start
    }
}

/// Sends `GET path` on `stream` (keep-alive) and reads exactly one response.
async fn get_on(stream: &mut TcpStream, path: &str) -> Arrivals {
    let request = format!("GET {path} HTTP/1.1\r\nHost: upstream\r\n\r\n");
    send_on(stream, &request).await
}

/// Sends `bytes` on `stream` and reads exactly one response (an interim `1xx` counts), which
/// must be framed by `Content-Length` or be chunked.
async fn send_on(stream: &mut TcpStream, bytes: &str) -> Arrivals {
    let start = Instant::now();
    stream.write_all(bytes.as_bytes()).await.expect("write");
    let mut arrivals = Arrivals {
        start,
        bytes: Vec::new(),
        reads: Vec::new(),
    };
    let mut buf = [0u8; 4096];
    while !complete(&arrivals.bytes) {
        let n = timeout(WAIT, stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("response incomplete: {}", arrivals.text()))
            .expect("read");
        assert!(n > 0, "closed mid-response: {}", arrivals.text());
        arrivals.bytes.extend_from_slice(&buf[..n]);
        arrivals.reads.push((Instant::now(), arrivals.bytes.len()));
    }
    arrivals
}

/// Whether `bytes` hold a whole response.
fn complete(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let head = head.to_ascii_lowercase();
    if head.contains("transfer-encoding: chunked") {
        return body.ends_with("0\r\n\r\n");
    }
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse::<usize>().expect("content-length"))
        .unwrap_or(0);
    body.len() >= length
}

/// Waits (bounded) for the peer to close `stream`, discarding what arrives; returns how long
/// that took.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match timeout(limit, stream.read(&mut buf)).await {
            Err(_) => panic!("still open after {limit:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => continue,
        }
    }
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect to proxy")
}

async fn ws_connect(proxy: &Proxy) -> Ws {
    let url = format!("ws://{}/ws", proxy.addr);
    timeout(WAIT, connect_async(&url))
        .await
        .expect("handshake timed out")
        .unwrap_or_else(|e| panic!("connect {url}: {e}"))
        .0
}

/// Sends `text` and expects it back.
async fn echo_roundtrip(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.expect("send");
    let reply = timeout(WAIT, ws.next())
        .await
        .expect("no echo in time")
        .expect("closed before echo")
        .expect("websocket error");
    assert_eq!(reply, Message::text(text));
}

/// The status of a refused WebSocket handshake.
async fn ws_refused_status(proxy: &Proxy) -> u16 {
    let url = format!("ws://{}/ws", proxy.addr);
    match timeout(WAIT, connect_async(&url))
        .await
        .expect("handshake timed out")
    {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("the handshake went through"),
    }
}

/// Polls (bounded) until `proxy.connections()` is `n`.
async fn await_connections(proxy: &Proxy, n: usize) {
    let deadline = Instant::now() + WAIT;
    while proxy.connections() != n {
        assert!(
            Instant::now() < deadline,
            "{} connections, expected {n}",
            proxy.connections()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn pass_forwards_plain_keep_alive_and_streams_incrementally() {
    let (server, _) = upstream().await;
    let proxy = Proxy::start(server.addr, Mode::Pass).await;
    let mut stream = connect(proxy.addr).await;

    let plain = get_on(&mut stream, "/plain").await;
    assert!(
        plain.text().starts_with("HTTP/1.1 200 OK\r\n"),
        "{}",
        plain.text()
    );
    assert!(plain.text().ends_with("\r\n\r\nhello"), "{}", plain.text());

    // Same client connection: keep-alive works through the proxy.
    let streamed = get_on(&mut stream, "/stream").await;
    let text = streamed.text();
    for i in 0..CHUNKS {
        assert!(text.contains(&format!("chunk-{i}\n")), "{text}");
    }
    // Upstream writes chunk 0 at ~200 ms and chunk 4 at ~1000 ms: passed through as they
    // come, they arrive most of that 800 ms apart; held back, they would arrive together.
    let first = streamed.until("chunk-0");
    let last = streamed.until("chunk-4");
    assert!(
        first < Duration::from_millis(700),
        "first chunk at {first:?}"
    );
    assert!(
        last - first >= Duration::from_millis(500),
        "chunks not streamed: first at {first:?}, last at {last:?}"
    );
    assert_eq!(proxy.connections(), 1);
}

#[tokio::test]
async fn pass_forwards_request_bodies() {
    let (server, _) = upstream().await;
    let proxy = Proxy::start(server.addr, Mode::Pass).await;
    let mut stream = connect(proxy.addr).await;

    let sized = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
    assert!(
        send_on(&mut stream, sized)
            .await
            .text()
            .ends_with("\r\n\r\nhello")
    );

    let chunked = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
                   3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    assert!(
        send_on(&mut stream, chunked)
            .await
            .text()
            .ends_with("\r\n\r\nabcde")
    );

    // The client holds its body back until `100 Continue` comes through the proxy.
    let head =
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n";
    let interim = send_on(&mut stream, head).await;
    assert!(
        interim.text().starts_with("HTTP/1.1 100 Continue\r\n"),
        "{}",
        interim.text()
    );
    assert!(
        send_on(&mut stream, "xyz")
            .await
            .text()
            .ends_with("\r\n\r\nxyz")
    );
    assert_eq!(proxy.connections(), 1);
}

#[tokio::test]
async fn pass_forwards_websocket() {
    let (server, received) = upstream().await;
    let proxy = Proxy::start(server.addr, Mode::Pass).await;
    let mut ws = ws_connect(&proxy).await;
    echo_roundtrip(&mut ws, "one").await;
    echo_roundtrip(&mut ws, "two").await;
    assert_eq!(received.load(Ordering::SeqCst), 2);
    ws.close(None).await.expect("close");
}

#[tokio::test]
async fn block_upgrade_refuses_websocket_and_passes_plain() {
    let (server, received) = upstream().await;
    let proxy = Proxy::start(server.addr, Mode::BlockUpgrade).await;
    assert_eq!(ws_refused_status(&proxy).await, 403);

    let mut stream = connect(proxy.addr).await;
    let plain = get_on(&mut stream, "/plain").await;
    assert!(
        plain.text().starts_with("HTTP/1.1 200 OK\r\n"),
        "{}",
        plain.text()
    );
    assert!(plain.text().ends_with("hello"));
    assert_eq!(received.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn kill_websocket_accepts_then_forwards_nothing_and_drops() {
    let (server, received) = upstream().await;
    let proxy = Proxy::start(server.addr, Mode::KillWebSocket).await;

    // Plain HTTP still passes.
    let mut stream = connect(proxy.addr).await;
    assert!(
        get_on(&mut stream, "/plain")
            .await
            .text()
            .ends_with("hello")
    );

    let connected = Instant::now();
    let mut ws = ws_connect(&proxy).await;
    ws.send(Message::text("anyone?")).await.expect("send");
    // Nothing comes back; the connection just ends (without a close handshake) once the
    // proxy drops it, 3 s after the upgrade by default.
    let end = timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => panic!("echo came through: {text}"),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return,
            }
        }
    })
    .await;
    assert!(end.is_ok(), "still open {WAIT:?} after the upgrade");
    let lasted = connected.elapsed();
    assert!(
        lasted >= Duration::from_secs(2),
        "dropped after {lasted:?}, before the kill delay"
    );
    assert_eq!(
        received.load(Ordering::SeqCst),
        0,
        "upstream got the message"
    );
}

#[tokio::test]
async fn kill_websocket_delay_is_configurable() {
    let (server, _) = upstream().await;
    let options = Options {
        kill_after: Duration::from_millis(300),
        ..Options::default()
    };
    let proxy = Proxy::start_with(server.addr, Mode::KillWebSocket, options).await;
    let mut ws = ws_connect(&proxy).await;
    let ended = timeout(Duration::from_secs(2), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "not dropped after kill_after");
}

#[tokio::test]
async fn buffer_holds_streaming_response_until_it_ends() {
    let (server, _) = upstream().await;
    let proxy = Proxy::start(server.addr, Mode::Buffer).await;
    let mut stream = connect(proxy.addr).await;

    let streamed = get_on(&mut stream, "/stream").await;
    let text = streamed.text();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.contains("chunk-0\n") && text.contains("chunk-4\n"),
        "{text}"
    );
    // Upstream finishes at ~1000 ms; not even the head may arrive before then.
    let first = streamed.first_byte();
    assert!(
        first >= Duration::from_millis(800),
        "first byte at {first:?}"
    );
    // Everything at once: streamed, the chunks would span ~800 ms.
    let spread = streamed.last_byte() - first;
    assert!(
        spread < Duration::from_millis(200),
        "bytes spread over {spread:?}"
    );

    // Plain responses pass (buffered), on the same keep-alive connection.
    assert!(
        get_on(&mut stream, "/plain")
            .await
            .text()
            .ends_with("hello")
    );
    assert_eq!(ws_refused_status(&proxy).await, 403);
}

#[tokio::test]
async fn idle_timeout_cuts_idle_connections_only() {
    let (server, _) = upstream().await;
    let proxy = Proxy::start(server.addr, Mode::IdleTimeout(Duration::from_millis(500))).await;

    let idle = async {
        let mut stream = connect(proxy.addr).await;
        assert!(
            get_on(&mut stream, "/plain")
                .await
                .text()
                .ends_with("hello")
        );
        let after = closed_within(&mut stream, Duration::from_secs(3)).await;
        assert!(
            after >= Duration::from_millis(350) && after <= Duration::from_millis(1500),
            "idle connection closed {after:?} after its last byte"
        );
    };
    let active = async {
        let mut ws = ws_connect(&proxy).await;
        let start = Instant::now();
        let mut i = 0;
        while start.elapsed() < Duration::from_millis(1500) {
            echo_roundtrip(&mut ws, &format!("ping {i}")).await;
            i += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Still alive after three idle timeouts' worth of time.
        echo_roundtrip(&mut ws, "last").await;
    };
    tokio::join!(idle, active);
}

#[tokio::test]
async fn cut_all_closes_open_connections() {
    let (server, _) = upstream().await;
    let proxy = Proxy::start(server.addr, Mode::Pass).await;

    let mut ws = ws_connect(&proxy).await;
    echo_roundtrip(&mut ws, "before").await;
    let mut stream = connect(proxy.addr).await;
    assert!(
        get_on(&mut stream, "/plain")
            .await
            .text()
            .ends_with("hello")
    );
    await_connections(&proxy, 2).await;

    proxy.cut_all();
    assert_eq!(proxy.connections(), 0);
    closed_within(&mut stream, Duration::from_secs(1)).await;
    let ended = timeout(Duration::from_secs(1), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "websocket survived cut_all");

    // The listener itself stays up.
    let mut again = ws_connect(&proxy).await;
    echo_roundtrip(&mut again, "after").await;
    await_connections(&proxy, 1).await;
}

#[tokio::test]
async fn cut_all_works_in_every_mode() {
    let (server, _) = upstream().await;
    for mode in [
        Mode::BlockUpgrade,
        Mode::KillWebSocket,
        Mode::Buffer,
        Mode::IdleTimeout(Duration::from_secs(10)),
    ] {
        let proxy = Proxy::start(server.addr, mode).await;
        let mut stream = connect(proxy.addr).await;
        assert!(
            get_on(&mut stream, "/plain")
                .await
                .text()
                .ends_with("hello")
        );
        await_connections(&proxy, 1).await;
        proxy.cut_all();
        closed_within(&mut stream, Duration::from_secs(1)).await;
    }
}

#[tokio::test]
async fn dropping_the_proxy_closes_everything() {
    let (server, _) = upstream().await;
    let proxy = Proxy::start(server.addr, Mode::Pass).await;
    let addr = proxy.addr;
    let mut stream = connect(addr).await;
    assert!(
        get_on(&mut stream, "/plain")
            .await
            .text()
            .ends_with("hello")
    );
    drop(proxy);
    closed_within(&mut stream, Duration::from_secs(1)).await;
    // The listener is gone too (aborting the task drops it, shortly after).
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after drop");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
