//! Routes: the axum router of a service. Each protocol's routes pick a transport and a protocol
//! for each URL and pass every request that opens or uses a channel through [`admission`].
//!
//! - [`sockjs`]: the SockJS protocol on every SockJS transport, and the raw WebSocket.
//! - [`native`]: the native protocol on WebSocket, Server-Sent Events, streaming and polling,
//!   and its JS client.
//! - [`stomp`]: STOMP inside SockJS and on the raw WebSocket, a router of its own.

use std::sync::Arc;

use axum::Router;
use axum::extract::{OriginalUri, Request};
use axum::middleware::{self, Next};
use axum::response::Response;

use crate::transport::respond::not_found;
use state::Routes;

pub(crate) mod admission;
pub(crate) mod handshake;
pub(crate) mod native;
pub(crate) mod sockjs;
pub(crate) mod state;
pub(crate) mod stomp;

/// The routes of one service.
pub(crate) fn router(routes: Arc<Routes>) -> Router {
    finish(
        sockjs::routes(&routes, sockjs::Plain).merge(native::routes()),
        routes,
    )
}

/// What every router of a service ends with: 404 for the rest, and for `<prefix>//…`.
fn finish(router: Router<Arc<Routes>>, routes: Arc<Routes>) -> Router {
    router
        .fallback(|| async { not_found() })
        .layer(middleware::from_fn(doubled_slash))
        .with_state(routes)
}

/// 404 for `<prefix>//…`. `nest_service` strips `<prefix>/` from it just as from `<prefix>/…`,
/// so without this check `<prefix>//` would get the greeting and `<prefix>//info` the info;
/// SockJS wants both to be 404.
///
/// Not an `async fn`: one would keep `original`, which shares the buffer the request was read
/// into, for as long as the response takes (a poll waits up to a heartbeat).
fn doubled_slash(
    original: OriginalUri,
    request: Request,
    next: Next,
) -> impl Future<Output = Response> + Send {
    let doubled = original
        .path()
        .strip_suffix(request.uri().path())
        .is_some_and(|prefix| prefix.ends_with('/'));
    drop(original);
    async move {
        if doubled {
            return not_found();
        }
        next.run(request).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::{Method, Request};
    use futures::StreamExt;
    use tokio::time::Instant;
    use tower::ServiceExt;

    use super::*;
    use crate::engine::config::Config;
    use crate::engine::context::{CloseHandler, Handlers, testing};

    fn service(handlers: Handlers) -> Router {
        let engine = testing::engine(Config::default(), handlers);
        router(Arc::new(Routes::anonymous(engine)))
    }

    /// Sends one request to `router` in process, so time can be paused.
    async fn request(router: &Router, method: Method, uri: &str) -> axum::body::BodyDataStream {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .expect("request");
        let response = router.clone().oneshot(request).await.expect("infallible");
        assert_eq!(response.status(), 200, "{uri}");
        response.into_body().into_data_stream()
    }

    async fn next_chunk(body: &mut axum::body::BodyDataStream) -> String {
        let chunk = body.next().await.expect("a chunk").expect("body");
        String::from_utf8(chunk.to_vec()).expect("utf-8")
    }

    #[tokio::test(start_paused = true)]
    async fn every_transport_beats_after_a_heartbeat_of_silence() {
        let router = service(Handlers::default());
        // (method, transport, whether a prelude comes first, the heartbeat as framed)
        let cases = [
            (Method::POST, "xhr", false, "h\n"),
            (Method::POST, "xhr_streaming", true, "h\n"),
            (Method::GET, "eventsource", true, "data: h\r\n\r\n"),
            (
                Method::GET,
                "htmlfile?c=cb",
                true,
                "<script>\np(\"h\");\n</script>\r\n",
            ),
            (Method::GET, "jsonp?c=cb", false, "/**/cb(\"h\");\r\n"),
        ];
        for (i, (method, transport, prelude, beat)) in cases.into_iter().enumerate() {
            let mut opening = request(&router, Method::POST, &format!("/0/s{i}/xhr")).await;
            assert_eq!(next_chunk(&mut opening).await, "o\n");
            let started = Instant::now();
            let mut body = request(&router, method, &format!("/0/s{i}/{transport}")).await;
            if prelude {
                next_chunk(&mut body).await;
            }
            assert_eq!(next_chunk(&mut body).await, beat, "{transport}");
            let waited = started.elapsed();
            assert!(
                waited >= Duration::from_secs(25) && waited < Duration::from_secs(26),
                "{transport}: beat after {waited:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_unpolled_session_closes_after_the_disconnect_delay_and_its_id_starts_afresh() {
        let (tx, mut closes) = tokio::sync::mpsc::unbounded_channel();
        let on_close: CloseHandler = Arc::new(move |_, closed| {
            let tx = tx.clone();
            Box::pin(async move {
                let _ = tx.send((closed.code, Instant::now()));
            })
        });
        let router = service(Handlers {
            close: Some(on_close),
            ..Handlers::default()
        });
        let mut body = request(&router, Method::POST, "/0/s/xhr").await;
        assert_eq!(next_chunk(&mut body).await, "o\n");
        let detached = Instant::now();
        let (code, at) = closes.recv().await.expect("on_close");
        assert_eq!(code, tidings_core::CloseCode::SESSION_EXPIRED);
        let after = at - detached;
        // Swept on the first pass (every second) after the 5 s delay.
        assert!(
            after >= Duration::from_secs(5) && after <= Duration::from_secs(7),
            "closed after {after:?}"
        );
        let mut body = request(&router, Method::POST, "/0/s/xhr").await;
        assert_eq!(next_chunk(&mut body).await, "o\n");
    }
}
