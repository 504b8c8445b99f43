//! Clients that stop reading, over real sockets: the server lets go of them within
//! `client_timeout` of a write that they do not take (a WebSocket: 3003, "Client stopped
//! reading"; an HTTP response: the connection, through `Tidings::listener`), while the other
//! subscribers keep receiving; a native session stays resumable.

use std::time::Duration;

use axum::Router;
use serde_json::Value;
use tidings::{Retention, Tidings};
use tidings_tests::http::Request;
use tidings_tests::{Server, Ws, connect, next_text};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;

const CLIENT_TIMEOUT: Duration = Duration::from_millis(500);
const MESSAGES: usize = 400;

/// A service whose topics hold every message of the test, reporting closes on `closes`.
fn service(closes: mpsc::UnboundedSender<(u16, String)>) -> Tidings {
    tidings_tests::builder()
        .retention(Retention {
            messages: 2 * MESSAGES,
            bytes: 64 << 20,
            age: None,
        })
        .max_lag(2 * MESSAGES as u64)
        .client_timeout(CLIENT_TIMEOUT)
        // One streaming response carries the whole flood, so a client that stops reading
        // stalls it rather than seeing it end.
        .response_limit(1 << 30)
        .on_close(move |_, closed| {
            let closes = closes.clone();
            async move {
                let _ = closes.send((closed.code.as_u16(), closed.reason.clone()));
            }
        })
        .build()
}

/// A connection to `server` with a small receive buffer, fixed (loopback would otherwise grow it
/// to tens of MiB), so that the server's writes stall soon after the client stops reading.
async fn small_window(server: &Server) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(16 * 1024).expect("SO_RCVBUF");
    socket.connect(server.addr).await.expect("connect")
}

/// A WebSocket client that completes the handshake on `path` and then never reads.
async fn stalled(server: &Server, path: &str) -> TcpStream {
    let mut tcp = small_window(server).await;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.addr
    );
    tcp.write_all(request.as_bytes()).await.expect("handshake");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).await.expect("the 101");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    tcp
}

/// An HTTP client that sends a request and then never reads.
async fn stalled_http(server: &Server, request: &Request) -> TcpStream {
    let mut tcp = small_window(server).await;
    tcp.write_all(&request.to_bytes()).await.expect("request");
    tcp
}

/// Reads what the server had written to `tcp` until it closed the connection (or the kernel,
/// having given up on it, resets it); panics if it does not within 10 s.
async fn until_closed(mut tcp: TcpStream) {
    let mut sink = vec![0u8; 1 << 16];
    tokio::time::timeout(Duration::from_secs(10), async {
        while tcp.read(&mut sink).await.is_ok_and(|n| n > 0) {}
    })
    .await
    .expect("the server closed the connection");
}

/// Publishes [`flood`] while `reader` reads it: every message arrives, in order.
async fn flood_while_reading(tidings: &Tidings, reader: &mut Ws) {
    let publishing = tokio::spawn({
        let tidings = tidings.clone();
        async move { flood(&tidings).await }
    });
    for i in 0..MESSAGES {
        let text = tokio::time::timeout(Duration::from_secs(10), next_text(reader))
            .await
            .expect("the reading client keeps receiving")
            .expect("open");
        assert!(text.starts_with(&format!("{i} ")), "message {i}");
    }
    publishing.await.expect("published");
}

/// Asserts that the native session `token` can be resumed: a poll without a position (its
/// client read nothing) opens it.
async fn resumes(server: &Server, token: &str) {
    let mut poll = Request::get(&format!("/rt/native/poll?v=2&token={token}"))
        .send(server.addr)
        .await;
    assert_eq!(poll.status(), 200);
    let frames: Vec<Value> = serde_json::from_str(&poll.text().await).expect("frames");
    assert_eq!(frames[0]["type"], "open");
}

/// Publishes `MESSAGES` messages of 64 KB, which no stalled client can take.
async fn flood(tidings: &Tidings) {
    let body = "x".repeat(64 * 1024);
    for i in 0..MESSAGES {
        tidings
            .hub()
            .broadcast(format!("{i} {body}"))
            .await
            .expect("broadcast");
    }
}

#[tokio::test]
async fn a_websocket_client_that_stops_reading_is_let_go_and_the_others_keep_receiving() {
    let (closes_tx, mut closes) = mpsc::unbounded_channel();
    let tidings = service(closes_tx);
    let server = Server::start(Router::new().nest_service("/rt", tidings.router())).await;
    let mut reader = connect(&server.ws_url("/rt/websocket")).await;
    let stalled = stalled(&server, "/rt/websocket").await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    flood_while_reading(&tidings, &mut reader).await;
    let closed = tokio::time::timeout(Duration::from_secs(10), closes.recv())
        .await
        .expect("the stalled client is let go")
        .expect("a close");
    assert_eq!(closed, (3003, "Client stopped reading".to_owned()));
    until_closed(stalled).await;
}

#[tokio::test]
async fn a_native_client_that_stops_reading_is_let_go_and_its_session_resumes() {
    let (closes_tx, mut closes) = mpsc::unbounded_channel();
    let tidings = service(closes_tx);
    let server = Server::start(Router::new().nest_service("/rt", tidings.router())).await;
    let token = server.negotiate("/rt").await;
    let stalled = stalled(&server, &format!("/rt/native/ws?v=2&token={token}")).await;
    flood(&tidings).await;
    // Still not reading while the server's write stalls and times out.
    tokio::time::sleep(CLIENT_TIMEOUT * 4).await;
    until_closed(stalled).await;
    assert!(
        closes.try_recv().is_err(),
        "a native session is not closed when its connection is let go"
    );
    // The client comes back, without a position (it read nothing): it resumes the session.
    resumes(&server, &token).await;
}

#[tokio::test]
async fn http_clients_that_stop_reading_are_let_go_and_the_others_keep_receiving() {
    let (closes_tx, mut closes) = mpsc::unbounded_channel();
    let tidings = service(closes_tx);
    let app = Router::new().nest_service("/rt", tidings.router());
    let server = Server::start_listening(&tidings, app).await;
    let mut reader = connect(&server.ws_url("/rt/websocket")).await;
    let sockjs = stalled_http(&server, &Request::post("/rt/000/s/xhr_streaming")).await;
    let token = server.negotiate("/rt").await;
    let native = stalled_http(
        &server,
        &Request::get(&format!("/rt/native/sse?v=2&token={token}")),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    flood_while_reading(&tidings, &mut reader).await;
    // The SockJS session ends with its connection; the native one stays, for its client to
    // resume.
    let closed = tokio::time::timeout(Duration::from_secs(10), closes.recv())
        .await
        .expect("the stalled SockJS client is let go")
        .expect("a close");
    assert_eq!(closed.0, 1002, "{closed:?}");
    // Still not reading while the kernel's timer runs out (its zero-window probes back off from
    // 200 ms, so it fires some seconds after `CLIENT_TIMEOUT` at worst).
    tokio::time::sleep(CLIENT_TIMEOUT * 6).await;
    until_closed(sockjs).await;
    until_closed(native).await;
    assert!(closes.try_recv().is_err(), "the native session goes on");
    resumes(&server, &token).await;
}
