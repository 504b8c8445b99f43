//! The broadcast service itself, shared by `examples/broadcast` and the load program (which runs
//! the very same service in a child process).

use axum::Router;
use tidings::{Builder, Retention, Tidings, Topic};

use crate::served::Served;

/// The broadcast service's configuration: every message any client sends goes, verbatim, to
/// every session. The broadcast topic keeps `retention` messages; a subscriber further behind is
/// closed as lagging. Callers may change more (heartbeat, store) before [`router`] builds it.
pub(crate) fn builder(retention: usize) -> Builder {
    Tidings::builder()
        .retention(Retention {
            messages: retention,
            bytes: 64 << 20,
            age: None,
        })
        .max_lag(retention as u64)
        // What a client sent together goes out as one batch: one store operation (on Redis, one
        // round trip) however many messages it holds.
        .on_messages(|channel, texts| async move {
            let everyone = Topic::broadcast();
            if let Err(error) = channel.hub().publish_batch(&everyone, texts).await {
                tracing::warn!(%error, "broadcast failed");
            }
        })
}

/// The service `builder` configures, under `/broadcast`, and its STOMP endpoint at `/stomp`,
/// where a SEND to a `/topic/…` reaches every STOMP subscriber of it, as Spring's simple broker
/// does (STOMP clients see only their subscriptions, not the broadcast of the others).
pub(crate) fn router(builder: Builder) -> Served {
    let tidings = builder.build();
    let router = Router::new()
        .nest_service("/broadcast", tidings.router())
        .nest_service("/stomp", tidings.stomp_router());
    Served::new(router, vec![tidings])
}
