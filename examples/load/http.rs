//! An HTTP/1.1 client for the subscribers of the HTTP transports, cheap per message for the
//! same reason as the WebSocket one (`client.rs`): one keep-alive connection, one reused read
//! buffer, and chunked or fixed-length bodies decoded into one reused body buffer that the
//! caller parses in place and consumes. It speaks just enough HTTP for the broadcast service:
//! a request at a time, `Content-Length` or chunked responses, no redirects.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes requested from the socket per read.
const READ_SIZE: usize = 64 * 1024;
/// Longest response head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// Where the response to the last request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting for the status line and headers.
    Head,
    /// In a body of known length: this many bytes to go.
    Fixed(usize),
    /// Before a chunk-size line.
    ChunkSize,
    /// In a chunk: this many data bytes to go.
    ChunkData(usize),
    /// After a chunk's data, before its `\r\n`.
    ChunkEnd,
    /// After the last chunk, before the end of the trailers.
    Trailers,
    /// The response is complete.
    Done,
}

/// One connection and the response it is reading.
pub(crate) struct HttpConn {
    tcp: TcpStream,
    /// Bytes read and not yet decoded.
    raw: Vec<u8>,
    /// Body bytes decoded and not yet consumed by the caller.
    pub(crate) body: Vec<u8>,
    state: State,
    /// The status of the response being read (0 before its head arrived).
    pub(crate) status: u16,
    /// Whether the server will close the connection after this response.
    pub(crate) closing: bool,
}

impl HttpConn {
    pub(crate) fn new(tcp: TcpStream) -> Self {
        HttpConn {
            tcp,
            raw: Vec::with_capacity(READ_SIZE),
            body: Vec::new(),
            state: State::Done,
            status: 0,
            closing: false,
        }
    }

    /// Sends a whole request; what comes next is read as its response. The body of the previous
    /// response must have been consumed.
    pub(crate) async fn request(&mut self, request: &[u8]) -> io::Result<()> {
        if self.state != State::Done {
            return Err(io::Error::other("a request before the last response ended"));
        }
        self.body.clear();
        self.state = State::Head;
        self.status = 0;
        self.tcp.write_all(request).await
    }

    /// Waits for data and reads what is there. Returns false at end of stream.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a cancelled read has read nothing.
    pub(crate) async fn fill(&mut self) -> io::Result<bool> {
        self.raw.reserve(READ_SIZE);
        Ok(self.tcp.read_buf(&mut self.raw).await? > 0)
    }

    /// Decodes what has been read into `body`. Returns whether the response is complete.
    pub(crate) fn decode(&mut self) -> io::Result<bool> {
        let mut at = 0;
        let raw = &self.raw;
        loop {
            match self.state {
                State::Head => {
                    let Some(end) = find(&raw[at..], b"\r\n\r\n") else {
                        if raw.len() - at > MAX_HEAD {
                            return Err(io::Error::other("response head too long"));
                        }
                        break;
                    };
                    let (status, length, chunked, closing) = head(&raw[at..at + end])?;
                    at += end + 4;
                    self.status = status;
                    self.closing = closing;
                    self.state = match (status, length, chunked) {
                        (100..=199, ..) => State::Head,
                        (204 | 304, ..) | (_, Some(0), false) => State::Done,
                        (_, _, true) => State::ChunkSize,
                        (_, Some(len), false) => State::Fixed(len),
                        (_, None, false) => {
                            return Err(io::Error::other("a response without a length"));
                        }
                    };
                }
                State::Fixed(left) | State::ChunkData(left) => {
                    let take = left.min(raw.len() - at);
                    self.body.extend_from_slice(&raw[at..at + take]);
                    at += take;
                    let rest = left - take;
                    self.state = match (self.state, rest) {
                        (State::Fixed(_), 0) => State::Done,
                        (State::Fixed(_), rest) => State::Fixed(rest),
                        (_, 0) => State::ChunkEnd,
                        (_, rest) => State::ChunkData(rest),
                    };
                    if rest > 0 {
                        break;
                    }
                }
                State::ChunkSize => {
                    let Some(end) = find(&raw[at..], b"\r\n") else {
                        break;
                    };
                    let line = &raw[at..at + end];
                    let digits = line.split(|&b| b == b';').next().unwrap_or_default();
                    let size = std::str::from_utf8(digits)
                        .ok()
                        .and_then(|d| usize::from_str_radix(d.trim(), 16).ok())
                        .ok_or_else(|| io::Error::other("a malformed chunk size"))?;
                    at += end + 2;
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::ChunkData(size)
                    };
                }
                State::ChunkEnd => {
                    if raw.len() - at < 2 {
                        break;
                    }
                    if &raw[at..at + 2] != b"\r\n" {
                        return Err(io::Error::other("a chunk without its line end"));
                    }
                    at += 2;
                    self.state = State::ChunkSize;
                }
                State::Trailers => {
                    let Some(end) = find(&raw[at..], b"\r\n") else {
                        break;
                    };
                    at += end + 2;
                    if end == 0 {
                        self.state = State::Done;
                    }
                }
                State::Done => break,
            }
        }
        self.raw.drain(..at);
        Ok(self.state == State::Done)
    }

    /// Reads until the response is complete; its body is then in `body`.
    pub(crate) async fn complete(&mut self) -> io::Result<()> {
        while !self.decode()? {
            if !self.fill().await? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed before the response ended",
                ));
            }
        }
        Ok(())
    }
}

/// Where `needle` first occurs in `haystack`.
pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

/// The status, `Content-Length`, whether the body is chunked, and whether the server closes
/// the connection afterwards, from a response head (without its final blank line).
fn head(head: &[u8]) -> io::Result<(u16, Option<usize>, bool, bool)> {
    let head = std::str::from_utf8(head).map_err(|_| io::Error::other("a non-UTF-8 head"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.strip_prefix("HTTP/1.1 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::other(format!("a malformed status line in {head:?}")))?;
    let (mut length, mut chunked, mut closing) = (None, false, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            closing = value.eq_ignore_ascii_case("close");
        }
    }
    Ok((status, length, chunked, closing))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `response` fed in pieces of `step` bytes, as `decode` sees it across reads.
    fn decode_in_steps(response: &[u8], step: usize) -> (bool, Vec<u8>, u16) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let tcp = TcpStream::connect(listener.local_addr().expect("addr"))
                .await
                .expect("connect");
            let mut conn = HttpConn::new(tcp);
            conn.state = State::Head;
            let mut done = false;
            let mut body = Vec::new();
            for piece in response.chunks(step) {
                conn.raw.extend_from_slice(piece);
                done = conn.decode().expect("decodes");
                body.extend(conn.body.drain(..));
            }
            (done, body, conn.status)
        })
    }

    #[test]
    fn chunked_and_fixed_bodies_in_any_pieces() {
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
                        3\r\no\na\r\n5;x=1\r\nh\nh\nh\r\n0\r\n\r\n";
        let fixed = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\na[]\n";
        for step in [1, 2, 7, 1000] {
            assert_eq!(
                decode_in_steps(chunked, step),
                (true, b"o\nah\nh\nh".to_vec(), 200)
            );
            assert_eq!(decode_in_steps(fixed, step), (true, b"a[]\n".to_vec(), 200));
        }
        let no_content = b"HTTP/1.1 204 No Content\r\ndate: x\r\n\r\n";
        assert_eq!(decode_in_steps(no_content, 3), (true, Vec::new(), 204));
        let partial = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\no\n";
        assert_eq!(decode_in_steps(partial, 4).0, false);
    }
}
