//! A round-robin HTTP and WebSocket balancer, as plain as a real one configured without any
//! affinity: every request goes to the next node in turn, including each request on one
//! keep-alive client connection, so consecutive requests of one session land on different
//! nodes.
//!
//! The client side is axum's server, the same hyper the nodes run, so keep-alive, HTTP/1.0 and
//! the framing of each response towards the client are decided exactly as a node would decide
//! them. Towards the nodes, each request gets a connection of its own: connecting is the step
//! that fails when a node is gone, and doing it before the request is handed to hyper means the
//! request is still at hand to try the next node. Bodies stream both ways as they arrive; a
//! response that a dying node cuts short ends the client's connection, as it would have ended
//! without the balancer. A `101 Switching Protocols` turns both connections into a tunnel that
//! copies bytes both ways.
//!
//! `GET /_balancer/log` (answered here, never forwarded) lists the last [`LOG_CAPACITY`]
//! requests forwarded, oldest first: `[{"node":1,"method":"POST","path":"/echo/000/x/xhr"}, …]`,
//! and every forwarded response carries `X-Tidings-Node: <n>`.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode, Uri, Version};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

/// How many forwarded requests `/_balancer/log` remembers.
pub(crate) const LOG_CAPACITY: usize = 10_000;

/// How long connecting to a node may take before the next one is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The header naming the node that answered, counted from 1 as the program prints them.
const NODE_HEADER: HeaderName = HeaderName::from_static("x-tidings-node");

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Headers of one hop that never go on to the next in either direction, besides `Connection`
/// and `Upgrade` (see [`forward`]). `Transfer-Encoding` is among them because hyper frames each
/// body again for its own connection; `Content-Length` stays.
const HOP_BY_HOP: [HeaderName; 5] = [
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// The nodes, whose turn is next, and what went where.
struct Balancer {
    nodes: Vec<SocketAddr>,
    next: AtomicUsize,
    /// A `std` mutex: it is held only to push or copy entries, never across an `.await`.
    log: Mutex<VecDeque<Entry>>,
}

/// One forwarded request, for `/_balancer/log`.
struct Entry {
    /// The node's index, from 0.
    node: usize,
    method: Method,
    /// The path without the query, which may carry a session's token.
    path: String,
}

impl Balancer {
    fn record(&self, node: usize, method: Method, path: String) {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() == LOG_CAPACITY {
            log.pop_front();
        }
        log.push_back(Entry { node, method, path });
    }
}

/// Balances the connections `listener` accepts over `nodes`, forever.
pub(crate) async fn serve(listener: TcpListener, nodes: Vec<SocketAddr>) -> io::Result<()> {
    let balancer = Arc::new(Balancer {
        nodes,
        next: AtomicUsize::new(0),
        log: Mutex::new(VecDeque::new()),
    });
    let app = Router::new()
        .route("/_balancer/log", get(log))
        .fallback(forward)
        .with_state(balancer);
    // Streams carry small frames that must not wait for the previous one's acknowledgement.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

/// `GET /_balancer/log`.
async fn log(State(balancer): State<Arc<Balancer>>) -> axum::Json<Value> {
    let log = balancer.log.lock().unwrap_or_else(|e| e.into_inner());
    let entries = log
        .iter()
        .map(|e| json!({"node": e.node + 1, "method": e.method.as_str(), "path": e.path}))
        .collect();
    axum::Json(Value::Array(entries))
}

/// Every other request: to the next node that accepts a connection.
///
/// `Connection` and `Upgrade` go to the node as the client sent them: the node's WebSocket
/// handshake checks them and says what is wrong with a bad one, as it would without the
/// balancer. Hyper, on each side, then decides for its own connection whether it stays open.
async fn forward(
    State(balancer): State<Arc<Balancer>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
) -> Response {
    let client_upgrade = request
        .headers()
        .contains_key(header::UPGRADE)
        .then(|| hyper::upgrade::on(&mut request));
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    prepare(&mut request, peer);
    let count = balancer.nodes.len();
    let first = balancer.next.fetch_add(1, Ordering::Relaxed) % count;
    for index in (first..first + count).map(|i| i % count) {
        let node = balancer.nodes[index];
        match send(node, request).await {
            Ok(response) => {
                balancer.record(index, method, path);
                return respond(response, index, client_upgrade);
            }
            Err(Failure::NotSent(unsent, error)) => {
                tracing::warn!(node = index + 1, %node, %error, "node unreachable; trying the next");
                request = *unsent;
            }
            Err(Failure::Sent(error)) => {
                tracing::warn!(node = index + 1, %node, %error, "node failed mid-request");
                return (StatusCode::BAD_GATEWAY, "the node failed\n").into_response();
            }
        }
    }
    (StatusCode::BAD_GATEWAY, "no node reachable\n").into_response()
}

/// Makes a client's request one for a node: HTTP/1.1 in origin form, without the client hop's
/// headers, with the client's address added to `X-Forwarded-For`. `Host` and `Origin` stay.
fn prepare(request: &mut Request, peer: SocketAddr) {
    // An HTTP/2 request names its host in the URI only.
    let authority = request.uri().authority().map(|a| a.as_str());
    if let Some(host) = authority.and_then(|a| HeaderValue::try_from(a).ok()) {
        request.headers_mut().entry(header::HOST).or_insert(host);
    }
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse::<Uri>();
    if let Ok(target) = target {
        *request.uri_mut() = target;
    }
    *request.version_mut() = Version::HTTP_11;
    let headers = request.headers_mut();
    strip(headers);
    let client = peer.ip().to_string();
    let forwarded = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {client}"),
        None => client,
    };
    if let Ok(value) = HeaderValue::try_from(forwarded) {
        headers.insert(X_FORWARDED_FOR, value);
    }
}

fn strip(headers: &mut HeaderMap) {
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Why a request got no response from a node.
enum Failure {
    /// The node could not be reached; the request is intact, for the next one.
    NotSent(Box<Request>, String),
    /// The connection failed after the request went out: it may have been acted on.
    Sent(hyper::Error),
}

/// Sends `request` to `node` on a new connection.
async fn send(node: SocketAddr, request: Request) -> Result<hyper::Response<Incoming>, Failure> {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(node)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Err(Failure::NotSent(Box::new(request), error.to_string())),
        Err(_) => {
            return Err(Failure::NotSent(
                Box::new(request),
                "connect timed out".to_owned(),
            ));
        }
    };
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = match http1::handshake(TokioIo::new(stream)).await {
        Ok(handshake) => handshake,
        Err(error) => return Err(Failure::NotSent(Box::new(request), error.to_string())),
    };
    tokio::spawn(async move {
        // Ends with the response, or hands the socket over to the tunnel after a 101.
        let _ = connection.with_upgrades().await;
    });
    sender
        .try_send_request(request)
        .await
        .map_err(|mut error| match error.take_message() {
            Some(request) => Failure::NotSent(Box::new(request), error.into_error().to_string()),
            None => Failure::Sent(error.into_error()),
        })
}

/// The node's response as the client gets it; after a `101`, with the tunnel started.
fn respond(
    mut response: hyper::Response<Incoming>,
    index: usize,
    client_upgrade: Option<OnUpgrade>,
) -> Response {
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client) = client_upgrade {
            let node = hyper::upgrade::on(&mut response);
            tokio::spawn(tunnel(client, node));
        }
    } else {
        let headers = response.headers_mut();
        strip(headers);
        headers.remove(header::CONNECTION);
        headers.remove(header::UPGRADE);
    }
    response
        .headers_mut()
        .insert(NODE_HEADER, HeaderValue::from(index + 1));
    response.map(Body::new)
}

/// Copies bytes both ways between an upgraded client connection and its node's, until both
/// directions end.
async fn tunnel(client: OnUpgrade, node: OnUpgrade) {
    let (Ok(client), Ok(node)) = tokio::join!(client, node) else {
        return;
    };
    let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut TokioIo::new(node)).await;
}
