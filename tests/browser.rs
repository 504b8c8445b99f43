//! The real `sockjs-client` (npm, 1.6.1) in Debian's Chromium against Tidings, over each of
//! its transports, from a page on the server's own origin and from a page on another origin.
//!
//! Each case starts a Tidings server with the `/echo` and `/close` reference services, serves
//! a plain HTML page (`/page.html`) that loads sockjs-client with a script tag, as an app
//! does, and runs `tests/browser/sockjs_echo.mjs`, which opens that page in Chromium and prints
//! what the page's script (`tests/browser/echo_page.mjs`) saw. For the cross-origin cases a
//! second server on another port serves the page, which connects to the first.
//!
//! Needs chromium and the node packages of `tests/browser`; `bash tests/run-all.sh` installs
//! both and runs these.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tidings_tests::{Server, reference};
use tokio::sync::Semaphore;

/// Chromium runs at most this many at once: the CI machine has two shared cores, and
/// sockjs-client's transport timeouts (from the `/info` round trip, as short as 600 ms)
/// turn a starved browser into a failed connection.
static BROWSERS: Semaphore = Semaphore::const_new(2);

/// How long one Node process may take: launch, the page's own 30 s limit, and teardown.
const NODE_TIMEOUT: Duration = Duration::from_secs(90);

/// Where the page that runs sockjs-client comes from, relative to the Tidings server.
#[derive(Clone, Copy)]
enum Origin {
    /// The Tidings server serves the page too.
    Same,
    /// Another server (another port of 127.0.0.1, so another origin) serves the page.
    Cross,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Same => "same-origin",
            Origin::Cross => "cross-origin",
        })
    }
}

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// The dist build of sockjs-client from the installed node packages (`TIDINGS_NODE_MODULES`,
/// set by `run-all.sh`, or `tests/browser/node_modules`). Served by the test servers
/// themselves: there is no internet, and the iframe transports load it twice, once in the
/// page and once in the iframe from the service's `sockjs_url`, and insist on one version.
fn sockjs_client() -> Vec<u8> {
    let modules = std::env::var_os("TIDINGS_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| browser_dir().join("node_modules"));
    let path = modules.join("sockjs-client/dist/sockjs.min.js");
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "read {}: {e} (run `npm ci` in tests/browser)",
            path.display()
        )
    })
}

/// What every test server serves besides Tidings: the page, its script and sockjs-client.
fn page_routes() -> Router {
    const PAGE: &str = r#"<!DOCTYPE html>
<html>
<head>
  <meta charset="utf-8">
  <title>Tidings browser test</title>
  <script src="/static/sockjs.min.js"></script>
  <!-- A module script runs after the document is parsed, so SockJS exists by then. -->
  <script type="module" src="/static/echo_page.mjs"></script>
</head>
<body>
  <p>sockjs-client echo test; see tests/browser.rs.</p>
</body>
</html>
"#;
    // `Bytes`, so the per-request clone of each handler is cheap.
    let sockjs = Bytes::from(sockjs_client());
    let script = std::fs::read(browser_dir().join("echo_page.mjs")).expect("read echo_page.mjs");
    let script = Bytes::from(script);
    Router::new()
        // Chromium asks every origin for one; a 404 would be a misleading console error.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route(
            "/page.html",
            get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE) }),
        )
        .route(
            "/static/sockjs.min.js",
            get(|| async {
                let content_type = "application/javascript; charset=utf-8";
                ([(header::CONTENT_TYPE, content_type)], sockjs).into_response()
            }),
        )
        .route(
            "/static/echo_page.mjs",
            // Browsers refuse module scripts that are not served as JavaScript.
            get(|| async {
                let content_type = "text/javascript; charset=utf-8";
                ([(header::CONTENT_TYPE, content_type)], script).into_response()
            }),
        )
}

/// The `/echo` and `/close` reference services on the server at `addr`, plus the page.
/// `sockjs_url` is the absolute URL of this server's copy of sockjs-client: the iframe
/// transports load it in the service's iframe page, whatever origin the app's page has.
fn reference(addr: SocketAddr) -> Router {
    let sockjs_url = format!("http://{addr}/static/sockjs.min.js");
    let echo = reference::echo().sockjs_url(&sockjs_url).build();
    let close = reference::closing().sockjs_url(&sockjs_url).build();
    page_routes()
        .nest_service("/echo", echo.router())
        .nest_service("/close", close.router())
}

/// Opens the test page in Chromium with sockjs-client limited to `transport` and returns the
/// page's report: `{ transport, closeTransport, events, log }` (see sockjs_echo.mjs).
async fn run_case(transport: &str, origin: Origin) -> serde_json::Value {
    let label = format!("{transport} from a {origin} page");
    let tidings = Server::start_with(reference).await;
    // Kept alive until the browser is done.
    let page_server = match origin {
        Origin::Same => None,
        Origin::Cross => Some(Server::start(page_routes()).await),
    };
    let page_base = page_server.as_ref().unwrap_or(&tidings).http_url();
    let page_url = format!(
        "{page_base}/page.html?server={}&transport={transport}",
        tidings.http_url()
    );

    let _permit = BROWSERS.acquire().await.expect("semaphore never closes");
    let node = tokio::process::Command::new("node")
        .arg(browser_dir().join("sockjs_echo.mjs"))
        .arg(&page_url)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(NODE_TIMEOUT, node)
        .await
        .unwrap_or_else(|_| panic!("{label}: node ran over {NODE_TIMEOUT:?} on {page_url}"))
        .unwrap_or_else(|e| panic!("{label}: run node (is Node.js installed?): {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{label}: node failed ({}) on {page_url}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{label}: node printed no report ({e}): {stdout:?}"))
}

/// One case: echo three messages in order through `/echo`, then see `/close` close with
/// 3000 "Go away!", both over exactly the forced transport.
async fn echo_and_close(transport: &str, origin: Origin) {
    let report = run_case(transport, origin).await;
    let label = format!("{transport} from a {origin} page");
    // On failure, everything the page and the browser saw, one item a line.
    let seen = || {
        let lines = |key: &str| {
            report[key]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .map(|i| format!("  {}", i.as_str().unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default()
        };
        format!(
            "transport {}, close transport {}\npage events:\n{}\nbrowser log:\n{}",
            report["transport"],
            report["closeTransport"],
            lines("events"),
            lines("log")
        )
    };

    let events: Vec<&str> = report["events"]
        .as_array()
        .map(|events| events.iter().filter_map(|e| e.as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        events,
        [
            "echo open",
            "echo 1 ok",
            "echo 2 ok",
            "echo 3 ok",
            "close open",
            "close closed: 3000 Go away!",
        ],
        "{label}: the page did not see the echoes and the close\n{}",
        seen()
    );
    // sockjs-client only ever tries whitelisted transports, but a renamed transport or a
    // changed option would otherwise pass silently over websocket.
    for key in ["transport", "closeTransport"] {
        assert_eq!(
            report[key].as_str(),
            Some(transport),
            "{label}: sockjs-client used another transport ({key})\n{}",
            seen()
        );
    }
}

/// `case!(test_name, "transport", Origin)`: one ignored test per transport and origin.
macro_rules! case {
    ($name:ident, $transport:literal, $origin:expr) => {
        #[tokio::test(flavor = "multi_thread")]
        #[ignore = "needs chromium and tests/browser node packages; run bash tests/run-all.sh"]
        async fn $name() {
            echo_and_close($transport, $origin).await;
        }
    };
}

case!(sockjs_websocket_same_origin, "websocket", Origin::Same);
case!(sockjs_websocket_cross_origin, "websocket", Origin::Cross);
case!(
    sockjs_xhr_streaming_same_origin,
    "xhr-streaming",
    Origin::Same
);
case!(
    sockjs_xhr_streaming_cross_origin,
    "xhr-streaming",
    Origin::Cross
);
case!(sockjs_xhr_polling_same_origin, "xhr-polling", Origin::Same);
case!(
    sockjs_xhr_polling_cross_origin,
    "xhr-polling",
    Origin::Cross
);
case!(sockjs_eventsource_same_origin, "eventsource", Origin::Same);
case!(
    sockjs_eventsource_cross_origin,
    "eventsource",
    Origin::Cross
);
case!(
    sockjs_iframe_eventsource_same_origin,
    "iframe-eventsource",
    Origin::Same
);
case!(
    sockjs_iframe_eventsource_cross_origin,
    "iframe-eventsource",
    Origin::Cross
);
case!(
    sockjs_iframe_htmlfile_same_origin,
    "iframe-htmlfile",
    Origin::Same
);
case!(
    sockjs_iframe_htmlfile_cross_origin,
    "iframe-htmlfile",
    Origin::Cross
);
case!(
    sockjs_iframe_xhr_polling_same_origin,
    "iframe-xhr-polling",
    Origin::Same
);
case!(
    sockjs_iframe_xhr_polling_cross_origin,
    "iframe-xhr-polling",
    Origin::Cross
);
case!(
    sockjs_jsonp_polling_same_origin,
    "jsonp-polling",
    Origin::Same
);
case!(
    sockjs_jsonp_polling_cross_origin,
    "jsonp-polling",
    Origin::Cross
);
