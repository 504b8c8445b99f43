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

/// The request's `Origin` header, if it has a readable one.
pub(crate) fn request_origin(request: &HeaderMap) -> Option<&str> {
    request.get(header::ORIGIN).and_then(|v| v.to_str().ok())
}
