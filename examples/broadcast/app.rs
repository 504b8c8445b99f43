//! The broadcast service itself, shared by `examples/broadcast` and the load program (which runs
//! the very same service in a child process).

use axum::Router;
use tidings::{Retention, Tidings};

/// `/broadcast`: every message any client sends goes, verbatim, to every session. The broadcast
/// topic keeps `retention` messages; a subscriber further behind is closed as lagging.
pub(crate) fn app(retention: usize) -> Router {
    let tidings = Tidings::builder()
        .retention(Retention {
            messages: retention,
            bytes: 64 << 20,
        })
        .max_lag(retention as u64)
        .on_message(|channel, text| async move {
            if let Err(error) = channel.hub().broadcast(text).await {
                tracing::warn!(%error, "broadcast failed");
            }
        })
        .build();
    Router::new().nest_service("/broadcast", tidings.router())
}
