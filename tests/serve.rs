//! `tidings::serve`, the HTTP/1 loop the examples and every other test here serve with: a
//! client that hangs up in the middle of a long-lived response is still noticed, and the
//! graceful shutdown. The protocol suites cover the rest, since `tidings_tests::Server` serves
//! with it.

use std::future::IntoFuture;
use std::time::Duration;

use axum::Router;
use tidings::{Event, Tidings};
use tidings_tests::http::Request;
use tokio::net::TcpListener;

/// A service whose sessions heartbeat every 100 ms and end 200 ms after their client left.
fn quick() -> Tidings {
    tidings_tests::builder()
        .heartbeat(Duration::from_millis(100))
        .disconnect_delay(Duration::from_millis(200))
        .build()
}

/// Serves `tidings` at `/rt` until `stop` completes; the address and the server's task.
async fn start(
    tidings: &Tidings,
    stop: impl Future<Output = ()> + Send + 'static,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new().nest_service("/rt", tidings.router());
    let serve = tidings::serve(tidings.listener(listener), app).with_graceful_shutdown(stop);
    (addr, tokio::spawn(serve.into_future()))
}

/// The first disconnect event, within `within`.
async fn disconnected(events: &mut tokio::sync::broadcast::Receiver<Event>, within: Duration) {
    let found = tokio::time::timeout(within, async {
        loop {
            if let Ok(Event::Disconnected { .. }) = events.recv().await {
                return;
            }
        }
    })
    .await;
    assert!(found.is_ok(), "no session ended within {within:?}");
}

/// A client that closed its socket in the middle of a streaming response is found out: the
/// receiving request ends, and the session with it once `disconnect_delay` passed. Were it never
/// found out, the heartbeats would keep the session alive for good.
#[tokio::test]
async fn a_client_that_hangs_up_mid_stream_is_noticed() {
    let tidings = quick();
    let mut events = tidings.hub().events();
    let (addr, _server) = start(&tidings, std::future::pending()).await;
    for transport in ["xhr_streaming", "eventsource"] {
        let path = format!("/rt/000/gone-{transport}/{transport}");
        let method = if transport == "eventsource" {
            "GET"
        } else {
            "POST"
        };
        let mut response = Request::new(method, &path).send(addr).await;
        assert_eq!(response.status(), 200);
        // The prelude and the open frame: the session is open.
        let mut body = String::new();
        while !body.contains('o') {
            body.push_str(&response.chunk_text().await);
        }
        drop(response);
        disconnected(&mut events, Duration::from_secs(5)).await;
    }
}

/// After the signal, new connections are refused, a streaming response in flight holds the
/// server until Tidings ends its session, and then the server completes.
#[tokio::test]
async fn graceful_shutdown_waits_for_streams_that_tidings_then_ends() {
    let tidings = quick();
    let (signal, signalled) = tokio::sync::oneshot::channel::<()>();
    let stop = async move {
        let _ = signalled.await;
    };
    let (addr, server) = start(&tidings, stop).await;
    let mut stream = Request::post("/rt/000/held/xhr_streaming").send(addr).await;
    let mut body = String::new();
    while !body.contains('o') {
        body.push_str(&stream.chunk_text().await);
    }
    signal.send(()).expect("signal");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed once the signal came"
    );
    assert!(!server.is_finished(), "a stream in flight holds the server");
    assert_eq!(tidings.shutdown(Duration::from_secs(2)).await, 0);
    let ended = String::from_utf8(stream.body_to_end().await).expect("UTF-8");
    assert!(ended.contains(r#"c[1001,"#), "{ended:?}");
    let served = tokio::time::timeout(Duration::from_secs(5), server).await;
    assert!(
        matches!(served, Ok(Ok(Ok(())))),
        "the server completes once its connections ended: {served:?}"
    );
}
