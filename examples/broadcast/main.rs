//! The benchmark target: every message any client sends is delivered, verbatim, to every
//! session, over every transport Tidings serves.
//!
//! ```text
//! cargo run --release --example broadcast -- --addr 127.0.0.1:8082 [--redis URL]
//! ```
//!
//! Endpoints under `/broadcast`: the SockJS WebSocket (`/broadcast/<server>/<session>/websocket`)
//! and the raw WebSocket (`/broadcast/websocket`). With `--redis` the topic and the sessions live
//! in Redis, so several broadcast nodes can serve them (`examples/cluster`).

use clap::Parser;
use tidings_redis::{Options, RedisStore};

mod app;
#[path = "../served.rs"]
mod served;

#[derive(Parser)]
#[command(about = "Fan every message out to every session")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8082")]
    addr: String,
    /// Messages the broadcast topic retains; a subscriber further behind than this is closed
    /// as lagging.
    #[arg(long, default_value_t = 10_000)]
    retention: usize,
    /// Keep the topic and the sessions in the Redis at this URL (`redis://host:port/`) instead
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
    let mut builder = app::builder(args.retention);
    if let Some(url) = &args.redis {
        // The same prefix as the cluster's broadcast nodes, apart from the other examples.
        let options = Options::default().prefix("tidings:broadcast:");
        match RedisStore::connect_urls(url, options).await {
            Ok(store) => builder = builder.store(store),
            Err(error) => {
                eprintln!("broadcast: cannot use the Redis at {url}: {error}");
                std::process::exit(1);
            }
        }
    }
    let listener = tokio::net::TcpListener::bind(&args.addr).await?;
    println!(
        "broadcast on ws://{}/broadcast/websocket (raw) and SockJS /broadcast",
        listener.local_addr()?
    );
    app::router(builder).serve(listener).await
}
