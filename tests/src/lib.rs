//! Support code for the integration tests: servers on 127.0.0.1 port 0 and clients for them.

pub mod driver;
pub mod example;
pub mod http;
pub mod proxy;
pub mod redis;
pub mod reference;
pub mod stomp;

use std::net::SocketAddr;

use axum::Router;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

/// `Tidings::builder()` on the store the tests run on: the `MemoryStore` by default, or, with
/// `TIDINGS_TEST_STORE=redis` in the environment, a `RedisStore` on a `redis-server` this
/// process starts (once) on a free loopback port, each builder under a prefix of its own; with
/// `TIDINGS_TEST_STORE=redis-cluster`, one on a Redis Cluster of three shards it starts.
/// `tests/run-all.sh` runs the transport suites all three ways.
pub fn builder() -> tidings::Builder {
    let builder = tidings::Tidings::builder();
    match std::env::var("TIDINGS_TEST_STORE").as_deref() {
        Ok("redis") => builder.store(redis::shared_store()),
        Ok("redis-cluster") => builder.store(redis::shared_cluster_stores(1).remove(0)),
        Ok("memory") | Err(_) => builder,
        Ok(other) => {
            panic!("TIDINGS_TEST_STORE={other:?}: expected `memory`, `redis` or `redis-cluster`")
        }
    }
}

/// Two builders on one store, for two nodes of one service: one `MemoryStore` both share, or,
/// with `TIDINGS_TEST_STORE=redis`, two `RedisStore`s (connections of their own) under one
/// prefix, as [`builder`] chooses.
pub fn two_nodes() -> [tidings::Builder; 2] {
    let builder = tidings::Tidings::builder;
    match std::env::var("TIDINGS_TEST_STORE").as_deref() {
        Ok(store @ ("redis" | "redis-cluster")) => {
            let stores = match store {
                "redis" => redis::shared_stores(2),
                _ => redis::shared_cluster_stores(2),
            };
            let mut stores = stores.into_iter();
            let mut next = || builder().store(stores.next().expect("two stores"));
            [next(), next()]
        }
        _ => {
            let store = tidings::store::MemoryStore::new();
            [builder().store(store.clone()), builder().store(store)]
        }
    }
}

/// A server running `app` on a free loopback port with [`tidings::serve`] (as the examples
/// serve), stopped when dropped.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The task serving it, when this process does; `None` for a server of another process.
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Starts `app` on 127.0.0.1 with port 0.
    pub async fn start(app: Router) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            tidings::serve(listener, app).await.expect("serve");
        });
        Server {
            addr,
            task: Some(task),
        }
    }

    /// The reference services of the SockJS protocol's suite ([`reference::services`]), started
    /// here; or, when `TIDINGS_TEST_SOCKJS_AT` names an address (`127.0.0.1:PORT`), the ones
    /// served there, by another process: `tests/run-all.sh` points it at three nodes of
    /// `examples/cluster --app echo` on Redis, behind their round-robin balancer, so the suite
    /// runs with every request of a session on another node than the one before.
    pub async fn sockjs_reference() -> Server {
        match std::env::var("TIDINGS_TEST_SOCKJS_AT") {
            Ok(addr) => Server {
                addr: addr
                    .parse()
                    .unwrap_or_else(|e| panic!("TIDINGS_TEST_SOCKJS_AT={addr:?}: {e}")),
                task: None,
            },
            Err(_) => Server::start(reference::services()).await,
        }
    }

    /// Starts `app` on 127.0.0.1 with port 0, on `tidings`'s
    /// [`listener`](tidings::Tidings::listener), which cuts connections whose client stopped
    /// reading.
    pub async fn start_listening(tidings: &tidings::Tidings, app: Router) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let listener = tidings.listener(listener);
        let task = tokio::spawn(async move {
            tidings::serve(listener, app).await.expect("serve");
        });
        Server {
            addr,
            task: Some(task),
        }
    }

    /// Binds 127.0.0.1 port 0 first, then starts the router that `app` builds for that
    /// address: for apps that must know their own URL before they exist, such as a SockJS
    /// service whose `sockjs_url` points at a copy of sockjs-client the same server serves.
    pub async fn start_with(app: impl FnOnce(SocketAddr) -> Router) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let app = app(addr);
        let task = tokio::spawn(async move {
            tidings::serve(listener, app).await.expect("serve");
        });
        Server {
            addr,
            task: Some(task),
        }
    }

    /// `http://addr`, without a trailing slash.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://addr<path>`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Negotiates a native session of the service mounted at `prefix`; its token.
    pub async fn negotiate(&self, prefix: &str) -> String {
        let path = format!("{prefix}/native/negotiate?v=2");
        let mut response = http::Request::post(&path).send(self.addr).await;
        let text = response.text().await;
        assert_eq!(response.status(), 200, "negotiate: {text}");
        let body: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        body["token"].as_str().expect("a token").to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A WebSocket client connection.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connects a WebSocket client to `url`.
pub async fn connect(url: &str) -> Ws {
    connect_async(url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"))
        .0
}

/// The next text message, or `None` when the connection ends first (closes are reported as
/// `close:<code>:<reason>`).
pub async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(t)) => return Some(t.to_string()),
            Ok(Message::Close(Some(frame))) => {
                return Some(format!("close:{}:{}", u16::from(frame.code), frame.reason));
            }
            Ok(Message::Close(None)) => return Some("close".into()),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

/// Sends a text message.
pub async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.expect("send");
}

/// Sends `request` (a whole HTTP/1.1 request, headers and body) and returns the whole response
/// as text once the server closes the connection or 2 s pass without data.
pub async fn raw_http(addr: SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(2), stream.read(&mut buf)).await;
        match read {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The response of `raw_http` reduced to what tests pin: the status line and the named
/// headers (lowercased, in the given order, when present), then the body. The `date` header
/// and transfer framing are left out so snapshots are stable.
pub fn pin_response(response: &str, headers: &[&str]) -> String {
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response, ""));
    let mut lines = head.lines();
    let mut out = String::new();
    out.push_str(lines.next().unwrap_or_default());
    out.push('\n');
    let present: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    for name in headers {
        for (k, v) in present.iter().filter(|(k, _)| k == name) {
            out.push_str(&format!("{k}: {v}\n"));
        }
    }
    out.push('\n');
    out.push_str(body);
    out
}

/// `text` percent-encoded for a query string: every byte but the unreserved ones as `%XX`.
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `builder` with the auth hook the tests use: the user from `?user=` (anonymous without it),
/// and `?user=nobody` refused with 401 "not you".
pub fn users_from_query(builder: tidings::Builder) -> tidings::Builder {
    builder.auth(|handshake| async move {
        match handshake.query("user").as_deref() {
            Some("nobody") => Err(tidings::Rejection::unauthorized("not you")),
            Some(user) => Ok(tidings::Identity::user(user)),
            None => Ok(tidings::Identity::anonymous()),
        }
    })
}

/// The ids of the channels a service opened, in order: see [`recording_opens`].
pub type Opened = std::sync::Arc<std::sync::Mutex<Vec<tidings::ChannelId>>>;

/// `builder` with an `on_open` that records the id of every channel it opens, and the record.
pub fn recording_opens(builder: tidings::Builder) -> (tidings::Builder, Opened) {
    let opened = Opened::default();
    let record = opened.clone();
    let builder = builder.on_open(move |channel| {
        record.lock().expect("lock").push(channel.id());
        async {}
    });
    (builder, opened)
}

/// `builder` with an `on_open` that subscribes every new channel to `topic` with its last `last`
/// retained messages ([`Hub::subscribe_with_history`](tidings::Hub::subscribe_with_history)).
pub fn with_history_on_open(
    builder: tidings::Builder,
    topic: &tidings::Topic,
    last: u64,
) -> tidings::Builder {
    let topic = topic.clone();
    builder.on_open(move |channel| {
        let topic = topic.clone();
        async move {
            let hub = channel.hub();
            hub.subscribe_with_history(channel.id(), &topic, last)
                .await
                .expect("subscribe with history");
        }
    })
}
