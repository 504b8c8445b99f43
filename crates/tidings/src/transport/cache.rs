//! The two caching policies of SockJS responses, in one place.
//!
//! Every response that carries session data or capabilities is never cached; the iframe page
//! and every preflight are cached for a year.

use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, HeaderValue, header};

/// How long cacheable responses may be kept, in seconds (a year, as sockjs-node).
pub(crate) const ONE_YEAR_SECS: u64 = 365 * 24 * 60 * 60;

/// The exact `Cache-Control` of responses that must never be cached. The protocol suite compares
/// it as a string; `no-store` also keeps iOS 6 from caching POST answers.
const NEVER: &str = "no-store, no-cache, no-transform, must-revalidate, max-age=0";

/// The `Cache-Control` of cacheable responses.
const A_YEAR: &str = "public, max-age=31536000";

/// Marks a response as never cached: `Cache-Control` only, no `Expires`, no `Last-Modified`.
pub(crate) fn never(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(NEVER));
}

/// Marks a response as cacheable for a year: `Cache-Control` and an `Expires` a year from now.
pub(crate) fn for_a_year(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(A_YEAR));
    let expires = SystemTime::now() + Duration::from_secs(ONE_YEAR_SECS);
    // An HTTP date is plain ASCII, so this always succeeds.
    if let Ok(value) = HeaderValue::try_from(httpdate::fmt_http_date(expires)) {
        headers.insert(header::EXPIRES, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_year_is_what_the_header_says() {
        assert_eq!(A_YEAR, format!("public, max-age={ONE_YEAR_SECS}"));
    }

    #[test]
    fn never_cached_has_no_expiry() {
        let mut headers = HeaderMap::new();
        never(&mut headers);
        assert_eq!(
            headers[header::CACHE_CONTROL],
            "no-store, no-cache, no-transform, must-revalidate, max-age=0"
        );
        assert!(!headers.contains_key(header::EXPIRES));
        assert!(!headers.contains_key(header::LAST_MODIFIED));
    }

    #[test]
    fn cacheable_expires_about_a_year_ahead() {
        let mut headers = HeaderMap::new();
        for_a_year(&mut headers);
        assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=31536000");
        let expires = headers[header::EXPIRES].to_str().expect("ascii");
        let expires = httpdate::parse_http_date(expires).expect("an HTTP date");
        let ahead = expires
            .duration_since(SystemTime::now())
            .expect("in the future");
        assert!(ahead > Duration::from_secs(ONE_YEAR_SECS - 60), "{ahead:?}");
        assert!(ahead <= Duration::from_secs(ONE_YEAR_SECS), "{ahead:?}");
    }
}
