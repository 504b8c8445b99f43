//! A chat room on the native protocol: every message anyone sends reaches everyone, sender
//! included, over whichever transport works.
//!
//! ```text
//! cargo run --example chat -- --addr 127.0.0.1:3000 [--heartbeat-ms 25000]
//! ```
//!
//! The page at `/` loads the JS client from `/rt/tidings.js` (nothing from the internet) and
//! shows the transport in use; `/?transport=sse` (or the select on the page) forces one.

use std::time::Duration;

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use clap::Parser;
use tidings::{Retention, Tidings};

#[derive(Parser)]
#[command(about = "A chat room served over the Tidings native protocol")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: String,
    /// Heartbeat interval in milliseconds; tests shorten it to see dead transports sooner.
    #[arg(long, default_value_t = 25_000)]
    heartbeat_ms: u64,
}

/// The chat page: plain HTML and a module script, no framework.
async fn page() -> Html<&'static str> {
    Html(include_str!("index.html"))
}

/// The page at `/` and the Tidings service at `/rt`.
fn app(heartbeat: Duration) -> Router {
    let tidings = Tidings::builder()
        .heartbeat(heartbeat)
        .retention(Retention {
            messages: 1000,
            bytes: 8 << 20,
        })
        .max_lag(1000)
        .on_message(|channel, text| async move {
            if let Err(error) = channel.hub().broadcast(text).await {
                tracing::warn!(%error, "broadcast failed");
            }
        })
        .build();
    Router::new()
        .route("/", get(page))
        .nest_service("/rt", tidings.router())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(&args.addr).await?;
    println!("chat on http://{}/", listener.local_addr()?);
    axum::serve(listener, app(Duration::from_millis(args.heartbeat_ms))).await
}
