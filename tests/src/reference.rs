//! The services of the SockJS protocol's test suite, built as `examples/echo` builds them.

use axum::Router;
use tidings::Builder;

/// `/echo`: every message goes straight back. A session that closed meanwhile drops its echo.
pub fn echo() -> Builder {
    crate::builder().on_message(|channel, text| async move {
        let _ = channel.send(text).await;
    })
}

/// `/close`: every session is closed as it opens, with 3000 "Go away!".
pub fn closing() -> Builder {
    crate::builder().on_open(|channel| async move {
        channel.close(3000, "Go away!").await.expect("close");
    })
}

/// The four services at their paths: `/echo` (response limit 4096, as the suite wants),
/// `/close`, `/disabled_websocket_echo` and `/cookie_needed_echo`. Tests mount more beside them.
pub fn services() -> Router {
    Router::new()
        .nest_service("/echo", echo().response_limit(4096).build().router())
        .nest_service("/close", closing().build().router())
        .nest_service(
            "/disabled_websocket_echo",
            echo().websocket(false).build().router(),
        )
        .nest_service(
            "/cookie_needed_echo",
            echo().cookie_needed(true).build().router(),
        )
}
