//! A node shutting down (`Tidings::shutdown`): every connection it serves ends the way its
//! protocol says a server going away, pending polls are answered, later connections end at
//! once, and native sessions go on: their clients resume on another node where they left off.

use std::time::Duration;

use axum::Router;
use serde_json::Value;
use tidings::store::MemoryStore;
use tidings::{Builder, Tidings};
use tidings_tests::http::Request;
use tidings_tests::stomp::{StompClient, StompSession};
use tidings_tests::{Server, connect, next_text, percent_encode};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(5);
const GOING_AWAY: &str = r#"c[1001,"Server shutting down"]"#;

/// A service on `store` that reports every close's code on `closes`.
fn node(store: &MemoryStore, closes: mpsc::UnboundedSender<u16>) -> Tidings {
    Builder::default()
        .store(store.clone())
        .on_close(move |_, closed| {
            let closes = closes.clone();
            async move {
                let _ = closes.send(closed.code.as_u16());
            }
        })
        .build()
}

async fn serve(tidings: &Tidings) -> Server {
    let app = Router::new()
        .nest_service("/rt", tidings.router())
        .nest_service("/stomp", tidings.stomp_router());
    Server::start(app).await
}

fn frames(body: &str) -> Vec<Value> {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{body:?}: {e}"))
}

#[tokio::test]
async fn every_connection_ends_as_its_protocol_says_and_native_sessions_resume_elsewhere() {
    let store = MemoryStore::new();
    let (closes_tx, mut closes) = mpsc::unbounded_channel();
    let tidings = node(&store, closes_tx.clone());
    let server = serve(&tidings).await;
    let addr = server.addr;

    let mut raw = connect(&server.ws_url("/rt/websocket")).await;
    let mut sockjs_ws = connect(&server.ws_url("/rt/000/a/websocket")).await;
    assert_eq!(next_text(&mut sockjs_ws).await.as_deref(), Some("o"));
    let mut streaming = Request::post("/rt/000/b/xhr_streaming").send(addr).await;
    streaming.chunk().await; // the prelude
    assert_eq!(streaming.chunk_text().await, "o\n");
    let opened = Request::post("/rt/000/c/xhr").send(addr).await.text().await;
    assert_eq!(opened, "o\n");
    let pending_poll =
        tokio::spawn(async move { Request::post("/rt/000/c/xhr").send(addr).await.text().await });
    let mut stomp = StompClient::connect(&server.ws_url("/stomp/websocket"), "").await;

    // Native: a WebSocket, and a poll waiting from its position.
    let token = server.negotiate("/rt").await;
    let mut native_ws = connect(&server.ws_url(&format!("/rt/native/ws?v=2&token={token}"))).await;
    let open: Value =
        serde_json::from_str(&next_text(&mut native_ws).await.expect("open")).expect("JSON");
    assert_eq!(open["type"], "open");
    let polling = server.negotiate("/rt").await;
    let first = frames(
        &Request::get(&format!("/rt/native/poll?v=2&token={polling}"))
            .send(addr)
            .await
            .text()
            .await,
    );
    let pos = first[0]["pos"].as_str().expect("pos").to_owned();
    let path = format!(
        "/rt/native/poll?v=2&token={polling}&pos={}",
        percent_encode(&pos)
    );
    let pending_native =
        tokio::spawn(async move { Request::get(&path).send(addr).await.text().await });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let left = tokio::time::timeout(WAIT, tidings.shutdown(WAIT))
        .await
        .expect("the shutdown finishes within its bound");
    assert_eq!(left, 0, "every connection is gone");

    assert_eq!(
        next_text(&mut raw).await.as_deref(),
        Some("close:1001:Server shutting down")
    );
    assert_eq!(next_text(&mut sockjs_ws).await.as_deref(), Some(GOING_AWAY));
    assert_eq!(streaming.chunk_text().await, format!("{GOING_AWAY}\n"));
    streaming.assert_ended().await;
    assert_eq!(pending_poll.await.expect("poll"), format!("{GOING_AWAY}\n"));
    let error = stomp.next().await;
    assert!(
        error.starts_with("ERROR\nmessage:Server shutting down\n"),
        "{error:?}"
    );
    // Native: `end`, so the client comes back from its position; the WebSocket closes with 1001.
    assert_eq!(
        next_text(&mut native_ws).await.as_deref(),
        Some(r#"{"type":"end"}"#)
    );
    assert_eq!(
        next_text(&mut native_ws).await.as_deref(),
        Some("close:1001:Server shutting down")
    );
    let answered = frames(&pending_native.await.expect("native poll"));
    assert_eq!(answered.last().expect("a frame")["type"], "end");

    // The SockJS, raw and STOMP sessions closed with 1001; the native ones did not close.
    let mut codes = Vec::new();
    while let Ok(Some(code)) = tokio::time::timeout(Duration::from_millis(300), closes.recv()).await
    {
        codes.push(code);
    }
    codes.sort_unstable();
    assert_eq!(codes, [1001; 5]);

    // A connection after the shutdown ends at once.
    let mut late = connect(&server.ws_url("/rt/websocket")).await;
    assert_eq!(
        next_text(&mut late).await.as_deref(),
        Some("close:1001:Server shutting down")
    );

    // Another node on the same store: the native client resumes from its position, and gets
    // what was published while it moved.
    let other = node(&store, closes_tx);
    let other_server = serve(&other).await;
    other.hub().broadcast("after").await.expect("broadcast");
    let path = format!(
        "/rt/native/poll?v=2&token={polling}&pos={}",
        percent_encode(&pos)
    );
    let resumed = frames(
        &Request::get(&path)
            .send(other_server.addr)
            .await
            .text()
            .await,
    );
    let data: Vec<&Value> = resumed.iter().filter(|f| f["type"] == "messages").collect();
    assert_eq!(data.len(), 1, "{resumed:?}");
    assert_eq!(data[0]["data"], serde_json::json!(["after"]));
}

/// `graceful_shutdown` under `axum::serve`: the signal ends the connections with 1001, then
/// axum stops.
#[tokio::test]
async fn graceful_shutdown_ends_connections_then_lets_axum_stop() {
    let tidings = Tidings::builder().build();
    let app = Router::new().nest_service("/rt", tidings.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (signal, signalled) = tokio::sync::oneshot::channel::<()>();
    let stop = tidings.graceful_shutdown(
        async move {
            let _ = signalled.await;
        },
        WAIT,
    );
    let serving = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
    });
    let mut ws = connect(&format!("ws://{addr}/rt/websocket")).await;
    signal.send(()).expect("the server waits for the signal");
    assert_eq!(
        next_text(&mut ws).await.as_deref(),
        Some("close:1001:Server shutting down")
    );
    drop(ws);
    tokio::time::timeout(WAIT, serving)
        .await
        .expect("axum stops")
        .expect("the task")
        .expect("serve");
}
