//! The iframe page (`<prefix>/iframe.html`): loads sockjs-client from `sockjs_url` on the
//! server's own origin, so the client can run the iframe-based transports through it.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use md5::{Digest, Md5};

use crate::transport::cache;
use crate::transport::respond::{method_not_allowed, not_found};

/// The page, byte for byte as sockjs-node sends it (no final newline), with a placeholder for
/// the script's URL. The protocol suite compares it line by line.
const TEMPLATE: &str = r#"<!DOCTYPE html>
<html>
<head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
  <script src="{{ sockjs_url }}"></script>
  <script>
    document.domain = document.domain;
    SockJS.bootstrap_iframe();
  </script>
</head>
<body>
  <h2>Don't panic!</h2>
  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>
</body>
</html>"#;

/// Whether `url` may be a service's `sockjs_url`: it starts with `/`, `http://` or `https://`
/// (what a browser can load as a script from the page), and holds no whitespace, control
/// character, `"`, `<` or `>`, so it cannot break out of the page's `src="…"` attribute.
pub(crate) fn valid_sockjs_url(url: &str) -> bool {
    let scheme = ["/", "http://", "https://"]
        .iter()
        .any(|prefix| url.starts_with(prefix));
    let safe = !url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '<' | '>'));
    scheme && safe
}

/// The page of one service, rendered and hashed once when its router is built.
#[derive(Debug)]
pub(crate) struct Page {
    body: Bytes,
    /// A strong validator: the quoted MD5 of the body in hex, as sockjs-node computes it. It
    /// depends only on the bytes, so it stays the same across requests, restarts and nodes.
    etag: HeaderValue,
}

impl Page {
    /// Renders the page for `sockjs_url`, which [`valid_sockjs_url`] has accepted.
    pub(crate) fn new(sockjs_url: &str) -> Page {
        let body = TEMPLATE.replacen("{{ sockjs_url }}", sockjs_url, 1);
        let etag = format!("\"{:x}\"", Md5::digest(body.as_bytes()));
        Page {
            body: Bytes::from(body),
            // Hex digits in quotes are always a valid header value.
            etag: HeaderValue::try_from(etag).unwrap_or(HeaderValue::from_static("\"\"")),
        }
    }

    /// Answers a request for a single-segment path `uri`: the page on `/iframe.html` and
    /// `/iframe-<[0-9a-z._-]*>.html` (any query), 304 when `If-None-Match` names the page's
    /// `ETag`, 405 for methods other than GET, 404 for any other path.
    pub(crate) fn serve(&self, method: &Method, uri: &Uri, request: &HeaderMap) -> Response {
        let name = uri.path().strip_prefix('/').unwrap_or_default();
        if !is_page_name(name) {
            return not_found();
        }
        if method != Method::GET {
            return method_not_allowed("GET");
        }
        let fresh = self.matches(request);
        let mut response = if fresh {
            // No body and no Content-Type on a 304; the validators and caching headers stay.
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            response
        } else {
            let mut response = Response::new(Body::from(self.body.clone()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=UTF-8"),
            );
            response
        };
        let headers = response.headers_mut();
        cache::for_a_year(headers);
        headers.insert(header::ETAG, self.etag.clone());
        response
    }

    /// Whether the request's `If-None-Match` names this page: `*`, or a list holding its tag
    /// (weakly compared, as RFC 9110 wants for `If-None-Match`).
    fn matches(&self, request: &HeaderMap) -> bool {
        let etag = self.etag.as_bytes();
        request
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag).as_bytes() == etag)
    }
}

/// `iframe.html`, or `iframe-<version>.html` where the version is made of `[0-9a-z._-]`
/// (sockjs-client once put its version there). Compared on the raw, still percent-encoded path
/// and case-sensitively: `IFRAME.HTML` and `iframe.HTML` are 404s.
fn is_page_name(name: &str) -> bool {
    let version = || name.strip_prefix("iframe-")?.strip_suffix(".html");
    name == "iframe.html"
        || version().is_some_and(|v| {
            v.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b"._-".contains(&b))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT_URL: &str = crate::engine::config::Config::DEFAULT_SOCKJS_URL;

    fn get(page: &Page, path: &str, pairs: &[(&'static str, &'static str)]) -> Response {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        let uri: Uri = path.parse().expect("uri");
        page.serve(&Method::GET, &uri, &headers)
    }

    #[test]
    fn page_names() {
        for ok in [
            "iframe.html",
            "iframe-.html",
            "iframe-1.6.1.html",
            "iframe-a_b-c.d.html",
            "iframe-..html",
        ] {
            assert!(is_page_name(ok), "{ok}");
        }
        for bad in [
            "",
            "iframe",
            "iframe.htm",
            "IFRAME.HTML",
            "IFRAME",
            "iframe.HTML",
            "iframe.xml",
            "iframe-",
            "iframe-html",
            "iframe-A.html",
            "iframe-%20.html",
            "iframe-/.html",
            "iframe-x.html.html/",
            "iframe1.html",
            "a.html",
        ] {
            assert!(!is_page_name(bad), "{bad}");
        }
    }

    #[test]
    fn sockjs_urls() {
        for ok in [
            DEFAULT_URL,
            "/static/sockjs.min.js",
            "//cdn.example/sockjs.js",
            "http://localhost:8081/sockjs.js?v=1&x=2",
        ] {
            assert!(valid_sockjs_url(ok), "{ok}");
        }
        for bad in [
            "",
            "sockjs.js",
            "ftp://x/sockjs.js",
            "javascript:alert(1)",
            "/a b.js",
            "/a\".js",
            "/a<script>.js",
            "/a\n.js",
        ] {
            assert!(!valid_sockjs_url(bad), "{bad:?}");
        }
    }

    #[test]
    fn url_is_substituted_once_and_etag_is_the_quoted_md5() {
        let page = Page::new("/s.js");
        let body = std::str::from_utf8(&page.body).expect("utf-8");
        assert!(
            body.contains("  <script src=\"/s.js\"></script>\n"),
            "{body}"
        );
        assert!(!body.contains("{{"));
        assert!(body.starts_with("<!DOCTYPE html>\n") && body.ends_with("</html>"));
        let etag = page.etag.to_str().expect("ascii");
        assert_eq!(etag.len(), 34);
        assert_eq!(etag, format!("\"{:x}\"", Md5::digest(body.as_bytes())));
        assert_eq!(Page::new("/s.js").etag, page.etag, "stable");
        assert_ne!(Page::new("/t.js").etag, page.etag);
    }

    #[test]
    fn not_modified_on_a_matching_tag() {
        let page = Page::new(DEFAULT_URL);
        let etag = page.etag.to_str().expect("ascii").to_owned();
        let fresh = |value: String| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::IF_NONE_MATCH,
                HeaderValue::try_from(value).expect("value"),
            );
            page.matches(&headers)
        };
        assert!(fresh(etag.clone()));
        assert!(fresh(format!("W/{etag}")));
        assert!(fresh(format!("\"other\", {etag}")));
        assert!(fresh("*".to_owned()));
        assert!(!fresh("\"other\"".to_owned()));
        assert!(!fresh(etag.trim_matches('"').to_owned()));
        assert!(!page.matches(&HeaderMap::new()));
    }

    #[test]
    fn responses() {
        let page = Page::new(DEFAULT_URL);
        let ok = get(&page, "/iframe.html?t=1", &[]);
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(
            ok.headers()[header::CONTENT_TYPE],
            "text/html; charset=UTF-8"
        );
        assert_eq!(ok.headers()[header::ETAG], page.etag);
        assert!(!ok.headers().contains_key(header::LAST_MODIFIED));

        let etag = page.etag.to_str().expect("ascii").to_owned();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::try_from(etag).expect("value"),
        );
        let cached = page.serve(
            &Method::GET,
            &"/iframe.html".parse().expect("uri"),
            &headers,
        );
        assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
        assert!(!cached.headers().contains_key(header::CONTENT_TYPE));

        assert_eq!(
            get(&page, "/iframe.xml", &[]).status(),
            StatusCode::NOT_FOUND
        );
        let post = page.serve(
            &Method::POST,
            &"/iframe.html".parse().expect("uri"),
            &headers,
        );
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(post.headers()[header::ALLOW], "GET");
        let post = page.serve(&Method::POST, &"/iframe".parse().expect("uri"), &headers);
        assert_eq!(post.status(), StatusCode::NOT_FOUND);
    }
}
