//! The SockJS reference services, shared by `examples/echo` and `examples/cluster` (which runs
//! them on several nodes sharing one Redis, where they must still pass the protocol's tests).

use axum::Router;
use tidings::store::StoreError;
use tidings::{Builder, Tidings};
use tidings_redis::{Options, RedisStore};

use crate::served::Served;

/// A service that echoes every message back to its sender.
fn echo(sockjs_url: &str) -> Builder {
    Tidings::builder()
        .sockjs_url(sockjs_url)
        .on_message(|channel, text| async move {
            if let Err(error) = channel.send(text).await {
                tracing::warn!(%error, "echo failed");
            }
        })
}

/// The four services the protocol's test suite expects, ready to serve: `/echo` (response limit
/// 4096 bytes), `/close` (closes every new session with `3000 "Go away!"`),
/// `/disabled_websocket_echo` and `/cookie_needed_echo`. Each iframe page loads sockjs-client
/// from `sockjs_url`.
///
/// With `redis`, sessions live in that Redis, each service under a prefix of its own
/// (`tidings:echo:`, `tidings:close:`, …): every service's sweeper ends the sessions that
/// expire in its store with its own handlers, so no service may see another's sessions. Fails
/// only when Redis cannot be reached.
pub(crate) async fn app(sockjs_url: &str, redis: Option<&str>) -> Result<Served, StoreError> {
    let close = Tidings::builder()
        .sockjs_url(sockjs_url)
        .on_open(|channel| async move {
            let _ = channel.close(3000, "Go away!").await;
        });
    let services = [
        ("echo", echo(sockjs_url).response_limit(4096)),
        ("close", close),
        ("disabled_websocket_echo", echo(sockjs_url).websocket(false)),
        ("cookie_needed_echo", echo(sockjs_url).cookie_needed(true)),
    ];
    let mut router = Router::new();
    let mut built = Vec::new();
    for (name, mut builder) in services {
        if let Some(url) = redis {
            let options = Options::default().prefix(format!("tidings:{name}:"));
            builder = builder.store(RedisStore::connect_urls(url, options).await?);
        }
        let tidings = builder.build();
        router = router.nest_service(&format!("/{name}"), tidings.router());
        built.push(tidings);
    }
    Ok(Served::new(router, built))
}
