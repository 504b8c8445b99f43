//! The SockJS reference services on one port: the project's conformance target.
//!
//! ```text
//! cargo run --example echo -- --addr 127.0.0.1:8081 [--sockjs-url /static/sockjs.min.js]
//! ```
//!
//! - `/echo` echoes every message (response limit 4096 bytes, as the protocol test suite wants);
//! - `/close` closes every new session with `3000 "Go away!"`;
//! - `/disabled_websocket_echo` echoes, with WebSocket turned off;
//! - `/cookie_needed_echo` echoes, with the JSESSIONID cookie on.
//!
//! Every service's iframe page loads sockjs-client from `--sockjs-url`: by default the CDN, for
//! browser tests without internet a copy served elsewhere.

use axum::Router;
use clap::Parser;
use tidings::Tidings;

#[derive(Parser)]
#[command(about = "SockJS reference services on one port")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    addr: String,
    /// Where the iframe page loads sockjs-client from (`/…`, `http://…` or `https://…`).
    #[arg(long, default_value = tidings::Config::DEFAULT_SOCKJS_URL)]
    sockjs_url: String,
}

fn echo(sockjs_url: &str) -> tidings::Builder {
    Tidings::builder()
        .sockjs_url(sockjs_url)
        .on_message(|channel, text| async move {
            if let Err(error) = channel.send(text).await {
                tracing::warn!(%error, "echo failed");
            }
        })
}

/// The four services, ready to serve.
fn app(sockjs_url: &str) -> Router {
    let close = Tidings::builder()
        .sockjs_url(sockjs_url)
        .on_open(|channel| async move {
            let _ = channel.close(3000, "Go away!").await;
        })
        .build();
    Router::new()
        .nest_service(
            "/echo",
            echo(sockjs_url).response_limit(4096).build().router(),
        )
        .nest_service("/close", close.router())
        .nest_service(
            "/disabled_websocket_echo",
            echo(sockjs_url).websocket(false).build().router(),
        )
        .nest_service(
            "/cookie_needed_echo",
            echo(sockjs_url).cookie_needed(true).build().router(),
        )
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(&args.addr).await?;
    println!(
        "SockJS echo services on http://{}/echo, /close, /disabled_websocket_echo, /cookie_needed_echo",
        listener.local_addr()?
    );
    axum::serve(listener, app(&args.sockjs_url)).await
}
