//! The `c` parameter of the jsonp and htmlfile transports: the name of the function the
//! response calls.
//!
//! The name is written into a script unescaped, so it is an XSS vector: only names made of
//! `[a-zA-Z0-9_.-]` are accepted, as sockjs-node does.

use axum::http::{StatusCode, Uri};
use axum::response::Response;

use super::respond::plain;

/// A validated callback name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Callback(String);

/// Why a callback was refused. Both answers are 500 with sockjs-node's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CallbackError {
    /// `c` is absent or empty.
    Missing,
    /// `c` has a character outside `[a-zA-Z0-9_.-]`.
    Invalid,
}

impl Callback {
    /// The `c` query parameter of `uri`.
    pub(crate) fn from_uri(uri: &Uri) -> Result<Self, CallbackError> {
        let query = uri.query().unwrap_or_default();
        let c = form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| name == "c")
            .map(|(_, value)| value);
        Callback::parse(c.as_deref())
    }

    /// Validates a decoded callback name.
    pub(crate) fn parse(c: Option<&str>) -> Result<Self, CallbackError> {
        match c {
            None | Some("") => Err(CallbackError::Missing),
            Some(c)
                if c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) =>
            {
                Ok(Callback(c.to_owned()))
            }
            Some(_) => Err(CallbackError::Invalid),
        }
    }

    /// The name, safe to write into a script.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl CallbackError {
    /// 500 with the text sockjs-node answers.
    pub(crate) fn response(self) -> Response {
        let body = match self {
            CallbackError::Missing => "\"callback\" parameter required",
            CallbackError::Invalid => "invalid \"callback\" parameter",
        };
        let mut response = plain(StatusCode::INTERNAL_SERVER_ERROR, body);
        // Answers on session URLs are never cached, errors included (as sockjs-node).
        super::cache::never(response.headers_mut());
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(uri: &'static str) -> Result<Callback, CallbackError> {
        Callback::from_uri(&Uri::from_static(uri))
    }

    #[test]
    fn names_sockjs_client_uses_are_accepted() {
        assert_eq!(
            from("/a/b/jsonp?c=_jp.abc123").map(|c| c.0),
            Ok("_jp.abc123".into())
        );
        assert_eq!(
            from("/a/b/jsonp?t=1&c=a-b_c.d").map(|c| c.0),
            Ok("a-b_c.d".into())
        );
    }

    #[test]
    fn missing_or_empty_is_required() {
        assert_eq!(from("/a/b/jsonp"), Err(CallbackError::Missing));
        assert_eq!(from("/a/b/jsonp?c="), Err(CallbackError::Missing));
        assert_eq!(from("/a/b/jsonp?d=x"), Err(CallbackError::Missing));
    }

    #[test]
    fn anything_that_could_break_out_of_a_script_is_invalid() {
        for uri in [
            "/a/b/jsonp?c=%20",
            "/a/b/jsonp?c=*",
            "/a/b/jsonp?c=abc(",
            "/a/b/jsonp?c=abc%28",
            "/a/b/jsonp?c=a%3Cscript%3E",
            "/a/b/jsonp?c=%C3%A9",
        ] {
            assert_eq!(
                Callback::from_uri(&Uri::from_static(uri)),
                Err(CallbackError::Invalid),
                "{uri}"
            );
        }
    }
}
