//! The auth hook's view of a request, and its refusal.

use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// What the auth hook sees of the request that opens a channel.
#[derive(Clone, Debug)]
pub struct Handshake {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) headers: HeaderMap,
}

impl Handshake {
    /// A handshake for `uri` with `headers`, for testing an auth hook.
    pub fn new(method: Method, uri: Uri, headers: HeaderMap) -> Self {
        Handshake {
            method,
            uri,
            headers,
        }
    }

    /// The request method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The request URI, with the query string.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// All request headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// One header as text, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    /// A query parameter, percent-decoded.
    pub fn query(&self, name: &str) -> Option<String> {
        let query = self.uri.query()?;
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// A cookie's value.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(cookie::Cookie::split_parse)
            .filter_map(Result::ok)
            .find(|c| c.name() == name)
            .map(|c| c.value().to_owned())
    }

    /// The `Origin` header, if any.
    pub fn origin(&self) -> Option<&str> {
        self.header("origin")
    }
}

/// The auth hook's refusal: the request is answered with this status and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    status: StatusCode,
    message: String,
}

impl Rejection {
    /// Refuses with `status` and a plain-text `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Rejection {
            status,
            message: message.into(),
        }
    }

    /// 401 with `message`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Rejection::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 403 with `message`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Rejection::new(StatusCode::FORBIDDEN, message)
    }

    /// The status the request is answered with.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        crate::transport::respond::plain(self.status, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake(uri: &str, cookie: Option<&str>) -> Handshake {
        let mut headers = HeaderMap::new();
        if let Some(c) = cookie {
            headers.insert(header::COOKIE, c.parse().unwrap());
        }
        Handshake::new(Method::GET, uri.parse().unwrap(), headers)
    }

    #[test]
    fn reads_query_and_cookies() {
        let h = handshake("/rt/websocket?token=a%20b&x=1", Some("sid=42; theme=dark"));
        assert_eq!(h.query("token").as_deref(), Some("a b"));
        assert_eq!(h.query("missing"), None);
        assert_eq!(h.cookie("theme").as_deref(), Some("dark"));
        assert_eq!(h.cookie("nope"), None);
    }

    #[test]
    fn bad_percent_escapes_are_kept() {
        let h = handshake("/?a=%zz%4", None);
        assert_eq!(h.query("a").as_deref(), Some("%zz%4"));
    }
}
