//! Messages a client sends over HTTP (SockJS `xhr_send` and `jsonp_send`, the native `send`):
//! one path for every protocol. The body is read with a limit, decoded by its format into
//! messages, each checked against the size limit, and handed to the application together, in
//! order, awaited, as on a WebSocket.
//!
//! A send never creates a session; finding it (and checking who may use it) is the route's.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, header};
use tidings_core::sockjs::{self, PayloadError};
use tidings_store::ChannelState;

use crate::engine::context::Engine;
use crate::engine::error::Error;
use crate::engine::session::Session;
use crate::protocol::Protocol;

/// How a send's body holds its messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SendBody {
    /// A JSON array of strings (`xhr_send`, the native `send`). `[]` holds none.
    JsonArray,
    /// A form with the JSON array in its field `d` (sockjs-client posts a hidden form to
    /// `jsonp_send`), or, when the body is not a form, the JSON array itself.
    Form,
}

/// Why a send was refused; nothing of it was delivered.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The body is over `limit` bytes.
    BodyTooLarge {
        /// The most bytes a body may have.
        limit: usize,
    },
    /// The body holds no JSON array of strings.
    Payload(PayloadError),
    /// A message is over the service's `max_message_size`.
    MessageTooLarge(Error),
}

/// The most bytes a send body may have when messages may have `max` bytes: room for one such
/// message however it is escaped (a control character takes 6 bytes in JSON), and URL-encoded
/// once more in a form.
pub(crate) fn body_limit(max: usize) -> usize {
    max.saturating_mul(6).saturating_add(4096)
}

/// Reads the send `body` (with the request's `headers`) in `format`, and hands its messages to
/// `protocol` (by default, to the application) as messages of the channel `state`, in order. A closed channel takes no more
/// messages, but the client is not at fault: the send succeeds, and what it held goes nowhere.
pub(crate) async fn deliver(
    engine: &Arc<Engine>,
    state: &ChannelState,
    protocol: &mut impl Protocol,
    format: SendBody,
    headers: &HeaderMap,
    body: Body,
) -> Result<(), SendError> {
    let max = engine.config.max_message_size;
    let limit = body_limit(max);
    let body = to_bytes(body, limit)
        .await
        .map_err(|_| SendError::BodyTooLarge { limit })?;
    let messages = match format {
        SendBody::JsonArray => sockjs::parse_send_body(&body),
        SendBody::Form => parse_form(headers, &body),
    }
    .map_err(SendError::Payload)?;
    if let Some(size) = messages.iter().map(String::len).find(|len| *len > max) {
        return Err(SendError::MessageTooLarge(Error::MessageTooLarge {
            size,
            limit: max,
        }));
    }
    if state.closed.is_none() && !messages.is_empty() {
        let session = Session::of(engine, state);
        protocol.receive(&session, messages).await;
    }
    Ok(())
}

/// A form's field `d`, or the body itself when it is not a form.
fn parse_form(request: &HeaderMap, body: &[u8]) -> Result<Vec<String>, PayloadError> {
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
            parse_form(&form(), b"d=%5B%22x%22%5D"),
            Ok(vec!["x".to_owned()])
        );
        assert_eq!(
            parse_form(&HeaderMap::new(), b"[\"y\"]"),
            Ok(vec!["y".to_owned()])
        );
    }

    #[test]
    fn jsonp_without_d_expects_a_payload() {
        for body in [&b""[..], b"d=", b"p=p"] {
            assert_eq!(
                parse_form(&form(), body),
                Err(PayloadError::Expected),
                "{body:?}"
            );
        }
        assert_eq!(
            parse_form(&form(), b"d=%5B%22x"),
            Err(PayloadError::BrokenJson)
        );
    }
}
