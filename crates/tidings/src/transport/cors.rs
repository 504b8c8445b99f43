//! CORS for responses that scripts read cross-origin (SockJS `/info`, the receiving responses
//! of the framings that need it, sends), and the preflights in front of them.
//!
//! Every origin is allowed, with credentials: SockJS clients send cookies with their XHRs when
//! `cookie_needed` is on, and the native client sends its own. Which origins may open a channel
//! is decided when one opens ([`Config::allowed_origins`](crate::Config::allowed_origins)), not
//! here.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

use super::cache;

/// Adds the CORS headers for a request with the headers `request`: its `Origin` echoed (the
/// literal `null` of `file://` pages included) with credentials allowed, or `*` without
/// credentials when there is no `Origin`; and `Vary: Origin`, since the answer depends on it.
pub(crate) fn allow(request: &HeaderMap, response: &mut HeaderMap) {
    // An empty Origin is treated as none, as sockjs-node does: `*` is the only safe answer.
    match request.get(header::ORIGIN).filter(|o| !o.is_empty()) {
        Some(origin) => {
            response.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            response.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        None => {
            response.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
    }
    response.insert(header::VARY, HeaderValue::from_static("Origin"));
}

/// The answer to a CORS preflight (`OPTIONS`) on a URL that also serves `methods` (e.g.
/// `"OPTIONS, GET"`): 204 without a body, cacheable for a year, CORS as in [`allow`], and the
/// requested headers allowed.
pub(crate) fn preflight(request: &HeaderMap, methods: &'static str) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    cache::for_a_year(headers);
    allow(request, headers);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(methods),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from(cache::ONE_YEAR_SECS),
    );
    if let Some(requested) = requested_headers(request) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested);
    }
    response
}

/// `Access-Control-Request-Headers`, its lines joined, or `None` when absent or empty.
fn requested_headers(request: &HeaderMap) -> Option<HeaderValue> {
    let mut lines = request
        .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .iter()
        .filter(|v| !v.as_bytes().trim_ascii().is_empty());
    let first = lines.next()?;
    let mut joined = first.as_bytes().to_vec();
    for line in lines {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(line.as_bytes());
    }
    // Each part was a valid header value, so the joined one is too.
    HeaderValue::from_bytes(&joined).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    fn cors(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut response = HeaderMap::new();
        allow(&request(pairs), &mut response);
        response
    }

    #[test]
    fn origin_is_echoed_with_credentials() {
        let h = cors(&[("origin", "https://app.example")]);
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example"
        );
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(h[header::VARY], "Origin");
    }

    #[test]
    fn null_origin_is_echoed() {
        let h = cors(&[("origin", "null")]);
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "null");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    }

    #[test]
    fn no_or_empty_origin_is_star_without_credentials() {
        for h in [cors(&[]), cors(&[("origin", "")])] {
            assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
            assert!(!h.contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));
            assert_eq!(h[header::VARY], "Origin");
        }
    }

    #[test]
    fn preflight_allows_methods_and_requested_headers() {
        let response = preflight(
            &request(&[
                ("origin", "https://app.example"),
                ("access-control-request-headers", "a, b, c"),
            ]),
            "OPTIONS, GET",
        );
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let h = response.headers();
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_METHODS], "OPTIONS, GET");
        assert_eq!(h[header::ACCESS_CONTROL_MAX_AGE], "31536000");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_HEADERS], "a, b, c");
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example"
        );
        assert_eq!(h[header::CACHE_CONTROL], "public, max-age=31536000");
        assert!(h.contains_key(header::EXPIRES));
        assert!(!h.contains_key(header::CONTENT_TYPE));
    }

    #[test]
    fn requested_headers_absent_or_empty_are_not_allowed() {
        for pairs in [
            &[][..],
            &[("access-control-request-headers", "")][..],
            &[("access-control-request-headers", "  ")][..],
        ] {
            let response = preflight(&request(pairs), "OPTIONS, POST");
            assert!(
                !response
                    .headers()
                    .contains_key(header::ACCESS_CONTROL_ALLOW_HEADERS),
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn requested_headers_on_several_lines_are_joined() {
        let h = request(&[
            ("access-control-request-headers", "a"),
            ("access-control-request-headers", ""),
            ("access-control-request-headers", "b"),
        ]);
        assert_eq!(requested_headers(&h).expect("joined"), "a, b");
    }
}
