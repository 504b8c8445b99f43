//! The benchmark target: every message any client sends is delivered, verbatim, to every
//! session, over every transport Tidings serves.
//!
//! ```text
//! cargo run --release --example broadcast -- --addr 127.0.0.1:8082
//! ```
//!
//! Endpoints under `/broadcast`: the SockJS WebSocket (`/broadcast/<server>/<session>/websocket`)
//! and the raw WebSocket (`/broadcast/websocket`).

use clap::Parser;

mod app;

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
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let app = app::app(args.retention);
    let listener = tokio::net::TcpListener::bind(&args.addr).await?;
    println!(
        "broadcast on ws://{}/broadcast/websocket (raw) and SockJS /broadcast",
        listener.local_addr()?
    );
    axum::serve(listener, app).await
}
