//! `tidings-client` against real Tidings servers over real sockets on 127.0.0.1: every transport
//! forced in turn, the restrictive proxies, a cut mid-stream, a client away past retention, a
//! restarted client given its saved position, closes, refusals and malformed answers.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use futures::StreamExt;
use tidings::{Retention, Tidings};
use tidings_client::{Client, Connection, Error, Event, Resumption, Transport};
use tidings_tests::example::Running;
use tidings_tests::proxy::{Mode, Proxy};
use tidings_tests::{Opened, Server};

/// How long a test waits for an event it expects.
const WAIT: Duration = Duration::from_secs(20);

/// A service at `/rt` keeping `retention` messages, with a short heartbeat so that a silent
/// transport is noticed soon, and small streaming responses so that streams end and resume
/// often. Every message a client sends is broadcast; `?user=nobody` is refused. With the ids of
/// the channels it opens.
fn service(retention: usize) -> (Tidings, Opened) {
    let builder = tidings_tests::users_from_query(tidings_tests::builder())
        .retention(Retention {
            messages: retention,
            bytes: 1 << 20,
            age: None,
        })
        .heartbeat(Duration::from_millis(500))
        .response_limit(16 * 1024)
        .on_message(|channel, text| async move {
            let _ = channel.hub().broadcast(text).await;
        });
    let (builder, opened) = tidings_tests::recording_opens(builder);
    (builder.build(), opened)
}

async fn serve(tidings: &Tidings) -> Server {
    Server::start(Router::new().nest_service("/rt", tidings.router())).await
}

fn client(addr: std::net::SocketAddr) -> tidings_client::Builder {
    Client::builder(&format!("http://{addr}/rt"))
        .open_timeout(Duration::from_secs(1))
        .backoff(Duration::from_millis(50), Duration::from_millis(500))
}

/// The next event, failing the test if none comes within [`WAIT`].
async fn next(connection: &mut Connection) -> Result<Event, Error> {
    tokio::time::timeout(WAIT, connection.next())
        .await
        .expect("an event in time")
        .expect("the stream goes on")
}

/// Waits for the `Open` of `transport`, skipping others.
async fn opened_on(connection: &mut Connection, transport: Transport) {
    loop {
        match next(connection).await {
            Ok(Event::Open { transport: t }) if t == transport => return,
            Ok(Event::Open { .. }) => {}
            other => panic!("waiting for {transport}: {other:?}"),
        }
    }
}

/// The next `n` message texts, with any gap as `gap:<missed>` (opens skipped).
async fn texts(connection: &mut Connection, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < n {
        match next(connection).await {
            Ok(Event::Message { text, .. }) => got.push(text),
            Ok(Event::Gap { missed, .. }) => got.push(format!("gap:{missed:?}")),
            Ok(Event::Open { .. }) => {}
            other => panic!("after {got:?}: {other:?}"),
        }
    }
    got
}

fn numbered(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("m{i}")).collect()
}

async fn publish(tidings: &Tidings, range: std::ops::Range<usize>) {
    for i in range {
        tidings
            .hub()
            .broadcast(format!("m{i}"))
            .await
            .expect("broadcast");
    }
}

#[tokio::test]
async fn each_transport_delivers_a_thousand_messages_once_in_order() {
    let (tidings, _) = service(2000);
    let server = serve(&tidings).await;
    for transport in Transport::ALL {
        let mut connection = client(server.addr)
            .transports(&[transport])
            .connect()
            .expect("connect");
        opened_on(&mut connection, transport).await;
        let publishing = tokio::spawn({
            let tidings = tidings.clone();
            async move { publish(&tidings, 0..1000).await }
        });
        assert_eq!(
            texts(&mut connection, 1000).await,
            numbered(0..1000),
            "{transport}"
        );
        publishing.await.expect("published");
        connection.close().await.expect("close");
    }
}

#[tokio::test]
async fn it_sends_and_receives_its_own_messages() {
    let (tidings, _) = service(100);
    let server = serve(&tidings).await;
    let mut connection = client(server.addr).connect().expect("connect");
    connection.send("hello").await.expect("send");
    connection.send_all(&["a", "b"]).await.expect("send all");
    assert_eq!(texts(&mut connection, 3).await, ["hello", "a", "b"]);
}

#[tokio::test]
async fn behind_restrictive_proxies_it_ends_on_the_transport_that_works_with_nothing_lost() {
    let (tidings, _) = service(2000);
    let server = serve(&tidings).await;
    let cases = [
        (Mode::Pass, Transport::WebSocket),
        (Mode::BlockUpgrade, Transport::Sse),
        (Mode::KillWebSocket, Transport::Sse),
        (Mode::Buffer, Transport::Polling),
        (
            Mode::IdleTimeout(Duration::from_secs(2)),
            Transport::WebSocket,
        ),
    ];
    let mut from = 0;
    for (mode, expected) in cases {
        let proxy = Proxy::start(server.addr, mode).await;
        let mut connection = client(proxy.addr).connect().expect("connect");
        opened_on(&mut connection, expected).await;
        publish(&tidings, from..from + 100).await;
        assert_eq!(
            texts(&mut connection, 100).await,
            numbered(from..from + 100),
            "{mode:?}"
        );
        from += 100;
    }
}

#[tokio::test]
async fn cut_mid_stream_it_resumes_with_nothing_lost_or_repeated() {
    let (tidings, _) = service(2000);
    let server = serve(&tidings).await;
    for transport in Transport::ALL {
        let proxy = Proxy::start(server.addr, Mode::Pass).await;
        let mut connection = client(proxy.addr)
            .transports(&[transport])
            .connect()
            .expect("connect");
        opened_on(&mut connection, transport).await;
        publish(&tidings, 0..100).await;
        let mut got = texts(&mut connection, 50).await;
        proxy.cut_all();
        publish(&tidings, 100..200).await;
        got.extend(texts(&mut connection, 150).await);
        assert_eq!(got, numbered(0..200), "{transport}");
    }
}

/// A client that got `m0` to `m4` and went away (a process that stopped): what it saved.
async fn went_away(tidings: &Tidings, server: &Server) -> Resumption {
    let mut first = client(server.addr).connect().expect("connect");
    opened_on(&mut first, Transport::WebSocket).await;
    publish(tidings, 0..5).await;
    assert_eq!(texts(&mut first, 5).await, numbered(0..5));
    let saved = first.resumption().expect("a session");
    assert!(saved.position.is_some(), "{saved:?}");
    saved
}

#[tokio::test]
async fn a_restarted_client_resumes_from_its_saved_position() {
    let (tidings, opened) = service(100);
    let server = serve(&tidings).await;
    let saved = went_away(&tidings, &server).await;
    publish(&tidings, 5..10).await;
    let mut second = client(server.addr)
        .resume(saved)
        .connect()
        .expect("connect");
    assert_eq!(texts(&mut second, 5).await, numbered(5..10));
    assert_eq!(opened.lock().expect("lock").len(), 1, "the same session");
}

#[tokio::test]
async fn a_client_away_past_retention_is_told_of_the_gap() {
    let (tidings, _) = service(10);
    let server = serve(&tidings).await;
    let saved = went_away(&tidings, &server).await;
    publish(&tidings, 5..30).await;
    let mut second = client(server.addr)
        .resume(saved)
        .connect()
        .expect("connect");
    let mut expected = vec!["gap:Some(15)".to_owned()];
    expected.extend(numbered(20..30));
    assert_eq!(texts(&mut second, 11).await, expected);
}

#[tokio::test]
async fn a_session_closed_by_the_application_ends_the_stream() {
    let (tidings, opened) = service(100);
    let server = serve(&tidings).await;
    let mut connection = client(server.addr).connect().expect("connect");
    opened_on(&mut connection, Transport::WebSocket).await;
    let id = opened.lock().expect("lock")[0];
    tidings.hub().close(id, 4000, "bye").await.expect("close");
    assert_eq!(
        next(&mut connection).await,
        Ok(Event::Closed {
            code: 4000,
            reason: "bye".into()
        })
    );
    let end = tokio::time::timeout(WAIT, connection.next()).await;
    assert_eq!(end.expect("the end in time"), None);
    assert_eq!(connection.send("late").await, Err(Error::Closed));
}

#[tokio::test]
async fn refusals_and_malformed_answers_are_typed_errors() {
    let (tidings, _) = service(100);
    let server = serve(&tidings).await;
    let mut refused = client(server.addr)
        .query("user", "nobody")
        .connect()
        .expect("connect");
    match next(&mut refused).await {
        Err(Error::Refused {
            status: 401,
            message,
        }) => assert!(message.contains("not you")),
        other => panic!("{other:?}"),
    }

    // A server that negotiates, then answers polls with a frame that breaks the protocol.
    let negotiated = r#"{"version":2,"token":"t","transports":["polling"],"heartbeat_ms":500,"poll_timeout_ms":500,"resume_ms":1000,"max_message_size":100,"response_limit":100}"#;
    let broken = Router::new()
        .route(
            "/rt/native/negotiate",
            post(move || async move { negotiated }),
        )
        .route(
            "/rt/native/poll",
            get(|| async { r#"[{"type":"open","pos":"p"},{"type":"messages","pos":"q"}]"# }),
        );
    let server = Server::start(broken).await;
    let mut connection = client(server.addr).connect().expect("connect");
    assert!(
        matches!(next(&mut connection).await, Err(Error::Protocol(_))),
        "a malformed frame is a protocol error"
    );

    assert!(matches!(
        Client::builder("ftp://x/rt").connect(),
        Err(Error::Url(_))
    ));
    assert!(matches!(
        Client::builder("http://x/rt")
            .header("bad header", "v")
            .connect(),
        Err(Error::Header(_))
    ));
}

#[tokio::test]
async fn tail_prints_each_message_on_its_own_line_until_the_close() {
    let (tidings, opened) = service(100);
    let server = serve(&tidings).await;
    let url = format!("http://{}/rt", server.addr);
    let args = [url.as_str(), "--transport", "sse", "--user", "ann"];
    let mut tail = Running::start("tail", &args).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while opened.lock().expect("lock").is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "tail opened no session"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    publish(&tidings, 0..3).await;
    tidings
        .hub()
        .broadcast("two\nlines")
        .await
        .expect("broadcast");
    for expected in ["m0", "m1", "m2", "two", "lines"] {
        assert_eq!(tail.line(WAIT).await, expected);
    }
    let id = opened.lock().expect("lock")[0];
    tidings.hub().close(id, 4000, "bye").await.expect("close");
    let status = tokio::time::timeout(WAIT, tail.drain().wait())
        .await
        .expect("tail exits after the close")
        .expect("its status");
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    // Negotiation fails twice with 503 (a store that is down), then works; the first poll
    // answers a message, the next ones wait.
    let calls = Arc::new(AtomicUsize::new(0));
    let polls = Arc::new(AtomicUsize::new(0));
    let negotiated = r#"{"version":2,"token":"t","transports":["polling"],"heartbeat_ms":500,"poll_timeout_ms":500,"resume_ms":1000,"max_message_size":100,"response_limit":100}"#;
    let flaky = Router::new()
        .route(
            "/rt/native/negotiate",
            post(move || async move {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    let unavailable = axum::http::StatusCode::SERVICE_UNAVAILABLE;
                    return (unavailable, r#"{"error":"unavailable"}"#);
                }
                (axum::http::StatusCode::OK, negotiated)
            }),
        )
        .route(
            "/rt/native/poll",
            get(move || async move {
                if polls.fetch_add(1, Ordering::SeqCst) > 0 {
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    return r#"[{"type":"open","pos":"p1"},{"type":"heartbeat"},{"type":"end"}]"#;
                }
                r#"[{"type":"open","pos":"p0"},{"type":"messages","pos":"p1","data":["m0"]},{"type":"end"}]"#
            }),
        );
    let server = Server::start(flaky).await;
    let mut connection = client(server.addr).connect().expect("connect");
    assert_eq!(
        next(&mut connection).await,
        Ok(Event::Open {
            transport: Transport::Polling
        })
    );
    assert_eq!(texts(&mut connection, 1).await, ["m0"]);
}

#[tokio::test]
async fn a_session_the_server_lost_is_replaced_and_reported_as_a_gap() {
    use tidings::store::Store;

    let store = tidings::MemoryStore::new();
    let builder = Tidings::builder()
        .store(store.clone())
        .heartbeat(Duration::from_millis(500));
    let (builder, opened) = tidings_tests::recording_opens(builder);
    let tidings = builder.build();
    let server = serve(&tidings).await;
    let mut connection = client(server.addr).connect().expect("connect");
    opened_on(&mut connection, Transport::WebSocket).await;
    publish(&tidings, 0..1).await;
    assert_eq!(texts(&mut connection, 1).await, ["m0"]);
    let before = connection.resumption().expect("a session");

    // The session vanishes from the store (as when it expired): 3002, which says reconnect.
    let first = opened.lock().expect("lock")[0];
    store.remove_channel(first).await.expect("remove");
    let gap = Event::Gap {
        missed: None,
        position: None,
    };
    assert_eq!(next(&mut connection).await, Ok(gap));
    assert_eq!(
        connection.resumption(),
        None,
        "nothing to resume between sessions"
    );
    opened_on(&mut connection, Transport::WebSocket).await;
    publish(&tidings, 1..2).await;
    assert_eq!(texts(&mut connection, 1).await, ["m1"]);
    let after = connection.resumption().expect("the new session");
    assert_ne!(after.token, before.token);
    assert!(after.position.is_some());
}
