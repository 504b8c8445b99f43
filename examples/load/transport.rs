//! The sessions of every transport the broadcast service serves, as the load program's
//! subscribers see them: open one, then read application messages, heartbeats and the close
//! out of it, whatever the wire format.
//!
//! WebSocket transports read with `client.rs`, HTTP ones with `http.rs`; both parse in place
//! and hand out borrowed text. An HTTP session keeps its receiving request going by itself: a
//! streaming response that reached its limit, or a poll that was answered, is followed at once
//! by the next request on the same keep-alive connection (native ones with the last position).

use std::io;

use clap::ValueEnum;
use tokio::net::TcpStream;

use crate::client::{self, Connection};
use crate::http::{HttpConn, find};

/// A transport of the broadcast service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ValueEnum)]
pub(crate) enum Transport {
    /// SockJS over WebSocket: `/<server>/<session>/websocket`.
    SockjsWs,
    /// One WebSocket message per application message: `/websocket`.
    RawWs,
    /// SockJS xhr-streaming: `POST /<server>/<session>/xhr_streaming`.
    XhrStreaming,
    /// SockJS EventSource: `GET /<server>/<session>/eventsource`.
    Eventsource,
    /// SockJS xhr-polling: `POST /<server>/<session>/xhr`.
    XhrPolling,
    /// Native WebSocket: `/native/ws`.
    NativeWs,
    /// Native Server-Sent Events: `/native/sse`.
    NativeSse,
    /// Native streaming (newline-delimited JSON): `/native/stream`.
    NativeStream,
    /// Native long-polling: `/native/poll`.
    NativePoll,
    /// STOMP over a WebSocket: `/stomp/websocket`, subscribed to [`STOMP_TOPIC`].
    StompWs,
}

/// The STOMP destination the publisher SENDs to and every STOMP subscriber follows.
pub(crate) const STOMP_TOPIC: &str = "/topic/broadcast";

impl Transport {
    /// Every transport, in the order the report lists them.
    pub(crate) const ALL: [Transport; 10] = [
        Transport::SockjsWs,
        Transport::RawWs,
        Transport::XhrStreaming,
        Transport::Eventsource,
        Transport::XhrPolling,
        Transport::NativeWs,
        Transport::NativeSse,
        Transport::NativeStream,
        Transport::NativePoll,
        Transport::StompWs,
    ];

    /// The name on the command line and in reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Transport::SockjsWs => "sockjs-ws",
            Transport::RawWs => "raw-ws",
            Transport::XhrStreaming => "xhr-streaming",
            Transport::Eventsource => "eventsource",
            Transport::XhrPolling => "xhr-polling",
            Transport::NativeWs => "native-ws",
            Transport::NativeSse => "native-sse",
            Transport::NativeStream => "native-stream",
            Transport::NativePoll => "native-poll",
            Transport::StompWs => "stomp-ws",
        }
    }

    /// Whether it runs over WebSocket.
    pub(crate) fn websocket(self) -> bool {
        matches!(
            self,
            Transport::SockjsWs | Transport::RawWs | Transport::NativeWs | Transport::StompWs
        )
    }

    fn native(self) -> bool {
        matches!(
            self,
            Transport::NativeWs
                | Transport::NativeSse
                | Transport::NativeStream
                | Transport::NativePoll
        )
    }
}

/// What a session read, as the subscriber sees it.
pub(crate) enum Event<'a> {
    /// One application message.
    Message(&'a str),
    /// A heartbeat (SockJS `h`, a native heartbeat frame, a ping on the raw WebSocket).
    Heartbeat,
    /// The session was closed, with this code (0: the connection ended without one). Nothing
    /// after it is read.
    Closed(u16),
}

/// How an HTTP session's receiving responses are framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HttpKind {
    /// SockJS frames, one per `\n`-terminated line (xhr-streaming and xhr-polling).
    SockjsLines,
    /// SockJS frames as `data: <frame>\r\n\r\n` events.
    SockjsEvents,
    /// Native frames as Server-Sent Events.
    NativeSse,
    /// Native JSON frames, one per line.
    NativeLines,
    /// A JSON array of native frames.
    NativeArray,
}

/// One open session of any transport.
pub(crate) struct Session {
    transport: Transport,
    host: String,
    /// SockJS: the session's URL path without the transport; native: the token.
    id: String,
    /// Native: the position of the last message, gap or open frame, sent when reconnecting.
    pos: String,
    wire: Wire,
    /// The connection an HTTP session sends on (echo runs), opened on first use.
    sender: Option<HttpConn>,
}

enum Wire {
    Ws(Connection),
    Http {
        conn: HttpConn,
        kind: HttpKind,
        /// The receiving request, rebuilt when the position changes.
        request: Vec<u8>,
    },
}

/// What one native frame says.
enum NativeFrame<'a> {
    /// A batch: the position after it, and its `data`, a JSON array of strings.
    Messages {
        pos: &'a str,
        data: Text<'a>,
    },
    /// An `open` or `gap` frame: only the position matters here.
    Position(&'a str),
    Heartbeat,
    Close(u16),
    /// `end`, or anything this program does not act on.
    Other,
}

/// Text that is usually a slice of the input, and owned only when it had escapes.
enum Text<'a> {
    Borrowed(&'a str),
    Owned(String),
}

impl Text<'_> {
    fn as_str(&self) -> &str {
        match self {
            Text::Borrowed(text) => text,
            Text::Owned(text) => text,
        }
    }
}

/// Connects to `addr` with `TCP_NODELAY`, naming the usual causes of failure.
pub(crate) async fn tcp(addr: &str) -> Result<TcpStream, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| describe_io(&e))?;
    tcp.set_nodelay(true).map_err(|e| describe_io(&e))?;
    Ok(tcp)
}

pub(crate) fn describe_io(error: &io::Error) -> String {
    match error.raw_os_error() {
        Some(24) => format!(
            "{error}: this process ran out of file descriptors; raise the limit with `ulimit -n` \
             (each run needs about one per subscriber, plus a few)"
        ),
        Some(99) => format!("{error}: out of local ports for 127.0.0.1"),
        _ => error.to_string(),
    }
}

fn other(text: impl Into<String>) -> io::Error {
    io::Error::other(text.into())
}

impl Session {
    /// Opens subscriber `index`'s session on `addr` and waits until the server has opened it
    /// (SockJS `o`, the native `open` frame, or the raw WebSocket's upgrade). SockJS session ids
    /// start with `run`, so that runs sharing a store (Redis) never meet each other's sessions.
    pub(crate) async fn open(
        addr: &str,
        transport: Transport,
        run: &str,
        index: usize,
    ) -> Result<Session, String> {
        let id = if transport.native() {
            negotiate(addr).await?
        } else if matches!(transport, Transport::RawWs | Transport::StompWs) {
            String::new()
        } else {
            format!("/broadcast/{:03}/{run}-{index}", index % 1000)
        };
        let wire = if transport.websocket() {
            let path = match transport {
                Transport::RawWs => "/broadcast/websocket".to_owned(),
                Transport::StompWs => "/stomp/websocket".to_owned(),
                Transport::NativeWs => format!("/broadcast/native/ws?v=2&token={id}"),
                _ => format!("{id}/websocket"),
            };
            let mut connection = Connection::handshake(tcp(addr).await?, addr, &path)
                .await
                .map_err(|e| describe_io(&e))?;
            if transport == Transport::StompWs {
                // Subscribed at once, without waiting for CONNECTED: the server reads the
                // frames in order.
                let subscribe = format!("SUBSCRIBE\nid:0\ndestination:{STOMP_TOPIC}\n\n\0");
                for frame in [STOMP_CONNECT, subscribe.as_str()] {
                    connection
                        .send_text(frame)
                        .await
                        .map_err(|e| describe_io(&e))?;
                }
            }
            Wire::Ws(connection)
        } else {
            let kind = match transport {
                Transport::XhrStreaming | Transport::XhrPolling => HttpKind::SockjsLines,
                Transport::Eventsource => HttpKind::SockjsEvents,
                Transport::NativeSse => HttpKind::NativeSse,
                Transport::NativeStream => HttpKind::NativeLines,
                _ => HttpKind::NativeArray,
            };
            let mut conn = HttpConn::new(tcp(addr).await?);
            let mut request = Vec::with_capacity(256);
            receiving_request(transport, addr, &id, "", &mut request);
            conn.request(&request).await.map_err(|e| describe_io(&e))?;
            Wire::Http {
                conn,
                kind,
                request,
            }
        };
        let mut session = Session {
            transport,
            host: addr.to_owned(),
            id,
            pos: String::new(),
            wire,
            sender: None,
        };
        // A raw WebSocket has no open frame, and a native poll answers only when it has
        // something to say (its `open` comes with the first messages): those are open once the
        // request is made, which the probes of the run then confirm.
        if !matches!(transport, Transport::RawWs | Transport::NativePoll) {
            session.opened().await?;
        }
        Ok(session)
    }

    /// Reads until the open frame.
    async fn opened(&mut self) -> Result<(), String> {
        let mut open = false;
        loop {
            let mut early = None;
            // Until the open frame the only other frames can be the streaming prelude and
            // heartbeats; `on_frame` sees every frame, `on_event` only what is past it.
            self.drain_with(
                |opened| open |= opened,
                |event| match event {
                    Event::Closed(code) => {
                        early = Some(code);
                        false
                    }
                    _ => true,
                },
            )
            .await
            .map_err(|e| e.to_string())?;
            if let Some(code) = early {
                return Err(format!("closed ({code}) before it opened"));
            }
            if open {
                return Ok(());
            }
            if !self.fill().await.map_err(|e| e.to_string())? {
                return Err("the connection ended before the session opened".into());
            }
        }
    }

    /// Waits for data and reads what is there. Returns false at end of stream.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a cancelled read has read nothing.
    pub(crate) async fn fill(&mut self) -> io::Result<bool> {
        match &mut self.wire {
            Wire::Ws(connection) => connection.fill().await,
            Wire::Http { conn, .. } => conn.fill().await,
        }
    }

    /// Hands every complete event read so far to `on_event`, until it returns false; sends the
    /// next receiving request when a response has ended.
    pub(crate) async fn drain(
        &mut self,
        on_event: impl FnMut(Event<'_>) -> bool,
    ) -> io::Result<()> {
        self.drain_with(|_| {}, on_event).await
    }

    /// [`drain`](Session::drain), also telling `on_open` of every frame whether it was the
    /// session's open frame.
    async fn drain_with(
        &mut self,
        mut on_open: impl FnMut(bool),
        mut on_event: impl FnMut(Event<'_>) -> bool,
    ) -> io::Result<()> {
        let transport = self.transport;
        let pos = &mut self.pos;
        match &mut self.wire {
            Wire::Ws(connection) => {
                connection
                    .drain(|event| match event {
                        client::Event::Text(text) => match transport {
                            Transport::SockjsWs => {
                                on_open(text == "o");
                                sockjs_frame(text, &mut on_event)
                            }
                            Transport::NativeWs => {
                                let frame = native_frame(text);
                                on_open(matches!(frame, NativeFrame::Position(_)));
                                native_event(frame, pos, &mut on_event)
                            }
                            Transport::StompWs => {
                                on_open(text.starts_with("CONNECTED\n"));
                                stomp_frames(text, &mut on_event)
                            }
                            _ => on_event(Event::Message(text)),
                        },
                        client::Event::Ping => on_event(Event::Heartbeat),
                        client::Event::Close(code) => {
                            on_event(Event::Closed(code));
                            false
                        }
                    })
                    .await
            }
            Wire::Http {
                conn,
                kind,
                request,
            } => {
                let done = conn.decode()?;
                if !(200..300).contains(&conn.status) && conn.status != 0 {
                    return Err(other(format!("HTTP status {}", conn.status)));
                }
                let (used, open) =
                    http_body(*kind, &conn.body, done, pos, &mut on_open, &mut on_event);
                conn.body.drain(..used);
                if !open {
                    return Ok(());
                }
                if done {
                    if conn.closing {
                        return Err(other("the server closed the keep-alive connection"));
                    }
                    // The response ended without a close: ask for the next one (a native one
                    // from the new position; a SockJS one is the same every time).
                    if transport.native() {
                        receiving_request(transport, &self.host, &self.id, pos, request);
                    }
                    conn.request(request).await?;
                }
                Ok(())
            }
        }
    }

    /// Sends one application message on the session's own send path: its WebSocket, or a
    /// POST to `xhr_send` / `native/send` on a connection of its own.
    pub(crate) async fn send(&mut self, text: &str) -> io::Result<()> {
        let array = || serde_json::Value::from(vec![text]).to_string();
        if let Wire::Ws(connection) = &mut self.wire {
            return match self.transport {
                Transport::SockjsWs => connection.send_text(&array()).await,
                Transport::StompWs => connection.send_text(&stomp_send(text)).await,
                _ => connection.send_text(text).await,
            };
        }
        if self.sender.is_none() {
            let tcp = tcp(&self.host).await.map_err(other)?;
            self.sender = Some(HttpConn::new(tcp));
        }
        let path = if self.transport.native() {
            format!("/broadcast/native/send?v=2&token={}", self.id)
        } else {
            format!("{}/xhr_send", self.id)
        };
        let body = array();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            self.host,
            body.len()
        );
        let Some(sender) = &mut self.sender else {
            return Err(other("no sender"));
        };
        sender.request(request.as_bytes()).await?;
        sender.complete().await?;
        match sender.status {
            200..=299 => Ok(()),
            status => Err(other(format!("send refused: HTTP {status}"))),
        }
    }
}

/// The receiving request of an HTTP session: `id` is the SockJS session path or the native
/// token, `pos` the native position to resume from (empty: none yet).
fn receiving_request(transport: Transport, host: &str, id: &str, pos: &str, out: &mut Vec<u8>) {
    out.clear();
    let (method, path) = match transport {
        Transport::XhrStreaming => ("POST", "/xhr_streaming"),
        Transport::XhrPolling => ("POST", "/xhr"),
        Transport::Eventsource => ("GET", "/eventsource"),
        Transport::NativeSse => ("GET", "/broadcast/native/sse?v=2&token="),
        Transport::NativeStream => ("GET", "/broadcast/native/stream?v=2&token="),
        _ => ("GET", "/broadcast/native/poll?v=2&token="),
    };
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    if transport.native() {
        out.extend_from_slice(path.as_bytes());
        out.extend_from_slice(id.as_bytes());
        if !pos.is_empty() {
            // Positions are made of characters a query may carry as they are.
            out.extend_from_slice(b"&pos=");
            out.extend_from_slice(pos.as_bytes());
        }
    } else {
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(path.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    if method == "POST" {
        out.extend_from_slice(b"\r\nContent-Length: 0");
    }
    out.extend_from_slice(b"\r\n\r\n");
}

/// `POST /broadcast/native/negotiate` on a connection of its own; returns the token.
async fn negotiate(addr: &str) -> Result<String, String> {
    let mut conn = HttpConn::new(tcp(addr).await?);
    let request = format!(
        "POST /broadcast/native/negotiate?v=2 HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    );
    conn.request(request.as_bytes())
        .await
        .map_err(|e| describe_io(&e))?;
    conn.complete().await.map_err(|e| e.to_string())?;
    if conn.status != 200 {
        return Err(format!("negotiate answered {}", conn.status));
    }
    let answer: serde_json::Value =
        serde_json::from_slice(&conn.body).map_err(|e| format!("negotiate: {e}"))?;
    answer["token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "negotiate gave no token".to_owned())
}

/// Reads the frames in `body` (the decoded body so far; `done` when the response is complete).
/// Returns how many bytes were used and whether the session is still open.
fn http_body(
    kind: HttpKind,
    body: &[u8],
    done: bool,
    pos: &mut String,
    on_open: &mut impl FnMut(bool),
    on_event: &mut impl FnMut(Event<'_>) -> bool,
) -> (usize, bool) {
    let mut used = 0;
    let mut open = true;
    match kind {
        HttpKind::SockjsLines | HttpKind::NativeLines => {
            while open && let Some(end) = memchr::memchr(b'\n', &body[used..]) {
                let line = utf8(&body[used..used + end]);
                used += end + 1;
                open = match kind {
                    // The xhr-streaming prelude is one line of 2048 `h`: not a heartbeat.
                    HttpKind::SockjsLines if line.len() > 1 && line.starts_with("hh") => true,
                    HttpKind::SockjsLines => {
                        on_open(line == "o");
                        sockjs_frame(line, on_event)
                    }
                    _ => {
                        let frame = native_frame(line);
                        on_open(matches!(frame, NativeFrame::Position(_)));
                        native_event(frame, pos, on_event)
                    }
                };
            }
        }
        HttpKind::SockjsEvents => {
            while open && let Some(end) = find(&body[used..], b"\r\n") {
                let line = utf8(&body[used..used + end]);
                used += end + 2;
                if let Some(frame) = line.strip_prefix("data: ") {
                    on_open(frame == "o");
                    open = sockjs_frame(frame, on_event);
                }
            }
        }
        HttpKind::NativeSse => {
            while open && let Some(end) = find(&body[used..], b"\n\n") {
                let event = utf8(&body[used..used + end]);
                used += end + 2;
                open = sse_event(event, pos, on_open, on_event);
            }
        }
        HttpKind::NativeArray => {
            if done {
                used = body.len();
                let array = utf8(body);
                let inner = array
                    .strip_prefix('[')
                    .and_then(|a| a.strip_suffix(']'))
                    .unwrap_or_default();
                for object in JsonObjects(inner.as_bytes()) {
                    let frame = native_frame(utf8(object));
                    on_open(matches!(frame, NativeFrame::Position(_)));
                    if !native_event(frame, pos, on_event) {
                        open = false;
                        break;
                    }
                }
            }
        }
    }
    (used, open)
}

/// The broadcast service only sends UTF-8; anything else reads as empty and so as nothing.
fn utf8(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

/// Acts on one SockJS frame. Returns false once the session is closed.
fn sockjs_frame(frame: &str, on_event: &mut impl FnMut(Event<'_>) -> bool) -> bool {
    match frame.as_bytes().first() {
        Some(b'a') => {
            let mut open = true;
            let parsed = sockjs_messages(&frame[1..], |m| {
                if open {
                    open = on_event(Event::Message(m));
                }
            });
            if !parsed {
                eprintln!("load: malformed SockJS frame {frame:?}");
            }
            open
        }
        Some(b'h') => on_event(Event::Heartbeat),
        Some(b'c') => {
            let code = serde_json::from_str::<(u16, String)>(&frame[1..]).map_or(0, |(c, _)| c);
            on_event(Event::Closed(code));
            false
        }
        // `o`, or an empty line.
        _ => true,
    }
}

/// Calls `each` with every string of a SockJS `[…]` array of strings. Returns false if it is
/// not one.
pub(crate) fn sockjs_messages(array: &str, mut each: impl FnMut(&str)) -> bool {
    // Without a backslash there is no escape, and so no quote inside a string: each quote left
    // is one of the `","` between two strings. The publisher's messages always take this path,
    // found with `memchr` rather than a substring search set up anew for every frame.
    if !array.contains('\\')
        && let Some(inner) = array
            .strip_prefix("[\"")
            .and_then(|a| a.strip_suffix("\"]"))
    {
        let mut rest = inner;
        while let Some(at) = memchr::memchr(b'"', rest.as_bytes()) {
            let Some(next) = rest[at..].strip_prefix("\",\"") else {
                return false;
            };
            each(&rest[..at]);
            rest = next;
        }
        each(rest);
        return true;
    }
    match serde_json::from_str::<Vec<String>>(array) {
        Ok(messages) => {
            messages.iter().for_each(|m| each(m));
            true
        }
        Err(_) => false,
    }
}

/// The CONNECT of STOMP sessions: 1.2, no heart-beats (the server pings, as on every
/// WebSocket).
pub(crate) const STOMP_CONNECT: &str = "CONNECT\naccept-version:1.2\nhost:load\n\n\0";

/// A SEND of `text` to [`STOMP_TOPIC`].
pub(crate) fn stomp_send(text: &str) -> String {
    format!("SEND\ndestination:{STOMP_TOPIC}\n\n{text}\0")
}

/// Acts on one WebSocket message of a STOMP session: its frames, which the server may join
/// several to a message. Returns false once the session is closed.
fn stomp_frames(text: &str, on_event: &mut impl FnMut(Event<'_>) -> bool) -> bool {
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('\n') {
            if !on_event(Event::Heartbeat) {
                return false;
            }
            rest = after;
            continue;
        }
        let Some(head_end) = memchr::memmem::find(rest.as_bytes(), b"\n\n") else {
            eprintln!("load: malformed STOMP frame {rest:?}");
            return true;
        };
        let (head, body) = (&rest[..head_end], &rest[head_end + 2..]);
        // A MESSAGE and an ERROR have a content-length; CONNECTED and RECEIPT have no body.
        let length = memchr::memmem::find(head.as_bytes(), b"\ncontent-length:")
            .and_then(|at| head[at + 16..].split('\n').next()?.parse::<usize>().ok())
            .unwrap_or(0);
        let (Some(content), Some(0)) = (body.get(..length), body.as_bytes().get(length)) else {
            eprintln!("load: malformed STOMP frame {rest:?}");
            return true;
        };
        if head.starts_with("ERROR\n") {
            eprintln!("load: STOMP error {content:?}");
            on_event(Event::Closed(0));
            return false;
        }
        if head.starts_with("MESSAGE\n") && !on_event(Event::Message(content)) {
            return false;
        }
        // The body, then its NUL.
        rest = body.get(length + 1..).unwrap_or_default();
    }
    true
}

/// Reads one native JSON frame.
fn native_frame(json: &str) -> NativeFrame<'_> {
    const MESSAGES: &str = r#"{"type":"messages","pos":""#;
    // The shape every batch has (`protocol/native.rs`); positions never hold a quote, and the
    // data array is read by `sockjs_messages`, which handles escapes.
    if let Some(rest) = json.strip_prefix(MESSAGES)
        && let Some((pos, rest)) = rest.split_once(r#"","data":"#)
        && let Some(data) = rest.strip_suffix('}')
    {
        return NativeFrame::Messages {
            pos,
            data: Text::Borrowed(data),
        };
    }
    if json == r#"{"type":"heartbeat"}"# {
        return NativeFrame::Heartbeat;
    }
    let Ok(value) = serde_json::from_str::<serde_json::Value>(json) else {
        eprintln!("load: malformed native frame {json:?}");
        return NativeFrame::Other;
    };
    let pos = |value: &serde_json::Value| {
        // Borrowed from `json` so the frame outlives `value`: a position has no escapes.
        let p = value["pos"].as_str().unwrap_or_default();
        json.find(p).map_or("", |at| &json[at..at + p.len()])
    };
    match value["type"].as_str() {
        Some("messages") => NativeFrame::Messages {
            pos: pos(&value),
            data: Text::Owned(value["data"].to_string()),
        },
        Some("open" | "gap") => NativeFrame::Position(pos(&value)),
        Some("heartbeat") => NativeFrame::Heartbeat,
        Some("close") => NativeFrame::Close(value["code"].as_u64().unwrap_or(0) as u16),
        _ => NativeFrame::Other,
    }
}

/// Acts on one native frame: hands on its events, keeps its position. Returns false once the
/// session is closed.
fn native_event(
    frame: NativeFrame<'_>,
    pos: &mut String,
    on_event: &mut impl FnMut(Event<'_>) -> bool,
) -> bool {
    match frame {
        NativeFrame::Messages { pos: p, data } => {
            let mut open = true;
            let parsed = sockjs_messages(data.as_str(), |m| {
                if open {
                    open = on_event(Event::Message(m));
                }
            });
            if !parsed {
                eprintln!("load: malformed native batch {:?}", data.as_str());
            }
            // The batch's position, once the whole batch is handed on.
            pos.clear();
            pos.push_str(p);
            open
        }
        NativeFrame::Position(p) => {
            pos.clear();
            pos.push_str(p);
            true
        }
        NativeFrame::Heartbeat => on_event(Event::Heartbeat),
        NativeFrame::Close(code) => {
            on_event(Event::Closed(code));
            false
        }
        NativeFrame::Other => true,
    }
}

/// Acts on one native Server-Sent Event (its lines, without the blank line that ended it): its
/// data is one frame; its `id`, when it has one, the same position the frame carries.
fn sse_event(
    event: &str,
    pos: &mut String,
    on_open: &mut impl FnMut(bool),
    on_event: &mut impl FnMut(Event<'_>) -> bool,
) -> bool {
    // Frames are JSON, so one `data:` line holds one; the `retry:` block has none.
    let Some(data) = event
        .split('\n')
        .find_map(|line| line.strip_prefix("data: "))
    else {
        return true;
    };
    let frame = native_frame(data);
    on_open(matches!(frame, NativeFrame::Position(_)));
    native_event(frame, pos, on_event)
}

/// The top-level `{…}` objects of a JSON array's inside, as byte slices: braces inside strings
/// do not count, and a string ends at a quote no backslash escapes.
struct JsonObjects<'a>(&'a [u8]);

impl<'a> Iterator for JsonObjects<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let bytes = self.0;
        let start = memchr::memchr(b'{', bytes)?;
        let (mut at, mut depth) = (start, 0usize);
        loop {
            at += memchr::memchr3(b'{', b'}', b'"', &bytes[at..])?;
            match bytes[at] {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        self.0 = &bytes[at + 1..];
                        return Some(&bytes[start..=at]);
                    }
                }
                _ => {
                    // Skip the string: to the next quote not escaped by a backslash.
                    at += 1;
                    loop {
                        at += memchr::memchr2(b'"', b'\\', &bytes[at..])?;
                        if bytes[at] == b'\\' {
                            at += 2;
                        } else {
                            break;
                        }
                    }
                }
            }
            at += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(array: &str) -> Option<Vec<String>> {
        let mut out = Vec::new();
        sockjs_messages(array, |m| out.push(m.to_owned())).then_some(out)
    }

    #[test]
    fn sockjs_arrays_with_and_without_escapes() {
        assert_eq!(
            split(r#"["a b","c"]"#),
            Some(vec!["a b".to_owned(), "c".to_owned()])
        );
        assert_eq!(split(r#"["x\",\"y"]"#), Some(vec![r#"x","y"#.to_owned()]));
        assert_eq!(split("nope"), None);
    }

    #[test]
    fn stomp_messages_joined_in_one_websocket_message() {
        let message = |body: &str| {
            format!(
                "MESSAGE\nsubscription:0\nmessage-id:e-1\ndestination:/topic/broadcast\n\
                 content-length:{}\n\n{body}\0",
                body.len()
            )
        };
        let text = format!(
            "CONNECTED\nversion:1.2\n\n\0{}{}\n",
            message("one"),
            message("t\0o")
        );
        let mut events = Vec::new();
        let open = stomp_frames(&text, &mut |event| {
            events.push(match event {
                Event::Message(m) => format!("m:{m}"),
                Event::Heartbeat => "h".to_owned(),
                Event::Closed(code) => format!("c:{code}"),
            });
            true
        });
        assert!(open);
        assert_eq!(events, ["m:one", "m:t\0o", "h"]);
    }

    /// The events and final position `kind` reads from `body`, and the bytes it used.
    fn read(kind: HttpKind, body: &str, done: bool) -> (Vec<String>, String, usize) {
        let (mut events, mut pos) = (Vec::new(), String::new());
        let (used, _) = http_body(
            kind,
            body.as_bytes(),
            done,
            &mut pos,
            &mut |_| {},
            &mut |event| {
                events.push(match event {
                    Event::Message(m) => format!("m:{m}"),
                    Event::Heartbeat => "h".to_owned(),
                    Event::Closed(code) => format!("c:{code}"),
                });
                true
            },
        );
        (events, pos, used)
    }

    #[test]
    fn every_http_framing_reads_messages_heartbeats_and_positions() {
        let prelude = "h".repeat(2048);
        let (events, _, used) = read(
            HttpKind::SockjsLines,
            &format!("{prelude}\no\na[\"x\",\"y\"]\nh\nc[3000,\"Go away!\"]\na[\"par"),
            false,
        );
        assert_eq!(events, ["m:x", "m:y", "h", "c:3000"]);
        assert_eq!(used, prelude.len() + 1 + 2 + 11 + 2 + 19);

        let (events, ..) = read(
            HttpKind::SockjsEvents,
            "\r\ndata: o\r\n\r\ndata: a[\"x\"]\r\n\r\ndata: h\r\n\r\n",
            false,
        );
        assert_eq!(events, ["m:x", "h"]);

        let sse = "retry: 1000\n\nid: a:1:0\ndata: {\"type\":\"open\",\"pos\":\"a:1:0\",\"transport\":\"sse\"}\n\n\
                   id: a:1:2\ndata: {\"type\":\"messages\",\"pos\":\"a:1:2\",\"data\":[\"one\",\"two\\nlines\"]}\n\n\
                   data: {\"type\":\"heartbeat\"}\n\nid: a:1:9\ndata: {\"type\":\"gap\",\"pos\":\"a:1:9\",\"missed\":3}\n\n";
        let (events, pos, _) = read(HttpKind::NativeSse, sse, false);
        assert_eq!(events, ["m:one", "m:two\nlines", "h"]);
        assert_eq!(pos, "a:1:9");

        let lines = "{\"type\":\"open\",\"pos\":\"a:1:0\",\"transport\":\"streaming\"}\n\
                     {\"type\":\"messages\",\"pos\":\"a:1:1\",\"data\":[\"x\"]}\n\
                     {\"type\":\"messages\",\"pos\":\"a:1:3\",\"data\":[\"q\\\"}\",\"r\"]}\n\
                     {\"type\":\"heartbeat\"}\n{\"type\":\"end\"}\n";
        let (events, pos, _) = read(HttpKind::NativeLines, lines, false);
        assert_eq!(events, ["m:x", "m:q\"}", "m:r", "h"]);
        assert_eq!(pos, "a:1:3");

        let array = "[{\"type\":\"open\",\"pos\":\"a:1:0\",\"transport\":\"polling\"},\
                     {\"type\":\"messages\",\"pos\":\"a:1:1\",\"data\":[\"{x}\"]},\
                     {\"type\":\"close\",\"code\":3000,\"reason\":\"}\",\"reconnect\":false}]";
        assert_eq!(
            read(HttpKind::NativeArray, array, false).0,
            Vec::<String>::new()
        );
        let (events, pos, _) = read(HttpKind::NativeArray, array, true);
        assert_eq!(events, ["m:{x}", "c:3000"]);
        assert_eq!(pos, "a:1:1");
    }
}
