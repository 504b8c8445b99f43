//! The broadcast service itself, shared by `examples/broadcast` and the load program (which runs
//! the very same service in a child process).

use axum::Router;
use tidings::{Builder, Retention, Tidings};

/// `/broadcast` with the library's defaults otherwise (a `MemoryStore`, a 25 s heartbeat).
#[allow(
    dead_code,
    reason = "the one-call form; both programs here configure more through `builder` and `router`"
)]
pub(crate) fn app(retention: usize) -> Router {
    router(builder(retention))
}

/// The broadcast service's configuration: every message any client sends goes, verbatim, to
/// every session. The broadcast topic keeps `retention` messages; a subscriber further behind is
/// closed as lagging. Callers may change more (heartbeat, store) before [`router`] builds it.
pub(crate) fn builder(retention: usize) -> Builder {
    Tidings::builder()
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
}

/// The service `builder` configures, under `/broadcast`, and its STOMP endpoint at `/stomp`,
/// where a SEND to a `/topic/…` reaches every STOMP subscriber of it, as Spring's simple broker
/// does (STOMP clients see only their subscriptions, not the broadcast of the others).
pub(crate) fn router(builder: Builder) -> Router {
    let tidings = builder.build();
    Router::new()
        .nest_service("/broadcast", tidings.router())
        .nest_service("/stomp", tidings.stomp_router())
}
