//! The metrics of a running example, as an operator scrapes them: `GET /metrics` of the chat
//! example after traffic on every transport (native, SockJS and raw) finds the documented series
//! (docs/operations.md) with the values the traffic makes.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use tidings_client::{Client, Event, Transport};
use tidings_tests::example::Chat;
use tidings_tests::http::Request;
use tidings_tests::proxy::{Mode, Proxy};
use tidings_tests::{connect, next_text};

const WAIT: Duration = Duration::from_secs(10);
const MESSAGES: usize = 5;

fn sample(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or_else(|| {
        panic!("no {series} in {samples:#?}");
    })
}

fn of(name: &str, protocol: &str, transport: &str) -> String {
    format!(r#"{name}{{protocol="{protocol}",transport="{transport}"}}"#)
}

#[tokio::test]
async fn the_chat_example_exports_its_connections_and_deliveries() {
    let chat = Chat::start(1000).await;
    let url = chat.url("/rt");
    let mut natives = Vec::new();
    for transport in Transport::ALL {
        let mut connection = Client::builder(&url)
            .transports(&[transport])
            .connect()
            .expect("connect");
        let opened = tokio::time::timeout(WAIT, connection.next()).await;
        assert!(
            matches!(opened, Ok(Some(Ok(Event::Open { .. })))),
            "{transport}: {opened:?}"
        );
        natives.push(connection);
    }
    let mut sockjs = connect(&format!("ws://{}/rt/000/metrics/websocket", chat.addr)).await;
    assert_eq!(next_text(&mut sockjs).await.as_deref(), Some("o"));
    let mut raw = connect(&format!("ws://{}/rt/websocket", chat.addr)).await;
    // SockJS's streaming transports, opened before the messages and held until the scrape.
    let mut streams = Vec::new();
    for (transport, request) in [
        ("xhr-streaming", Request::post("/rt/000/mxs/xhr_streaming")),
        ("eventsource", Request::get("/rt/000/mes/eventsource")),
        ("htmlfile", Request::get("/rt/000/mhf/htmlfile?c=callback")),
    ] {
        let mut stream = request.send(chat.addr).await;
        assert_eq!(stream.status(), 200, "{transport}");
        let opened = stream.chunk_text().await;
        streams.push((transport, stream, opened));
    }
    // SockJS's polling transports: a first poll opens the session.
    let polls = [
        ("xhr-polling", Request::post("/rt/000/mxp/xhr")),
        (
            "jsonp-polling",
            Request::get("/rt/000/mjp/jsonp?c=callback"),
        ),
    ];
    for (transport, poll) in &polls {
        let opened = poll.clone().send(chat.addr).await.text().await;
        assert!(opened.contains('o'), "{transport} opens: {opened:?}");
    }
    for i in 0..MESSAGES {
        let mut response = Request::post("/publish")
            .body(format!("m{i}"))
            .send(chat.addr)
            .await;
        assert_eq!(response.status(), 200, "{}", response.text().await);
    }
    for connection in &mut natives {
        let mut got = 0;
        while got < MESSAGES {
            let event = tokio::time::timeout(WAIT, connection.next()).await;
            if let Ok(Some(Ok(Event::Message { .. }))) = event {
                got += 1;
            }
        }
    }
    let mut got = 0;
    while got < MESSAGES {
        let frame = next_text(&mut sockjs).await.expect("a frame");
        if let Some(array) = frame.strip_prefix('a') {
            got += serde_json::from_str::<Vec<String>>(array)
                .expect("a[…]")
                .len();
        }
    }
    for _ in 0..MESSAGES {
        next_text(&mut raw).await.expect("a message");
    }
    // Each message's text, in whatever framing (`a["m0"]`, `data: a["m0"]`, `p("a[\"m0\"]")`).
    let has_all = |text: &str| (0..MESSAGES).all(|i| text.contains(&format!("m{i}")));
    for (transport, stream, seen) in &mut streams {
        while !has_all(seen) {
            let chunk = stream.next_chunk(WAIT).await;
            let chunk = chunk.unwrap_or_else(|| panic!("{transport} ended before: {seen:?}"));
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    for (transport, poll) in &polls {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut seen = String::new();
        while !has_all(&seen) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{transport}: {seen:?}"
            );
            seen.push_str(&poll.clone().send(chat.addr).await.text().await);
        }
    }

    let samples = chat.scrape().await;
    for (protocol, transport) in [
        ("native", "websocket"),
        ("native", "sse"),
        ("native", "streaming"),
        ("native", "polling"),
        ("sockjs", "websocket"),
        ("sockjs", "xhr-streaming"),
        ("sockjs", "eventsource"),
        ("sockjs", "htmlfile"),
        ("sockjs", "xhr-polling"),
        ("sockjs", "jsonp-polling"),
        ("raw", "websocket"),
    ] {
        let delivered = sample(
            &samples,
            &of("tidings_messages_delivered_total", protocol, transport),
        );
        assert!(
            delivered >= MESSAGES as f64,
            "{protocol}/{transport}: {delivered}"
        );
        let bytes = sample(
            &samples,
            &of("tidings_bytes_written_total", protocol, transport),
        );
        assert!(bytes > 0.0, "{protocol}/{transport}: {bytes} bytes");
        // A poll is a connection only while it waits; the others hold theirs.
        if !transport.ends_with("polling") {
            let open = sample(&samples, &of("tidings_connections", protocol, transport));
            assert_eq!(open, 1.0, "{protocol}/{transport} connections");
        }
    }
    assert!(sample(&samples, "tidings_messages_published_total") >= MESSAGES as f64);
    // Every store operation is timed; the Prometheus exporter renders a summary of each.
    let appends = sample(
        &samples,
        r#"tidings_store_seconds_count{operation="append"}"#,
    );
    assert!(appends >= MESSAGES as f64, "{appends} appends timed");
    assert!(samples.contains_key(r#"tidings_store_seconds_count{operation="read"}"#));
    assert!(sample(&samples, "tidings_sessions_opened_total") >= 11.0);

    // Once every client has gone, no connection is counted and the closes are.
    drop(natives);
    drop(sockjs);
    drop(raw);
    drop(streams);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let samples = chat.scrape().await;
        let open: f64 = samples
            .iter()
            .filter(|(series, _)| series.starts_with("tidings_connections{"))
            .map(|(_, value)| value)
            .sum();
        let closed: f64 = samples
            .iter()
            .filter(|(series, _)| series.starts_with("tidings_sessions_closed_total{"))
            .map(|(_, value)| value)
            .sum();
        if open == 0.0 && closed >= 2.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{open} connections still counted, {closed} closes: {samples:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A native client that gives up a transport says so on the next one's request (`fb=`), and
/// the node counts it: behind a proxy refusing WebSocket upgrades, the Rust client falls back
/// to SSE, which `tidings_transport_fallbacks_total{from="websocket",to="sse"}` shows.
#[tokio::test]
async fn a_fallback_the_client_reports_is_counted() {
    let chat = Chat::start(1000).await;
    let proxy = Proxy::start(chat.addr, Mode::BlockUpgrade).await;
    let mut connection = Client::builder(&format!("http://{}/rt", proxy.addr))
        .transports(&[Transport::WebSocket, Transport::Sse])
        .connect()
        .expect("connect");
    let opened = tokio::time::timeout(WAIT, connection.next()).await;
    assert!(
        matches!(
            opened,
            Ok(Some(Ok(Event::Open {
                transport: Transport::Sse
            })))
        ),
        "{opened:?}"
    );
    let samples = chat.scrape().await;
    let series = r#"tidings_transport_fallbacks_total{from="websocket",to="sse"}"#;
    assert_eq!(sample(&samples, series), 1.0);
    let fallbacks = samples
        .keys()
        .filter(|series| series.starts_with("tidings_transport_fallbacks_total"))
        .count();
    assert_eq!(fallbacks, 1, "only that one: {samples:#?}");
}
