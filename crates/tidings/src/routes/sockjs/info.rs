//! `GET <prefix>/info`: what the service offers, asked by the client before it picks a
//! transport; and its preflight.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde::Serialize;

use crate::engine::config::Config;
use crate::routes::state::Routes;
use crate::transport::respond::method_not_allowed;
use crate::transport::{cache, cors};

/// The methods `/info` answers, for preflights and 405s.
const METHODS: &str = "OPTIONS, GET";

/// The body of `/info`, in the field order sockjs-node sends.
#[derive(Serialize)]
struct Info {
    websocket: bool,
    cookie_needed: bool,
    /// Ignored by clients, but the protocol suite expects exactly `["*:*"]`.
    origins: [&'static str; 1],
    /// Fresh on every call; the client uses it to seed its own randomness.
    entropy: u32,
}

/// Answers `<prefix>/info`: `GET` with the capabilities, `OPTIONS` with a preflight, other
/// methods with 405.
pub(crate) async fn serve(
    State(routes): State<Arc<Routes>>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    match method {
        Method::GET => info(&routes.engine.config, &headers),
        Method::OPTIONS => cors::preflight(&headers, METHODS),
        _ => method_not_allowed(METHODS),
    }
}

/// 200 with the JSON capabilities: never cached, CORS, and no cookie even on `cookie_needed`
/// services. The client times this call to choose its timeouts, so it does no I/O.
fn info(config: &Config, request: &HeaderMap) -> Response {
    let body = body(config.websocket, config.cookie_needed, rand::random());
    let mut response = Response::new(body.into());
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    cache::never(headers);
    cors::allow(request, headers);
    response
}

fn body(websocket: bool, cookie_needed: bool, entropy: u32) -> String {
    let info = Info {
        websocket,
        cookie_needed,
        origins: ["*:*"],
        entropy,
    };
    // Serializing bools, a string and an integer cannot fail.
    serde_json::to_string(&info).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_fields_in_order() {
        assert_eq!(
            body(true, false, 3273985189),
            r#"{"websocket":true,"cookie_needed":false,"origins":["*:*"],"entropy":3273985189}"#
        );
        assert_eq!(
            body(false, true, u32::MAX),
            r#"{"websocket":false,"cookie_needed":true,"origins":["*:*"],"entropy":4294967295}"#
        );
    }
}
