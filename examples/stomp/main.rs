//! A chat over STOMP, in the style of the Spring STOMP chat demos it replaces: rooms on
//! `/topic/rooms/…`, private messages on `/user/queue/private`, `/app/…` handled by the
//! application, and `SEND /app/echo` answered on the sender's `/user/queue/echo`.
//!
//! ```text
//! cargo run --example stomp -- --addr 127.0.0.1:3002 [--heartbeat-ms 10000] [--redis URL]
//! ```
//!
//! The STOMP endpoint is `/stomp`: SockJS at `/stomp`, the WebSocket at `/stomp/websocket`.
//! Who a client is comes from `?user=NAME` on the endpoint URL, or from the CONNECT frame's
//! `login`. The page at `/` loads `@stomp/stompjs` and `sockjs-client` (or the legacy
//! `stompjs` 2.3.3, with `?client=legacy`) from files this program serves out of
//! `tests/browser/node_modules` (`npm ci` there installs them; `--node-modules DIR` points
//! elsewhere). `/?transport=websocket` uses the plain WebSocket; `xhr-streaming`,
//! `xhr-polling`, `eventsource` or `websocket-sockjs` force one SockJS transport.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

mod app;
#[path = "../served.rs"]
mod served;

#[derive(Parser)]
#[command(about = "A chat over STOMP, served by Tidings")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3002")]
    addr: String,
    /// How often the server sends heart-beats, and asks clients to, in milliseconds.
    #[arg(long, default_value_t = app::HEARTBEAT_MS)]
    heartbeat_ms: u64,
    /// Keep the rooms and sessions in the Redis at this URL (`redis://host:port/`) instead of
    /// in this process, so that several nodes can serve them. Several URLs, separated by
    /// commas, are the nodes of a Redis Cluster.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// Where the page's scripts are installed (`@stomp/stompjs`, `sockjs-client`, `stompjs`).
    #[arg(long, value_name = "DIR", default_value = app::NODE_MODULES)]
    node_modules: PathBuf,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let heartbeat = Duration::from_millis(args.heartbeat_ms);
    let redis = args.redis.as_deref();
    let built = app::app(heartbeat, redis, args.node_modules).await;
    let app = served::Served::or_exit(built, "stomp", redis);
    let listener = tokio::net::TcpListener::bind(&args.addr).await?;
    println!("stomp on http://{}/", listener.local_addr()?);
    app.serve(listener).await
}
