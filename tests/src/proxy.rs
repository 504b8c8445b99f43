//! A restrictive HTTP/1.1 reverse proxy on loopback, emulating the broken middleboxes that
//! real deployments sit behind: proxies that refuse WebSocket upgrades, that accept them and
//! then forward nothing, that buffer whole responses, that cut idle connections, or that
//! simply drop every connection at once.
//!
//! Not hyper: the point is exact control over which bytes go where and when, so the proxy
//! hand-parses just enough HTTP/1.1 to find message boundaries (request and response heads,
//! `Content-Length` and chunked bodies, close-delimited responses) and otherwise forwards the
//! bytes it read untouched. Each client connection gets its own upstream connection, opened on
//! its first forwarded request; requests on a keep-alive connection are forwarded one at a
//! time, each followed by its whole response, so every mode can decide per exchange.
//!
//! Everything is bounded: heads, chunk lines and pipelined bytes have size limits, a held
//! response in [`Mode::Buffer`] is capped, and every task ends when the [`Proxy`] is dropped.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;

/// Largest request or response head (start line plus headers) the proxy accepts.
const MAX_HEAD: usize = 64 * 1024;
/// Largest chunk-size or trailer line in a chunked body.
const MAX_LINE: usize = 8 * 1024;
/// Most trailer lines after the last chunk.
const MAX_TRAILERS: usize = 64;
/// Most bytes moved per read.
const READ_CHUNK: usize = 16 * 1024;
/// Most bytes of a next (pipelined) request the proxy reads ahead while a response is still
/// being relayed; it reads ahead at all only to notice a client that goes away.
const MAX_PIPELINED: usize = 64 * 1024;
/// How long a refusal waits for the client to close before closing itself.
const LINGER: Duration = Duration::from_secs(1);
/// How long connecting to the upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What kind of middlebox the proxy pretends to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forwards everything, WebSocket upgrades included (after a `101`, bytes are piped both
    /// ways).
    Pass,
    /// Answers every request carrying `Upgrade: websocket` with `403 Forbidden` and closes;
    /// everything else passes.
    BlockUpgrade,
    /// Accepts WebSocket upgrades (the handshake goes to the upstream and its `101` comes
    /// back), then forwards nothing in either direction and drops both connections after
    /// [`Options::kill_after`]. Everything else passes.
    KillWebSocket,
    /// Holds every response until the upstream has sent all of it, then sends it at once, as
    /// corporate proxies and antivirus do: streaming responses arrive only when they end.
    /// WebSocket upgrades are refused with `403`, as such proxies usually do.
    Buffer,
    /// Passes everything (WebSocket included) but cuts a client connection, and its upstream
    /// connection, once no byte has flowed in either direction for this long.
    IdleTimeout(Duration),
}

/// Tunables beyond the [`Mode`].
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// How long [`Mode::KillWebSocket`] keeps an upgraded connection open, forwarding
    /// nothing, before dropping it. Default 3 s.
    pub kill_after: Duration,
    /// The most bytes (head and body) of one response [`Mode::Buffer`] holds; beyond that it
    /// gives up and closes both connections. Default 16 MiB.
    pub buffer_cap: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            kill_after: Duration::from_secs(3),
            buffer_cap: 16 * 1024 * 1024,
        }
    }
}

/// Open client connections, by id, so they can be cut all at once.
type Registry = Arc<Mutex<HashMap<u64, AbortHandle>>>;

/// Locks `registry`, ignoring poisoning: the map stays consistent whatever panicked.
fn lock(registry: &Registry) -> MutexGuard<'_, HashMap<u64, AbortHandle>> {
    registry.lock().unwrap_or_else(|e| e.into_inner())
}

/// A proxy listening on a free loopback port in front of one upstream; stopped, with all its
/// connections, when dropped.
pub struct Proxy {
    /// Where it listens (127.0.0.1, a free port).
    pub addr: SocketAddr,
    listener: JoinHandle<()>,
    connections: Registry,
}

impl Proxy {
    /// Starts a proxy in front of `upstream` with default [`Options`].
    pub async fn start(upstream: SocketAddr, mode: Mode) -> Proxy {
        Proxy::start_with(upstream, mode, Options::default()).await
    }

    /// Starts a proxy in front of `upstream`, listening on 127.0.0.1 port 0.
    ///
    /// Panics unless `upstream` is a loopback address: a test fixture has no business
    /// connecting anywhere else.
    pub async fn start_with(upstream: SocketAddr, mode: Mode, options: Options) -> Proxy {
        assert!(
            upstream.ip().is_loopback(),
            "the test proxy only forwards to loopback, not {upstream}"
        );
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let connections = Registry::default();
        let registry = connections.clone();
        let listener = tokio::spawn(async move {
            let mut next_id = 0u64;
            loop {
                let client = match listener.accept().await {
                    Ok((client, _)) => client,
                    // Out of descriptors or similar: back off instead of spinning.
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = client.set_nodelay(true);
                let id = next_id;
                next_id += 1;
                // Spawn while holding the lock: the task's `Registration` removes the entry
                // when the task ends, and must not be able to do so before it is inserted.
                let mut open = lock(&registry);
                let registration = Registration {
                    id,
                    registry: registry.clone(),
                };
                let task = tokio::spawn(async move {
                    let _registration = registration;
                    connection(client, upstream, mode, options).await;
                });
                open.insert(id, task.abort_handle());
            }
        });
        Proxy {
            addr,
            listener,
            connections,
        }
    }

    /// Drops every open client connection (and its upstream connection) now, as a proxy
    /// restart or a network change would. The listener keeps accepting new connections.
    pub fn cut_all(&self) {
        // Take the handles out before aborting so no task's `Registration` waits on the lock.
        let open = std::mem::take(&mut *lock(&self.connections));
        for task in open.into_values() {
            task.abort();
        }
    }

    /// How many client connections are currently open.
    pub fn connections(&self) -> usize {
        lock(&self.connections).len()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.listener.abort();
        self.cut_all();
    }
}

/// Removes a connection from the registry when its task ends, however it ends (aborted tasks
/// drop their future, and with it this).
struct Registration {
    id: u64,
    registry: Registry,
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.registry).remove(&self.id);
    }
}

/// When a byte last moved on a connection, as milliseconds since the connection began.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Returns once nothing has moved for `idle`.
async fn idle_watchdog(activity: &Activity, idle: Duration) {
    loop {
        let deadline = activity.last() + idle;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

/// Serves one client connection; both connections close when this returns.
async fn connection(client: TcpStream, upstream: SocketAddr, mode: Mode, options: Options) {
    let activity = Arc::new(Activity::new());
    let serve = serve(client, upstream, mode, options, activity.clone());
    match mode {
        // Every byte in either direction is read by a `Reader`, which touches `activity`, so
        // watching reads is watching all traffic.
        Mode::IdleTimeout(idle) => {
            tokio::select! {
                _ = serve => {}
                () = idle_watchdog(&activity, idle) => {}
            }
        }
        _ => {
            let _ = serve.await;
        }
    }
}

/// A read half with a buffer, so heads can be parsed without losing the bytes after them.
struct Reader<R> {
    io: R,
    buf: Vec<u8>,
    activity: Arc<Activity>,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    fn new(io: R, activity: Arc<Activity>) -> Self {
        Reader {
            io,
            buf: Vec::new(),
            activity,
        }
    }

    /// Reads once more into the buffer; 0 means end of stream. Cancel-safe: a read that
    /// completes is appended in the same poll.
    async fn fill(&mut self) -> io::Result<usize> {
        let mut tmp = [0u8; READ_CHUNK];
        let n = self.io.read(&mut tmp).await?;
        if n > 0 {
            self.buf.extend_from_slice(&tmp[..n]);
            self.activity.touch();
        }
        Ok(n)
    }

    /// The next head (up to and including its blank line), or `None` at a clean end of
    /// stream before any byte of it.
    async fn read_head(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            // Empty lines before a request line are to be ignored (RFC 9112 section 2.2).
            let blank = self
                .buf
                .iter()
                .take_while(|b| **b == b'\r' || **b == b'\n')
                .count();
            self.buf.drain(..blank);
            if let Some(end) = head_end(&self.buf) {
                return Ok(Some(self.buf.drain(..end).collect()));
            }
            if self.buf.len() > MAX_HEAD {
                return Err(invalid("head too large"));
            }
            if self.fill().await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(io::ErrorKind::UnexpectedEof.into())
                };
            }
        }
    }

    /// The next line, with its line ending.
    async fn read_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                return Ok(self.buf.drain(..=i).collect());
            }
            if self.buf.len() > MAX_LINE {
                return Err(invalid("line too long"));
            }
            if self.fill().await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Up to `max` bytes: what is buffered, else what one read brings. Empty at end of stream.
    async fn take_some(&mut self, max: usize) -> io::Result<Vec<u8>> {
        if self.buf.is_empty() && self.fill().await? == 0 {
            return Ok(Vec::new());
        }
        let n = self.buf.len().min(max);
        Ok(self.buf.drain(..n).collect())
    }
}

/// Where relayed bytes go: straight to a socket, or held until the message is complete.
enum Out<'a, W> {
    Direct(&'a mut W),
    Hold { held: Vec<u8>, cap: usize },
}

impl<W: AsyncWrite + Unpin> Out<'_, W> {
    async fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Out::Direct(w) => w.write_all(bytes).await,
            Out::Hold { held, cap } => {
                if held.len() + bytes.len() > *cap {
                    return Err(io::Error::other("held response exceeds the buffer cap"));
                }
                held.extend_from_slice(bytes);
                Ok(())
            }
        }
    }
}

/// How a message body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// Close-delimited: the body is everything until the upstream closes.
    UntilEof,
}

/// Relays one body from `from` to `to` exactly as framed, bytes untouched.
async fn copy_body<R, W>(
    from: &mut Reader<R>,
    to: &mut Out<'_, W>,
    framing: Framing,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    match framing {
        Framing::Empty => Ok(()),
        Framing::Length(n) => copy_exact(from, to, n).await,
        Framing::UntilEof => loop {
            let bytes = from.take_some(READ_CHUNK).await?;
            if bytes.is_empty() {
                return Ok(());
            }
            to.put(&bytes).await?;
        },
        Framing::Chunked => loop {
            let line = from.read_line().await?;
            to.put(&line).await?;
            let size = chunk_size(&line)?;
            if size == 0 {
                // Trailers, if any, then the blank line that ends the body.
                for _ in 0..=MAX_TRAILERS {
                    let trailer = from.read_line().await?;
                    to.put(&trailer).await?;
                    if is_blank(&trailer) {
                        return Ok(());
                    }
                }
                return Err(invalid("too many trailers"));
            }
            copy_exact(from, to, size).await?;
            let end = from.read_line().await?;
            if !is_blank(&end) {
                return Err(invalid("chunk data longer than its size"));
            }
            to.put(&end).await?;
        },
    }
}

async fn copy_exact<R, W>(
    from: &mut Reader<R>,
    to: &mut Out<'_, W>,
    mut left: u64,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    while left > 0 {
        let max = usize::try_from(left).unwrap_or(usize::MAX).min(READ_CHUNK);
        let bytes = from.take_some(max).await?;
        if bytes.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        to.put(&bytes).await?;
        left -= bytes.len() as u64;
    }
    Ok(())
}

/// Copies everything still to come from `from` to `to`, then half-closes `to`.
async fn copy_rest<R, W>(from: &mut Reader<R>, to: &mut W) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        let bytes = from.take_some(READ_CHUNK).await?;
        if bytes.is_empty() {
            return to.shutdown().await;
        }
        to.write_all(&bytes).await?;
    }
}

/// Reads ahead on the client while a response is relayed, only to notice when the client
/// goes away (as real proxies do, closing the upstream side too). Returns at end of stream;
/// never returns while the client stays, and stops reading once `MAX_PIPELINED` bytes of a
/// next request are buffered.
async fn client_gone<R: AsyncRead + Unpin>(client: &mut Reader<R>) -> io::Result<()> {
    loop {
        if client.buf.len() >= MAX_PIPELINED {
            return std::future::pending().await;
        }
        if client.fill().await? == 0 {
            return Ok(());
        }
    }
}

/// What became of one relayed response.
enum Outcome {
    /// The response was relayed; `close` says the connection must not be reused.
    Done { close: bool },
    /// The upstream switched protocols; its `101` head has been relayed.
    Upgraded,
}

/// Serves the requests of one client connection.
async fn serve(
    client: TcpStream,
    upstream: SocketAddr,
    mode: Mode,
    options: Options,
    activity: Arc<Activity>,
) -> io::Result<()> {
    let (cr, mut cw) = client.into_split();
    let mut cr = Reader::new(cr, activity.clone());
    let mut up: Option<(Reader<OwnedReadHalf>, OwnedWriteHalf)> = None;
    loop {
        let Some(head_bytes) = cr.read_head().await? else {
            return Ok(());
        };
        let Ok(req) = Head::parse(&head_bytes) else {
            return refuse(&mut cr, &mut cw, "400 Bad Request", "bad request\n").await;
        };
        let Ok(req_framing) = req.request_framing() else {
            return refuse(&mut cr, &mut cw, "400 Bad Request", "bad request framing\n").await;
        };
        let websocket = req.has_token("upgrade", "websocket");
        if websocket && matches!(mode, Mode::BlockUpgrade | Mode::Buffer) {
            return refuse(
                &mut cr,
                &mut cw,
                "403 Forbidden",
                "websocket blocked by proxy\n",
            )
            .await;
        }
        if up.is_none() {
            let stream =
                match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream)).await {
                    Ok(Ok(stream)) => stream,
                    _ => {
                        return refuse(
                            &mut cr,
                            &mut cw,
                            "502 Bad Gateway",
                            "upstream unreachable\n",
                        )
                        .await;
                    }
                };
            let _ = stream.set_nodelay(true);
            let (ur, uw) = stream.into_split();
            up = Some((Reader::new(ur, activity.clone()), uw));
        }
        let Some((ur, uw)) = up.as_mut() else {
            unreachable!("connected above");
        };
        uw.write_all(&head_bytes).await?;

        // The request body is forwarded while the response is already being read, so a
        // `100 Continue` can reach a client that waits for it before sending the body. Once
        // the body is through, the client side is only watched for going away.
        let mut body_done = false;
        let exchange = {
            let feed = async {
                copy_body(&mut cr, &mut Out::Direct(uw), req_framing).await?;
                body_done = true;
                client_gone(&mut cr).await
            };
            let relay = relay_response(ur, &mut cw, mode, &req, options.buffer_cap);
            tokio::select! {
                outcome = relay => Ok(outcome?),
                gone = feed => Err(gone),
            }
        };
        let outcome = match exchange {
            Ok(outcome) => outcome,
            // The client went away (or failed) mid-exchange: drop both connections.
            Err(gone) => return gone,
        };
        match outcome {
            Outcome::Upgraded if websocket && mode == Mode::KillWebSocket => {
                // The client believes it is connected; forward nothing, then drop both sides.
                tokio::time::sleep(options.kill_after).await;
                return Ok(());
            }
            Outcome::Upgraded => return pipe(&mut cr, &mut cw, ur, uw).await,
            Outcome::Done { close } => {
                // A body the upstream answered before reading leaves the client connection
                // out of step, so it cannot carry another request either.
                if close || !body_done {
                    return cw.shutdown().await;
                }
            }
        }
    }
}

/// Relays one response (after any interim `1xx` ones) from the upstream to the client.
async fn relay_response<R, W>(
    up: &mut Reader<R>,
    client: &mut W,
    mode: Mode,
    req: &Head,
    buffer_cap: usize,
) -> io::Result<Outcome>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        let head_bytes = up.read_head().await?.ok_or(io::ErrorKind::UnexpectedEof)?;
        let resp = Head::parse(&head_bytes)?;
        let status = resp.status()?;
        if status == 101 {
            client.write_all(&head_bytes).await?;
            return Ok(Outcome::Upgraded);
        }
        if (100..200).contains(&status) {
            // Interim responses (`100 Continue`, `103 Early Hints`) are passed on at once,
            // even when buffering: they carry no body and the client may be waiting on them.
            client.write_all(&head_bytes).await?;
            continue;
        }
        let framing = resp.response_framing(&req.method, status);
        let close = framing == Framing::UntilEof || req.wants_close() || resp.wants_close();
        if mode == Mode::Buffer {
            let mut out: Out<'_, W> = Out::Hold {
                held: head_bytes,
                cap: buffer_cap,
            };
            copy_body(up, &mut out, framing).await?;
            if let Out::Hold { held, .. } = out {
                client.write_all(&held).await?;
            }
        } else {
            client.write_all(&head_bytes).await?;
            copy_body(up, &mut Out::Direct(client), framing).await?;
        }
        return Ok(Outcome::Done { close });
    }
}

/// After a `101`, moves bytes both ways (what each side sent early first) until both ends
/// have closed, passing half-closes on.
async fn pipe(
    cr: &mut Reader<OwnedReadHalf>,
    cw: &mut OwnedWriteHalf,
    ur: &mut Reader<OwnedReadHalf>,
    uw: &mut OwnedWriteHalf,
) -> io::Result<()> {
    tokio::try_join!(copy_rest(cr, uw), copy_rest(ur, cw))?;
    Ok(())
}

/// Answers with `status` and a short text body, then closes. Before closing it waits a
/// little for the client to close first, reading what it still sends: closing a socket with
/// unread bytes makes the kernel send a reset, which can destroy the response in flight.
async fn refuse(
    cr: &mut Reader<OwnedReadHalf>,
    cw: &mut OwnedWriteHalf,
    status: &str,
    body: &str,
) -> io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    cw.write_all(response.as_bytes()).await?;
    cw.shutdown().await?;
    let _ = tokio::time::timeout(LINGER, async {
        let mut drained = 0;
        while drained < MAX_PIPELINED {
            match cr.take_some(READ_CHUNK).await {
                Ok(bytes) if !bytes.is_empty() => drained += bytes.len(),
                _ => break,
            }
        }
    })
    .await;
    Ok(())
}

/// A parsed request or response head. Only used to decide; the original bytes are what is
/// forwarded.
struct Head {
    /// The three parts of the start line: method, target, version for a request; version,
    /// status, reason for a response.
    method: String,
    second: String,
    version: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn parse(bytes: &[u8]) -> io::Result<Head> {
        let text = std::str::from_utf8(bytes).map_err(|_| invalid("head is not UTF-8"))?;
        let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        let start = lines.next().unwrap_or_default();
        let mut parts = start.splitn(3, ' ');
        let (Some(first), Some(second), third) = (parts.next(), parts.next(), parts.next()) else {
            return Err(invalid("bad start line"));
        };
        // A request line's version is its third part; a status line's is its first.
        let (method, version) = if first.starts_with("HTTP/") {
            (String::new(), first.to_owned())
        } else {
            (first.to_owned(), third.unwrap_or_default().to_owned())
        };
        let mut headers = Vec::new();
        for line in lines.filter(|l| !l.is_empty()) {
            if line.starts_with([' ', '\t']) {
                return Err(invalid("obsolete line folding"));
            }
            let (name, value) = line.split_once(':').ok_or_else(|| invalid("bad header"))?;
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
        Ok(Head {
            method,
            second: second.to_owned(),
            version,
            headers,
        })
    }

    fn status(&self) -> io::Result<u16> {
        self.second.parse().map_err(|_| invalid("bad status"))
    }

    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The comma-separated tokens of every `name` header, trimmed.
    fn tokens<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.values(name).flat_map(|v| v.split(',')).map(str::trim)
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.tokens(name).any(|t| t.eq_ignore_ascii_case(token))
    }

    fn wants_close(&self) -> bool {
        self.has_token("connection", "close")
            || (self.version == "HTTP/1.0" && !self.has_token("connection", "keep-alive"))
    }

    fn transfer_chunked(&self) -> Option<bool> {
        let last = self.tokens("transfer-encoding").last()?;
        Some(last.eq_ignore_ascii_case("chunked"))
    }

    fn content_length(&self) -> io::Result<Option<u64>> {
        let mut length = None;
        for value in self.tokens("content-length") {
            let n: u64 = value.parse().map_err(|_| invalid("bad content-length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(invalid("conflicting content-lengths"));
            }
            length = Some(n);
        }
        Ok(length)
    }

    /// RFC 9112 section 6.3, for requests.
    fn request_framing(&self) -> io::Result<Framing> {
        match self.transfer_chunked() {
            Some(true) => Ok(Framing::Chunked),
            Some(false) => Err(invalid("request body of unknown length")),
            None => Ok(match self.content_length()? {
                Some(n) => Framing::Length(n),
                None => Framing::Empty,
            }),
        }
    }

    /// RFC 9112 section 6.3, for responses. A bad `Content-Length` falls back to reading
    /// until the upstream closes, which is always safe for a proxy that then closes too.
    fn response_framing(&self, request_method: &str, status: u16) -> Framing {
        if request_method.eq_ignore_ascii_case("HEAD")
            || (100..200).contains(&status)
            || status == 204
            || status == 304
        {
            return Framing::Empty;
        }
        match self.transfer_chunked() {
            Some(true) => Framing::Chunked,
            Some(false) => Framing::UntilEof,
            None => match self.content_length() {
                Ok(Some(n)) => Framing::Length(n),
                _ => Framing::UntilEof,
            },
        }
    }
}

/// The index just past the blank line ending a head, if the buffer holds one.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.iter().enumerate().find_map(|(i, b)| {
        if *b != b'\n' {
            return None;
        }
        match &buf[i + 1..] {
            [b'\n', ..] => Some(i + 2),
            [b'\r', b'\n', ..] => Some(i + 3),
            _ => None,
        }
    })
}

fn is_blank(line: &[u8]) -> bool {
    line == b"\r\n" || line == b"\n"
}

/// The size from a chunk-size line (`1a;ext=x\r\n`).
fn chunk_size(line: &[u8]) -> io::Result<u64> {
    let text = std::str::from_utf8(line).map_err(|_| invalid("bad chunk size"))?;
    let hex = text.split(';').next().unwrap_or_default().trim();
    u64::from_str_radix(hex, 16).map_err(|_| invalid("bad chunk size"))
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_head_ends() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody"), Some(27));
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: x\n\nbody"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }

    #[test]
    fn frames_messages() {
        let req = Head::parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
            .expect("parse");
        assert_eq!(req.request_framing().expect("framing"), Framing::Chunked);
        let req = Head::parse(b"POST / HTTP/1.1\r\ncontent-length: 5, 5\r\n\r\n").expect("parse");
        assert_eq!(req.request_framing().expect("framing"), Framing::Length(5));
        let req = Head::parse(b"POST / HTTP/1.1\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n")
            .expect("parse");
        assert!(req.request_framing().is_err());
        let resp = Head::parse(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n").expect("parse");
        assert_eq!(resp.response_framing("HEAD", 200), Framing::Empty);
        assert_eq!(resp.response_framing("GET", 304), Framing::Empty);
        assert_eq!(resp.response_framing("GET", 200), Framing::Length(3));
        let resp = Head::parse(b"HTTP/1.0 200 OK\r\n\r\n").expect("parse");
        assert_eq!(resp.response_framing("GET", 200), Framing::UntilEof);
        assert!(resp.wants_close());
    }

    #[test]
    fn parses_chunk_sizes() {
        assert_eq!(chunk_size(b"1a;name=value\r\n").expect("size"), 26);
        assert_eq!(chunk_size(b"0\r\n").expect("size"), 0);
        assert!(chunk_size(b"zz\r\n").is_err());
    }
}
