//! The native protocol over real sockets on 127.0.0.1: negotiation, each transport, resume
//! across transports with nothing lost or repeated, gaps, takeover, and every bad input.

use std::time::Duration;

use axum::Router;
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tidings::{CloseCode, Identity, Retention, Tidings, Topic};
use tidings_tests::http::Request;
use tidings_tests::{Server, connect, percent_encode};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCode;

/// A chat service at `/rt`: every message is broadcast; users come from `?user=` (anonymous
/// without it); `?user=nobody` is refused.
fn chat(retention: usize) -> Tidings {
    tidings_tests::users_from_query(tidings_tests::builder())
        .retention(Retention {
            messages: retention,
            bytes: 1 << 20,
            age: None,
        })
        .max_message_size(1000)
        .on_message(|channel, text| async move {
            channel.hub().broadcast(text).await.expect("broadcast");
        })
        .build()
}

async fn start(tidings: &Tidings) -> Server {
    Server::start(Router::new().nest_service("/rt", tidings.router())).await
}

async fn json(server: &Server, request: Request) -> (u16, Value) {
    let mut response = request.send(server.addr).await;
    let status = response.status();
    let body = response.text().await;
    let value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{body:?}: {e}"))
    };
    (status, value)
}

/// Negotiates a session, with `query` (`&user=ann`) added to the request's.
async fn negotiate(server: &Server, query: &str) -> String {
    let (status, body) = json(
        server,
        Request::post(&format!("/rt/native/negotiate?v=2{query}")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().expect("token").to_owned();
    assert!(token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit()));
    token
}

/// One poll from `pos`: the frames.
async fn poll(server: &Server, token: &str, pos: Option<&str>) -> Vec<Value> {
    let mut path = format!("/rt/native/poll?v=2&token={token}");
    if let Some(pos) = pos {
        path.push_str(&format!("&pos={}", percent_encode(pos)));
    }
    let (status, body) = json(server, Request::get(&path)).await;
    assert_eq!(status, 200, "{body}");
    body.as_array().expect("array").clone()
}

/// The texts of the `messages` frames, and the position after the last batch or gap.
fn messages(frames: &[Value]) -> (Vec<String>, Option<String>) {
    let mut texts = Vec::new();
    let mut pos = None;
    for frame in frames {
        match frame["type"].as_str() {
            Some("messages") => {
                let data = frame["data"].as_array().expect("data is an array");
                assert!(!data.is_empty(), "a batch is never empty: {frame}");
                texts.extend(
                    data.iter()
                        .map(|d| d.as_str().expect("a string").to_owned()),
                );
                pos = Some(frame["pos"].as_str().expect("pos").to_owned());
            }
            Some("gap") => pos = Some(frame["pos"].as_str().expect("pos").to_owned()),
            _ => {}
        }
    }
    (texts, pos)
}

async fn publish(tidings: &Tidings, range: std::ops::Range<u32>) {
    for i in range {
        tidings
            .hub()
            .broadcast(i.to_string())
            .await
            .expect("broadcast");
    }
}

fn numbers(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| i.to_string()).collect()
}

#[tokio::test]
async fn negotiation_says_what_the_service_offers() {
    let tidings = chat(100);
    let server = start(&tidings).await;
    let mut response = Request::post("/rt/native/negotiate?v=2")
        .send(server.addr)
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(
        response.header("cache-control"),
        Some("no-store, no-transform")
    );
    let body: Value = serde_json::from_str(&response.text().await).expect("json");
    assert_eq!(
        body["transports"],
        serde_json::json!(["websocket", "sse", "streaming", "polling"])
    );
    assert_eq!(body["version"], 2);
    assert_eq!(body["heartbeat_ms"], 25000);
    assert_eq!(body["resume_ms"], 120000);
    assert_eq!(body["max_message_size"], 1000);
    // Two negotiations, two sessions.
    assert_ne!(negotiate(&server, "").await, negotiate(&server, "").await);
}

#[tokio::test]
async fn polling_delivers_with_positions_and_goes_on_from_them() {
    let tidings = chat(100);
    let server = start(&tidings).await;
    let token = negotiate(&server, "").await;
    let sent = Request::post(&format!("/rt/native/send?v=2&token={token}")).body(r#"["a","b"]"#);
    assert_eq!(sent.send(server.addr).await.status(), 204);
    let frames = poll(&server, &token, None).await;
    assert_eq!(frames[0]["type"], "open");
    assert_eq!(frames[0]["transport"], "polling");
    assert_eq!(frames.last().expect("end")["type"], "end");
    let (texts, pos) = messages(&frames);
    assert_eq!(texts, ["a", "b"]);
    publish(&tidings, 0..3).await;
    let (texts, _) = messages(&poll(&server, &token, pos.as_deref()).await);
    assert_eq!(texts, numbers(0..3));
}

/// In a quiet room a client's first poll (no position yet) answers `open` at once, rather than
/// after a poll timeout; the next, from that position, waits for what comes.
#[tokio::test]
async fn a_first_poll_in_a_quiet_room_answers_open_at_once() {
    let tidings = chat(100);
    let server = start(&tidings).await;
    let token = negotiate(&server, "").await;
    // A poll that waited would wait a heartbeat, 25 s.
    let first = tokio::time::timeout(Duration::from_secs(5), poll(&server, &token, None))
        .await
        .expect("the first poll answers without waiting for a message");
    let types: Vec<_> = first.iter().map(|f| f["type"].as_str()).collect();
    assert_eq!(types, [Some("open"), Some("end")]);
    let pos = first[0]["pos"]
        .as_str()
        .expect("open's position")
        .to_owned();
    let waiting = tokio::spawn({
        let token = token.clone();
        let addr = server.addr;
        async move {
            let path = format!(
                "/rt/native/poll?v=2&token={token}&pos={}",
                percent_encode(&pos)
            );
            let mut response = Request::get(&path).send(addr).await;
            let body = response.text().await;
            serde_json::from_str::<Vec<Value>>(&body).expect("frames")
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "a poll from a position waits");
    publish(&tidings, 0..1).await;
    let frames = waiting.await.expect("the poll");
    assert_eq!(messages(&frames).0, numbers(0..1));
}

/// Reads newline-delimited frames from a streaming response until `n` messages came.
async fn stream_messages(
    response: &mut tidings_tests::http::Response,
    n: usize,
) -> (Vec<String>, String) {
    let mut frames = Vec::new();
    while messages(&frames).0.len() < n {
        let chunk = response.chunk_text().await;
        for line in chunk.lines() {
            frames.push(serde_json::from_str::<Value>(line).expect("a JSON line"));
        }
    }
    let (texts, pos) = messages(&frames);
    (texts, pos.expect("a position"))
}

#[tokio::test]
async fn a_client_cut_off_mid_stream_resumes_on_another_transport_with_nothing_lost_or_repeated() {
    let tidings = chat(1000);
    let server = start(&tidings).await;
    let token = negotiate(&server, "").await;
    let mut stream = Request::get(&format!("/rt/native/stream?v=2&token={token}"))
        .send(server.addr)
        .await;
    assert_eq!(stream.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(stream.header("x-accel-buffering"), Some("no"));
    publish(&tidings, 0..10).await;
    // The client saw a batch or more, then the network went: the server may have written more.
    let (seen, pos) = stream_messages(&mut stream, 1).await;
    assert_eq!(
        seen,
        numbers(0..seen.len() as u32),
        "in order from the first"
    );
    drop(stream);
    publish(&tidings, 10..20).await;
    // Back over SSE, from the position after the last batch it saw.
    let mut sse = Request::get(&format!(
        "/rt/native/sse?v=2&token={token}&pos={}",
        percent_encode(&pos)
    ))
    .send(server.addr)
    .await;
    assert_eq!(sse.header("content-type"), Some("text/event-stream"));
    let rest = 20 - seen.len();
    assert_eq!(
        sse_events(&mut sse, rest).await.0,
        numbers(seen.len() as u32..20)
    );
}

/// Reads the events of an SSE response until `n` messages came: the messages, and the `id` of
/// each event that had one (every event is one JSON frame).
async fn sse_events(
    response: &mut tidings_tests::http::Response,
    n: usize,
) -> (Vec<String>, Vec<String>) {
    let mut frames = Vec::new();
    let mut ids = Vec::new();
    while messages(&frames).0.len() < n {
        let chunk = response.chunk_text().await;
        for line in chunk.lines() {
            if let Some(id) = line.strip_prefix("id: ") {
                ids.push(id.to_owned());
            } else if let Some(data) = line.strip_prefix("data: ") {
                frames.push(serde_json::from_str::<Value>(data).expect("a JSON frame"));
            }
        }
    }
    (messages(&frames).0, ids)
}

#[tokio::test]
async fn sse_resumes_from_last_event_id() {
    let tidings = chat(1000);
    let server = start(&tidings).await;
    let token = negotiate(&server, "").await;
    let mut sse = Request::get(&format!("/rt/native/sse?v=2&token={token}"))
        .send(server.addr)
        .await;
    assert_eq!(sse.chunk_text().await, "retry: 1000\n\n");
    let open = sse.chunk_text().await;
    assert!(
        open.starts_with("id: ") && open.contains("data: {\"type\":\"open\""),
        "{open:?}"
    );
    publish(&tidings, 0..1).await;
    let (first, ids) = sse_events(&mut sse, 1).await;
    assert_eq!(first, ["0"]);
    let id = ids.last().expect("the batch's id: the position after it");
    drop(sse);
    publish(&tidings, 1..4).await;
    let mut again = Request::get(&format!("/rt/native/sse?v=2&token={token}"))
        .header("Last-Event-ID", id)
        .send(server.addr)
        .await;
    assert_eq!(sse_events(&mut again, 3).await.0, numbers(1..4));
}

#[tokio::test]
async fn websocket_carries_frames_and_a_leaving_client_can_resume() {
    let tidings = chat(1000);
    let server = start(&tidings).await;
    let token = negotiate(&server, "").await;
    let mut ws = connect(&server.ws_url(&format!("/rt/native/ws?v=2&token={token}"))).await;
    let open: Value = next_json(&mut ws).await;
    assert_eq!(open["type"], "open");
    assert_eq!(open["transport"], "websocket");
    ws.send(Message::text("hello")).await.expect("send");
    let echoed = next_json(&mut ws).await;
    assert_eq!(
        (echoed["type"].as_str(), echoed["data"].clone()),
        (Some("messages"), serde_json::json!(["hello"]))
    );
    let pos = echoed["pos"].as_str().expect("pos").to_owned();
    // A client leaving for another transport closes with a code of its own.
    ws.close(Some(CloseFrame {
        code: WsCode::Library(4001),
        reason: "switching".into(),
    }))
    .await
    .expect("close");
    publish(&tidings, 0..3).await;
    let (texts, _) = messages(&poll(&server, &token, Some(&pos)).await);
    assert_eq!(texts, numbers(0..3));
}

/// A session whose client left lives `resume` in the store; a connection that takes it back
/// renews it at once when that is shorter than a heartbeat, so it stays open (here `resume`
/// 300 ms, heartbeat 1 s: renewed only at the first heartbeat, the sweeper would end it, 3002).
#[tokio::test]
async fn a_session_resumed_with_a_short_resume_stays_open_past_it() {
    let tidings = tidings_tests::users_from_query(tidings_tests::builder())
        .heartbeat(Duration::from_secs(1))
        .resume(Duration::from_millis(300))
        .disconnect_delay(Duration::from_millis(100))
        .on_message(|channel, text| async move {
            channel.send(text).await.expect("echo");
        })
        .build();
    let server = start(&tidings).await;
    let token = negotiate(&server, "").await;
    let url = server.ws_url(&format!("/rt/native/ws?v=2&token={token}"));
    let mut first = connect(&url).await;
    assert_eq!(next_json(&mut first).await["type"], "open");
    // Leaving for another connection: a code of the client's own, not an end of the session.
    first
        .close(Some(CloseFrame {
            code: WsCode::Library(4001),
            reason: "switching".into(),
        }))
        .await
        .expect("close");
    // The server has seen it leave (and given the session `resume` to live).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut second = connect(&url).await;
    assert_eq!(next_json(&mut second).await["type"], "open");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    second
        .send(Message::text("still here"))
        .await
        .expect("send");
    let echoed = next_json(&mut second).await;
    assert_eq!(
        (echoed["type"].as_str(), echoed["data"].clone()),
        (Some("messages"), serde_json::json!(["still here"])),
        "{echoed}"
    );
}

async fn next_json(ws: &mut tidings_tests::Ws) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame within 5 s")
            .expect("open")
            .expect("ok");
        if let Message::Text(text) = message {
            let value: Value = serde_json::from_str(&text).expect("json");
            if value["type"] != "heartbeat" {
                return value;
            }
        }
    }
}

#[tokio::test]
async fn a_client_away_past_retention_is_told_of_the_gap() {
    let tidings = chat(5);
    let server = start(&tidings).await;
    let token = negotiate(&server, "").await;
    publish(&tidings, 0..1).await;
    let (_, pos) = messages(&poll(&server, &token, None).await);
    publish(&tidings, 1..21).await;
    let frames = poll(&server, &token, pos.as_deref()).await;
    let gap = frames
        .iter()
        .find(|f| f["type"] == "gap")
        .expect("a gap frame");
    assert_eq!(gap["missed"], 15);
    assert_eq!(messages(&frames).0, numbers(16..21));
}

#[tokio::test]
async fn a_position_from_another_epoch_is_a_gap_of_unknown_size() {
    let tidings = chat(100);
    let server = start(&tidings).await;
    let token = negotiate(&server, "").await;
    publish(&tidings, 0..2).await;
    let frames = poll(&server, &token, Some("a:1234:1")).await;
    let gap = frames
        .iter()
        .find(|f| f["type"] == "gap")
        .expect("a gap frame");
    assert_eq!(gap["missed"], Value::Null);
    assert_eq!(messages(&frames).0, numbers(0..2));
}

#[tokio::test]
async fn a_new_connection_takes_the_session_over_from_the_old_one() {
    let tidings = chat(100);
    let server = start(&tidings).await;
    let token = negotiate(&server, "").await;
    let mut old = Request::get(&format!("/rt/native/stream?v=2&token={token}"))
        .send(server.addr)
        .await;
    assert!(old.chunk_text().await.contains("\"open\""));
    let mut new = Request::get(&format!("/rt/native/stream?v=2&token={token}"))
        .send(server.addr)
        .await;
    assert!(new.chunk_text().await.contains("\"open\""));
    assert_eq!(old.chunk_text().await, "{\"type\":\"end\"}\n");
    old.assert_ended().await;
    // The new one delivers.
    publish(&tidings, 0..1).await;
    assert!(new.chunk_text().await.contains("\"data\":[\"0\"]"));
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_leave_other_sessions_alone() {
    let tidings = chat(100);
    let server = start(&tidings).await;
    let bystander = negotiate(&server, "").await;
    let ann = negotiate(&server, "&user=ann").await;
    let forged = "0123456789abcdef0123456789abcdef";
    let cases = [
        (Request::get("/rt/native/poll?v=2"), 400, "bad-request"),
        (
            Request::get("/rt/native/poll?v=2&token=nothex"),
            404,
            "unknown-session",
        ),
        (
            Request::get(&format!("/rt/native/poll?v=2&token={forged}")),
            404,
            "unknown-session",
        ),
        (
            Request::get(&format!("/rt/native/poll?v=2&token={ann}&user=bob")),
            403,
            "wrong-user",
        ),
        (
            Request::get(&format!("/rt/native/poll?v=2&token={ann}")),
            403,
            "wrong-user",
        ),
        (
            Request::get(&format!(
                "/rt/native/poll?v=2&token={ann}&user=ann&pos=a:zz:1"
            )),
            400,
            "bad-request",
        ),
        (
            Request::post(&format!("/rt/native/send?v=2&token={bystander}")).body("{}"),
            400,
            "bad-request",
        ),
        (
            Request::post(&format!("/rt/native/send?v=2&token={bystander}")).body("[\"x"),
            400,
            "bad-request",
        ),
        (
            Request::post(&format!("/rt/native/send?v=2&token={bystander}"))
                .body(format!("[\"{}\"]", "x".repeat(1001))),
            413,
            "too-large",
        ),
        (
            Request::post(&format!("/rt/native/send?v=2&token={bystander}"))
                .body(vec![b'x'; 20_000]),
            413,
            "too-large",
        ),
    ];
    for (request, status, error) in cases {
        let what = format!("{request:?}");
        let (got, body) = json(&server, request).await;
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(error)),
            "{what}: {body}"
        );
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // The auth hook's refusal, with its own status and text.
    let mut refused = Request::post("/rt/native/negotiate?v=2&user=nobody")
        .send(server.addr)
        .await;
    assert_eq!(
        (refused.status(), refused.text().await.as_str()),
        (401, "not you")
    );
    let wrong_method = Request::get("/rt/native/send?v=2").send(server.addr).await;
    assert_eq!(wrong_method.status(), 405);
    // Nothing above was delivered; the other session works as before.
    let sent = Request::post(&format!("/rt/native/send?v=2&token={bystander}")).body(r#"["ok"]"#);
    assert_eq!(sent.send(server.addr).await.status(), 204);
    assert_eq!(messages(&poll(&server, &bystander, None).await).0, ["ok"]);
}

#[tokio::test]
async fn a_closed_session_says_so_on_every_transport() {
    let (tx, mut closes) = tokio::sync::mpsc::unbounded_channel();
    let tidings = tidings_tests::builder()
        .on_close(move |_, closed| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(closed.code);
            }
        })
        .build();
    let server = start(&tidings).await;
    let token = negotiate(&server, "").await;
    let closed = Request::post(&format!("/rt/native/close?v=2&token={token}"));
    assert_eq!(closed.send(server.addr).await.status(), 204);
    assert_eq!(closes.recv().await, Some(CloseCode::NORMAL));
    let frames = poll(&server, &token, None).await;
    assert_eq!(
        frames,
        [
            serde_json::json!({"type":"close","code":1000,"reason":"Client closed","reconnect":false})
        ]
    );
    // A plain EventSource stops reconnecting on 204.
    let sse = Request::get(&format!("/rt/native/sse?v=2&token={token}"))
        .send(server.addr)
        .await;
    assert_eq!(sse.status(), 204);
    // Reported once.
    assert!(closes.try_recv().is_err());
}

/// A page still running a client of another version (the per-message frames of version 1, say,
/// after a deploy) is refused with a clear error instead of getting frames it cannot read.
#[tokio::test]
async fn a_client_of_another_version_is_told_to_reload() {
    let tidings = chat(100);
    let server = start(&tidings).await;
    let token = negotiate(&server, "").await;
    let cases = [
        Request::post("/rt/native/negotiate"),
        Request::post("/rt/native/negotiate?v=1"),
        Request::get(&format!("/rt/native/poll?token={token}")),
        Request::get(&format!("/rt/native/sse?v=3&token={token}")),
        Request::post(&format!("/rt/native/send?token={token}")).body(r#"["x"]"#),
    ];
    for request in cases {
        let what = format!("{request:?}");
        let (status, body) = json(&server, request).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("unsupported-version")),
            "{what}: {body}"
        );
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("reload")),
            "{body}"
        );
    }
    // The refused send reached nobody: the session gets only what is published after.
    publish(&tidings, 0..1).await;
    assert_eq!(
        messages(&poll(&server, &token, None).await).0,
        numbers(0..1)
    );
}

/// History on subscribe over native polling: a channel that `on_open` subscribes to a room with
/// its last 3 messages gets them in its first poll, then what follows from that position.
#[tokio::test]
async fn history_on_subscribe_comes_in_the_first_poll() {
    let room = Topic::new("room").expect("a topic");
    let tidings = tidings_tests::with_history_on_open(tidings_tests::builder(), &room, 3).build();
    for i in 0..10 {
        tidings
            .hub()
            .publish(&room, i.to_string())
            .await
            .expect("publish");
    }
    let server = start(&tidings).await;
    let token = negotiate(&server, "").await;
    let (texts, pos) = messages(&poll(&server, &token, None).await);
    assert_eq!(texts, numbers(7..10));
    tidings.hub().publish(&room, "10").await.expect("publish");
    let (texts, _) = messages(&poll(&server, &token, pos.as_deref()).await);
    assert_eq!(texts, numbers(10..11));
}

#[tokio::test]
async fn negotiate_refusals_are_json_errors() {
    let tidings = tidings_tests::builder()
        .allowed_origins(["http://good.example"])
        .max_channels_per_user(1)
        .auth(|handshake| async move {
            Ok(handshake
                .query("user")
                .map_or_else(Identity::anonymous, Identity::user))
        })
        .build();
    let server = start(&tidings).await;
    let from_elsewhere =
        Request::post("/rt/native/negotiate?v=2").header("Origin", "http://evil.example");
    let (status, body) = json(&server, from_elsewhere).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"], "origin", "{body}");
    negotiate(&server, "&user=ann").await;
    let (status, body) = json(&server, Request::post("/rt/native/negotiate?v=2&user=ann")).await;
    assert_eq!(status, 429);
    assert_eq!(body["error"], "too-many-channels", "{body}");
    assert!(body["message"].is_string(), "{body}");
}

#[tokio::test]
async fn an_idle_poll_answers_a_heartbeat_after_the_poll_timeout() {
    let tidings = tidings_tests::builder()
        .heartbeat(Duration::from_millis(300))
        .build();
    let server = start(&tidings).await;
    let token = negotiate(&server, "").await;
    let first = poll(&server, &token, None).await;
    let pos = first[0]["pos"].as_str().expect("pos").to_owned();
    let started = std::time::Instant::now();
    let idle = poll(&server, &token, Some(&pos)).await;
    assert!(started.elapsed() >= Duration::from_millis(250), "it waited");
    let types: Vec<&str> = idle
        .iter()
        .map(|f| f["type"].as_str().expect("a type"))
        .collect();
    assert_eq!(types, ["open", "heartbeat", "end"], "{idle:?}");
}

#[tokio::test]
async fn quiet_polls_never_report_a_gap_however_many() {
    // Every poll appends a takeover record to the session's private topic; with a retention of
    // 3, a client whose position stayed before them would be told of a gap by the fifth poll.
    let tidings = tidings_tests::builder()
        .retention(Retention {
            messages: 3,
            bytes: 1 << 20,
            age: None,
        })
        .heartbeat(Duration::from_millis(50))
        .build();
    let server = start(&tidings).await;
    let token = negotiate(&server, "").await;
    let mut pos: Option<String> = None;
    for _ in 0..10 {
        let frames = poll(&server, &token, pos.as_deref()).await;
        let end = frames.last().expect("frames");
        assert_eq!(end["type"], "end", "{frames:?}");
        assert!(
            end["pos"].is_string(),
            "the end carries the position: {frames:?}"
        );
        assert!(
            frames.iter().all(|f| f["type"] != "gap"),
            "a quiet poll reported a gap: {frames:?}"
        );
        // The client keeps the position of the last frame that has one.
        pos = frames
            .iter()
            .rev()
            .find_map(|f| f["pos"].as_str().map(str::to_owned));
    }
    tidings.hub().broadcast("after").await.expect("broadcast");
    let (texts, _) = messages(&poll(&server, &token, pos.as_deref()).await);
    assert_eq!(texts, ["after"]);
}

#[tokio::test]
async fn the_client_and_its_types_are_served_beside_the_protocol() {
    let tidings = tidings_tests::builder().build();
    let server = start(&tidings).await;
    for (path, kind, declares) in [
        (
            "/rt/tidings.js",
            "text/javascript",
            "export function connect",
        ),
        (
            "/rt/tidings.d.ts",
            "application/typescript",
            "export function connect(url: string, options?: Options): Connection;",
        ),
    ] {
        let mut response = Request::get(path).send(server.addr).await;
        assert_eq!(response.status(), 200, "{path}");
        let content_type = response.header("content-type").unwrap_or_default();
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
        let body = response.text().await;
        assert!(body.contains(declares), "{path}");
    }
}
