//! The SockJS reference services on one port: the project's conformance target.
//!
//! ```text
//! cargo run --example echo -- --addr 127.0.0.1:8081 [--sockjs-url /static/sockjs.min.js] [--redis URL]
//! ```
//!
//! - `/echo` echoes every message (response limit 4096 bytes, as the protocol test suite wants);
//! - `/close` closes every new session with `3000 "Go away!"`;
//! - `/disabled_websocket_echo` echoes, with WebSocket turned off;
//! - `/cookie_needed_echo` echoes, with the JSESSIONID cookie on.
//!
//! Every service's iframe page loads sockjs-client from `--sockjs-url`: by default the CDN, for
//! browser tests without internet a copy served elsewhere. With `--redis` the sessions live in
//! Redis, so several echo nodes can serve them (`examples/cluster`).

use clap::Parser;

mod app;
#[path = "../served.rs"]
mod served;

#[derive(Parser)]
#[command(about = "SockJS reference services on one port")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    addr: String,
    /// Where the iframe page loads sockjs-client from (`/…`, `http://…` or `https://…`).
    #[arg(long, default_value = tidings::Config::DEFAULT_SOCKJS_URL)]
    sockjs_url: String,
    /// Keep the sessions in the Redis at this URL (`redis://host:port/`) instead of in this
    /// process. Several URLs, separated by commas, are the nodes of a Redis Cluster.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let redis = args.redis.as_deref();
    let app = served::Served::or_exit(app::app(&args.sockjs_url, redis).await, "echo", redis);
    let listener = tokio::net::TcpListener::bind(&args.addr).await?;
    println!(
        "SockJS echo services on http://{}/echo, /close, /disabled_websocket_echo, /cookie_needed_echo",
        listener.local_addr()?
    );
    app.serve(listener).await
}
