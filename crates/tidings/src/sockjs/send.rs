//! `POST …/xhr_send` and `POST …/jsonp_send`: messages from the client to a session that a
//! receiving request created.
//!
//! A send never creates a session. Each message goes to `on_message` in order, awaited, as on
//! the WebSocket transport.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use tidings_core::sockjs::{self, PayloadError};

use super::{cache, cookie, cors};
use crate::error::Error;
use crate::http_util::{not_found, plain, request_origin, send_body_limit};
use crate::router::error_response;
use crate::session::Session;
use crate::store::Alias;
use crate::tidings::Shared;

/// Which send endpoint a request came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sender {
    /// `xhr_send`: a raw JSON array body; 204 on success; CORS.
    Xhr,
    /// `jsonp_send`: a form with the array in `d`, or a raw body; 200 `ok` on success.
    Jsonp,
}

/// Serves one send request to the session `key`.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    sender: Sender,
    key: &str,
    request: HeaderMap,
    body: Body,
) -> Response {
    let mut response = deliver(&shared, sender, key, &request, body).await;
    let headers = response.headers_mut();
    cache::never(headers);
    if sender == Sender::Xhr {
        cors::allow(&request, headers);
    }
    cookie::set_jsessionid(&shared.config, &request, headers);
    response
}

async fn deliver(
    shared: &Arc<Shared>,
    sender: Sender,
    key: &str,
    request: &HeaderMap,
    body: Body,
) -> Response {
    if !shared.config.origin_allowed(request_origin(request)) {
        return plain(StatusCode::FORBIDDEN, "Origin not allowed\n");
    }
    let state = match shared
        .hub
        .store()
        .channel_by_alias(&Alias::SockJs(key.to_owned()))
        .await
    {
        Ok(Some(state)) => state,
        Ok(None) => return not_found(),
        Err(error) => return error_response(&error.into()),
    };
    let limit = send_body_limit(shared.config.max_message_size);
    let Ok(body) = to_bytes(body, limit).await else {
        return plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body over {limit} bytes.\n"),
        );
    };
    let messages = match sender {
        Sender::Xhr => sockjs::parse_send_body(&body),
        Sender::Jsonp => parse_jsonp_body(request, &body),
    };
    let messages = match messages {
        Ok(messages) => messages,
        Err(error) => return plain(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
    };
    let max = shared.config.max_message_size;
    if let Some(size) = messages.iter().map(String::len).find(|len| *len > max) {
        return error_response(&Error::MessageTooLarge { size, limit: max });
    }
    // A closed session still answers sends until it is forgotten, as sockjs-node does; what it
    // is sent goes nowhere.
    if state.closed.is_none() {
        let session = Session::of(shared, &state);
        for message in messages {
            session.incoming(message).await;
        }
    }
    match sender {
        // No body, yet a content type: what sockjs-node answers.
        Sender::Xhr => plain(StatusCode::NO_CONTENT, Body::empty()),
        // 200 with a body rather than 204: old browsers' form posts trip over an empty answer.
        Sender::Jsonp => plain(StatusCode::OK, "ok"),
    }
}

/// A `jsonp_send` body: the form field `d` (sockjs-client posts a hidden form), or the body
/// itself when it is not a form.
fn parse_jsonp_body(request: &HeaderMap, body: &[u8]) -> Result<Vec<String>, PayloadError> {
    let form = request
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if !form {
        return sockjs::parse_send_body(body);
    }
    let d = form_urlencoded::parse(body)
        .find(|(name, _)| name == "d")
        .map(|(_, value)| value)
        .unwrap_or_default();
    sockjs::parse_send_body(d.as_bytes())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn form() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers
    }

    #[test]
    fn jsonp_reads_d_from_a_form_and_raw_bodies_otherwise() {
        assert_eq!(
            parse_jsonp_body(&form(), b"d=%5B%22x%22%5D"),
            Ok(vec!["x".to_owned()])
        );
        assert_eq!(
            parse_jsonp_body(&HeaderMap::new(), b"[\"y\"]"),
            Ok(vec!["y".to_owned()])
        );
    }

    #[test]
    fn jsonp_without_d_expects_a_payload() {
        for body in [&b""[..], b"d=", b"p=p"] {
            assert_eq!(
                parse_jsonp_body(&form(), body),
                Err(PayloadError::Expected),
                "{body:?}"
            );
        }
        assert_eq!(
            parse_jsonp_body(&form(), b"d=%5B%22x"),
            Err(PayloadError::BrokenJson)
        );
    }
}
