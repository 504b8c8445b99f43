//! The SockJS HTTP transports over real sockets on 127.0.0.1: xhr-polling, xhr-streaming,
//! eventsource, htmlfile and jsonp-polling, their sends, sessions, heartbeats, CORS, caching,
//! the `JSESSIONID` cookie, wrong methods and paths, and HTTP/1.0 and keep-alive framing.
//!
//! Responses are read one HTTP chunk at a time (the protocol suite does, and compares each
//! chunk), and the exact bytes are pinned with insta as transcripts: the status line, the
//! headers that matter, then every chunk in order. In the transcripts `⏎` stands for a
//! newline, `␍` for a carriage return, `‹U+XXXX›` for any other control or non-ASCII
//! character and `‹N × c›` for a run of N identical characters.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use tidings_tests::Server;
use tidings_tests::http::{Connection, Framing, Request, Response};
use tidings_tests::reference::echo;

// ---------------------------------------------------------------------------------------------
// Services and helpers
// ---------------------------------------------------------------------------------------------

/// The reference services of the protocol suite: in this process, or those at
/// `TIDINGS_TEST_SOCKJS_AT` ([`Server::sockjs_reference`]).
async fn services() -> Server {
    Server::sockjs_reference().await
}

/// One service built by `builder`, mounted at `base`.
async fn service(base: &str, builder: tidings::Builder) -> Server {
    Server::start(Router::new().nest_service(base, builder.build().router())).await
}

/// A fresh random session id.
fn session() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:016x}", RandomState::new().hash_one(n))
}

/// `<base>/000/<id>/<transport>`.
fn url(base: &str, id: &str, transport: &str) -> String {
    format!("{base}/000/{id}/{transport}")
}

async fn post(server: &Server, path: &str, body: &str) -> Response {
    Request::post(path).body(body).send(server.addr).await
}

async fn get(server: &Server, path: &str) -> Response {
    Request::get(path).send(server.addr).await
}

/// `POST …/xhr` and its whole body as text, after checking the status is 200.
async fn xhr(server: &Server, base: &str, id: &str) -> String {
    let mut response = post(server, &url(base, id, "xhr"), "").await;
    assert_eq!(response.status(), 200, "{}", response.status_line);
    response.text().await
}

/// `POST …/xhr_send` with `body`, checking it is accepted (204).
async fn xhr_send(server: &Server, base: &str, id: &str, body: &str) {
    let mut response = post(server, &url(base, id, "xhr_send"), body).await;
    let text = response.text().await;
    assert_eq!(response.status(), 204, "{} {text:?}", response.status_line);
}

/// The headers pinned in transcripts, in this order when present.
const HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "cache-control",
    "expires",
    "last-modified",
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-max-age",
    "vary",
    "set-cookie",
    "x-content-type-options",
    "x-accel-buffering",
    "allow",
];

/// Bytes made readable yet unambiguous: see the module docs.
fn show(bytes: &[u8]) -> String {
    let text = std::str::from_utf8(bytes).expect("UTF-8 body");
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let run = chars[i..].iter().take_while(|&&d| d == c).count();
        if run >= 16 {
            let name = match c {
                ' ' => "space".to_owned(),
                c if c.is_ascii_graphic() => c.to_string(),
                c => format!("U+{:04X}", u32::from(c)),
            };
            out.push_str(&format!("‹{run} × {name}›"));
            i += run;
            continue;
        }
        match c {
            '\n' => out.push_str("⏎\n"),
            '\r' => out.push('␍'),
            c if c.is_ascii_graphic() || c == ' ' => out.push(c),
            c => out.push_str(&format!("‹U+{:04X}›", u32::from(c))),
        }
        i += 1;
    }
    out
}

/// A readable record of requests and their responses, for one snapshot per test.
#[derive(Default)]
struct Transcript(String);

impl Transcript {
    /// Starts the record of a response to `label` (the request, without the session id).
    fn head(&mut self, label: &str, response: &Response) {
        if !self.0.is_empty() {
            self.0.push('\n');
        }
        self.0.push_str(&format!("=== {label}\n"));
        self.0.push_str(&response.pin(HEADERS));
    }

    /// Reads and records the next chunk, which must come.
    async fn chunk(&mut self, response: &mut Response) -> Vec<u8> {
        let chunk = response.chunk().await;
        self.record(response.framing(), &chunk);
        chunk
    }

    fn record(&mut self, framing: Framing, chunk: &[u8]) {
        let kind = match framing {
            Framing::Chunked => "chunk",
            Framing::Length(_) => "body",
            Framing::UntilClose => "read",
        };
        self.0
            .push_str(&format!("── {kind} ({} bytes)\n", chunk.len()));
        self.0.push_str(&show(chunk));
        if !self.0.ends_with('\n') {
            self.0.push('\n');
        }
    }

    /// Checks the body ends now and records it.
    async fn end(&mut self, response: &mut Response) {
        response.assert_ended().await;
        self.0.push_str("── end\n");
    }

    /// Records a whole response: head, every chunk, end. Returns the body.
    async fn whole(&mut self, label: &str, response: &mut Response) -> Vec<u8> {
        self.head(label, response);
        let mut body = Vec::new();
        while let Some(chunk) = response.next_chunk(tidings_tests::http::TIMEOUT).await {
            self.record(response.framing(), &chunk);
            body.extend_from_slice(&chunk);
        }
        self.0.push_str("── end\n");
        body
    }

    fn text(&self) -> &str {
        &self.0
    }
}

/// Asserts `got` is `expected`, showing both readably when not.
#[track_caller]
fn same(got: impl AsRef<[u8]>, expected: impl AsRef<[u8]>) {
    let (got, expected) = (got.as_ref(), expected.as_ref());
    assert!(
        got == expected,
        "bytes differ\n     got: {}\nexpected: {}",
        show(got),
        show(expected)
    );
}

/// The 2048 `h` and newline that open every xhr_streaming response.
fn xhr_prelude() -> Vec<u8> {
    let mut prelude = vec![b'h'; 2048];
    prelude.push(b'\n');
    prelude
}

/// The htmlfile page head for the callback `cb`, before its padding (notes §5.4).
const HTMLFILE_HEAD_CB: &str = r#"<!doctype html>
<html><head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
</head><body><h2>Don't panic!</h2>
  <script>
    document.domain = document.domain;
    var c = parent.cb;
    c.start();
    function p(d) {c.message(d);};
    window.onload = function() {c.stop();};
  </script>"#;

/// Checks the first htmlfile chunk: the head, spaces, `\r\n\r\n`, 1029 bytes in all.
fn assert_htmlfile_head(chunk: &[u8]) {
    let text = std::str::from_utf8(chunk).expect("UTF-8");
    assert_eq!(chunk.len(), 1029, "{text:?}");
    let padding = text
        .strip_prefix(HTMLFILE_HEAD_CB)
        .unwrap_or_else(|| panic!("head differs: {text:?}"))
        .strip_suffix("\r\n\r\n")
        .expect("ends with CRLF CRLF");
    assert!(padding.bytes().all(|b| b == b' '), "{padding:?}");
}

// ---------------------------------------------------------------------------------------------
// xhr-polling
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn xhr_polling_opens_then_delivers() {
    let server = services().await;
    let id = session();
    let mut t = Transcript::default();

    let mut open = post(&server, &url("/echo", &id, "xhr"), "").await;
    same(t.whole("POST xhr", &mut open).await, b"o\n");

    let mut send = post(&server, &url("/echo", &id, "xhr_send"), r#"["a","b"]"#).await;
    same(t.whole(r#"POST xhr_send ["a","b"]"#, &mut send).await, b"");
    assert_eq!(send.status(), 204);
    assert_eq!(
        send.header("content-type"),
        Some("text/plain; charset=UTF-8")
    );

    let mut poll = post(&server, &url("/echo", &id, "xhr"), "").await;
    same(t.whole("POST xhr", &mut poll).await, b"a[\"a\",\"b\"]\n");
    insta::assert_snapshot!(t.text());
}

#[tokio::test]
async fn xhr_polling_batches_what_was_queued() {
    let server = services().await;
    let id = session();
    assert_eq!(xhr(&server, "/echo", &id).await, "o\n");
    for _ in 0..8 {
        xhr_send(&server, "/echo", &id, r#"["a"]"#).await;
    }
    assert_eq!(
        xhr(&server, "/echo", &id).await,
        "a[\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\"]\n"
    );
}

/// What the suite's `test_xhr_server_encodes` checks: every character SockJS escapes above
/// U+00FF comes back as a lowercase `\uXXXX`; others (é, a non-BMP emoji) come back raw.
#[tokio::test]
async fn xhr_polling_escapes_as_sockjs_does() {
    let server = services().await;
    let id = session();
    assert_eq!(xhr(&server, "/echo", &id).await, "o\n");
    let escaped: Vec<char> = [
        0x200c..=0x200f,
        0x2028..=0x202f,
        0x2060..=0x206f,
        0xfff0..=0xffff,
    ]
    .into_iter()
    .flatten()
    .filter_map(char::from_u32)
    .collect();
    let mut text: String = escaped.iter().collect();
    text.push_str("é😀x");
    let body = serde_json::to_string(&[&text]).expect("json");
    xhr_send(&server, "/echo", &id, &body).await;

    let mut expected = String::from("a[\"");
    for c in escaped {
        expected.push_str(&format!("\\u{:04x}", u32::from(c)));
    }
    expected.push_str("é😀x\"]\n");
    let got = xhr(&server, "/echo", &id).await;
    assert_eq!(got, expected);
    insta::assert_snapshot!(show(got.as_bytes()));
}

// ---------------------------------------------------------------------------------------------
// xhr_send errors
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn xhr_send_broken_json() {
    let server = services().await;
    let id = session();
    assert_eq!(xhr(&server, "/echo", &id).await, "o\n");
    let mut t = Transcript::default();
    let mut response = post(&server, &url("/echo", &id, "xhr_send"), r#"["x"#).await;
    let body = t.whole(r#"POST xhr_send ["x"#, &mut response).await;
    assert_eq!(response.status(), 500);
    assert!(
        String::from_utf8_lossy(&body).contains("Broken JSON encoding."),
        "{body:?}"
    );
    insta::assert_snapshot!(t.text());
}

#[tokio::test]
async fn xhr_send_payload_expected() {
    let server = services().await;
    let id = session();
    assert_eq!(xhr(&server, "/echo", &id).await, "o\n");
    for payload in ["", r#""x""#, "{}", "1", "[1]"] {
        let mut response = post(&server, &url("/echo", &id, "xhr_send"), payload).await;
        let mut t = Transcript::default();
        let body = t.whole("POST xhr_send", &mut response).await;
        assert_eq!(response.status(), 500, "{payload:?}");
        assert!(
            String::from_utf8_lossy(&body).contains("Payload expected."),
            "{payload:?}: {body:?}"
        );
        insta::assert_snapshot!("xhr_send_payload_expected", t.text());
    }
    // The session is unharmed.
    xhr_send(&server, "/echo", &id, r#"["still"]"#).await;
    assert_eq!(xhr(&server, "/echo", &id).await, "a[\"still\"]\n");
}

#[tokio::test]
async fn xhr_send_to_unknown_session_is_404() {
    let server = services().await;
    let mut t = Transcript::default();
    let mut response = post(&server, &url("/echo", &session(), "xhr_send"), r#"["x"]"#).await;
    t.whole(r#"POST xhr_send ["x"] (unknown session)"#, &mut response)
        .await;
    assert_eq!(response.status(), 404);
    insta::assert_snapshot!(t.text());
}

#[tokio::test]
async fn xhr_send_accepts_any_content_type() {
    let server = services().await;
    let id = session();
    assert_eq!(xhr(&server, "/echo", &id).await, "o\n");
    let types = [
        None,
        Some(""),
        Some("T"),
        Some("text/plain"),
        Some("text/plain; charset=utf-8"),
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("application/xml"),
        Some("application/xml; charset=utf-8"),
        Some("text/xml"),
        Some("text/xml; charset=utf-8"),
    ];
    for (i, content_type) in types.iter().enumerate() {
        let mut request = Request::post(&url("/echo", &id, "xhr_send")).body(format!("[\"{i}\"]"));
        if let Some(value) = content_type {
            request = request.header("Content-Type", value);
        }
        let mut response = request.send(server.addr).await;
        assert_eq!(response.text().await, "", "{content_type:?}");
        assert_eq!(response.status(), 204, "{content_type:?}");
        assert_eq!(
            xhr(&server, "/echo", &id).await,
            format!("a[\"{i}\"]\n"),
            "{content_type:?}"
        );
    }
}

#[tokio::test]
async fn xhr_send_oversized_message_is_413() {
    let server = service("/small", echo().max_message_size(16)).await;
    let id = session();
    assert_eq!(xhr(&server, "/small", &id).await, "o\n");
    let fits = format!("[\"{}\"]", "x".repeat(16));
    xhr_send(&server, "/small", &id, &fits).await;
    assert_eq!(
        xhr(&server, "/small", &id).await,
        format!("a[\"{}\"]\n", "x".repeat(16))
    );
    let over = format!("[\"{}\"]", "x".repeat(17));
    let mut response = post(&server, &url("/small", &id, "xhr_send"), &over).await;
    let mut t = Transcript::default();
    t.whole("POST xhr_send (17-byte message, limit 16)", &mut response)
        .await;
    assert_eq!(response.status(), 413);
    insta::assert_snapshot!(t.text());
}

// ---------------------------------------------------------------------------------------------
// xhr-streaming
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn xhr_streaming_prelude_open_then_one_chunk_per_frame() {
    let server = services().await;
    let id = session();
    let mut t = Transcript::default();
    let mut stream = post(&server, &url("/echo", &id, "xhr_streaming"), "").await;
    t.head("POST xhr_streaming", &stream);
    assert_eq!(stream.framing(), Framing::Chunked);
    same(t.chunk(&mut stream).await, xhr_prelude());
    same(t.chunk(&mut stream).await, b"o\n");
    xhr_send(&server, "/echo", &id, r#"["x"]"#).await;
    same(t.chunk(&mut stream).await, b"a[\"x\"]\n");
    insta::assert_snapshot!(t.text());
    xhr_send(&server, "/echo", &id, r#"["y","z"]"#).await;
    // One send of two messages: both echoes arrive, in one frame or two, each frame one whole
    // chunk.
    let mut got = Vec::new();
    while got.len() < 2 {
        let chunk = stream.chunk().await;
        let text = std::str::from_utf8(&chunk).expect("UTF-8");
        let body = text
            .strip_prefix('a')
            .and_then(|t| t.strip_suffix('\n'))
            .unwrap_or_else(|| panic!("not one a-frame: {text:?}"));
        let items: Vec<String> = serde_json::from_str(body).expect("JSON array");
        got.extend(items);
    }
    assert_eq!(got, ["y", "z"]);
}

/// Notes §5.2: on /echo (limit 4096) frames of 134 bytes end the response right after the 31st.
#[tokio::test]
async fn xhr_streaming_response_limit() {
    let server = services().await;
    let id = session();
    let mut t = Transcript::default();
    let mut stream = post(&server, &url("/echo", &id, "xhr_streaming"), "").await;
    t.head("POST xhr_streaming", &stream);
    same(t.chunk(&mut stream).await, xhr_prelude());
    same(t.chunk(&mut stream).await, b"o\n");
    let message = "x".repeat(128);
    let frame = format!("a[\"{message}\"]\n");
    assert_eq!(frame.len(), 134);
    for _ in 0..31 {
        xhr_send(&server, "/echo", &id, &format!("[\"{message}\"]")).await;
        same(t.chunk(&mut stream).await, frame.as_bytes());
    }
    t.end(&mut stream).await;
    insta::assert_snapshot!(t.text());

    // The session lives on: the next streaming request picks it up, without `o`.
    let mut next = post(&server, &url("/echo", &id, "xhr_streaming"), "").await;
    same(next.chunk().await, xhr_prelude());
    xhr_send(&server, "/echo", &id, r#"["again"]"#).await;
    same(next.chunk().await, b"a[\"again\"]\n");
}

// ---------------------------------------------------------------------------------------------
// eventsource
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn eventsource_frames() {
    let server = services().await;
    let id = session();
    let mut t = Transcript::default();
    let mut stream = get(&server, &url("/echo", &id, "eventsource")).await;
    t.head("GET eventsource", &stream);
    assert_eq!(stream.header("content-type"), Some("text/event-stream"));
    same(t.chunk(&mut stream).await, b"\r\n");
    same(t.chunk(&mut stream).await, b"data: o\r\n\r\n");
    xhr_send(&server, "/echo", &id, r#"["x"]"#).await;
    same(t.chunk(&mut stream).await, b"data: a[\"x\"]\r\n\r\n");
    insta::assert_snapshot!(t.text());
}

#[tokio::test]
async fn eventsource_response_limit() {
    let server = services().await;
    let id = session();
    let mut stream = get(&server, &url("/echo", &id, "eventsource")).await;
    same(stream.chunk().await, b"\r\n");
    same(stream.chunk().await, b"data: o\r\n\r\n");
    let message = "x".repeat(4096);
    xhr_send(&server, "/echo", &id, &format!("[\"{message}\"]")).await;
    same(
        stream.chunk().await,
        format!("data: a[\"{message}\"]\r\n\r\n").as_bytes(),
    );
    stream.assert_ended().await;
}

// ---------------------------------------------------------------------------------------------
// htmlfile
// ---------------------------------------------------------------------------------------------

async fn callback_errors(transport: &str) {
    let server = services().await;
    let mut response = get(&server, &url("/echo", &session(), transport)).await;
    let mut t = Transcript::default();
    let body = t.whole("GET <transport>", &mut response).await;
    assert_eq!(response.status(), 500);
    assert!(
        String::from_utf8_lossy(&body).contains("\"callback\" parameter required"),
        "{body:?}"
    );
    insta::assert_snapshot!("callback_required", t.text());
    for c in ["%20", "*", "abc(", "abc%28"] {
        let mut response = get(
            &server,
            &format!("{}?c={c}", url("/echo", &session(), transport)),
        )
        .await;
        let mut t = Transcript::default();
        let body = t.whole("GET <transport>?c=<bad>", &mut response).await;
        assert_eq!(response.status(), 500, "{c}");
        assert!(
            String::from_utf8_lossy(&body).contains("invalid \"callback\" parameter"),
            "{c}: {body:?}"
        );
        insta::assert_snapshot!("callback_invalid", t.text());
    }
}

#[tokio::test]
async fn htmlfile_callback_errors() {
    callback_errors("htmlfile").await;
}

#[tokio::test]
async fn htmlfile_frames() {
    let server = services().await;
    let id = session();
    let mut t = Transcript::default();
    let mut stream = get(&server, &format!("{}?c=cb", url("/echo", &id, "htmlfile"))).await;
    t.head("GET htmlfile?c=cb", &stream);
    assert_htmlfile_head(&t.chunk(&mut stream).await);
    same(
        t.chunk(&mut stream).await,
        b"<script>\np(\"o\");\n</script>\r\n",
    );
    xhr_send(&server, "/echo", &id, r#"["x"]"#).await;
    same(
        t.chunk(&mut stream).await,
        b"<script>\np(\"a[\\\"x\\\"]\");\n</script>\r\n",
    );
    insta::assert_snapshot!(t.text());
}

// ---------------------------------------------------------------------------------------------
// jsonp-polling
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn jsonp_callback_errors() {
    callback_errors("jsonp").await;
}

#[tokio::test]
async fn jsonp_polling_and_sends() {
    let server = services().await;
    let id = session();
    let mut t = Transcript::default();
    let poll = format!("{}?c=cb", url("/echo", &id, "jsonp"));
    let send = url("/echo", &id, "jsonp_send");

    let mut open = get(&server, &poll).await;
    same(
        t.whole("GET jsonp?c=cb", &mut open).await,
        b"/**/cb(\"o\");\r\n",
    );
    assert_eq!(open.header("x-content-type-options"), Some("nosniff"));

    let mut form = Request::post(&send)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("d=%5B%22x%22%5D")
        .send(server.addr)
        .await;
    same(
        t.whole("POST jsonp_send (form d=[\"x\"])", &mut form).await,
        b"ok",
    );
    assert_eq!(form.status(), 200);

    let mut message = get(&server, &poll).await;
    same(
        t.whole("GET jsonp?c=cb", &mut message).await,
        b"/**/cb(\"a[\\\"x\\\"]\");\r\n",
    );

    let mut raw = Request::post(&send)
        .header("Content-Type", "text/plain")
        .body(r#"["y"]"#)
        .send(server.addr)
        .await;
    same(
        t.whole("POST jsonp_send (text/plain [\"y\"])", &mut raw)
            .await,
        b"ok",
    );
    let mut message = get(&server, &poll).await;
    assert_eq!(message.text().await, "/**/cb(\"a[\\\"y\\\"]\");\r\n");
    insta::assert_snapshot!(t.text());
}

#[tokio::test]
async fn jsonp_send_errors() {
    let server = services().await;
    let id = session();
    let mut open = get(&server, &format!("{}?c=cb", url("/echo", &id, "jsonp"))).await;
    assert_eq!(open.text().await, "/**/cb(\"o\");\r\n");
    let send = url("/echo", &id, "jsonp_send");
    let form = "application/x-www-form-urlencoded";
    for (content_type, body) in [(form, "d="), (form, ""), (form, "p=p"), ("text/plain", "")] {
        let mut response = Request::post(&send)
            .header("Content-Type", content_type)
            .body(body)
            .send(server.addr)
            .await;
        let mut t = Transcript::default();
        let text = t.whole("POST jsonp_send", &mut response).await;
        assert_eq!(response.status(), 500, "{body:?}");
        assert!(
            String::from_utf8_lossy(&text).contains("Payload expected."),
            "{body:?}: {text:?}"
        );
        insta::assert_snapshot!("jsonp_send_payload_expected", t.text());
    }
    for (content_type, body) in [(form, "d=%5B%22x"), ("text/plain", r#"["x"#)] {
        let mut response = Request::post(&send)
            .header("Content-Type", content_type)
            .body(body)
            .send(server.addr)
            .await;
        let mut t = Transcript::default();
        let text = t.whole("POST jsonp_send", &mut response).await;
        assert_eq!(response.status(), 500, "{body:?}");
        assert!(
            String::from_utf8_lossy(&text).contains("Broken JSON encoding."),
            "{body:?}: {text:?}"
        );
        insta::assert_snapshot!("jsonp_send_broken_json", t.text());
    }
    let mut unknown = Request::post(&url("/echo", &session(), "jsonp_send"))
        .header("Content-Type", form)
        .body("d=%5B%22x%22%5D")
        .send(server.addr)
        .await;
    unknown.body_to_end().await;
    assert_eq!(unknown.status(), 404);
}

// ---------------------------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_send_never_creates_a_session() {
    let server = services().await;
    let id = session();
    let mut send = post(&server, &url("/echo", &id, "xhr_send"), r#"["x"]"#).await;
    send.body_to_end().await;
    assert_eq!(send.status(), 404);
    assert_eq!(xhr(&server, "/echo", &id).await, "o\n");
}

#[tokio::test]
async fn the_server_segment_is_ignored() {
    let server = services().await;
    let id = session();
    let mut open = post(&server, &format!("/echo/000/{id}/xhr"), "").await;
    assert_eq!(open.text().await, "o\n");
    let mut send = post(&server, &format!("/echo/999/{id}/xhr_send"), r#"["x"]"#).await;
    send.body_to_end().await;
    assert_eq!(send.status(), 204);
    let mut poll = post(&server, &format!("/echo/abc/{id}/xhr"), "").await;
    assert_eq!(poll.text().await, "a[\"x\"]\n");
}

#[tokio::test]
async fn a_second_receiver_gets_2010_while_the_first_keeps_going() {
    let server = services().await;
    let id = session();
    let mut first = post(&server, &url("/echo", &id, "xhr_streaming"), "").await;
    same(first.chunk().await, xhr_prelude());
    same(first.chunk().await, b"o\n");

    let mut t = Transcript::default();
    for _ in 0..2 {
        let mut polling = post(&server, &url("/echo", &id, "xhr"), "").await;
        same(
            t.whole("POST xhr (second receiver)", &mut polling).await,
            b"c[2010,\"Another connection still open\"]\n",
        );
    }

    xhr_send(&server, "/echo", &id, r#"["late"]"#).await;
    same(first.chunk().await, b"a[\"late\"]\n");
    insta::assert_snapshot!(t.text());
}

/// The suite's `test_close_request`: a second xhr_streaming request gets the prelude and the
/// 2010 close, each one chunk, then the end of its body.
#[tokio::test]

async fn a_second_streaming_receiver_gets_prelude_then_2010_as_chunks() {
    let server = services().await;
    let id = session();
    let mut first = post(&server, &url("/echo", &id, "xhr_streaming"), "").await;
    same(first.chunk().await, xhr_prelude());
    same(first.chunk().await, b"o\n");

    let mut t = Transcript::default();
    let mut streaming = post(&server, &url("/echo", &id, "xhr_streaming"), "").await;
    t.head("POST xhr_streaming (second receiver)", &streaming);
    same(t.chunk(&mut streaming).await, xhr_prelude());
    same(
        t.chunk(&mut streaming).await,
        b"c[2010,\"Another connection still open\"]\n",
    );
    t.end(&mut streaming).await;

    xhr_send(&server, "/echo", &id, r#"["late"]"#).await;
    same(first.chunk().await, b"a[\"late\"]\n");
    insta::assert_snapshot!(t.text());
}

#[tokio::test]
async fn a_closed_session_answers_its_close_again() {
    let server = services().await;
    let id = session();
    let mut t = Transcript::default();
    let mut open = post(&server, &url("/close", &id, "xhr"), "").await;
    same(t.whole("POST xhr", &mut open).await, b"o\n");
    for _ in 0..2 {
        let mut closed = post(&server, &url("/close", &id, "xhr"), "").await;
        same(
            t.whole("POST xhr", &mut closed).await,
            b"c[3000,\"Go away!\"]\n",
        );
    }
    insta::assert_snapshot!(t.text());
}

/// The first half of the suite's `test_close_frame`: the close ends an attached streaming
/// request.
#[tokio::test]
async fn the_close_frame_ends_an_attached_streaming_receiver() {
    let server = services().await;
    let id = session();
    let mut t = Transcript::default();
    let mut first = post(&server, &url("/close", &id, "xhr_streaming"), "").await;
    t.head("POST xhr_streaming", &first);
    same(t.chunk(&mut first).await, xhr_prelude());
    same(t.chunk(&mut first).await, b"o\n");
    same(t.chunk(&mut first).await, b"c[3000,\"Go away!\"]\n");
    t.end(&mut first).await;
    insta::assert_snapshot!(t.text());
}

/// The second half of the suite's `test_close_frame`: a streaming request to a session whose
/// close was already delivered gets the prelude and the close again, each one chunk, then the
/// end of its body.
#[tokio::test]

async fn a_closed_session_answers_streaming_with_prelude_then_close_as_chunks() {
    let server = services().await;
    let id = session();
    assert_eq!(xhr(&server, "/close", &id).await, "o\n");
    assert_eq!(xhr(&server, "/close", &id).await, "c[3000,\"Go away!\"]\n");
    let mut t = Transcript::default();
    let mut again = post(&server, &url("/close", &id, "xhr_streaming"), "").await;
    t.head("POST xhr_streaming (closed session)", &again);
    same(t.chunk(&mut again).await, xhr_prelude());
    same(t.chunk(&mut again).await, b"c[3000,\"Go away!\"]\n");
    t.end(&mut again).await;
    insta::assert_snapshot!(t.text());
}

#[tokio::test]
async fn an_aborted_receiver_ends_its_session() {
    let server = services().await;
    let id = session();
    let mut stream = post(&server, &url("/echo", &id, "xhr_streaming"), "").await;
    same(stream.chunk().await, xhr_prelude());
    same(stream.chunk().await, b"o\n");
    drop(stream);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    let mut seen = Vec::new();
    loop {
        let body = xhr(&server, "/echo", &id).await;
        if body == "o\n" {
            break;
        }
        seen.push(body);
        assert!(
            tokio::time::Instant::now() < deadline,
            "no fresh session within 2 s; got {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn disconnect_delay_closes_an_idle_session() {
    let (closes, mut closed) = tokio::sync::mpsc::unbounded_channel();
    let builder = echo()
        .disconnect_delay(Duration::from_millis(300))
        .on_close(move |_, reason| {
            let closes = closes.clone();
            async move {
                let _ = closes.send((reason.code.as_u16(), reason.reason));
            }
        });
    let server = service("/dd", builder).await;
    let id = session();
    assert_eq!(xhr(&server, "/dd", &id).await, "o\n");
    let close = tokio::time::timeout(Duration::from_secs(2), closed.recv())
        .await
        .expect("on_close within 2 s")
        .expect("a close");
    assert!(closed.try_recv().is_err(), "one close: {close:?}");
    assert_eq!(xhr(&server, "/dd", &id).await, "o\n");
}

// ---------------------------------------------------------------------------------------------
// Heartbeats
// ---------------------------------------------------------------------------------------------

async fn heartbeat_server() -> Server {
    service("/hb", echo().heartbeat(Duration::from_millis(200))).await
}

#[tokio::test]
async fn heartbeat_xhr_polling() {
    let server = heartbeat_server().await;
    let id = session();
    assert_eq!(xhr(&server, "/hb", &id).await, "o\n");
    let mut t = Transcript::default();
    let mut poll = post(&server, &url("/hb", &id, "xhr"), "").await;
    same(t.whole("POST xhr", &mut poll).await, b"h\n");
    insta::assert_snapshot!(t.text());
}

#[tokio::test]
async fn heartbeat_xhr_streaming() {
    let server = heartbeat_server().await;
    let mut stream = post(&server, &url("/hb", &session(), "xhr_streaming"), "").await;
    same(stream.chunk().await, xhr_prelude());
    same(stream.chunk().await, b"o\n");
    same(stream.chunk().await, b"h\n");
    same(stream.chunk().await, b"h\n");
}

#[tokio::test]
async fn heartbeat_eventsource() {
    let server = heartbeat_server().await;
    let mut stream = get(&server, &url("/hb", &session(), "eventsource")).await;
    same(stream.chunk().await, b"\r\n");
    same(stream.chunk().await, b"data: o\r\n\r\n");
    same(stream.chunk().await, b"data: h\r\n\r\n");
}

#[tokio::test]
async fn heartbeat_htmlfile() {
    let server = heartbeat_server().await;
    let path = format!("{}?c=cb", url("/hb", &session(), "htmlfile"));
    let mut stream = get(&server, &path).await;
    assert_htmlfile_head(&stream.chunk().await);
    same(stream.chunk().await, b"<script>\np(\"o\");\n</script>\r\n");
    same(stream.chunk().await, b"<script>\np(\"h\");\n</script>\r\n");
}

#[tokio::test]
async fn heartbeat_jsonp() {
    let server = heartbeat_server().await;
    let path = format!("{}?c=cb", url("/hb", &session(), "jsonp"));
    assert_eq!(get(&server, &path).await.text().await, "/**/cb(\"o\");\r\n");
    assert_eq!(get(&server, &path).await.text().await, "/**/cb(\"h\");\r\n");
}

// ---------------------------------------------------------------------------------------------
// CORS and caching
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn cors_on_xhr_and_eventsource() {
    let server = services().await;
    let origins = [
        (Some("http://a.example"), "http://a.example", Some("true")),
        (Some("null"), "null", Some("true")),
        (None, "*", None),
    ];
    for (origin, allowed, credentials) in origins {
        let id = session();
        let with = |request: Request| match origin {
            Some(origin) => request.header("Origin", origin),
            None => request,
        };
        let responses = [
            ("xhr", with(Request::post(&url("/echo", &id, "xhr")))),
            (
                "xhr_send",
                with(Request::post(&url("/echo", &id, "xhr_send")).body(r#"["x"]"#)),
            ),
            (
                "xhr_streaming",
                with(Request::post(&url("/echo", &session(), "xhr_streaming"))),
            ),
            (
                "eventsource",
                with(Request::get(&url("/echo", &session(), "eventsource"))),
            ),
        ];
        for (transport, request) in responses {
            let mut response = request.send(server.addr).await;
            let what = format!("{transport} with origin {origin:?}");
            assert!(
                matches!(response.status(), 200 | 204),
                "{what}: {}",
                response.status_line
            );
            assert_eq!(
                response.header("access-control-allow-origin"),
                Some(allowed),
                "{what}"
            );
            assert_eq!(
                response.header("access-control-allow-credentials"),
                credentials,
                "{what}"
            );
            assert_eq!(response.header("vary"), Some("Origin"), "{what}");
            if transport == "xhr" {
                assert_eq!(response.text().await, "o\n");
            }
        }
    }
}

#[tokio::test]
async fn preflights_on_xhr_urls() {
    let server = services().await;
    let id = session();
    for transport in ["xhr", "xhr_send", "xhr_streaming"] {
        let mut with = Request::new("OPTIONS", &url("/echo", &id, transport))
            .header("Origin", "http://a.example")
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "a, b")
            .send(server.addr)
            .await;
        let mut t = Transcript::default();
        t.whole(
            "OPTIONS (Origin, Access-Control-Request-Headers: a, b)",
            &mut with,
        )
        .await;
        insta::assert_snapshot!("preflight_with_origin", t.text());

        let mut without = Request::new("OPTIONS", &url("/echo", &id, transport))
            .send(server.addr)
            .await;
        let mut t = Transcript::default();
        t.whole("OPTIONS", &mut without).await;
        insta::assert_snapshot!("preflight_without_origin", t.text());
    }
    // A preflight creates no session.
    let mut send = post(&server, &url("/echo", &id, "xhr_send"), r#"["x"]"#).await;
    send.body_to_end().await;
    assert_eq!(send.status(), 404);
}

const NEVER_CACHED: &str = "no-store, no-cache, no-transform, must-revalidate, max-age=0";

fn assert_never_cached(what: &str, response: &Response) {
    assert_eq!(
        response.header("cache-control"),
        Some(NEVER_CACHED),
        "{what}: {:?}",
        response.headers
    );
    assert!(!response.has("expires"), "{what}: {:?}", response.headers);
    assert!(
        !response.has("last-modified"),
        "{what}: {:?}",
        response.headers
    );
}

#[tokio::test]
async fn receives_and_sends_are_never_cached() {
    let server = services().await;
    let id = session();
    let receives = [
        Request::post(&url("/echo", &id, "xhr")),
        Request::post(&url("/echo", &session(), "xhr_streaming")),
        Request::get(&url("/echo", &session(), "eventsource")),
        Request::get(&format!("{}?c=cb", url("/echo", &session(), "htmlfile"))),
        Request::get(&format!("{}?c=cb", url("/echo", &session(), "jsonp"))),
    ];
    for request in receives {
        let what = String::from_utf8_lossy(&request.to_bytes()).into_owned();
        let response = request.send(server.addr).await;
        assert_eq!(response.status(), 200, "{what}");
        assert_never_cached(&what, &response);
    }
    let form = "application/x-www-form-urlencoded";
    let sends = [
        (
            Request::post(&url("/echo", &id, "xhr_send")).body(r#"["x"]"#),
            204,
        ),
        (
            Request::post(&url("/echo", &id, "xhr_send")).body(r#"["x"#),
            500,
        ),
        (Request::post(&url("/echo", &id, "xhr_send")), 500),
        (
            Request::post(&url("/echo", &id, "jsonp_send"))
                .header("Content-Type", form)
                .body("d=%5B%22x%22%5D"),
            200,
        ),
        (
            Request::post(&url("/echo", &id, "jsonp_send"))
                .header("Content-Type", form)
                .body("d="),
            500,
        ),
    ];
    for (request, status) in sends {
        let what = String::from_utf8_lossy(&request.to_bytes()).into_owned();
        let mut response = request.send(server.addr).await;
        response.body_to_end().await;
        assert_eq!(response.status(), status, "{what}");
        assert_never_cached(&what, &response);
    }
}

/// Notes §8: every receive response is never cached, its errors included (sockjs-node sets the
/// no-cache headers before it checks the callback).
#[tokio::test]

async fn callback_errors_are_never_cached() {
    let server = services().await;
    for transport in ["htmlfile", "jsonp"] {
        for query in ["", "?c=abc("] {
            let path = format!("{}{query}", url("/echo", &session(), transport));
            let mut response = get(&server, &path).await;
            response.body_to_end().await;
            assert_eq!(response.status(), 500, "{path}");
            assert_never_cached(&path, &response);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JSESSIONID
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn jsessionid_on_cookie_needed_services() {
    let server = services().await;
    let base = "/cookie_needed_echo";
    let mut t = Transcript::default();
    let mut plain = post(&server, &url(base, &session(), "xhr"), "").await;
    t.whole("POST xhr", &mut plain).await;
    let mut cookie = Request::post(&url(base, &session(), "xhr"))
        .header("Cookie", "JSESSIONID=abcdef")
        .send(server.addr)
        .await;
    t.whole("POST xhr (Cookie: JSESSIONID=abcdef)", &mut cookie)
        .await;
    insta::assert_snapshot!(t.text());
    assert_eq!(plain.header("set-cookie"), Some("JSESSIONID=dummy; path=/"));
    assert_eq!(
        cookie.header("set-cookie"),
        Some("JSESSIONID=abcdef; path=/")
    );

    for (cookie, expected) in [
        (None, "JSESSIONID=dummy; path=/"),
        (Some("JSESSIONID=abcdef"), "JSESSIONID=abcdef; path=/"),
    ] {
        // Fresh sessions each round: a second poll of a session would wait for a message.
        let id = session();
        let jsonp_id = session();
        let form = "application/x-www-form-urlencoded";
        let requests = [
            Request::post(&url(base, &id, "xhr")),
            Request::post(&url(base, &id, "xhr_send")).body(r#"["y"]"#),
            Request::new("OPTIONS", &url(base, &id, "xhr_send")),
            Request::post(&url(base, &session(), "xhr_streaming")),
            Request::get(&url(base, &session(), "eventsource")),
            Request::get(&format!("{}?c=cb", url(base, &session(), "htmlfile"))),
            Request::get(&format!("{}?c=cb", url(base, &jsonp_id, "jsonp"))),
            Request::post(&url(base, &jsonp_id, "jsonp_send"))
                .header("Content-Type", form)
                .body("d=%5B%22x%22%5D"),
        ];
        for request in requests {
            let request = match cookie {
                Some(cookie) => request.header("Cookie", cookie),
                None => request,
            };
            let what = String::from_utf8_lossy(&request.to_bytes()).into_owned();
            let response = request.send(server.addr).await;
            assert!(
                matches!(response.status(), 200 | 204),
                "{what}: {}",
                response.status_line
            );
            assert_eq!(response.header("set-cookie"), Some(expected), "{what}");
        }
    }
}

#[tokio::test]
async fn no_cookie_without_cookie_needed() {
    let server = services().await;
    let id = session();
    let jsonp_id = session();
    let form = "application/x-www-form-urlencoded";
    let requests = [
        Request::post(&url("/echo", &id, "xhr")),
        Request::post(&url("/echo", &id, "xhr_send")).body(r#"["y"]"#),
        Request::post(&url("/echo", &session(), "xhr_streaming")),
        Request::get(&url("/echo", &session(), "eventsource")),
        Request::get(&format!("{}?c=cb", url("/echo", &session(), "htmlfile"))),
        Request::get(&format!("{}?c=cb", url("/echo", &jsonp_id, "jsonp"))),
        Request::post(&url("/echo", &jsonp_id, "jsonp_send"))
            .header("Content-Type", form)
            .body("d=%5B%22x%22%5D"),
        Request::new("OPTIONS", &url("/echo", &id, "xhr")),
    ];
    for request in requests {
        let request = request.header("Cookie", "JSESSIONID=abcdef");
        let what = String::from_utf8_lossy(&request.to_bytes()).into_owned();
        let response = request.send(server.addr).await;
        assert!(
            matches!(response.status(), 200 | 204),
            "{what}: {}",
            response.status_line
        );
        assert!(
            !response.has("set-cookie"),
            "{what}: {:?}",
            response.headers
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Methods and paths
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn wrong_methods_are_405() {
    let server = services().await;
    let id = session();
    let cases = [
        ("GET", "xhr", "OPTIONS, POST"),
        ("GET", "xhr_send", "OPTIONS, POST"),
        ("GET", "xhr_streaming", "OPTIONS, POST"),
        ("PUT", "xhr", "OPTIONS, POST"),
        ("POST", "eventsource", "GET"),
        ("POST", "htmlfile", "GET"),
        ("POST", "jsonp", "GET"),
        ("DELETE", "jsonp", "GET"),
        ("GET", "jsonp_send", "POST"),
        ("OPTIONS", "jsonp_send", "POST"),
    ];
    for (method, transport, allow) in cases {
        let path = format!("{}?c=cb", url("/echo", &id, transport));
        let mut response = Request::new(method, &path).send(server.addr).await;
        let mut t = Transcript::default();
        t.whole("<wrong method>", &mut response).await;
        assert_eq!(response.status(), 405, "{method} {transport}");
        assert_eq!(
            response.header("allow"),
            Some(allow),
            "{method} {transport}"
        );
        let name = format!("405_allow_{}", allow.replace(", ", "_").to_lowercase());
        insta::assert_snapshot!(name, t.text());
    }
    // None of that created a session.
    let mut send = post(&server, &url("/echo", &id, "xhr_send"), r#"["x"]"#).await;
    send.body_to_end().await;
    assert_eq!(send.status(), 404);
}

/// Notes §1: `<server>` and `<session>` are non-empty and hold no `.`.
#[tokio::test]
async fn bad_session_paths_are_404() {
    let server = services().await;
    for prefix in ["//", "/a./a", "/a/a.", "/./.", "/", "///", "/a/.", "/./a"] {
        for transport in ["xhr", "xhr_send", "xhr_streaming", "eventsource", "jsonp"] {
            for method in ["GET", "POST"] {
                let path = format!("/echo{prefix}/{transport}?c=cb");
                let mut response = Request::new(method, &path).send(server.addr).await;
                let mut t = Transcript::default();
                t.whole("<bad session path>", &mut response).await;
                assert_eq!(response.status(), 404, "{method} {path}");
                insta::assert_snapshot!("bad_session_path_404", t.text());
            }
        }
    }
}

#[tokio::test]
async fn unusual_but_valid_session_paths() {
    let server = services().await;
    let n = session();
    for prefix in [
        "/a/a".to_owned(),
        "/_/_".to_owned(),
        format!("/1/{n}"),
        format!("/abcdefgh_i-j%20/abcdefg_i-j%20{n}"),
    ] {
        let mut response = post(&server, &format!("/echo{prefix}/xhr"), "").await;
        assert_eq!(response.status(), 200, "{prefix}");
        assert_eq!(response.text().await, "o\n", "{prefix}");
    }
}

#[tokio::test]
async fn unknown_transport_is_404() {
    let server = services().await;
    let id = session();
    for transport in ["nope", "XHR", "xhr_sendx", "jsonp_", "websocketx", "info"] {
        for method in ["GET", "POST"] {
            let path = url("/echo", &id, transport);
            let mut response = Request::new(method, &path).send(server.addr).await;
            response.body_to_end().await;
            assert_eq!(response.status(), 404, "{method} {path}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.0 and keep-alive
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn http10_polling_is_not_chunked() {
    let server = services().await;
    let id = session();
    let mut t = Transcript::default();
    let mut open = Request::post(&url("/echo", &id, "xhr"))
        .http10()
        .send(server.addr)
        .await;
    assert!(!open.has("transfer-encoding"), "{:?}", open.headers);
    assert!(
        open.has("content-length") || open.framing() == Framing::UntilClose,
        "{:?}",
        open.headers
    );
    same(t.whole("POST xhr (HTTP/1.0)", &mut open).await, b"o\n");
    insta::assert_snapshot!(t.text());
}

/// Notes §11: a streaming response to HTTP/1.0 has neither `Content-Length` nor
/// `Transfer-Encoding` and ends when the server closes the socket after the close frame. Here
/// the app closed the session right after `o`, so the close frame follows the prelude at once.
#[tokio::test]
async fn http10_streaming_of_a_closing_session_ends_with_the_socket() {
    let server = services().await;
    let id = session();
    assert_eq!(xhr(&server, "/close", &id).await, "o\n");
    let mut stream = Request::post(&url("/close", &id, "xhr_streaming"))
        .http10()
        .send(server.addr)
        .await;
    let head = stream.pin(HEADERS);
    assert!(!stream.has("transfer-encoding"), "{head}");
    assert!(!stream.has("content-length"), "{head}");
    let mut expected = xhr_prelude();
    expected.extend_from_slice(b"c[3000,\"Go away!\"]\n");
    assert_eq!(stream.body_to_end().await, expected);
    insta::assert_snapshot!(head);
}

/// As above, with the close already delivered to an earlier request: the server answers from
/// the ended session, still without `Content-Length`.
#[tokio::test]

async fn http10_streaming_of_a_closed_session_ends_with_the_socket() {
    let server = services().await;
    let id = session();
    assert_eq!(xhr(&server, "/close", &id).await, "o\n");
    assert_eq!(xhr(&server, "/close", &id).await, "c[3000,\"Go away!\"]\n");
    let mut stream = Request::post(&url("/close", &id, "xhr_streaming"))
        .http10()
        .send(server.addr)
        .await;
    let head = stream.pin(HEADERS);
    assert!(!stream.has("transfer-encoding"), "{head}");
    assert!(!stream.has("content-length"), "{head}");
    let mut expected = xhr_prelude();
    expected.extend_from_slice(b"c[3000,\"Go away!\"]\n");
    same(stream.body_to_end().await, expected);
}

/// The same with a live session: prelude, `o`, the close, then the socket closes.
#[tokio::test]
async fn http10_streaming_ends_with_the_socket() {
    let server = services().await;
    let mut stream = Request::post(&url("/close", &session(), "xhr_streaming"))
        .http10()
        .send(server.addr)
        .await;
    assert!(!stream.has("transfer-encoding"), "{:?}", stream.headers);
    assert!(!stream.has("content-length"), "{:?}", stream.headers);
    let mut expected = xhr_prelude();
    expected.extend_from_slice(b"o\nc[3000,\"Go away!\"]\n");
    assert_eq!(stream.body_to_end().await, expected);
}

#[tokio::test]
async fn http11_keep_alive_serves_requests_in_turn() {
    let server = services().await;
    let id = session();
    let connection = Connection::open(server.addr).await;
    let mut open = connection
        .send(&Request::post(&url("/echo", &id, "xhr")))
        .await;
    assert_eq!(open.text().await, "o\n");
    let mut send = open
        .into_connection()
        .send(&Request::post(&url("/echo", &id, "xhr_send")).body(r#"["x"]"#))
        .await;
    assert_eq!(send.text().await, "");
    assert_eq!(send.status(), 204);
    let mut poll = send
        .into_connection()
        .send(&Request::post(&url("/echo", &id, "xhr")))
        .await;
    assert_eq!(poll.text().await, "a[\"x\"]\n");
}

// ---------------------------------------------------------------------------------------------
// Isolation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn broken_sends_do_not_disturb_other_sessions() {
    let server = services().await;
    let flooded = session();
    let echoing = session();
    assert_eq!(xhr(&server, "/echo", &flooded).await, "o\n");
    assert_eq!(xhr(&server, "/echo", &echoing).await, "o\n");
    let flood = async {
        for _ in 0..50 {
            let mut response = post(&server, &url("/echo", &flooded, "xhr_send"), r#"["x"#).await;
            response.body_to_end().await;
            assert_eq!(response.status(), 500);
        }
    };
    let echo = async {
        for i in 0..20 {
            xhr_send(&server, "/echo", &echoing, &format!("[\"{i}\"]")).await;
            assert_eq!(
                xhr(&server, "/echo", &echoing).await,
                format!("a[\"{i}\"]\n")
            );
        }
    };
    tokio::join!(flood, echo);
}

/// A message and the close right after it, read by one poll: the poll answers the message, and
/// the next one the close (it is not skipped with the message's batch).
#[tokio::test]
async fn a_poll_that_answers_a_message_leaves_the_close_after_it_for_the_next() {
    let builder = tidings_tests::builder().on_message(|channel, text| async move {
        channel.send(text).await.expect("send");
        channel.close(3000, "Go away!").await.expect("close");
    });
    let server = service("/bye", builder).await;
    let id = session();
    assert_eq!(xhr(&server, "/bye", &id).await, "o\n");
    xhr_send(&server, "/bye", &id, r#"["last"]"#).await;
    assert_eq!(xhr(&server, "/bye", &id).await, "a[\"last\"]\n");
    assert_eq!(xhr(&server, "/bye", &id).await, "c[3000,\"Go away!\"]\n");
}
