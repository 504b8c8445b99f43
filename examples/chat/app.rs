//! The chat service itself, shared by `examples/chat` and `examples/cluster` (which runs the very
//! same service on several nodes sharing one Redis).
//!
//! Besides the page and the Tidings service, `POST /publish` broadcasts its body (UTF-8 text) to
//! the room from the server side, as a backend would. It answers `200 {"offset":N}` once the
//! message is stored (`N` is its offset in the room's topic), and `503
//! {"error":"session store: store unavailable: …"}` when the store failed (Redis unreachable, or
//! silent for longer than its timeout). A `503` does not always mean the message was not
//! stored: when Redis took it and only its answer was lost, it is delivered like any other. The
//! cluster's browser tests (`tests/browser_cluster.rs`) publish through it.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tidings::store::StoreError;
use tidings::{Hub, Retention, Tidings};
use tidings_redis::{Options, RedisStore};

use crate::served::Served;

/// The heartbeat interval, in milliseconds, unless the command line says otherwise.
pub(crate) const HEARTBEAT_MS: u64 = 25_000;

/// The chat page: plain HTML and a module script, no framework.
async fn page() -> Html<&'static str> {
    Html(include_str!("index.html"))
}

/// `POST /publish`: broadcasts the body to the room.
async fn publish(State(hub): State<Hub>, text: String) -> Response {
    match hub.broadcast(text).await {
        Ok(offset) => axum::Json(json!({ "offset": offset.0 })).into_response(),
        Err(error) => {
            let body = axum::Json(json!({ "error": error.to_string() }));
            (error.status(), body).into_response()
        }
    }
}

/// The page at `/`, `POST /publish` and the Tidings service at `/rt`: every message anyone sends
/// is broadcast to everyone. With `redis`, sessions and the room live in that Redis (under
/// `tidings:chat:`, apart from the other examples), so any number of nodes can serve them;
/// without it, in this process.
///
/// Fails only when Redis cannot be reached.
pub(crate) async fn app(heartbeat: Duration, redis: Option<&str>) -> Result<Served, StoreError> {
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
    let tidings = builder.build();
    let router = Router::new()
        .route("/", get(page))
        .route("/publish", post(publish))
        .with_state(tidings.hub())
        .nest_service("/rt", tidings.router());
    Ok(Served::new(router, vec![tidings]))
}
