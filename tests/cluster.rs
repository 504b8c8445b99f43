//! `examples/cluster`: three nodes of one app, each its own process on one real Redis, behind
//! the example's round-robin balancer, which sends every request to the next node. SockJS
//! sessions over xhr-polling, xhr-streaming and WebSocket echo through it with every request
//! of a session on another node than the one before (the balancer's `/_balancer/log` says
//! which), and a native client of the chat app carries on through the surviving nodes, with
//! nothing lost or repeated, when the node serving its stream is killed. STOMP clients of the
//! stomp app, on WebSockets and on xhr-polling, get topics and user destinations from every
//! node.
//!
//! Each test builds the example (once per run), starts a `redis-server` of its own and the
//! cluster with `--addr 127.0.0.1:0`, and reads the node and balancer lines it prints.

use std::collections::{BTreeSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::SinkExt;
use serde_json::Value;
use tidings_tests::example::Running;
use tidings_tests::http::{Framing, Request, Response};
use tidings_tests::redis::Redis;
use tidings_tests::stomp::{self, StompClient, StompSession};
use tidings_tests::{next_text, percent_encode};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;

/// How many nodes each test starts.
const NODES: usize = 3;
/// How long the cluster has to start its nodes and print the balancer's line.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long any one wait for a frame may take.
const WAIT: Duration = Duration::from_secs(10);

/// A node as the cluster printed it.
struct Node {
    addr: SocketAddr,
    pid: u32,
}

/// The cluster example, running on a Redis of its own; both stop when dropped (the nodes with
/// the cluster process, as their stdin closes).
struct Cluster {
    /// The balancer.
    addr: SocketAddr,
    nodes: Vec<Node>,
    _process: Child,
    _redis: Redis,
}

impl Cluster {
    async fn start(app: &str) -> Cluster {
        let redis = tokio::task::spawn_blocking(Redis::start)
            .await
            .expect("start redis-server");
        let nodes_arg = NODES.to_string();
        let redis_url = redis.url();
        let mut cluster = Running::start(
            "cluster",
            &[
                "--app",
                app,
                "--nodes",
                &nodes_arg,
                "--redis",
                &redis_url,
                "--addr",
                "127.0.0.1:0",
            ],
        )
        .await;
        let mut nodes = Vec::new();
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = loop {
            let line = cluster
                .line(deadline.saturating_duration_since(Instant::now()))
                .await;
            // "node 1 http://127.0.0.1:PORT/ pid PID"
            if let Some(rest) = line.strip_prefix("node ") {
                let words: Vec<&str> = rest.split(' ').collect();
                let [index, url, "pid", pid] = words[..] else {
                    panic!("unexpected node line {line:?}");
                };
                assert_eq!(index, (nodes.len() + 1).to_string(), "{line}");
                nodes.push(Node {
                    addr: parse_url(url),
                    pid: pid.parse().expect("pid"),
                });
                continue;
            }
            // "cluster of 3 echo nodes on http://127.0.0.1:PORT/ (round robin, Redis redis://…)"
            let prefix = format!("cluster of {NODES} {app} nodes on ");
            let rest = line
                .strip_prefix(&prefix)
                .unwrap_or_else(|| panic!("unexpected line {line:?}"));
            let url = rest.split(' ').next().unwrap_or_default();
            assert!(rest.contains(&redis_url), "{line}");
            break parse_url(url);
        };
        assert_eq!(nodes.len(), NODES);
        Cluster {
            addr,
            nodes,
            _process: cluster.drain(),
            _redis: redis,
        }
    }

    /// Which node (from 1) served each request the balancer forwarded whose path contains
    /// `needle`, in order.
    async fn nodes_for(&self, needle: &str) -> Vec<usize> {
        let mut response = Request::get("/_balancer/log").send(self.addr).await;
        assert_eq!(response.status(), 200);
        let log: Value = serde_json::from_str(&response.text().await).expect("JSON log");
        log.as_array()
            .expect("an array")
            .iter()
            .filter(|entry| entry["path"].as_str().expect("path").contains(needle))
            .map(|entry| node_number(&entry["node"]))
            .collect()
    }

    /// Sends node `number` (from 1) `signal` (`KILL`, `TERM`) and waits until its port refuses
    /// connections.
    async fn stop(&self, number: usize, signal: &str) {
        let node = &self.nodes[number - 1];
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &node.pid.to_string()])
            .status()
            .await
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {}", node.pid);
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(node.addr).await.is_ok() {
            assert!(Instant::now() < deadline, "node {number} still answers");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `http://ADDR/` → ADDR.
fn parse_url(url: &str) -> SocketAddr {
    url.strip_prefix("http://")
        .and_then(|rest| rest.strip_suffix('/'))
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("not a node URL: {url:?}"))
}

fn node_number(value: &Value) -> usize {
    let number = value.as_u64().expect("a node number");
    usize::try_from(number).expect("small")
}

/// The node that served `response`, from its `X-Tidings-Node` header.
fn served_by(response: &Response) -> usize {
    response
        .header("x-tidings-node")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no X-Tidings-Node: {:?}", response.headers))
}

/// Asserts each request went to the node after the one before, over all `NODES`.
#[track_caller]
fn assert_round_robin(nodes: &[usize]) {
    for pair in nodes.windows(2) {
        assert_eq!(pair[1], pair[0] % NODES + 1, "not round robin: {nodes:?}");
    }
    let used: BTreeSet<usize> = nodes.iter().copied().collect();
    assert_eq!(used.len(), NODES.min(nodes.len()), "{nodes:?}");
}

// ---------------------------------------------------------------------------------------------
// SockJS (the echo app)
// ---------------------------------------------------------------------------------------------

/// A fresh random SockJS session id.
fn session() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:016x}", RandomState::new().hash_one(n))
}

/// `POST <service>/000/<id>/<transport>` with `body`.
async fn post(cluster: &Cluster, service: &str, id: &str, transport: &str, body: &str) -> Response {
    Request::post(&format!("{service}/000/{id}/{transport}"))
        .body(body)
        .send(cluster.addr)
        .await
}

/// Sends `text` to session `id` of `service` with `xhr_send`, which must be accepted.
async fn xhr_send(cluster: &Cluster, service: &str, id: &str, text: &str) {
    let body = serde_json::to_string(&[text]).expect("JSON");
    let mut response = post(cluster, service, id, "xhr_send", &body).await;
    let answer = response.text().await;
    assert_eq!(response.status(), 204, "xhr_send {text}: {answer:?}");
}

#[tokio::test]
#[ignore = "needs redis-server; run bash tests/run-all.sh"]
async fn sockjs_xhr_polling_echoes_with_every_request_on_the_next_node() {
    let cluster = Cluster::start("echo").await;
    let id = session();
    assert_eq!(
        post(&cluster, "/echo", &id, "xhr", "").await.text().await,
        "o\n"
    );
    for i in 0..100 {
        xhr_send(&cluster, "/echo", &id, &format!("m{i}")).await;
        let mut poll = post(&cluster, "/echo", &id, "xhr", "").await;
        assert_eq!(poll.status(), 200);
        assert_eq!(poll.text().await, format!("a[\"m{i}\"]\n"));
    }
    let nodes = cluster.nodes_for(&id).await;
    assert_eq!(
        nodes.len(),
        201,
        "the open, then a send and a poll per message"
    );
    assert_round_robin(&nodes);
}

/// The stream stays on one node while the sends go round; once the stream reaches the echo
/// service's 4096-byte response limit it ends, and the next one (on the next node) goes on
/// with what was queued meanwhile. Every frame is one HTTP chunk, as it is without the
/// balancer.
#[tokio::test]
#[ignore = "needs redis-server; run bash tests/run-all.sh"]
async fn sockjs_xhr_streaming_receives_on_one_node_what_is_sent_through_the_others() {
    let cluster = Cluster::start("echo").await;
    let id = session();
    let mut prelude = vec![b'h'; 2048];
    prelude.push(b'\n');
    let mut stream = post(&cluster, "/echo", &id, "xhr_streaming", "").await;
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.framing(), Framing::Chunked);
    assert_eq!(stream.chunk().await, prelude);
    assert_eq!(stream.chunk_text().await, "o\n");
    let mut streams = vec![served_by(&stream)];
    let padding = "x".repeat(100);
    for i in 0..100 {
        let text = format!("m{i} {padding}");
        xhr_send(&cluster, "/echo", &id, &text).await;
        let expected = format!("a[\"{text}\"]\n");
        let chunk = match stream.next_chunk(WAIT).await {
            Some(chunk) => chunk,
            None => {
                stream = post(&cluster, "/echo", &id, "xhr_streaming", "").await;
                assert_eq!(stream.status(), 200);
                assert_eq!(stream.chunk().await, prelude);
                streams.push(served_by(&stream));
                stream.chunk().await
            }
        };
        assert_eq!(String::from_utf8(chunk).expect("UTF-8"), expected);
    }
    assert!(
        streams.len() >= 3,
        "the response limit ends streams: {streams:?}"
    );
    let nodes = cluster.nodes_for(&id).await;
    assert_eq!(nodes.len(), 100 + streams.len());
    assert_eq!(nodes[0], streams[0]);
    assert_round_robin(&nodes);
}

/// Raw and SockJS WebSockets: each connection goes to the next node, whose bytes the balancer
/// then copies both ways.
#[tokio::test]
#[ignore = "needs redis-server; run bash tests/run-all.sh"]
async fn websockets_echo_through_the_balancer_on_every_node() {
    let cluster = Cluster::start("echo").await;
    let mut served = Vec::new();
    for k in 0..NODES {
        let url = format!("ws://{}/echo/websocket", cluster.addr);
        let (mut ws, response) = tokio_tungstenite::connect_async(&url)
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"));
        let node = response
            .headers()
            .get("x-tidings-node")
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
            .expect("X-Tidings-Node on the 101");
        served.push(node);
        for i in 0..20 {
            let text = format!("hello {k}.{i}");
            ws.send(Message::text(text.clone())).await.expect("send");
            assert_eq!(next_text(&mut ws).await.as_deref(), Some(text.as_str()));
        }
        ws.close(None).await.expect("close");
    }
    assert_round_robin(&served);

    let id = session();
    let url = format!("ws://{}/echo/000/{id}/websocket", cluster.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    assert_eq!(next_text(&mut ws).await.as_deref(), Some("o"));
    for i in 0..20 {
        ws.send(Message::text(format!("[\"m{i}\"]")))
            .await
            .expect("send");
        let echoed = format!("a[\"m{i}\"]");
        assert_eq!(next_text(&mut ws).await, Some(echoed));
    }
}

// ---------------------------------------------------------------------------------------------
// A node killed under a native client (the chat app)
// ---------------------------------------------------------------------------------------------

/// A native session of the chat app, negotiated through the balancer.
async fn negotiate(cluster: &Cluster) -> String {
    let mut response = Request::post("/rt/native/negotiate?v=2")
        .send(cluster.addr)
        .await;
    let body = response.text().await;
    assert_eq!(response.status(), 200, "negotiate: {body}");
    let info: Value = serde_json::from_str(&body).expect("JSON");
    info["token"].as_str().expect("token").to_owned()
}

/// Publishes `m<i>` for each `i` from the session `token`, one message per request.
async fn publish(cluster: &Cluster, token: &str, range: std::ops::Range<usize>) {
    for i in range {
        let body = serde_json::to_string(&[format!("m{i}")]).expect("JSON");
        let mut response = Request::post(&format!("/rt/native/send?v=2&token={token}"))
            .header("Content-Type", "application/json")
            .body(body)
            .send(cluster.addr)
            .await;
        let text = response.text().await;
        assert_eq!(response.status(), 204, "send m{i}: {text}");
    }
}

/// What a native client keeps: the messages handed on and the position after the last.
#[derive(Default)]
struct Client {
    token: String,
    received: Vec<String>,
    pos: Option<String>,
}

impl Client {
    /// `v=2&token=…&pos=…` for the next transport request.
    fn query(&self) -> String {
        match &self.pos {
            Some(pos) => format!("v=2&token={}&pos={}", self.token, percent_encode(pos)),
            None => format!("v=2&token={}", self.token),
        }
    }

    /// Takes in one frame; gaps and closes fail the test.
    fn frame(&mut self, frame: &Value) {
        match frame["type"].as_str() {
            Some("messages") => {
                let data = frame["data"].as_array().expect("data");
                let texts = data
                    .iter()
                    .map(|d| d.as_str().expect("a string").to_owned());
                self.received.extend(texts);
                self.pos = Some(frame["pos"].as_str().expect("pos").to_owned());
            }
            Some("open" | "heartbeat" | "end") => {}
            _ => panic!("unexpected frame {frame}"),
        }
    }

    /// Opens a native stream through the balancer, as HTTP/1.0 so that it ends with its
    /// connection, however it ends; returns it and the node serving it.
    async fn stream(&self, cluster: &Cluster) -> (Lines, usize) {
        let path = format!("/rt/native/stream?{}", self.query());
        let response = Request::get(&path).http10().send(cluster.addr).await;
        assert_eq!(response.status(), 200, "{}", response.status_line);
        let node = served_by(&response);
        let lines = Lines {
            response,
            buffer: Vec::new(),
        };
        (lines, node)
    }

    /// Reads `stream` until the message `m<last>` has come (in a batch of its own, or the last of
    /// one); panics if it ends first.
    async fn read_until(&mut self, stream: &mut Lines, last: usize) {
        let want = format!("m{last}");
        while self.received.last() != Some(&want) {
            let frame = stream.next().await.expect("the stream ended early");
            self.frame(&frame);
        }
    }

    /// Polls through the balancer until the message `m<last>` has come.
    async fn poll_until(&mut self, cluster: &Cluster, last: usize) {
        let want = format!("m{last}");
        while self.received.last() != Some(&want) {
            let path = format!("/rt/native/poll?{}", self.query());
            let mut response = Request::get(&path).send(cluster.addr).await;
            let body = response.text().await;
            assert_eq!(response.status(), 200, "poll: {body}");
            let frames: Vec<Value> = serde_json::from_str(&body).expect("JSON frames");
            for frame in &frames {
                self.frame(frame);
            }
        }
    }
}

/// A publisher's token and a client streaming on one node while `m0`..`m29` are published
/// through all of them; then that node gets `signal`. Returns the publisher, the client, the
/// node, and the frames its stream gave after the signal, once it ended.
async fn stop_under_a_stream(
    cluster: &Cluster,
    signal: &str,
) -> (String, Client, usize, Vec<Value>) {
    let publisher = negotiate(cluster).await;
    let mut client = Client {
        token: negotiate(cluster).await,
        ..Client::default()
    };
    let (mut stream, node) = client.stream(cluster).await;
    publish(cluster, &publisher, 0..30).await;
    client.read_until(&mut stream, 29).await;
    cluster.stop(node, signal).await;
    let rest = tokio::time::timeout(WAIT, async {
        let mut frames = Vec::new();
        while let Some(frame) = stream.next().await {
            frames.push(frame);
        }
        frames
    })
    .await
    .unwrap_or_else(|_| panic!("the stream of the node stopped with {signal} ends"));
    (publisher, client, node, rest)
}

/// The frames of an ndjson stream, one a line.
struct Lines {
    response: Response,
    buffer: Vec<u8>,
}

impl Lines {
    /// The next frame, or `None` once the stream has ended.
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                return Some(serde_json::from_slice(&line).expect("a JSON frame"));
            }
            let chunk = self.response.next_chunk(WAIT).await?;
            self.buffer.extend_from_slice(&chunk);
        }
    }
}

#[tokio::test]
#[ignore = "needs redis-server; run bash tests/run-all.sh"]
async fn a_native_client_carries_on_through_the_other_nodes_when_its_node_is_killed() {
    let cluster = Cluster::start("chat").await;
    // That node dies under the stream, which ends; nothing of it is read after this.
    let (publisher, mut client, victim, rest) = stop_under_a_stream(&cluster, "KILL").await;
    assert!(
        rest.iter().all(|f| f["type"] != "messages"),
        "nothing was published meanwhile: {rest:?}"
    );

    // The client comes back through the balancer, polling and then streaming again from its
    // position, while more is published through whichever nodes are left.
    let before = cluster.nodes_for("/rt/native/").await.len();
    publish(&cluster, &publisher, 30..60).await;
    client.poll_until(&cluster, 59).await;
    let (mut stream, node) = client.stream(&cluster).await;
    assert_ne!(node, victim);
    let (_, ()) = tokio::join!(
        client.read_until(&mut stream, 99),
        publish(&cluster, &publisher, 60..100)
    );

    let expected: Vec<String> = (0..100).map(|i| format!("m{i}")).collect();
    assert_eq!(client.received, expected, "each message once, in order");
    let after = cluster.nodes_for("/rt/native/").await;
    assert!(
        after[before..].iter().all(|&n| n != victim),
        "no request was answered by the killed node: {:?}",
        &after[before..]
    );
    let survivors: BTreeSet<usize> = after[before..].iter().copied().collect();
    assert_eq!(
        survivors.len(),
        NODES - 1,
        "both survivors served: {survivors:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// STOMP (the stomp app): topics and user destinations across nodes
// ---------------------------------------------------------------------------------------------

/// A STOMP session over SockJS xhr-polling through the balancer, so that every request it
/// makes (each send, each poll) lands on the next node.
struct PollingStomp<'a> {
    cluster: &'a Cluster,
    id: String,
    /// STOMP frames polled but not yet read.
    frames: VecDeque<String>,
}

impl<'a> PollingStomp<'a> {
    /// Opens a session and connects with the extra CONNECT `headers` (each `name:value\n`).
    async fn connect(cluster: &'a Cluster, headers: &str) -> PollingStomp<'a> {
        let id = session();
        let mut open = post(cluster, "/stomp", &id, "xhr", "").await;
        assert_eq!(open.text().await, "o\n");
        let mut client = PollingStomp {
            cluster,
            id,
            frames: VecDeque::new(),
        };
        client.handshake(headers).await;
        client
    }
}

impl StompSession for PollingStomp<'_> {
    async fn send(&mut self, frame: &str) {
        xhr_send(self.cluster, "/stomp", &self.id, frame).await;
    }

    /// Skips heart-beats, polling as long as it takes.
    async fn next(&mut self) -> String {
        loop {
            while let Some(frame) = self.frames.pop_front() {
                if frame != "\n" {
                    return frame;
                }
            }
            let mut poll = post(self.cluster, "/stomp", &self.id, "xhr", "").await;
            assert_eq!(poll.status(), 200);
            let body = poll.text().await;
            match body.strip_prefix('a') {
                Some(array) => {
                    let frames: Vec<String> = serde_json::from_str(array).expect("a JSON array");
                    self.frames.extend(frames);
                }
                None => assert_eq!(body, "h\n", "a poll answers messages or a heartbeat"),
            }
        }
    }
}

/// Asserts `frame` is a MESSAGE to `destination` with `body`.
#[track_caller]
fn assert_message(frame: &str, destination: &str, body: &str) {
    assert_eq!(stomp::message_body(frame), body, "{frame:?}");
    assert_eq!(
        stomp::header(frame, "destination"),
        Some(destination),
        "{frame:?}"
    );
}

/// Three nodes, no affinity: alice on two of them (one session named on the URL, one by
/// CONNECT's login), bob and carol on WebSockets, and dave on xhr-polling whose every request
/// goes to the next node. A room's messages reach every subscriber on every node; a private
/// message reaches every session of its user, wherever they are, and no one else; `/app/echo`
/// answers the sender's user across nodes.
#[tokio::test]
#[ignore = "needs redis-server; run bash tests/run-all.sh"]
async fn stomp_topics_and_user_destinations_reach_every_node() {
    let cluster = Cluster::start("stomp").await;
    let ws = |query: &str| format!("ws://{}/stomp/websocket{query}", cluster.addr);
    let mut alice = StompClient::connect(&ws("?user=alice"), "").await;
    let mut bob = StompClient::connect(&ws("?user=bob"), "").await;
    let mut alice2 = StompClient::connect(&ws(""), "login:alice\n").await;
    let mut carol = StompClient::connect(&ws("?user=carol"), "").await;
    let served = cluster.nodes_for("/stomp/websocket").await;
    assert_eq!(served.len(), 4);
    assert_round_robin(&served);
    let mut dave = PollingStomp::connect(&cluster, "login:dave\n").await;

    const ROOM: &str = "/topic/rooms/lobby";
    const PRIVATE: &str = "/user/queue/private";
    for client in [&mut alice, &mut alice2, &mut carol] {
        client.subscribe("room", ROOM).await;
        client.subscribe("private", PRIVATE).await;
    }
    alice.subscribe("echo", "/user/queue/echo").await;
    alice2.subscribe("echo", "/user/queue/echo").await;
    dave.subscribe("room", ROOM).await;
    dave.subscribe("private", PRIVATE).await;
    dave.subscribe("echo", "/user/queue/echo").await;

    // A room: the application publishes bob's message to every subscriber, on every node.
    bob.publish("/app/rooms/lobby", "hello all").await;
    for client in [&mut alice, &mut alice2, &mut carol] {
        let frame = client.next().await;
        assert_message(&frame, ROOM, "hello all");
        assert_eq!(stomp::header(&frame, "sender"), Some("bob"));
    }
    assert_message(&dave.next().await, ROOM, "hello all");

    // A private message from bob reaches both of alice's sessions, not carol or dave.
    bob.publish("/app/private/alice", "psst").await;
    assert_message(&alice.next().await, PRIVATE, "psst");
    assert_message(&alice2.next().await, PRIVATE, "psst");
    // A client's own SEND to a user destination, from carol to dave on xhr-polling.
    carol.publish("/user/dave/queue/private", "for dave").await;
    assert_message(&dave.next().await, PRIVATE, "for dave");

    // dave's echo comes back to dave only; alice2's to both of alice's sessions only.
    dave.send("SEND\ndestination:/app/echo\n\ndave?\0").await;
    assert_message(&dave.next().await, "/user/queue/echo", "dave?");
    alice2.publish("/app/echo", "alice?").await;
    assert_message(&alice.next().await, "/user/queue/echo", "alice?");
    assert_message(&alice2.next().await, "/user/queue/echo", "alice?");

    // Nothing else reached anyone: the next thing each sees is a last room message.
    bob.publish("/app/rooms/lobby", "bye").await;
    for client in [&mut alice, &mut alice2, &mut carol] {
        assert_message(&client.next().await, ROOM, "bye");
    }
    assert_message(&dave.next().await, ROOM, "bye");
    let dave_nodes: BTreeSet<usize> = cluster.nodes_for(&dave.id).await.into_iter().collect();
    assert_eq!(
        dave_nodes.len(),
        NODES,
        "dave's requests went to every node"
    );
}

/// A node stopped with SIGTERM (a deploy) shuts down gracefully: its native stream ends with
/// `end`, not cut off, and the client goes on from its position through the other nodes with
/// nothing lost or repeated.
#[tokio::test]
#[ignore = "needs redis-server; run bash tests/run-all.sh"]
async fn a_node_stopped_with_sigterm_ends_its_streams_and_native_clients_resume_elsewhere() {
    let cluster = Cluster::start("chat").await;
    let (publisher, mut client, _, rest) = stop_under_a_stream(&cluster, "TERM").await;
    let last = rest.last().map(|f| f["type"].clone());
    assert_eq!(last, Some(Value::from("end")), "ended, not cut: {rest:?}");

    publish(&cluster, &publisher, 30..60).await;
    client.poll_until(&cluster, 59).await;
    let expected: Vec<String> = (0..60).map(|i| format!("m{i}")).collect();
    assert_eq!(client.received, expected, "each message once, in order");
}

/// The SockJS protocol suite's `test_abort_xhr_streaming` through the balancer: a second
/// receiver gets 2010 while the first lives; once the first is aborted, a receiving request on
/// another node gets the session's 1002 (or a new session), not 2010.
#[tokio::test]
#[ignore = "needs redis-server; run bash tests/run-all.sh"]
async fn sockjs_a_receiver_aborted_on_one_node_frees_the_session_for_the_next_node() {
    let cluster = Cluster::start("echo").await;
    let id = session();
    let mut first = post(&cluster, "/echo", &id, "xhr_streaming", "").await;
    first.chunk().await; // the prelude
    assert_eq!(first.chunk_text().await, "o\n");
    let mut second = post(&cluster, "/echo", &id, "xhr_streaming", "").await;
    second.chunk().await;
    assert_eq!(
        second.chunk_text().await,
        "c[2010,\"Another connection still open\"]\n"
    );
    drop(first);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let mut third = post(&cluster, "/echo", &id, "xhr_streaming", "").await;
    third.chunk().await;
    let answer = third.chunk_text().await;
    assert!(
        answer == "o\n" || answer == "c[1002,\"Connection interrupted\"]\n",
        "{answer:?}"
    );
    let nodes = cluster.nodes_for(&id).await;
    assert_round_robin(&nodes);
}

/// The same for polling (the suite's `test_abort_xhr_polling`).
#[tokio::test]
#[ignore = "needs redis-server; run bash tests/run-all.sh"]
async fn sockjs_a_poll_aborted_on_one_node_frees_the_session_for_the_next_node() {
    let cluster = Cluster::start("echo").await;
    let id = session();
    assert_eq!(
        post(&cluster, "/echo", &id, "xhr", "").await.text().await,
        "o\n"
    );
    // A poll left waiting: sent, its answer never read.
    let mut first = TcpStream::connect(cluster.addr).await.expect("connect");
    let poll = Request::post(&format!("/echo/000/{id}/xhr")).body("");
    first
        .write_all(&poll.to_bytes())
        .await
        .expect("send the poll");
    tokio::time::sleep(Duration::from_millis(250)).await;
    let second = post(&cluster, "/echo", &id, "xhr", "").await.text().await;
    assert_eq!(second, "c[2010,\"Another connection still open\"]\n");
    drop(first);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let third = post(&cluster, "/echo", &id, "xhr", "").await.text().await;
    assert!(
        third == "o\n" || third == "c[1002,\"Connection interrupted\"]\n",
        "{third:?}"
    );
}

/// `tidings-client` through the balancer, on each transport that holds a connection: the node
/// serving it is killed, and the client carries on through the others with every message once,
/// in order.
#[tokio::test]
#[ignore = "needs redis-server; run bash tests/run-all.sh"]
async fn the_rust_client_survives_a_node_killed_under_it() {
    use futures::StreamExt as _;
    use tidings_client::{Client as RustClient, Event, Transport};

    let cluster = Cluster::start("chat").await;
    let publisher = negotiate(&cluster).await;
    let url = format!("http://{}/rt", cluster.addr);
    let (transport, path) = (Transport::WebSocket, "/rt/native/ws");
    let mut connection = RustClient::builder(&url)
        .transports(&[transport])
        .open_timeout(Duration::from_secs(2))
        .backoff(Duration::from_millis(100), Duration::from_secs(1))
        .connect()
        .expect("connect");
    let mut received = Vec::new();
    let mut take = async |connection: &mut tidings_client::Connection, upto: usize| {
        while received.len() < upto {
            let event = tokio::time::timeout(WAIT, connection.next())
                .await
                .expect("an event in time")
                .expect("the stream goes on")
                .expect("no error");
            match event {
                Event::Message { text, .. } => received.push(text),
                Event::Open { .. } => {}
                other => panic!("after {received:?}: {other:?}"),
            }
        }
        received.clone()
    };
    // Opened once the balancer forwarded its upgrade.
    let deadline = Instant::now() + WAIT;
    while cluster.nodes_for(path).await.is_empty() {
        assert!(Instant::now() < deadline, "the client did not connect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    publish(&cluster, &publisher, 0..30).await;
    take(&mut connection, 30).await;
    let victim = *cluster.nodes_for(path).await.last().expect("a node");
    cluster.stop(victim, "KILL").await;
    publish(&cluster, &publisher, 30..60).await;
    let got = take(&mut connection, 60).await;
    let want: Vec<String> = (0..60).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want, "{transport} through node {victim}, killed");
    let after: Vec<usize> = cluster.nodes_for(path).await;
    assert!(
        after.last().is_some_and(|n| *n != victim),
        "reconnected through another node: {after:?}"
    );
}
