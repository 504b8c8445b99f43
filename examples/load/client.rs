//! A WebSocket client for the subscribers, much cheaper per message than a general-purpose one.
//!
//! A thousand subscribers on one core must spend less per delivered message than the server
//! does, or the load program, not the server, sets the pace. So this client reads whatever the
//! socket holds into one reused buffer (never zero-filled), parses every complete frame in
//! place, and hands out borrowed text: no allocation per message. It speaks just enough of RFC
//! 6455 for a server that sends unfragmented or fragmented text, pings and a close: the
//! handshake, frame headers, pongs, and the text messages an echo run sends (masked, as a
//! client must).

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes requested from the socket per read.
const READ_SIZE: usize = 64 * 1024;
/// Longest handshake response accepted.
const MAX_RESPONSE: usize = 16 * 1024;

/// What the server sent, as the subscriber sees it.
pub(crate) enum Event<'a> {
    /// A complete text message.
    Text(&'a str),
    /// A ping (the raw transport's heartbeat); the pong is sent by [`Connection::drain`].
    Ping,
    /// A close frame, with its code (0 when it has none). Nothing after it is read.
    Close(u16),
}

/// One connection, past the handshake.
pub(crate) struct Connection {
    tcp: TcpStream,
    buf: Vec<u8>,
    /// A fragmented message being reassembled.
    partial: Option<Vec<u8>>,
    /// Pongs owed for pings read since the last write.
    pongs: Vec<Vec<u8>>,
}

impl Connection {
    /// Opens a WebSocket on `path` over `tcp`.
    pub(crate) async fn handshake(
        mut tcp: TcpStream,
        host: &str,
        path: &str,
    ) -> io::Result<Connection> {
        // The key is fixed: the server only echoes a digest of it, which we do not check on
        // our own loopback.
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await?;
        let mut buf = Vec::with_capacity(READ_SIZE);
        let end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            if buf.len() > MAX_RESPONSE {
                return Err(io::Error::other("handshake response too long"));
            }
            if tcp.read_buf(&mut buf).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed during the handshake",
                ));
            }
        };
        let status = buf.split(|&b| b == b'\r').next().unwrap_or_default();
        if !status.starts_with(b"HTTP/1.1 101") {
            let status = String::from_utf8_lossy(status);
            return Err(io::Error::other(format!("upgrade refused: {status}")));
        }
        // Frames that came with the response stay in the buffer.
        buf.drain(..end);
        Ok(Connection {
            tcp,
            buf,
            partial: None,
            pongs: Vec::new(),
        })
    }

    /// Waits for data and reads what is there. Returns false at end of stream.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a cancelled read has read nothing.
    pub(crate) async fn fill(&mut self) -> io::Result<bool> {
        self.buf.reserve(READ_SIZE);
        Ok(self.tcp.read_buf(&mut self.buf).await? > 0)
    }

    /// Hands every complete frame in the buffer to `on_event`, until it returns false. Then
    /// answers pings.
    pub(crate) async fn drain(
        &mut self,
        mut on_event: impl FnMut(Event<'_>) -> bool,
    ) -> io::Result<()> {
        let mut at = 0;
        let mut open = true;
        while open && let Some((header, len)) = frame_header(&self.buf[at..])? {
            let (head, payload) = (self.buf[at], &self.buf[at + header..at + header + len]);
            let (fin, opcode) = (head & 0x80 != 0, head & 0x0f);
            open = match opcode {
                0x0 | 0x1 => {
                    let whole = match (&mut self.partial, fin, opcode) {
                        (None, true, 0x1) => Some(payload),
                        (None, false, 0x1) => {
                            self.partial = Some(payload.to_vec());
                            None
                        }
                        (Some(partial), _, 0x0) => {
                            partial.extend_from_slice(payload);
                            None
                        }
                        _ => return Err(io::Error::other("unexpected continuation frame")),
                    };
                    match whole {
                        Some(text) => on_event(Event::Text(utf8(text)?)),
                        None if fin => {
                            let text = self.partial.take().unwrap_or_default();
                            on_event(Event::Text(utf8(&text)?))
                        }
                        None => true,
                    }
                }
                0x8 => {
                    let code = payload
                        .get(..2)
                        .map_or(0, |c| u16::from_be_bytes([c[0], c[1]]));
                    on_event(Event::Close(code));
                    false
                }
                0x9 => {
                    self.pongs.push(payload.to_vec());
                    on_event(Event::Ping)
                }
                // Binary messages and pongs are not part of this workload.
                _ => true,
            };
            at += header + len;
        }
        self.buf.drain(..at);
        for payload in std::mem::take(&mut self.pongs) {
            self.write_frame(0xa, &payload).await?;
        }
        Ok(())
    }

    /// Sends one text message.
    pub(crate) async fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.write_frame(0x1, text.as_bytes()).await
    }

    /// Writes one unfragmented frame, masked with a zero key so the payload goes out as it is.
    async fn write_frame(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let mut frame = Vec::with_capacity(payload.len() + 14);
        frame.push(0x80 | opcode);
        match payload.len() {
            len @ 0..=125 => frame.push(0x80 | len as u8),
            len @ 126..=0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&[0; 4]);
        frame.extend_from_slice(payload);
        self.tcp.write_all(&frame).await
    }
}

fn utf8(bytes: &[u8]) -> io::Result<&str> {
    std::str::from_utf8(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "text frame is not UTF-8"))
}

/// The header length and payload length of the frame at the start of `buf`, if it is all
/// there.
fn frame_header(buf: &[u8]) -> io::Result<Option<(usize, usize)>> {
    let [_, second, rest @ ..] = buf else {
        return Ok(None);
    };
    if second & 0x80 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the server masked a frame",
        ));
    }
    let (header, len) = match second & 0x7f {
        126 => match rest {
            [a, b, ..] => (4, u64::from(u16::from_be_bytes([*a, *b]))),
            _ => return Ok(None),
        },
        127 => match rest.get(..8) {
            Some(bytes) => (10, u64::from_be_bytes(bytes.try_into().unwrap_or_default())),
            None => return Ok(None),
        },
        len => (2, u64::from(len)),
    };
    let len = usize::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "frame too long"))?;
    Ok((buf.len() >= header + len).then_some((header, len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_of_each_length_form() {
        assert_eq!(frame_header(&[0x81]).ok().flatten(), None);
        assert_eq!(
            frame_header(&[0x81, 2, b'h', b'i']).ok().flatten(),
            Some((2, 2))
        );
        assert_eq!(frame_header(&[0x81, 2, b'h']).ok().flatten(), None);
        let mut long = vec![0x81, 126, 1, 0];
        long.resize(4 + 256, b'x');
        assert_eq!(frame_header(&long).ok().flatten(), Some((4, 256)));
        assert!(frame_header(&[0x81, 0x82, 0, 0]).is_err());
    }
}
