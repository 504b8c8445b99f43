//! The SockJS WebSocket and raw WebSocket transports over real sockets on 127.0.0.1. The tests
//! of the protocol suite's services run on those `Server::sockjs_reference` gives: in this
//! process, or at `TIDINGS_TEST_SOCKJS_AT` (three nodes behind a balancer, in run-all.sh).

use std::time::Duration;

use axum::Router;
use tidings::{Identity, Rejection, Retention, Topic};
use tidings_tests::{Server, connect, next_text, pin_response, raw_http, send_text};

fn echo() -> tidings::Builder {
    tidings_tests::builder().on_message(|channel, text| async move {
        channel.send(text).await.expect("echo");
    })
}

async fn echo_server(builder: tidings::Builder) -> Server {
    Server::start(Router::new().nest_service("/echo", builder.build().router())).await
}

#[tokio::test]
async fn sockjs_echo_opens_first_then_echoes_in_order() {
    let server = Server::sockjs_reference().await;
    let mut ws = connect(&server.ws_url("/echo/000/abc/websocket")).await;
    assert_eq!(next_text(&mut ws).await.as_deref(), Some("o"));
    send_text(&mut ws, r#"["a","b"]"#).await;
    let mut got = Vec::new();
    while got.len() < 2 {
        let frame = next_text(&mut ws).await.expect("frame");
        let items: Vec<String> =
            serde_json::from_str(frame.strip_prefix('a').expect("a frame")).expect("json");
        got.extend(items);
    }
    assert_eq!(got, ["a", "b"]);
}

#[tokio::test]
async fn raw_echo_is_verbatim() {
    let server = Server::sockjs_reference().await;
    let mut ws = connect(&server.ws_url("/echo/websocket")).await;
    send_text(&mut ws, "Hello world!\u{ffff}").await;
    assert_eq!(
        next_text(&mut ws).await.as_deref(),
        Some("Hello world!\u{ffff}")
    );
}

#[tokio::test]
async fn sockjs_close_frame_then_websocket_close() {
    let server = Server::sockjs_reference().await;
    let mut ws = connect(&server.ws_url("/close/000/abc/websocket")).await;
    assert_eq!(next_text(&mut ws).await.as_deref(), Some("o"));
    assert_eq!(
        next_text(&mut ws).await.as_deref(),
        Some(r#"c[3000,"Go away!"]"#)
    );
    assert_eq!(
        next_text(&mut ws).await.as_deref(),
        Some("close:3000:Go away!")
    );
}

#[tokio::test]
async fn raw_close_carries_code_and_reason() {
    let server = Server::sockjs_reference().await;
    let mut ws = connect(&server.ws_url("/close/websocket")).await;
    assert_eq!(
        next_text(&mut ws).await.as_deref(),
        Some("close:3000:Go away!")
    );
}

#[tokio::test]
async fn heartbeat_after_the_configured_delay() {
    let server = echo_server(echo().heartbeat(Duration::from_millis(200))).await;
    let mut ws = connect(&server.ws_url("/echo/000/hb/websocket")).await;
    assert_eq!(next_text(&mut ws).await.as_deref(), Some("o"));
    let start = tokio::time::Instant::now();
    assert_eq!(next_text(&mut ws).await.as_deref(), Some("h"));
    assert!(
        start.elapsed() >= Duration::from_millis(150),
        "heartbeat came early"
    );
}

/// A channel renewed only every fourth heartbeat lives as long as its connection: its time to
/// live in the store is stretched to match (with the unstretched 2 × 200 ms + 100 ms, the sweeper
/// would end it, 3002, between two renewals 800 ms apart).
#[tokio::test]
async fn a_channel_renewed_every_fourth_heartbeat_stays_open() {
    let builder = echo()
        .heartbeat(Duration::from_millis(200))
        .disconnect_delay(Duration::from_millis(100))
        .renew_every(4);
    let server = echo_server(builder).await;
    let mut ws = connect(&server.ws_url("/echo/000/renew/websocket")).await;
    assert_eq!(next_text(&mut ws).await.as_deref(), Some("o"));
    let start = tokio::time::Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        assert_eq!(
            next_text(&mut ws).await.as_deref(),
            Some("h"),
            "only heartbeats"
        );
    }
    send_text(&mut ws, r#"["still here"]"#).await;
    loop {
        match next_text(&mut ws).await.as_deref() {
            Some("h") => {}
            frame => {
                assert_eq!(frame, Some(r#"a["still here"]"#));
                break;
            }
        }
    }
}

#[tokio::test]
async fn empty_frames_are_ignored() {
    let server = Server::sockjs_reference().await;
    let mut ws = connect(&server.ws_url("/echo/000/e/websocket")).await;
    assert_eq!(next_text(&mut ws).await.as_deref(), Some("o"));
    send_text(&mut ws, "").await;
    send_text(&mut ws, "[]").await;
    send_text(&mut ws, r#"["x"]"#).await;
    assert_eq!(next_text(&mut ws).await.as_deref(), Some(r#"a["x"]"#));
}

#[tokio::test]
async fn broken_json_drops_only_that_connection() {
    let server = Server::sockjs_reference().await;
    let mut good = connect(&server.ws_url("/echo/000/good/websocket")).await;
    assert_eq!(next_text(&mut good).await.as_deref(), Some("o"));
    for i in 0..20 {
        let mut bad = connect(&server.ws_url(&format!("/echo/000/bad{i}/websocket"))).await;
        assert_eq!(next_text(&mut bad).await.as_deref(), Some("o"));
        send_text(&mut bad, r#"["x"#).await;
        assert_eq!(
            next_text(&mut bad).await,
            None,
            "broken JSON must drop the connection"
        );
        send_text(&mut good, &format!(r#"["{i}"]"#)).await;
        assert_eq!(next_text(&mut good).await, Some(format!(r#"a["{i}"]"#)));
    }
}

#[tokio::test]
async fn oversized_message_closes_with_1009() {
    let server = echo_server(echo().max_message_size(100)).await;
    let mut ws = connect(&server.ws_url("/echo/000/big/websocket")).await;
    assert_eq!(next_text(&mut ws).await.as_deref(), Some("o"));
    send_text(&mut ws, &format!(r#"["{}"]"#, "x".repeat(200))).await;
    assert_eq!(
        next_text(&mut ws).await.as_deref(),
        Some(r#"c[1009,"Message too big"]"#)
    );
    assert_eq!(
        next_text(&mut ws).await.as_deref(),
        Some("close:1009:Message too big")
    );

    let mut raw = connect(&server.ws_url("/echo/websocket")).await;
    send_text(&mut raw, &"x".repeat(101)).await;
    assert_eq!(
        next_text(&mut raw).await.as_deref(),
        Some("close:1009:Message too big")
    );
}

/// Every code point SockJS escapes, and some it does not, echoed: the exact bytes are pinned.
#[tokio::test]
async fn unicode_escaping_bytes() {
    let server = Server::sockjs_reference().await;
    let mut ws = connect(&server.ws_url("/echo/000/u/websocket")).await;
    assert_eq!(next_text(&mut ws).await.as_deref(), Some("o"));
    let ranges = [
        0x00..=0x1f,
        0x7f..=0x9f,
        0x200c..=0x200f,
        0x2028..=0x202f,
        0x2060..=0x206f,
        0xfff0..=0xffff,
    ];
    let mut text: String = ranges
        .into_iter()
        .flatten()
        .filter_map(char::from_u32)
        .collect();
    text.push_str("é€😀\"\\/");
    let sent = serde_json::to_string(&[&text]).expect("json");
    send_text(&mut ws, &sent).await;
    let frame = next_text(&mut ws).await.expect("frame");
    let items: Vec<String> = serde_json::from_str(&frame[1..]).expect("json");
    assert_eq!(items, [text]);
    insta::assert_snapshot!(frame);
}

#[tokio::test]
async fn wrong_method_and_bad_upgrades() {
    let server = Server::sockjs_reference().await;
    let headers = ["allow", "content-type", "content-length"];
    let post = raw_http(server.addr, "POST /echo/000/s/websocket HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
    insta::assert_snapshot!("post_websocket", pin_response(&post, &headers));
    let get = raw_http(
        server.addr,
        "GET /echo/000/s/websocket HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    insta::assert_snapshot!("plain_get_websocket", pin_response(&get, &headers));
    let close = raw_http(
        server.addr,
        "GET /echo/000/s/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\nConnection: close\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    insta::assert_snapshot!("connection_close_websocket", pin_response(&close, &headers));
    let dotted = raw_http(
        server.addr,
        "GET /echo/a./a/websocket HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(dotted.starts_with("HTTP/1.1 404"), "{dotted}");
}

#[tokio::test]
async fn greeting() {
    let server = Server::sockjs_reference().await;
    for path in ["/echo", "/echo/"] {
        let response = raw_http(
            server.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(response.starts_with("HTTP/1.1 200"), "{path}: {response}");
        insta::assert_snapshot!(
            "greeting",
            pin_response(&response, &["content-type", "content-length", "set-cookie"])
        );
    }
}

#[tokio::test]
async fn disabled_websocket_is_404() {
    let server = Server::sockjs_reference().await;
    let response = raw_http(
        server.addr,
        "GET /disabled_websocket_echo/websocket HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
}

#[tokio::test]
async fn origin_and_auth_are_checked_before_upgrade() {
    let tidings = echo()
        .allowed_origins(["http://good.example"])
        .auth(|handshake| async move {
            match handshake.query("token").as_deref() {
                Some("secret") => Ok(Identity::user("alice")),
                _ => Err(Rejection::unauthorized("token required")),
            }
        })
        .build();
    let server = Server::start(Router::new().nest_service("/echo", tidings.router())).await;
    let upgrade = |path: &str, origin: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
    };
    let bad_origin = raw_http(
        server.addr,
        &upgrade("/echo/websocket?token=secret", "http://evil.example"),
    )
    .await;
    assert!(bad_origin.starts_with("HTTP/1.1 403"), "{bad_origin}");
    let no_token = raw_http(
        server.addr,
        &upgrade("/echo/websocket", "http://good.example"),
    )
    .await;
    assert!(
        no_token.starts_with("HTTP/1.1 401") && no_token.ends_with("token required"),
        "{no_token}"
    );
    let ok = raw_http(
        server.addr,
        &upgrade("/echo/websocket?token=secret", "http://good.example"),
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 101"), "{ok}");
}

#[tokio::test]
async fn hub_reaches_users_rooms_and_everyone() {
    let tidings =
        tidings_tests::builder()
            .auth(|handshake| async move {
                Ok(Identity::user(handshake.query("user").unwrap_or_default()))
            })
            .build();
    let hub = tidings.hub();
    let mut events = hub.events();
    let server = Server::start(Router::new().nest_service("/rt", tidings.router())).await;
    let mut alice1 = connect(&server.ws_url("/rt/websocket?user=alice")).await;
    let mut alice2 = connect(&server.ws_url("/rt/websocket?user=alice")).await;
    let mut bob = connect(&server.ws_url("/rt/websocket?user=bob")).await;
    let mut ids = Vec::new();
    while ids.len() < 3 {
        if let Ok(tidings::Event::Connected { channel, .. }) = events.recv().await {
            ids.push(channel);
        }
    }
    let online = hub.online().await.expect("online");
    assert_eq!(online.channels, 3);
    assert_eq!(online.users.get("alice"), Some(&2));
    let mut alices = hub.user_channels("alice").await.expect("user channels");
    alices.sort();
    let mut expected: Vec<_> = ids[..2].to_vec();
    expected.sort();
    assert_eq!(alices, expected, "alice's two channels, not bob's");

    hub.send_to_user("alice", "for alice").await.expect("send");
    assert_eq!(next_text(&mut alice1).await.as_deref(), Some("for alice"));
    assert_eq!(next_text(&mut alice2).await.as_deref(), Some("for alice"));

    let room = Topic::new("room").expect("topic");
    for id in &ids {
        hub.subscribe(*id, &room).await.expect("subscribe");
    }
    assert_eq!(hub.presence(&room).await.expect("presence").channels, 3);
    hub.publish(&room, "in the room").await.expect("publish");
    hub.broadcast("to everyone").await.expect("broadcast");
    // Order is kept within a topic; across topics it is not defined.
    for ws in [&mut alice1, &mut alice2, &mut bob] {
        let mut got = [next_text(ws).await, next_text(ws).await];
        got.sort();
        assert_eq!(
            got,
            [
                Some("in the room".to_owned()),
                Some("to everyone".to_owned())
            ]
        );
    }

    drop(bob);
    loop {
        if let Ok(tidings::Event::Disconnected { user, .. }) = events.recv().await {
            assert_eq!(user.as_deref(), Some("bob"));
            break;
        }
    }
    assert_eq!(hub.presence(&room).await.expect("presence").channels, 2);
}

#[tokio::test]
async fn per_user_channel_limit_is_429() {
    let tidings = tidings_tests::builder()
        .max_channels_per_user(1)
        .auth(|_| async { Ok(Identity::user("alice")) })
        .build();
    let mut events = tidings.hub().events();
    let server = Server::start(Router::new().nest_service("/rt", tidings.router())).await;
    let _first = connect(&server.ws_url("/rt/websocket")).await;
    // The first channel is stored once its connection is up, a moment after the handshake.
    let Ok(tidings::Event::Connected { .. }) = events.recv().await else {
        panic!("no connect event")
    };
    let second = tokio_tungstenite::connect_async(server.ws_url("/rt/websocket")).await;
    let error = second
        .expect_err("second channel must be refused")
        .to_string();
    assert!(error.contains("429"), "{error}");
}

#[tokio::test]
async fn lagging_subscriber_is_closed_with_3001() {
    // The connection task awaits `on_message` before it reads the channel again: a handler held
    // on a gate keeps the reader still while the channel's topic runs past its retention.
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    let (entered_tx, mut entered) = tokio::sync::mpsc::unbounded_channel();
    let held = gate.clone();
    let tidings = tidings_tests::builder()
        .retention(Retention {
            messages: 10,
            bytes: 1 << 20,
            age: None,
        })
        .on_message(move |_, _| {
            let (held, entered_tx) = (held.clone(), entered_tx.clone());
            async move {
                let _ = entered_tx.send(());
                held.notified().await;
            }
        })
        .build();
    let hub = tidings.hub();
    let mut events = hub.events();
    let server = Server::start(Router::new().nest_service("/rt", tidings.router())).await;
    let mut ws = connect(&server.ws_url("/rt/000/lag/websocket")).await;
    assert_eq!(next_text(&mut ws).await.as_deref(), Some("o"));
    let Ok(tidings::Event::Connected { channel, .. }) = events.recv().await else {
        panic!("no connect event")
    };
    send_text(&mut ws, r#"["hold"]"#).await;
    entered.recv().await.expect("the handler runs");
    // Far past the retention of 10, so that the reader's cursor is behind what every store (and
    // a Redis node's copy of the newest records) still holds.
    for chunk in (0..1100).collect::<Vec<_>>().chunks(100) {
        let burst = chunk
            .iter()
            .map(|i| hub.send_to_channel(channel, format!("m{i}")));
        for sent in futures::future::join_all(burst).await {
            sent.expect("send");
        }
    }
    gate.notify_one();
    let mut last = String::new();
    while let Some(frame) = next_text(&mut ws).await {
        last = frame;
        if last.starts_with('c') {
            break;
        }
    }
    assert_eq!(last, r#"c[3001,"Missed messages"]"#);
}

/// `Hub::subscribe_with_history`: a channel subscribed to a room on open gets the last N
/// messages the room retains first, in order, then what comes after; asked for more than the
/// room retains, it gets what is retained, with no gap and no close.
#[tokio::test]
async fn history_on_subscribe_comes_first_in_order_once() {
    for (asked, expected) in [(5, 15..20), (50, 12..20)] {
        let room = tidings::Topic::new("room").expect("a topic");
        let builder = tidings_tests::builder().retention(Retention {
            messages: 8,
            bytes: 1 << 20,
            age: None,
        });
        let tidings = tidings_tests::with_history_on_open(builder, &room, asked).build();
        let hub = tidings.hub();
        for i in 0..20 {
            hub.publish(&room, format!("m{i}")).await.expect("publish");
        }
        let server = Server::start(Router::new().nest_service("/rt", tidings.router())).await;
        let mut ws = connect(&server.ws_url("/rt/websocket")).await;
        let mut got = Vec::new();
        for _ in expected.clone() {
            got.push(next_text(&mut ws).await.expect("history"));
        }
        hub.publish(&room, "new").await.expect("publish");
        got.push(next_text(&mut ws).await.expect("the next message"));
        let mut want: Vec<String> = expected.map(|i| format!("m{i}")).collect();
        want.push("new".to_owned());
        assert_eq!(got, want, "asked for {asked}");
    }
}

/// `on_messages` is handed what a client sent together, in order: a SockJS frame's messages at
/// once, and on a raw WebSocket the messages that arrived while the handler was busy, at most 256
/// at a time; `Hub::publish_batch` appends a batch at consecutive offsets.
#[tokio::test]
async fn messages_sent_together_are_handled_together() {
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let (batches_tx, mut batches) = tokio::sync::mpsc::unbounded_channel();
    let held = gate.clone();
    let tidings = tidings_tests::builder()
        .on_messages(move |channel, texts: Vec<String>| {
            let (held, batches_tx) = (held.clone(), batches_tx.clone());
            async move {
                let _ = batches_tx.send(texts.clone());
                if texts[0] == "hold" {
                    held.acquire().await.expect("gate").forget();
                }
                let offsets = channel
                    .hub()
                    .publish_batch(&Topic::channel(channel.id()), texts.clone())
                    .await
                    .expect("publish_batch");
                assert_eq!(offsets.len(), texts.len());
                assert!(
                    offsets.windows(2).all(|w| w[1] == w[0].next()),
                    "{offsets:?}"
                );
            }
        })
        .build();
    let server = Server::start(Router::new().nest_service("/rt", tidings.router())).await;

    // One SockJS frame, one batch, delivered back in order.
    let mut ws = connect(&server.ws_url("/rt/000/batch/websocket")).await;
    assert_eq!(next_text(&mut ws).await.as_deref(), Some("o"));
    send_text(&mut ws, r#"["a","b","c"]"#).await;
    assert_eq!(batches.recv().await.expect("batch"), ["a", "b", "c"]);
    let mut echoed = Vec::new();
    while echoed.len() < 3 {
        let frame = next_text(&mut ws).await.expect("frame");
        let items: Vec<String> =
            serde_json::from_str(frame.strip_prefix('a').expect("a frame")).expect("json");
        echoed.extend(items);
    }
    assert_eq!(echoed, ["a", "b", "c"]);

    // Raw WebSocket messages sent while the handler is held come in batches of at most 256.
    let mut raw = connect(&server.ws_url("/rt/websocket")).await;
    send_text(&mut raw, "hold").await;
    assert_eq!(batches.recv().await.expect("batch"), ["hold"]);
    let sent: Vec<String> = (0..300).map(|n| format!("m{n}")).collect();
    for text in &sent {
        send_text(&mut raw, text).await;
    }
    // Loopback delivers them well within this; should some still be in flight, they only make
    // one more batch.
    tokio::time::sleep(Duration::from_millis(300)).await;
    gate.add_permits(1);
    let mut handed = Vec::new();
    let mut sizes = Vec::new();
    while handed.len() < sent.len() {
        let batch = batches.recv().await.expect("batch");
        sizes.push(batch.len());
        handed.extend(batch);
    }
    assert_eq!(handed, sent, "in order, each once");
    assert!(sizes.iter().all(|n| *n <= 256), "{sizes:?}");
    assert_eq!(
        sizes[0], 256,
        "what had arrived is handed over at once: {sizes:?}"
    );
    let mut delivered = Vec::new();
    while delivered.len() < 1 + sent.len() {
        delivered.push(next_text(&mut raw).await.expect("message"));
    }
    assert_eq!(delivered[0], "hold");
    assert_eq!(delivered[1..], sent[..]);
}

/// A batch with one message over the size limit is refused whole: nothing of it is stored.
#[tokio::test]
async fn a_batch_with_an_oversized_message_publishes_nothing() {
    let tidings = tidings_tests::builder()
        .retention(Retention {
            messages: 100,
            bytes: 10,
            age: None,
        })
        .build();
    let hub = tidings.hub();
    let topic = Topic::new(&format!("batch-limit-{:x}", rand::random::<u64>())).expect("topic");
    let refused = hub
        .publish_batch(&topic, ["ok", "far too long for ten bytes"])
        .await;
    assert!(
        matches!(
            refused,
            Err(tidings::Error::MessageTooLarge {
                size: 26,
                limit: 10
            })
        ),
        "{refused:?}"
    );
    let offsets = hub
        .publish_batch(&topic, ["one", "two"])
        .await
        .expect("publish");
    assert_eq!(offsets.iter().map(|o| o.0).collect::<Vec<_>>(), [1, 2]);
    assert!(
        hub.publish_batch(&topic, Vec::<String>::new())
            .await
            .expect("empty")
            .is_empty()
    );
}
