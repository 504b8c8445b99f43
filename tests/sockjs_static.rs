//! The static half of SockJS over real sockets on 127.0.0.1: the greeting, `/info` and its
//! preflight, the iframe page, the 404s and 405s around them, and where `JSESSIONID` must not
//! appear. Exact bytes are pinned with insta.

use tidings_tests::{Server, pin_response, raw_http, reference};

/// The reference services, as the echo example mounts them: in this process, or those at
/// `TIDINGS_TEST_SOCKJS_AT` ([`Server::sockjs_reference`]).
async fn services() -> Server {
    Server::sockjs_reference().await
}

/// The reference services and, at `/local`, one with a local `sockjs_url`, in this process.
async fn with_local() -> Server {
    let local = reference::echo().sockjs_url("/static/sockjs.min.js");
    Server::start(reference::services().nest_service("/local", local.build().router())).await
}

/// Sends `method path` with `headers` (each `Name: value`) and `Connection: close`, and returns
/// the whole response.
async fn send(server: &Server, method: &str, path: &str, headers: &[&str]) -> String {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: x\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    if matches!(method, "POST" | "PUT" | "DELETE" | "PATCH") {
        request.push_str("Content-Length: 0\r\n");
    }
    request.push_str("Connection: close\r\n\r\n");
    raw_http(server.addr, &request).await
}

/// A response split into status line, headers (lowercased names, in the order received) and
/// body.
struct Parsed {
    status: String,
    headers: Vec<(String, String)>,
    body: String,
}

fn parse(response: &str) -> Parsed {
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head: {response:?}"));
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Parsed {
        status,
        headers,
        body: body.to_owned(),
    }
}

impl Parsed {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn has(&self, name: &str) -> bool {
        self.header(name).is_some()
    }
}

/// Every header as received, for exact pinning, with the values of `date` and `expires` (which
/// move with the clock) replaced by `<http-date>` once checked to be HTTP dates; then the body.
fn pin_all(response: &str) -> String {
    let parsed = parse(response);
    let mut out = format!("{}\n", parsed.status);
    // In name order, without what a proxy in front may change: the order of the headers, the
    // hop-by-hop `connection`, and the balancer's `x-tidings-node` (`TIDINGS_TEST_SOCKJS_AT`).
    let mut headers: Vec<&(String, String)> = parsed
        .headers
        .iter()
        .filter(|(name, _)| name != "connection" && name != "x-tidings-node")
        .collect();
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, value) in headers {
        let value = if name == "date" || name == "expires" {
            assert!(
                value.ends_with(" GMT") && value.len() == 29,
                "{name}: {value}"
            );
            "<http-date>"
        } else {
            value
        };
        out.push_str(&format!("{name}: {value}\n"));
    }
    out.push('\n');
    out.push_str(&parsed.body);
    out
}

/// [`pin_all`] for an `/info` answer: the entropy, and so the `content-length`, vary between
/// calls, so both are replaced (`<entropy>`, `<body length>`) once checked.
fn pin_info(response: &str) -> String {
    let parsed = parse(response);
    let length = parsed.header("content-length").expect("content-length");
    assert_eq!(length, parsed.body.len().to_string(), "{response}");
    let (_, body) = info_json(&parsed.body);
    pin_all(response).replace(&parsed.body, &body).replace(
        &format!("content-length: {length}\n"),
        "content-length: <body length>\n",
    )
}

/// The `/info` body with its entropy replaced by `<entropy>`, after checking it is a `u32`.
fn info_json(body: &str) -> (serde_json::Value, String) {
    let value: serde_json::Value = serde_json::from_str(body).expect("JSON body");
    let entropy = value["entropy"].as_u64().expect("entropy is an integer");
    assert!(
        u32::try_from(entropy).is_ok(),
        "entropy {entropy} is not a u32"
    );
    let pinned = body.replace(&entropy.to_string(), "<entropy>");
    (value, pinned)
}

#[tokio::test]
async fn greeting() {
    let server = services().await;
    for base in ["/echo", "/cookie_needed_echo"] {
        for path in [base.to_owned(), format!("{base}/")] {
            let response = send(&server, "GET", &path, &[]).await;
            insta::assert_snapshot!("greeting", pin_all(&response));
        }
    }
}

#[tokio::test]
async fn info_fields_and_types() {
    let server = services().await;
    let response = send(&server, "GET", "/echo/info", &[]).await;
    let parsed = parse(&response);
    assert!(parsed.status.starts_with("HTTP/1.1 200"), "{response}");
    let (info, pinned) = info_json(&parsed.body);
    assert_eq!(
        pinned,
        r#"{"websocket":true,"cookie_needed":false,"origins":["*:*"],"entropy":<entropy>}"#
    );
    assert_eq!(info["websocket"], true);
    assert_eq!(info["cookie_needed"], false);
    assert_eq!(info["origins"], serde_json::json!(["*:*"]));

    let disabled = send(&server, "GET", "/disabled_websocket_echo/info", &[]).await;
    let (info, _) = info_json(&parse(&disabled).body);
    assert_eq!(info["websocket"], false);
    assert_eq!(info["cookie_needed"], false);
}

#[tokio::test]
async fn info_entropy_differs_between_calls() {
    let server = services().await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let response = send(&server, "GET", "/echo/info", &[]).await;
        let (info, _) = info_json(&parse(&response).body);
        seen.push(info["entropy"].as_u64().expect("entropy"));
    }
    assert_ne!(seen[0], seen[1]);
}

#[tokio::test]
async fn info_without_origin() {
    let server = services().await;
    let response = send(&server, "GET", "/echo/info?t=1700000000000", &[]).await;
    let parsed = parse(&response);
    assert!(!parsed.has("access-control-allow-credentials"));
    assert!(!parsed.has("expires") && !parsed.has("last-modified") && !parsed.has("set-cookie"));
    insta::assert_snapshot!(pin_info(&response));
}

#[tokio::test]
async fn info_with_origin() {
    let server = services().await;
    let response = send(
        &server,
        "GET",
        "/echo/info",
        &["Origin: https://app.example"],
    )
    .await;
    insta::assert_snapshot!(pin_info(&response));
}

#[tokio::test]
async fn info_with_null_origin() {
    let server = services().await;
    let response = send(&server, "GET", "/echo/info", &["Origin: null"]).await;
    let parsed = parse(&response);
    assert_eq!(parsed.header("access-control-allow-origin"), Some("null"));
    assert_eq!(
        parsed.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(parsed.header("vary"), Some("Origin"));
}

#[tokio::test]
async fn info_preflight() {
    let server = services().await;
    let with = send(
        &server,
        "OPTIONS",
        "/echo/info?t=1",
        &[
            "Origin: https://app.example",
            "Access-Control-Request-Method: GET",
            "Access-Control-Request-Headers: a, b, c",
        ],
    )
    .await;
    insta::assert_snapshot!("info_preflight_with_origin", pin_all(&with));
    let without = send(&server, "OPTIONS", "/echo/info", &[]).await;
    insta::assert_snapshot!("info_preflight_without_origin", pin_all(&without));
    let empty = send(
        &server,
        "OPTIONS",
        "/echo/info",
        &["Access-Control-Request-Headers: "],
    )
    .await;
    assert!(
        !parse(&empty).has("access-control-allow-headers"),
        "{empty}"
    );
}

#[tokio::test]
async fn info_wrong_methods_are_405() {
    let server = services().await;
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let response = send(&server, method, "/echo/info", &[]).await;
        insta::assert_snapshot!("info_405", pin_all(&response));
    }
}

#[tokio::test]
async fn iframe_page_bytes() {
    let server = services().await;
    let response = send(&server, "GET", "/echo/iframe.html", &[]).await;
    let parsed = parse(&response);
    assert!(!parsed.has("last-modified") && !parsed.has("set-cookie"));
    insta::assert_snapshot!(pin_all(&response));

    let server = with_local().await;
    let echo = send(&server, "GET", "/echo/iframe.html", &[]).await;
    let parsed = parse(&echo);
    let local = send(&server, "GET", "/local/iframe.html", &[]).await;
    let local = parse(&local);
    assert!(
        local
            .body
            .contains("  <script src=\"/static/sockjs.min.js\"></script>\n"),
        "{}",
        local.body
    );
    assert_ne!(local.header("etag"), parsed.header("etag"));
}

#[tokio::test]
async fn iframe_variants_are_the_same_bytes() {
    let server = services().await;
    let reference = parse(&send(&server, "GET", "/echo/iframe.html", &[]).await);
    for path in [
        "/echo/iframe.html?t=1234",
        "/echo/iframe-.html",
        "/echo/iframe-1.6.1.html",
        "/echo/iframe-a_b-c.d.html?x",
        "/cookie_needed_echo/iframe.html",
        "/disabled_websocket_echo/iframe-0.3.3.html",
    ] {
        let parsed = parse(&send(&server, "GET", path, &[]).await);
        assert!(parsed.status.starts_with("HTTP/1.1 200"), "{path}");
        assert_eq!(parsed.body, reference.body, "{path}");
        assert_eq!(parsed.header("etag"), reference.header("etag"), "{path}");
        assert!(!parsed.has("set-cookie"), "{path}");
    }
}

#[tokio::test]
async fn iframe_etag_is_stable_and_revalidates() {
    let server = services().await;
    let first = parse(&send(&server, "GET", "/echo/iframe.html", &[]).await);
    let etag = first.header("etag").expect("etag").to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong: {etag}"
    );
    let again = parse(&send(&server, "GET", "/echo/iframe.html", &[]).await);
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    // A second server with the same options: the tag depends only on the bytes.
    let other = services().await;
    let elsewhere = parse(&send(&other, "GET", "/echo/iframe.html", &[]).await);
    assert_eq!(elsewhere.header("etag"), Some(etag.as_str()));

    let header = format!("If-None-Match: {etag}");
    let cached = send(&server, "GET", "/echo/iframe.html", &[&header]).await;
    let parsed = parse(&cached);
    assert!(parsed.body.is_empty());
    assert!(!parsed.has("content-type"));
    insta::assert_snapshot!(pin_all(&cached));

    let stale = send(
        &server,
        "GET",
        "/echo/iframe.html",
        &["If-None-Match: \"0123\""],
    )
    .await;
    assert!(stale.starts_with("HTTP/1.1 200"), "{stale}");
}

#[tokio::test]
async fn iframe_wrong_methods_are_405() {
    let server = services().await;
    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let response = send(&server, method, "/echo/iframe.html", &[]).await;
        insta::assert_snapshot!(
            "iframe_405",
            pin_response(&response, &["allow", "content-type", "content-length"])
        );
    }
}

/// Every path §1 of the protocol notes lists as 404, by GET and POST.
#[tokio::test]
async fn not_found_list() {
    let server = services().await;
    for path in [
        "/a",
        "/a.html",
        "//",
        "///",
        "/a/a",
        "/a/a/",
        "/iframe.htm",
        "/iframe",
        "/IFRAME.HTML",
        "/IFRAME",
        "/iframe.HTML",
        "/iframe.xml",
        "/iframe-/.html",
        "/iframe-A.html",
        "/iframe.html/",
        "/info/x",
        "/INFO",
        "//info",
        "//iframe.html",
        "//websocket",
    ] {
        for method in ["GET", "POST"] {
            let response = send(&server, method, &format!("/echo{path}"), &[]).await;
            assert_eq!(
                pin_response(&response, &["content-type", "allow"]),
                "HTTP/1.1 404 Not Found\ncontent-type: text/plain; charset=UTF-8\n\n404 Error: Page not found\n",
                "{method} /echo{path}"
            );
        }
    }
}

#[tokio::test]
async fn cookie_needed_is_reported_and_never_set_on_static_urls() {
    let server = services().await;
    for (base, needed) in [("/echo", false), ("/cookie_needed_echo", true)] {
        let info = parse(&send(&server, "GET", &format!("{base}/info"), &[]).await);
        let (json, _) = info_json(&info.body);
        assert_eq!(json["cookie_needed"], needed, "{base}");
        for path in ["", "/", "/info", "/iframe.html"] {
            for cookie in [None, Some("Cookie: JSESSIONID=abc")] {
                let headers: Vec<&str> = cookie.into_iter().collect();
                let response = send(&server, "GET", &format!("{base}{path}"), &headers).await;
                assert!(response.starts_with("HTTP/1.1 200"), "{base}{path}");
                assert!(
                    !parse(&response).has("set-cookie"),
                    "{base}{path}: {response}"
                );
            }
        }
    }
}

#[tokio::test]
async fn mounted_at_the_root() {
    let server = Server::start(reference::echo().build().router()).await;
    for (path, status) in [
        ("/", "200"),
        ("/info", "200"),
        ("/iframe.html", "200"),
        ("//", "404"),
        ("//info", "404"),
        ("/a", "404"),
    ] {
        let response = send(&server, "GET", path, &[]).await;
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status}")),
            "{path}: {response}"
        );
    }
}
