//! A tiny raw HTTP/1.x client for tests over real sockets.
//!
//! Not hyper: the SockJS protocol suite reads streaming responses one HTTP chunk at a time and
//! compares each chunk, so tests must see the chunk boundaries the server wrote, and must be
//! able to speak HTTP/1.0 and reuse a keep-alive socket on purpose. Every read is bounded by a
//! timeout, and a timeout panics naming what was awaited.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

/// How long any single wait for the server may take unless a test says otherwise.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// An HTTP request to send: `Host` is always added, and `Content-Length` whenever there is a
/// body or the method is `POST`.
#[derive(Clone, Debug)]
pub struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    http10: bool,
}

impl Request {
    /// `method path` as HTTP/1.1, no headers, no body.
    pub fn new(method: &str, path: &str) -> Self {
        Request {
            method: method.to_owned(),
            path: path.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            http10: false,
        }
    }

    /// `GET path`.
    pub fn get(path: &str) -> Self {
        Request::new("GET", path)
    }

    /// `POST path`.
    pub fn post(path: &str) -> Self {
        Request::new("POST", path)
    }

    /// Adds the header `name: value`.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sends the request as HTTP/1.0.
    pub fn http10(mut self) -> Self {
        self.http10 = true;
        self
    }

    /// The request as written on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let version = if self.http10 { "HTTP/1.0" } else { "HTTP/1.1" };
        let mut head = format!("{} {} {version}\r\nHost: x\r\n", self.method, self.path);
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !self.body.is_empty() || self.method == "POST" {
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }

    /// Connects to `addr`, sends the request and reads the response head.
    pub async fn send(self, addr: SocketAddr) -> Response {
        Connection::open(addr).await.send(&self).await
    }
}

/// A client socket and whatever was read from it but not consumed yet.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
    eof: bool,
}

impl Connection {
    /// Connects to `addr`.
    pub async fn open(addr: SocketAddr) -> Self {
        let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| panic!("timed out connecting to {addr}"))
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        Connection {
            stream,
            buffer: Vec::new(),
            eof: false,
        }
    }

    /// Sends `request` on this socket and reads the response head.
    pub async fn send(mut self, request: &Request) -> Response {
        let what = format!("{} {}", request.method, request.path);
        tokio::time::timeout(TIMEOUT, self.stream.write_all(&request.to_bytes()))
            .await
            .unwrap_or_else(|_| panic!("timed out writing {what}"))
            .unwrap_or_else(|e| panic!("write {what}: {e}"));
        let deadline = Instant::now() + TIMEOUT;
        let head = loop {
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                let head: Vec<u8> = self.buffer.drain(..end + 4).collect();
                break head;
            }
            let what = format!("the response head of {what}");
            if self.fill(deadline, &what).await == 0 {
                panic!(
                    "connection closed before {what}; got {:?}",
                    String::from_utf8_lossy(&self.buffer)
                );
            }
        };
        let head = String::from_utf8(head).expect("response head is UTF-8");
        let mut lines = head.trim_end().split("\r\n");
        let status_line = lines.next().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = lines
            .map(|line| {
                let (name, value) = line
                    .split_once(':')
                    .unwrap_or_else(|| panic!("bad header line {line:?}"));
                (name.trim().to_ascii_lowercase(), value.trim().to_owned())
            })
            .collect();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let find_header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let framing = if request.method == "HEAD" || matches!(status, 100..=199 | 204 | 304) {
            Framing::Length(0)
        } else if find_header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            Framing::Chunked
        } else if let Some(length) = find_header("content-length") {
            Framing::Length(length.parse().expect("numeric content-length"))
        } else {
            Framing::UntilClose
        };
        Response {
            status_line,
            headers,
            what,
            framing,
            done: false,
            connection: self,
        }
    }

    /// Reads once more into the buffer; returns how many bytes came (0 at EOF). Panics once
    /// `deadline` passes, naming `what` was awaited.
    async fn fill(&mut self, deadline: Instant, what: &str) -> usize {
        if self.eof {
            return 0;
        }
        let mut chunk = [0u8; 8192];
        let read = timeout_at(deadline, self.stream.read(&mut chunk))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "timed out waiting for {what}; buffered {:?}",
                    String::from_utf8_lossy(&self.buffer)
                )
            });
        match read {
            Ok(0) | Err(_) => {
                self.eof = true;
                0
            }
            Ok(n) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                n
            }
        }
    }

    /// Waits until the buffer holds `n` bytes; panics at EOF or at `deadline`.
    async fn want(&mut self, n: usize, deadline: Instant, what: &str) {
        while self.buffer.len() < n {
            if self.fill(deadline, what).await == 0 {
                panic!(
                    "connection closed while waiting for {what}; buffered {:?}",
                    String::from_utf8_lossy(&self.buffer)
                );
            }
        }
    }

    /// Reads a CRLF-terminated line, without the CRLF.
    async fn line(&mut self, deadline: Instant, what: &str) -> String {
        loop {
            if let Some(end) = find(&self.buffer, b"\r\n") {
                let line: Vec<u8> = self.buffer.drain(..end + 2).collect();
                return String::from_utf8_lossy(&line[..end]).into_owned();
            }
            if self.fill(deadline, what).await == 0 {
                panic!(
                    "connection closed while waiting for {what}; buffered {:?}",
                    String::from_utf8_lossy(&self.buffer)
                );
            }
        }
    }

    /// Whether the server closes the socket within `within` (nothing more may arrive).
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if !self.buffer.is_empty() {
                return false;
            }
            let mut chunk = [0u8; 1024];
            match timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return false,
                Ok(Ok(0) | Err(_)) => return true,
                Ok(Ok(n)) => self.buffer.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// How the body of a response is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length` bytes remain (also 0 for bodiless statuses).
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Neither: the body runs until the server closes the socket.
    UntilClose,
}

/// A response whose head has been read; the body is read on demand.
#[derive(Debug)]
pub struct Response {
    /// E.g. `HTTP/1.1 200 OK`.
    pub status_line: String,
    /// Every header in the order received, names lowercased, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The request, for messages.
    what: String,
    framing: Framing,
    done: bool,
    connection: Connection,
}

impl Response {
    /// The status code.
    pub fn status(&self) -> u16 {
        self.status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status code")
    }

    /// How the body is delimited.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// The first value of the header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the header `name` (lowercase) is present.
    pub fn has(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    /// The next piece of the body, or `None` once it has ended: one HTTP chunk of a chunked
    /// body (`None` at the zero-length chunk), the whole of a `Content-Length` body, or what
    /// one read yields of a body that runs until the socket closes. Panics when nothing comes
    /// within `within`.
    pub async fn next_chunk(&mut self, within: Duration) -> Option<Vec<u8>> {
        if self.done {
            return None;
        }
        let deadline = Instant::now() + within;
        let what = format!("the next body chunk of {}", self.what);
        let conn = &mut self.connection;
        match self.framing {
            Framing::Length(n) => {
                self.done = true;
                if n == 0 {
                    return None;
                }
                conn.want(n, deadline, &what).await;
                Some(conn.buffer.drain(..n).collect())
            }
            Framing::Chunked => {
                let size_line = conn.line(deadline, &what).await;
                let size = size_line.split(';').next().unwrap_or_default().trim();
                let size = usize::from_str_radix(size, 16)
                    .unwrap_or_else(|_| panic!("bad chunk size line {size_line:?} in {what}"));
                if size == 0 {
                    // Trailers, if any, up to the empty line.
                    while !conn.line(deadline, &what).await.is_empty() {}
                    self.done = true;
                    return None;
                }
                conn.want(size + 2, deadline, &what).await;
                let chunk: Vec<u8> = conn.buffer.drain(..size).collect();
                let crlf: Vec<u8> = conn.buffer.drain(..2).collect();
                assert_eq!(crlf, b"\r\n", "chunk not followed by CRLF in {what}");
                Some(chunk)
            }
            Framing::UntilClose => {
                if conn.buffer.is_empty() && conn.fill(deadline, &what).await == 0 {
                    self.done = true;
                    return None;
                }
                Some(std::mem::take(&mut conn.buffer))
            }
        }
    }

    /// [`next_chunk`](Self::next_chunk) with the default timeout, which must yield a chunk.
    pub async fn chunk(&mut self) -> Vec<u8> {
        let what = self.what.clone();
        self.next_chunk(TIMEOUT)
            .await
            .unwrap_or_else(|| panic!("the body of {what} ended; a chunk was expected"))
    }

    /// [`chunk`](Self::chunk) as text.
    pub async fn chunk_text(&mut self) -> String {
        String::from_utf8(self.chunk().await).expect("chunk is UTF-8")
    }

    /// Asserts the body ends now, with no further chunk.
    pub async fn assert_ended(&mut self) {
        if let Some(chunk) = self.next_chunk(TIMEOUT).await {
            panic!(
                "{}: expected the end of the body, got {:?}",
                self.what,
                String::from_utf8_lossy(&chunk)
            );
        }
    }

    /// The rest of the body, until it ends; each wait bounded by the default timeout.
    pub async fn body_to_end(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        while let Some(chunk) = self.next_chunk(TIMEOUT).await {
            body.extend_from_slice(&chunk);
        }
        body
    }

    /// [`body_to_end`](Self::body_to_end) as text.
    pub async fn text(&mut self) -> String {
        String::from_utf8(self.body_to_end().await).expect("body is UTF-8")
    }

    /// The status line and the headers named (lowercase, in the order given, each time present),
    /// one per line, for snapshots. `date` and `expires` values, which move with the clock, are
    /// replaced by `<http-date>` once checked to look like HTTP dates.
    pub fn pin(&self, names: &[&str]) -> String {
        let mut out = format!("{}\n", self.status_line);
        for name in names {
            for (k, v) in self.headers.iter().filter(|(k, _)| k == name) {
                let v = if k == "date" || k == "expires" {
                    assert!(v.ends_with(" GMT") && v.len() == 29, "{k}: {v}");
                    "<http-date>"
                } else {
                    v.as_str()
                };
                out.push_str(&format!("{k}: {v}\n"));
            }
        }
        out
    }

    /// The socket, for another request on it: the body must have been read to its end, and the
    /// response must not be close-delimited.
    pub fn into_connection(self) -> Connection {
        assert!(
            self.done,
            "{}: read the body to its end before reusing the socket",
            self.what
        );
        assert_ne!(self.framing, Framing::UntilClose, "{}", self.what);
        self.connection
    }

    /// The underlying socket, e.g. to see whether the server closes it.
    pub fn connection(&mut self) -> &mut Connection {
        &mut self.connection
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
