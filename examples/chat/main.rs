//! A chat room on the native protocol, over whichever transport works: every message to the
//! room reaches everyone, sender included, and a page that arrives gets the last 50; people
//! chat under a name (`/?user=alice`, or the page's form), see who is online, and write to one
//! person alone, who gets it on their next visit when no page of theirs is open. Routes and
//! message formats: `app.rs`.
//!
//! ```text
//! cargo run --example chat -- --addr 127.0.0.1:3000 [--heartbeat-ms 25000] [--redis URL]
//! ```
//!
//! The page at `/` loads the JS client from `/rt/tidings.js` (nothing from the internet) and
//! shows the transport in use; `/?transport=sse` (or the select on the page) forces one. With
//! `--redis redis://127.0.0.1:6379/` the room and its sessions live in Redis, so several chat
//! nodes can serve them (`examples/cluster` runs such nodes behind a balancer).

use std::time::Duration;

use clap::Parser;

mod app;
#[path = "../served.rs"]
mod served;

#[derive(Parser)]
#[command(about = "A chat room served over the Tidings native protocol")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: String,
    /// Heartbeat interval in milliseconds; tests shorten it to see dead transports sooner.
    #[arg(long, default_value_t = app::HEARTBEAT_MS)]
    heartbeat_ms: u64,
    /// Keep the room and its sessions in the Redis at this URL (`redis://host:port/`) instead
    /// of in this process. Several URLs, separated by commas, are the nodes of a Redis Cluster.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let heartbeat = Duration::from_millis(args.heartbeat_ms);
    let redis = args.redis.as_deref();
    let app = served::Served::or_exit(app::app(heartbeat, redis).await, "chat", redis);
    let listener = tokio::net::TcpListener::bind(&args.addr).await?;
    println!("chat on http://{}/", listener.local_addr()?);
    app.serve(listener).await
}
