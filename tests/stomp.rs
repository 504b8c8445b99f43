//! STOMP over real sockets on 127.0.0.1: the raw WebSocket at `<prefix>/websocket` and SockJS
//! at `<prefix>`, with the exact bytes of every answer pinned by `insta`. In the snapshots `^@`
//! is the NUL that ends a frame, `>>` what the client sent, `<<` what it received, and the
//! epoch part of message ids is `E` (it is random per topic).

use std::collections::VecDeque;
use std::time::Duration;

use axum::Router;
use futures::SinkExt;
use tidings::stomp::{StompConfig, StompLogin};
use tidings::{Identity, Retention, Tidings};
use tidings_tests::http::Request;
use tidings_tests::stomp::{StompSession, header, message_body, split_frames};
use tidings_tests::{Server, Ws, connect, next_text, send_text};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const CONNECT: &str = "CONNECT\naccept-version:1.2\nhost:localhost\n\n\0";

/// A STOMP service at `/stomp`: users from `?user=NAME`, logins `alice`/`bob` with passcode
/// `secret`, `/app/echo` answered on the sender's `/user/queue/echo`, and `/app/boom` on
/// `/topic/boom`.
fn service(builder: tidings::Builder) -> Tidings {
    builder
        .auth(|handshake| async move {
            Ok(match handshake.query("user") {
                Some(user) => Identity::user(user),
                None => Identity::anonymous(),
            })
        })
        .stomp_login(|_channel, login: StompLogin| async move {
            match (login.login.as_deref(), login.passcode.as_deref()) {
                (None, _) => Ok(None),
                (Some(user @ ("alice" | "bob")), Some("secret")) => Ok(Some(user.to_owned())),
                (Some(_), _) => Err("bad credentials".to_owned()),
            }
        })
        .on_stomp_send(|message| async move {
            let body = format!("{} said {}", message.destination, message.body);
            match message.destination.as_str() {
                "/app/direct" => {
                    // Not for a STOMP client: it has no subscription to the channel itself.
                    message.channel.send("to the channel").await.expect("send");
                    message.reply("/queue/echo", "after").await.expect("reply");
                }
                "/app/echo" => {
                    message.reply("/queue/echo", body).await.expect("reply");
                }
                _ => {
                    let headers = message.headers.clone();
                    let broker = &message.broker;
                    broker
                        .send_with_headers("/topic/boom", headers, body)
                        .await
                        .expect("publish");
                }
            }
        })
        .build()
}

async fn start(builder: tidings::Builder) -> (Server, Tidings) {
    let tidings = service(builder);
    let app = Router::new().nest_service("/stomp", tidings.stomp_router());
    (Server::start(app).await, tidings)
}

async fn server() -> (Server, Tidings) {
    start(tidings_tests::builder()).await
}

/// One STOMP client on the raw WebSocket, keeping a transcript: `>>` what it sent, `<<` each
/// frame it received. Frames that come together in one WebSocket message, as the server joins
/// those ready at once, are shown as `<+` after the first only with `show_joins` set, where the
/// test makes that certain: whether frames that come from different moments are ready at once
/// is a matter of timing.
struct Client {
    ws: Ws,
    transcript: String,
    /// Further frames of the last message, not yet taken.
    joined: VecDeque<String>,
    show_joins: bool,
}

impl Client {
    async fn open(server: &Server, query: &str) -> Client {
        let url = server.ws_url(&format!("/stomp/websocket{query}"));
        let mut request = url.into_client_request().expect("request");
        request.headers_mut().insert(
            "sec-websocket-protocol",
            "v12.stomp, v11.stomp".parse().expect("header"),
        );
        let (ws, response) = tokio_tungstenite::connect_async(request)
            .await
            .expect("connect");
        let chosen = response.headers().get("sec-websocket-protocol");
        assert_eq!(chosen.and_then(|v| v.to_str().ok()), Some("v12.stomp"));
        Client {
            ws,
            transcript: String::new(),
            joined: VecDeque::new(),
            show_joins: false,
        }
    }

    /// Connected already, as `query` says.
    async fn connected(server: &Server, query: &str) -> Client {
        let mut client = Client::open(server, query).await;
        client.send(CONNECT).await;
        assert!(client.next().await.starts_with("CONNECTED\n"));
        client
    }

    /// Waits until nothing arrives for `quiet`.
    async fn silent_for(&mut self, quiet: Duration) -> bool {
        if !self.joined.is_empty() {
            return false;
        }
        tokio::time::timeout(quiet, next_text(&mut self.ws))
            .await
            .is_err()
    }
}

impl StompSession for Client {
    async fn send(&mut self, text: &str) {
        self.transcript.push_str(&format!(">> {}\n", show(text)));
        send_text(&mut self.ws, text).await;
    }

    /// The next frame, heart-beats included, or `end` when the connection ended without a
    /// close frame.
    async fn next(&mut self) -> String {
        if let Some(frame) = self.joined.pop_front() {
            let mark = if self.show_joins { "<+" } else { "<<" };
            self.transcript
                .push_str(&format!("{mark} {}\n", show(&frame)));
            return frame;
        }
        let text = tokio::time::timeout(Duration::from_secs(5), next_text(&mut self.ws))
            .await
            .expect("an answer within 5 s")
            .unwrap_or_else(|| "end".to_owned());
        let mut frames = split_frames(&text).into_iter().map(str::to_owned);
        let first = frames.next().unwrap_or_default();
        self.joined.extend(frames);
        self.transcript.push_str(&format!("<< {}\n", show(&first)));
        first
    }
}

/// A frame as the snapshots show it: NUL as `^@`, the epoch of message ids as `E`, the server
/// version as `VERSION`, each line indented under the first.
fn show(text: &str) -> String {
    let mut out = text.replace('\0', "^@").replace('\n', "\n   ");
    out = out.replace(
        concat!("tidings/", env!("CARGO_PKG_VERSION")),
        "tidings/VERSION",
    );
    for header in ["message-id:", "ack:", "resume-after:"] {
        let mut redacted = String::new();
        let mut rest = out.as_str();
        while let Some(at) = rest.find(header) {
            let (before, after) = rest.split_at(at + header.len());
            redacted.push_str(before);
            match after.find('-') {
                Some(dash) if after[..dash].chars().all(|c| c.is_ascii_hexdigit()) => {
                    redacted.push('E');
                    rest = &after[dash..];
                }
                _ => rest = after,
            }
        }
        redacted.push_str(rest);
        out = redacted;
    }
    out
}

#[tokio::test]
async fn connect_negotiates_the_version_and_heart_beats() {
    let (server, _) = server().await;
    let mut client = Client::open(&server, "?user=alice").await;
    client
        .send("CONNECT\naccept-version:1.0,1.1,1.2\nheart-beat:10000,10000\nhost:x\n\n\0")
        .await;
    client.next().await;
    client.send("DISCONNECT\nreceipt:77\n\n\0").await;
    client.next().await;
    client.next().await;
    insta::assert_snapshot!(client.transcript);
}

#[tokio::test]
async fn stomp_command_connects_with_1_1_and_plain_1_0() {
    let (server, _) = server().await;
    let mut transcript = String::new();
    for connect in ["STOMP\naccept-version:1.1\nhost:x\n\n\0", "CONNECT\n\n\0"] {
        let mut client = Client::open(&server, "").await;
        client.send(connect).await;
        client.next().await;
        transcript.push_str(&client.transcript);
    }
    insta::assert_snapshot!(transcript);
}

#[tokio::test]
async fn no_version_in_common_is_an_error_then_close() {
    let (server, _) = server().await;
    let mut client = Client::open(&server, "").await;
    client.send("CONNECT\naccept-version:2.0\n\n\0").await;
    client.next().await;
    client.next().await;
    insta::assert_snapshot!(client.transcript);
}

#[tokio::test]
async fn topics_reach_every_subscriber_with_the_senders_headers() {
    let (server, _) = server().await;
    let mut a = Client::connected(&server, "").await;
    let mut b = Client::connected(&server, "").await;
    a.with_receipt("SUBSCRIBE\nid:sub-0\ndestination:/topic/room\n\n\0", "r1")
        .await;
    b.with_receipt(
        "SUBSCRIBE\nid:sub-7\ndestination:/topic/room\nack:client\n\n\0",
        "r2",
    )
    .await;
    a.send("SEND\ndestination:/topic/room\ncontent-type:text/plain\nx-note:a\\cb\n\nhello\0")
        .await;
    a.next().await;
    b.next().await;
    // Another topic, then the same one with a body holding a NUL, sized by content-length.
    a.send("SEND\ndestination:/topic/other\n\nnobody\0").await;
    b.send("SEND\ndestination:/topic/room\ncontent-length:5\n\nx\0y\0z\0")
        .await;
    b.next().await;
    insta::assert_snapshot!(format!("{}\n{}", a.transcript, b.transcript));
}

#[tokio::test]
async fn unsubscribe_stops_delivery_and_duplicate_ids_are_refused() {
    let (server, _) = server().await;
    let mut a = Client::connected(&server, "").await;
    // Both subscriptions' frames of one message come in one WebSocket message.
    a.show_joins = true;
    a.with_receipt("SUBSCRIBE\nid:1\ndestination:/topic/t\n\n\0", "s")
        .await;
    a.with_receipt("SUBSCRIBE\nid:2\ndestination:/topic/t\n\n\0", "s2")
        .await;
    a.send("SEND\ndestination:/topic/t\n\none\0").await;
    a.next().await;
    a.next().await;
    a.with_receipt("UNSUBSCRIBE\nid:1\n\n\0", "u").await;
    a.send("SEND\ndestination:/topic/t\n\ntwo\0").await;
    a.next().await;
    a.with_receipt("UNSUBSCRIBE\nid:2\n\n\0", "u2").await;
    a.send("SEND\ndestination:/topic/t\n\nthree\0").await;
    assert!(a.silent_for(Duration::from_millis(300)).await);
    a.send("SUBSCRIBE\nid:3\ndestination:/topic/t\n\n\0").await;
    a.send("SUBSCRIBE\nid:3\ndestination:/topic/u\n\n\0").await;
    a.next().await;
    a.next().await;
    insta::assert_snapshot!(a.transcript);
}

#[tokio::test]
async fn frames_split_across_messages_several_in_one_crlf_and_heart_beats_between() {
    let (server, _) = server().await;
    let mut a = Client::open(&server, "").await;
    a.send("\n\r\nCONN").await;
    a.send("ECT\r\naccept-version:1.2\r\n\r").await;
    a.send("\n\0\n\nSUBSCRIBE\nid:0\ndestination:/topic/x\n\n\0\r\nSEND\ndestination:/topic/x\nreceipt:r\n\nbody\0")
        .await;
    a.next().await;
    a.next().await;
    a.next().await;
    insta::assert_snapshot!(a.transcript);
}

/// Every bad frame is answered with ERROR (with `receipt-id` when it asked for a receipt), then
/// the session is closed; a session watching the topic meanwhile sees nothing of it.
#[tokio::test]
async fn every_bad_frame_is_an_error_then_close_and_others_are_untouched() {
    let (server, _) = server().await;
    let mut watcher = Client::connected(&server, "").await;
    watcher
        .with_receipt("SUBSCRIBE\nid:w\ndestination:/topic/watch\n\n\0", "w")
        .await;
    let big = format!("SEND\ndestination:/topic/watch\n\n{}\0", "x".repeat(70_000));
    let many = format!(
        "SEND\ndestination:/topic/watch\n{}\nhi\0",
        (0..70).map(|i| format!("h{i}:v\n")).collect::<String>()
    );
    let cases: Vec<(&str, String)> = vec![
        ("unknown command", "FLY\n\n\0".into()),
        (
            "bad escape",
            "SEND\ndestination:/topic/watch\nx:\\t\n\nhi\0".into(),
        ),
        (
            "missing NUL after content-length",
            "SEND\ndestination:/topic/watch\ncontent-length:2\n\nhi!\0".into(),
        ),
        ("SEND without destination", "SEND\nreceipt:9\n\nhi\0".into()),
        (
            "SUBSCRIBE without id",
            "SUBSCRIBE\ndestination:/topic/watch\n\n\0".into(),
        ),
        (
            "SUBSCRIBE with a bad ack",
            "SUBSCRIBE\nid:1\ndestination:/topic/watch\nack:sometimes\n\n\0".into(),
        ),
        (
            "SEND outside the broker",
            "SEND\ndestination:/elsewhere\n\nhi\0".into(),
        ),
        (
            "SEND to a user without a name",
            "SEND\ndestination:/user/queue\n\nhi\0".into(),
        ),
        (
            "SEND to an anonymous session's user destination",
            "SEND\ndestination:/user/$0123/queue/x\n\nhi\0".into(),
        ),
        (
            "SEND to a user name longer than 128 bytes",
            format!(
                "SEND\ndestination:/user/{}/queue/x\n\nhi\0",
                "u".repeat(129)
            ),
        ),
        (
            "SEND to a user name with a control character",
            "SEND\ndestination:/user/a\\rb/queue/x\n\nhi\0".into(),
        ),
        ("transaction", "BEGIN\ntransaction:tx1\n\n\0".into()),
        ("a server frame", "MESSAGE\n\n\0".into()),
        ("oversized frame", big),
        ("too many headers", many),
        ("a second CONNECT", CONNECT.into()),
    ];
    let mut transcript = String::new();
    for (name, frame) in cases {
        let mut bad = Client::connected(&server, "").await;
        bad.transcript.clear();
        let shown = if frame.len() > 200 {
            format!("{}… ({} bytes)", &frame[..40], frame.len())
        } else {
            frame.clone()
        };
        transcript.push_str(&format!("## {name}\n>> {}\n", show(&shown)));
        send_text(&mut bad.ws, &frame).await;
        let error = bad.next().await;
        let close = bad.next().await;
        transcript.push_str(&format!("<< {}\n<< {close}\n\n", show(&error)));
    }
    // A binary WebSocket message.
    let mut binary = Client::connected(&server, "").await;
    binary
        .ws
        .send(Message::binary(
            b"SEND\ndestination:/topic/watch\n\nhi\0".to_vec(),
        ))
        .await
        .expect("send");
    let error = binary.next().await;
    let close = binary.next().await;
    transcript.push_str(&format!(
        "## a binary message\n<< {}\n<< {close}\n\n",
        show(&error)
    ));
    // SEND before CONNECT, on a fresh connection.
    let mut early = Client::open(&server, "").await;
    early.send("SEND\ndestination:/topic/watch\n\nhi\0").await;
    early.next().await;
    early.next().await;
    transcript.push_str(&format!("## SEND before CONNECT\n{}", early.transcript));
    insta::assert_snapshot!(transcript);

    assert!(watcher.silent_for(Duration::from_millis(200)).await);
    let mut sender = Client::connected(&server, "").await;
    sender
        .send("SEND\ndestination:/topic/watch\n\nstill here\0")
        .await;
    assert!(watcher.next().await.ends_with("\n\nstill here\0"));
}

#[tokio::test]
async fn user_destinations_reach_every_session_of_that_user_and_no_one_else() {
    let (server, tidings) = server().await;
    let mut alice1 = Client::connected(&server, "?user=alice").await;
    let mut alice2 = Client::connected(&server, "?user=alice").await;
    let mut bob = Client::connected(&server, "?user=bob").await;
    for (client, r) in [(&mut alice1, "a1"), (&mut alice2, "a2"), (&mut bob, "b")] {
        client
            .with_receipt("SUBSCRIBE\nid:q\ndestination:/user/queue/inbox\n\n\0", r)
            .await;
    }
    bob.send("SEND\ndestination:/user/alice/queue/inbox\n\nhi alice\0")
        .await;
    let (one, two) = (alice1.next().await, alice2.next().await);
    assert_eq!(one, two);
    tidings
        .stomp()
        .send("/user/bob/queue/inbox", "from the server")
        .await
        .expect("send");
    bob.next().await;
    assert!(alice1.silent_for(Duration::from_millis(200)).await);
    insta::assert_snapshot!(format!("{}\n{}", alice1.transcript, bob.transcript));
}

#[tokio::test]
async fn app_destinations_reach_the_handler_which_answers_the_senders_user() {
    let (server, _) = server().await;
    // Logged in as bob through CONNECT; the other of bob's sessions sees the answer too.
    let mut bob = Client::open(&server, "").await;
    bob.send("CONNECT\naccept-version:1.2\nlogin:bob\npasscode:secret\n\n\0")
        .await;
    bob.next().await;
    let mut other = Client::connected(&server, "?user=bob").await;
    let mut stranger = Client::connected(&server, "").await;
    for (client, r) in [(&mut bob, "1"), (&mut other, "2"), (&mut stranger, "3")] {
        client
            .with_receipt("SUBSCRIBE\nid:e\ndestination:/user/queue/echo\n\n\0", r)
            .await;
    }
    bob.with_receipt("SUBSCRIBE\nid:b\ndestination:/topic/boom\n\n\0", "4")
        .await;
    bob.send("SEND\ndestination:/app/echo\n\nping\0").await;
    bob.next().await;
    other.next().await;
    bob.send("SEND\ndestination:/app/boom\nx-kind:test\n\nbang\0")
        .await;
    bob.next().await;
    assert!(stranger.silent_for(Duration::from_millis(200)).await);
    insta::assert_snapshot!(bob.transcript);
}

#[tokio::test]
async fn what_is_sent_to_the_channel_itself_never_reaches_a_stomp_client() {
    let (server, _) = server().await;
    let mut alice = Client::open(&server, "").await;
    alice
        .send("CONNECT\naccept-version:1.2\nlogin:alice\npasscode:secret\n\n\0")
        .await;
    alice.next().await;
    alice
        .with_receipt("SUBSCRIBE\nid:e\ndestination:/user/queue/echo\n\n\0", "1")
        .await;
    alice.send("SEND\ndestination:/app/direct\n\n\0").await;
    let next = alice.next().await;
    assert!(next.ends_with("\n\nafter\0"), "{next:?}");
}

#[tokio::test]
async fn a_refused_login_is_an_error_then_close() {
    let (server, _) = server().await;
    let mut client = Client::open(&server, "").await;
    client
        .send("CONNECT\naccept-version:1.2\nlogin:alice\npasscode:wrong\nreceipt:c\n\n\0")
        .await;
    client.next().await;
    client.next().await;
    insta::assert_snapshot!(client.transcript);
}

/// A client subscribes to `/topic/feed` and reads `seen` messages published to it, then leaves;
/// `missed` more are published; a new connection subscribes resuming after the last message id
/// the first saw.
async fn leave_and_resume(server: &Server, tidings: &Tidings, seen: u32, missed: u32) -> Client {
    let broker = tidings.stomp();
    let mut a = Client::connected(server, "").await;
    a.with_receipt("SUBSCRIBE\nid:0\ndestination:/topic/feed\n\n\0", "s")
        .await;
    let mut last = String::new();
    for n in 1..=seen {
        broker
            .send("/topic/feed", n.to_string())
            .await
            .expect("send");
        last = a.next().await;
    }
    let id = header(&last, "message-id")
        .expect("a message-id")
        .to_owned();
    drop(a);
    for n in seen + 1..=seen + missed {
        broker
            .send("/topic/feed", n.to_string())
            .await
            .expect("send");
    }
    let mut b = Client::connected(server, "").await;
    b.send(&format!(
        "SUBSCRIBE\nid:0\ndestination:/topic/feed\nresume-after:{id}\n\n\0"
    ))
    .await;
    b
}

#[tokio::test]
async fn a_subscription_resumes_after_the_last_message_id_it_saw() {
    let (server, tidings) = server().await;
    let mut b = leave_and_resume(&server, &tidings, 2, 3).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(message_body(&b.next().await).to_owned());
    }
    assert_eq!(got, ["3", "4", "5"]);
    tidings
        .stomp()
        .send("/topic/feed", "6")
        .await
        .expect("send");
    assert_eq!(message_body(&b.next().await), "6");
    insta::assert_snapshot!(b.transcript);
}

#[tokio::test]
async fn resuming_after_what_is_no_longer_retained_is_an_error_then_close() {
    let builder = tidings_tests::builder().retention(Retention {
        messages: 2,
        bytes: 1 << 20,
        age: None,
    });
    let (server, tidings) = start(builder).await;
    let mut b = leave_and_resume(&server, &tidings, 1, 5).await;
    b.next().await;
    b.next().await;
    insta::assert_snapshot!(b.transcript);
}

#[tokio::test]
async fn heart_beats_go_both_ways_and_a_silent_client_is_closed() {
    let config = StompConfig {
        client_heartbeat: Duration::from_millis(100),
        ..StompConfig::default()
    };
    let builder = tidings_tests::builder()
        .heartbeat(Duration::from_millis(150))
        .stomp(config);
    let (server, _) = start(builder).await;
    let mut a = Client::open(&server, "").await;
    a.send("CONNECT\naccept-version:1.2\nheart-beat:100,100\n\n\0")
        .await;
    a.next().await;
    // The server beats every 150 ms; the client beats for a second and is kept.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        a.ws.send(Message::text("\n")).await.expect("beat");
    }
    let mut beats = 0;
    while let Ok(Some(text)) =
        tokio::time::timeout(Duration::from_millis(20), next_text(&mut a.ws)).await
    {
        assert_eq!(text, "\n");
        beats += 1;
    }
    assert!(beats >= 3, "{beats} server heart-beats in a second");
    // Then it stops: closed after three client intervals (300 ms), heart-beats till then.
    let closing = loop {
        let text = a.next().await;
        if text != "\n" {
            break text;
        }
    };
    let close = a.next().await;
    insta::assert_snapshot!(format!("<< {}\n<< {close}", show(&closing)));
}

#[tokio::test]
async fn stomp_over_sockjs_websocket_frames_each_stomp_frame_as_a_message() {
    let (server, _) = server().await;
    let mut ws = connect(&server.ws_url("/stomp/000/abcd/websocket")).await;
    let mut transcript = String::new();
    let mut exchange = async |ws: &mut Ws, send: Option<&str>| {
        if let Some(send) = send {
            transcript.push_str(&format!(">> {}\n", show(send)));
            send_text(ws, send).await;
        }
        let got = next_text(ws).await.unwrap_or_default();
        transcript.push_str(&format!("<< {}\n", show(&got)));
    };
    exchange(&mut ws, None).await;
    exchange(
        &mut ws,
        Some(r#"["CONNECT\naccept-version:1.1,1.2\nheart-beat:0,0\n\n\u0000"]"#),
    )
    .await;
    let subscribe = r#"["SUBSCRIBE\nid:0\ndestination:/topic/x\nreceipt:r\n\n\u0000"]"#;
    exchange(&mut ws, Some(subscribe)).await;
    exchange(
        &mut ws,
        Some(r#"["SEND\ndestination:/topic/x\n\nhi \"you\"\u0000"]"#),
    )
    .await;
    exchange(&mut ws, Some(r#"["DISCONNECT\nreceipt:bye\n\n\u0000"]"#)).await;
    exchange(&mut ws, None).await;
    insta::assert_snapshot!(transcript);
}

/// SockJS over HTTP: the frames a client sends with `xhr_send` are answered on its polling
/// `xhr` request, through the channel.
#[tokio::test]
async fn stomp_over_sockjs_xhr_polling() {
    let (server, _) = server().await;
    let addr = server.addr;
    let base = "/stomp/000/poll";
    let mut transcript = String::new();
    let mut poll = async || {
        let mut response = Request::post(&format!("{base}/xhr")).send(addr).await;
        let text = response.chunk_text().await;
        transcript.push_str(&format!("xhr << {}\n", show(&text)));
    };
    poll().await;
    let send = async |body: &str| {
        let response = Request::post(&format!("{base}/xhr_send"))
            .body(body.to_owned())
            .send(addr)
            .await;
        assert_eq!(response.status(), 204);
    };
    send(r#"["CONNECT\naccept-version:1.2\n\n\u0000"]"#).await;
    poll().await;
    send(r#"["SUBSCRIBE\nid:0\ndestination:/topic/x\n\n\u0000","SEND\ndestination:/topic/x\n\nhi\u0000"]"#).await;
    poll().await;
    // Half a frame in one SockJS message: its rest could reach another node.
    send(r#"["SEND\ndestination:/topic/x\n\nhal"]"#).await;
    poll().await;
    poll().await;
    insta::assert_snapshot!(transcript);
}

/// With `join_frames` off, every frame is a WebSocket message of its own, as Spring sends them.
#[tokio::test]
async fn without_join_frames_each_frame_is_a_message_of_its_own() {
    let config = StompConfig {
        join_frames: false,
        ..StompConfig::default()
    };
    let (server, _) = start(tidings_tests::builder().stomp(config)).await;
    let mut a = Client::connected(&server, "").await;
    for id in ["1", "2"] {
        let frame = format!("SUBSCRIBE\nid:{id}\ndestination:/topic/t\n\n\0");
        a.with_receipt(&frame, id).await;
    }
    a.send("SEND\ndestination:/topic/t\n\none\0").await;
    for id in ["1", "2"] {
        let frame = a.next().await;
        assert!(
            frame.starts_with(&format!("MESSAGE\nsubscription:{id}\n")),
            "{frame:?}"
        );
        assert!(a.joined.is_empty(), "one frame per WebSocket message");
    }
}

/// Frames ready at once are joined into WebSocket messages of at most 64 KiB: a resumed
/// subscription's five missed 20 KB messages come in more than one.
#[tokio::test]
async fn a_long_burst_is_joined_in_messages_of_at_most_64_kib() {
    let (server, tidings) = server().await;
    let broker = tidings.stomp();
    let big = |n: u32| format!("{n}{}", "x".repeat(20_000));
    let mut a = Client::connected(&server, "").await;
    a.with_receipt("SUBSCRIBE\nid:0\ndestination:/topic/big\n\n\0", "s")
        .await;
    broker.send("/topic/big", big(0)).await.expect("send");
    let seen = a.next().await;
    let id = header(&seen, "message-id")
        .expect("a message-id")
        .to_owned();
    drop(a);
    for n in 1..=5 {
        broker.send("/topic/big", big(n)).await.expect("send");
    }
    let mut b = Client::connected(&server, "").await;
    b.send(&format!(
        "SUBSCRIBE\nid:0\ndestination:/topic/big\nresume-after:{id}\n\n\0"
    ))
    .await;
    let (mut bodies, mut messages) = (Vec::new(), 0);
    while bodies.len() < 5 {
        let text = tokio::time::timeout(Duration::from_secs(5), next_text(&mut b.ws))
            .await
            .expect("the missed messages in time")
            .expect("open");
        assert!(text.len() <= 64 * 1024, "a message of {} bytes", text.len());
        messages += 1;
        bodies.extend(
            split_frames(&text)
                .into_iter()
                .map(|f| message_body(f).to_owned()),
        );
    }
    assert_eq!(bodies, (1..=5).map(big).collect::<Vec<_>>());
    assert!(messages >= 2, "{messages}");
}
