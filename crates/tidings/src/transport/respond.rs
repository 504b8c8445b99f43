//! Small HTTP answers shared by the transports and the routes.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

/// `text/plain; charset=UTF-8` with `body`.
pub(crate) fn plain(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    response
}

/// 405 with `Allow: <allow>`, no content type, empty body.
pub(crate) fn method_not_allowed(allow: &'static str) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// 404 with a short plain-text body.
pub(crate) fn not_found() -> Response {
    plain(StatusCode::NOT_FOUND, "404 Error: Page not found\n")
}

/// A copy of the headers `names` of `request`, for an answer that is made after a wait.
///
/// The server parses a request's head into one buffer and the request's header values share
/// it, so one value kept keeps the whole buffer (8 KiB with [`serve`](crate::serve)), and the
/// server reads the connection meanwhile into another. A poll waits up to a heartbeat: what it
/// needs of its request to answer (CORS, cookies) is copied out before it waits.
pub(crate) fn detached(request: &HeaderMap, names: &[header::HeaderName]) -> HeaderMap {
    let mut copy = HeaderMap::new();
    for name in names {
        for value in request.get_all(name) {
            if let Ok(value) = HeaderValue::from_bytes(value.as_bytes()) {
                copy.append(name.clone(), value);
            }
        }
    }
    copy
}

/// The request's `Origin` header, if it has a readable one.
pub(crate) fn request_origin(request: &HeaderMap) -> Option<&str> {
    request.get(header::ORIGIN).and_then(|v| v.to_str().ok())
}
