//! The `JSESSIONID` cookie of services with [`Config::cookie_needed`] on.
//!
//! Some load balancers keep a client on one node only by a `JSESSIONID` cookie. SockJS does not
//! need the cookie itself: it sets one so that such a balancer has something to stick to, and
//! echoes the value the balancer (or an earlier answer) gave the client.

use axum::http::{HeaderMap, HeaderValue, header};

use crate::engine::config::Config;

/// What is set when the request carries no usable `JSESSIONID`: sockjs-node's `dummy`.
const DUMMY: &str = "JSESSIONID=dummy; path=/";

/// On a service with [`Config::cookie_needed`] on, adds `Set-Cookie: JSESSIONID=<v>; path=/` to
/// a response on a session URL, where `<v>` is the request's `JSESSIONID` cookie, or `dummy`
/// when it has none (or an empty one). Does nothing otherwise.
///
/// Only session URLs set it: the greeting, `/info` and the iframe page never do.
pub(crate) fn set_jsessionid(config: &Config, request: &HeaderMap, response: &mut HeaderMap) {
    if config.cookie_needed {
        response.append(header::SET_COOKIE, jsessionid(request));
    }
}

/// `JSESSIONID=<v>; path=/` for the request with headers `request`.
fn jsessionid(request: &HeaderMap) -> HeaderValue {
    let echoed = request
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == "JSESSIONID" && !c.value().is_empty())
        .and_then(|c| HeaderValue::try_from(format!("JSESSIONID={}; path=/", c.value())).ok());
    echoed.unwrap_or_else(|| HeaderValue::from_static(DUMMY))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_cookie(cookie_needed: bool, cookie: Option<&'static str>) -> Vec<String> {
        let config = Config {
            cookie_needed,
            ..Config::default()
        };
        let mut request = HeaderMap::new();
        if let Some(cookie) = cookie {
            request.insert(header::COOKIE, HeaderValue::from_static(cookie));
        }
        let mut response = HeaderMap::new();
        set_jsessionid(&config, &request, &mut response);
        response
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().expect("ascii").to_owned())
            .collect()
    }

    #[test]
    fn off_sets_nothing() {
        assert!(set_cookie(false, None).is_empty());
        assert!(set_cookie(false, Some("JSESSIONID=abc")).is_empty());
    }

    #[test]
    fn without_a_cookie_sets_dummy() {
        assert_eq!(set_cookie(true, None), ["JSESSIONID=dummy; path=/"]);
        assert_eq!(
            set_cookie(true, Some("theme=dark")),
            ["JSESSIONID=dummy; path=/"]
        );
        assert_eq!(
            set_cookie(true, Some("JSESSIONID=")),
            ["JSESSIONID=dummy; path=/"]
        );
    }

    #[test]
    fn echoes_the_request_cookie() {
        assert_eq!(
            set_cookie(true, Some("JSESSIONID=abcdef")),
            ["JSESSIONID=abcdef; path=/"]
        );
        assert_eq!(
            set_cookie(true, Some("theme=dark; JSESSIONID=n1.x; other=1")),
            ["JSESSIONID=n1.x; path=/"]
        );
    }

    #[test]
    fn cookie_names_are_case_sensitive() {
        assert_eq!(
            set_cookie(true, Some("jsessionid=abc")),
            ["JSESSIONID=dummy; path=/"]
        );
    }

    #[test]
    fn unreadable_cookie_header_falls_back_to_dummy() {
        let config = Config {
            cookie_needed: true,
            ..Config::default()
        };
        let mut request = HeaderMap::new();
        request.insert(
            header::COOKIE,
            HeaderValue::from_bytes(b"JSESSIONID=\xff").expect("opaque bytes are a valid value"),
        );
        let mut response = HeaderMap::new();
        set_jsessionid(&config, &request, &mut response);
        assert_eq!(response[header::SET_COOKIE], "JSESSIONID=dummy; path=/");
    }
}
