//! The real `sockjs-client` (npm, 1.6.1) in Debian's Chromium against Tidings.
//!
//! Needs chromium and the node packages of `tests/browser`; `bash tests/run-all.sh` installs
//! both and runs these.

use std::path::PathBuf;
use std::process::Command;

use axum::Router;
use tidings::Tidings;
use tidings_tests::Server;

/// The `/echo` and `/close` reference services.
fn reference() -> Router {
    let echo = Tidings::builder()
        .on_message(|channel, text| async move {
            channel.send(text).await.expect("echo");
        })
        .build();
    let close = Tidings::builder()
        .on_open(|channel| async move {
            channel.close(3000, "Go away!").await.expect("close");
        })
        .build();
    Router::new()
        .nest_service("/echo", echo.router())
        .nest_service("/close", close.router())
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("browser")
        .join(name)
}

async fn run_sockjs_echo(transport: &str) -> Vec<String> {
    let server = Server::start(reference()).await;
    let base = format!("http://{}", server.addr);
    let transport = transport.to_owned();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script("sockjs_echo.mjs"))
            .arg(&base)
            .arg(&transport)
            .output()
    })
    .await
    .expect("join")
    .expect("run node (is Node.js installed?)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "node failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("bad output {stdout:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium and tests/browser node packages; run bash tests/run-all.sh"]
async fn sockjs_client_over_websocket_echoes_and_sees_the_close() {
    let seen = run_sockjs_echo("websocket").await;
    assert_eq!(
        seen,
        [
            "open:websocket",
            "echo:same",
            "echo:same",
            "echo:same",
            "close:3000:Go away!"
        ]
    );
}
