//! What each client of a compare page costs on the wire, counted by the server.
//!
//! The page connects each of its clients to a prefix of its own, `/metered/<page>/<client>`,
//! which [`track`] maps onto the Tidings service (`/rt`) after noting, for that client, the
//! request and the size of its head. The bytes the server sends are counted below HTTP: the
//! listener hands out connections that count every byte written to the socket, and [`track`]
//! tells a connection which client it serves now. That covers what a middleware that wraps
//! response bodies cannot see: status lines and headers, chunk framing, and everything on a
//! WebSocket after the upgrade.
//!
//! The attribution relies on HTTP/1.1 without pipelining, which is how browsers speak it: a
//! connection writes only the response to the request it read last, and an upgraded
//! connection carries one WebSocket until it closes.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::Json;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::Uri;
use axum::http::header::CONTENT_LENGTH;
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::{IncomingStream, Listener};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Where clients connect to be counted: `/metered/<page>/<client>/…`.
const METERED: &str = "/metered/";

/// Clients counted at once, over all pages; the one seen least recently is forgotten first.
const MAX_CLIENTS: usize = 256;

/// What one client of one page made the server do.
#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    /// Bytes the server wrote to the client's connections.
    down: AtomicU64,
    /// Bytes of the client's request heads, and of their bodies by `Content-Length`.
    up: AtomicU64,
}

/// The counters of every metered client, by page and client name.
#[derive(Clone)]
pub(crate) struct Meter {
    /// Where requests go once counted: the prefix the Tidings service is nested under.
    service: &'static str,
    clients: Arc<Mutex<HashMap<(String, String), Entry>>>,
}

struct Entry {
    counters: Arc<Counters>,
    used: Instant,
}

impl Meter {
    pub(crate) fn new(service: &'static str) -> Meter {
        Meter {
            service,
            clients: Arc::default(),
        }
    }

    fn clients(&self) -> MutexGuard<'_, HashMap<(String, String), Entry>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn counters(&self, page: &str, client: &str) -> Arc<Counters> {
        let mut clients = self.clients();
        let key = (page.to_owned(), client.to_owned());
        if !clients.contains_key(&key) && clients.len() >= MAX_CLIENTS {
            let oldest = clients
                .iter()
                .min_by_key(|(_, entry)| entry.used)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                clients.remove(&oldest);
            }
        }
        let entry = clients.entry(key).or_insert_with(|| Entry {
            counters: Arc::default(),
            used: Instant::now(),
        });
        entry.used = Instant::now();
        entry.counters.clone()
    }
}

/// Counts a request to `/metered/<page>/<client>/…` for that client, points its connection's
/// byte count at the client, and sends it on as a request to the Tidings service. Any other
/// request passes unchanged, and its connection counts for nobody.
pub(crate) async fn track(
    State(meter): State<Meter>,
    mut request: Request,
    next: Next,
) -> Response {
    let metered = split(request.uri().path()).map(|(page, client, rest)| {
        let counters = meter.counters(page, client);
        let mut uri = format!("{}{rest}", meter.service);
        if let Some(query) = request.uri().query() {
            uri.push('?');
            uri.push_str(query);
        }
        (counters, uri)
    });
    let counters = match metered {
        Some((counters, uri)) => {
            counters.requests.fetch_add(1, Ordering::Relaxed);
            counters
                .up
                .fetch_add(request_size(&request), Ordering::Relaxed);
            if let Ok(uri) = uri.parse::<Uri>() {
                *request.uri_mut() = uri;
            }
            Some(counters)
        }
        None => None,
    };
    if let Some(ConnectInfo(line)) = request.extensions().get::<ConnectInfo<Line>>() {
        line.serve(counters);
    }
    next.run(request).await
}

/// `(page, client, rest)` of a metered path, `rest` empty or starting with `/`.
fn split(path: &str) -> Option<(&str, &str, &str)> {
    let path = path.strip_prefix(METERED)?;
    let (page, path) = path.split_once('/')?;
    let (client, rest) = match path.find('/') {
        Some(i) => path.split_at(i),
        None => (path, ""),
    };
    let name = |s: &str| {
        (1..=40).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    (name(page) && name(client)).then_some((page, client, rest))
}

/// The bytes of the request as the client sent it: request line, headers (HTTP/1.1 spells
/// them `name: value\r\n`, and the server keeps names and values at their length), the empty
/// line, and the body its `Content-Length` declares.
fn request_size(request: &Request) -> u64 {
    let target = request
        .uri()
        .path_and_query()
        .map_or(1, |target| target.as_str().len());
    let line = request.method().as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    let body = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .unwrap_or(0);
    (line + headers + 2) as u64 + body
}

/// `GET /stats?page=<id>`: `{"clients": {"<client>": {"requests": n, "down": bytes, "up":
/// bytes}}}` for the clients of that page, counted since each first connected.
pub(crate) async fn stats(
    State(meter): State<Meter>,
    Query(query): Query<HashMap<String, String>>,
) -> Json<Value> {
    let page = query.get("page").map(String::as_str).unwrap_or_default();
    let clients: Map<String, Value> = meter
        .clients()
        .iter()
        .filter(|((p, _), _)| p == page)
        .map(|((_, client), entry)| {
            let c = &entry.counters;
            let value = json!({
                "requests": c.requests.load(Ordering::Relaxed),
                "down": c.down.load(Ordering::Relaxed),
                "up": c.up.load(Ordering::Relaxed),
            });
            (client.clone(), value)
        })
        .collect();
    Json(json!({ "clients": clients }))
}

/// The client one connection serves now; every byte the connection writes counts for it.
///
/// Reaches the request handlers as [`ConnectInfo`]. A `std::sync::Mutex`, not Tokio's: it is
/// held only to read or swap a pointer, never across an `.await`, and writes take it from
/// synchronous `poll_write`.
#[derive(Clone, Default)]
pub(crate) struct Line(Arc<Mutex<Option<Arc<Counters>>>>);

impl Line {
    fn client(&self) -> MutexGuard<'_, Option<Arc<Counters>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn serve(&self, counters: Option<Arc<Counters>>) {
        *self.client() = counters;
    }

    fn wrote(&self, bytes: usize) {
        if let Some(counters) = &*self.client() {
            counters.down.fetch_add(bytes as u64, Ordering::Relaxed);
        }
    }
}

impl Connected<IncomingStream<'_, MeteredListener>> for Line {
    fn connect_info(stream: IncomingStream<'_, MeteredListener>) -> Line {
        stream.io().line.clone()
    }
}

/// A TCP listener whose connections count the bytes they write.
pub(crate) struct MeteredListener(pub(crate) TcpListener);

impl Listener for MeteredListener {
    type Io = Metered;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Metered, SocketAddr) {
        let (io, addr) = Listener::accept(&mut self.0).await;
        // A comparison of latencies should not include Nagle's algorithm holding back small
        // frames until the previous ones are acknowledged.
        if let Err(error) = io.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY");
        }
        let io = Metered {
            io,
            line: Line::default(),
        };
        (io, addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// An accepted connection that counts what it writes for its [`Line`]'s client.
pub(crate) struct Metered {
    io: TcpStream,
    line: Line,
}

impl AsyncRead for Metered {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Metered {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.io).poll_write(cx, buf))?;
        self.line.wrote(n);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, bufs))?;
        self.line.wrote(n);
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_metered_paths() {
        assert_eq!(
            split("/metered/p1/sse/native/sse"),
            Some(("p1", "sse", "/native/sse"))
        );
        assert_eq!(
            split("/metered/p1/sockjs-xhr"),
            Some(("p1", "sockjs-xhr", ""))
        );
        assert_eq!(split("/metered/p1/x/"), Some(("p1", "x", "/")));
        assert_eq!(split("/metered/p1"), None);
        assert_eq!(split("/metered//x/info"), None);
        assert_eq!(split("/metered/p.1/x/info"), None);
        assert_eq!(split("/rt/info"), None);
    }

    #[test]
    fn request_size_counts_line_headers_and_body() {
        let request = Request::post("/metered/p/polling/native/send?token=t")
            .header("host", "127.0.0.1:3001")
            .header("content-length", "7")
            .body(axum::body::Body::empty())
            .expect("request");
        let sent = "POST /metered/p/polling/native/send?token=t HTTP/1.1\r\n\
                    host: 127.0.0.1:3001\r\ncontent-length: 7\r\n\r\n[\"hi\"]!";
        assert_eq!(request_size(&request), sent.len() as u64);
    }
}
