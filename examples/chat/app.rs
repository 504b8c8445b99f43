//! The chat service itself, shared by `examples/chat` and `examples/cluster` (which runs the very
//! same service on several nodes sharing one Redis).

use std::time::Duration;

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use tidings::store::StoreError;
use tidings::{Retention, Tidings};
use tidings_redis::{Options, RedisStore};

/// The heartbeat interval, in milliseconds, unless the command line says otherwise.
pub(crate) const HEARTBEAT_MS: u64 = 25_000;

/// The chat page: plain HTML and a module script, no framework.
async fn page() -> Html<&'static str> {
    Html(include_str!("index.html"))
}

/// The page at `/` and the Tidings service at `/rt`: every message anyone sends is broadcast to
/// everyone. With `redis`, sessions and the room live in that Redis (under `tidings:chat:`, apart
/// from the other examples), so any number of nodes can serve them; without it, in this process.
///
/// Fails only when Redis cannot be reached.
pub(crate) async fn app(heartbeat: Duration, redis: Option<&str>) -> Result<Router, StoreError> {
    let mut builder = Tidings::builder()
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
        });
    if let Some(url) = redis {
        let options = Options::default().prefix("tidings:chat:");
        builder = builder.store(RedisStore::connect_with(url, options).await?);
    }
    Ok(Router::new()
        .route("/", get(page))
        .nest_service("/rt", builder.build().router()))
}
