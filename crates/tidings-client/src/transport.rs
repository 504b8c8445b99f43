//! The four transports of the native protocol, each opened as one connection (a WebSocket, a
//! streaming response, or one poll) whose frames come as a stream.

use std::fmt;
use std::pin::Pin;

use eventsource_stream::Eventsource;
use futures::{Stream, StreamExt, TryStreamExt};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};
use tokio_util::io::StreamReader;
use url::Url;

use crate::error::Error;
use crate::frame::{Frame, abbreviate};

/// A way to carry a session, best first in [`Transport::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// `<prefix>/native/ws`: one WebSocket.
    WebSocket,
    /// `<prefix>/native/sse`: Server-Sent Events.
    Sse,
    /// `<prefix>/native/stream`: a streaming response, one frame per line.
    Streaming,
    /// `<prefix>/native/poll`: long-polling.
    Polling,
}

impl Transport {
    /// Every transport, best first: the order the client tries them in.
    pub const ALL: [Transport; 4] = [
        Transport::WebSocket,
        Transport::Sse,
        Transport::Streaming,
        Transport::Polling,
    ];

    /// The name the protocol gives it (`websocket`, `sse`, `streaming`, `polling`).
    pub fn name(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::Sse => "sse",
            Transport::Streaming => "streaming",
            Transport::Polling => "polling",
        }
    }

    /// The transport of that name.
    pub fn from_name(name: &str) -> Option<Transport> {
        Transport::ALL.into_iter().find(|t| t.name() == name)
    }

    fn path(self) -> &'static str {
        match self {
            Transport::WebSocket => "native/ws",
            Transport::Sse => "native/sse",
            Transport::Streaming => "native/stream",
            Transport::Polling => "native/poll",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The frames of one transport connection, until it ends.
pub(crate) type Frames = Pin<Box<dyn Stream<Item = Result<Frame, Failure>> + Send>>;

/// Why a transport connection could not open or went on no more.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The session is unknown (never issued, or expired): negotiate again.
    UnknownSession,
    /// Nothing a retry cures.
    Fatal(Error),
    /// The network or the server failed; another attempt may succeed.
    Broken(String),
}

/// Everything a transport request needs.
pub(crate) struct Target<'a> {
    pub(crate) http: &'a reqwest::Client,
    /// The service's URL (`…/rt`), without a trailing slash.
    pub(crate) base: &'a Url,
    pub(crate) headers: &'a HeaderMap,
    /// The caller's query parameters, encoded, for every request.
    pub(crate) query: &'a str,
    pub(crate) token: &'a str,
    pub(crate) pos: Option<&'a str>,
    /// The transport given up for this one, if any: the server counts fallbacks by it.
    pub(crate) gave_up: Option<Transport>,
}

impl Target<'_> {
    /// The URL of `transport` for this session, from its position.
    fn url(&self, transport: Transport) -> Url {
        let mut url = crate::driver::endpoint(self.base, transport.path(), self.query);
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("token", self.token);
            if let Some(pos) = self.pos {
                pairs.append_pair("pos", pos);
            }
            if let Some(gave_up) = self.gave_up {
                pairs.append_pair("fb", gave_up.name());
            }
        }
        if transport == Transport::WebSocket {
            let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
            // Both are special schemes: the change cannot fail.
            let _ = url.set_scheme(scheme);
        }
        url
    }

    /// Opens one connection of `transport`.
    pub(crate) async fn open(&self, transport: Transport) -> Result<Frames, Failure> {
        let url = self.url(transport);
        match transport {
            Transport::WebSocket => websocket(url, self.headers).await,
            Transport::Sse | Transport::Streaming | Transport::Polling => {
                let response = self
                    .http
                    .get(url)
                    .headers(self.headers.clone())
                    .send()
                    .await
                    .map_err(|e| Failure::Broken(e.to_string()))?;
                let response = checked(response).await?;
                Ok(match transport {
                    Transport::Sse => sse(response),
                    Transport::Streaming => lines(response),
                    _ => poll(response),
                })
            }
        }
    }
}

/// `response` if it succeeded, else what its status and body say.
pub(crate) async fn checked(response: reqwest::Response) -> Result<reqwest::Response, Failure> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    Err(failure(status, &body))
}

/// What an error answer means: `404 unknown-session` asks for a new session, a server error
/// for another attempt, any other status is final.
fn failure(status: StatusCode, body: &str) -> Failure {
    let code = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned));
    if status == StatusCode::NOT_FOUND && code.as_deref() == Some("unknown-session") {
        return Failure::UnknownSession;
    }
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return Failure::Broken(format!("{status}: {}", abbreviate(body)));
    }
    Failure::Fatal(Error::Refused {
        status: status.as_u16(),
        message: code.unwrap_or_else(|| abbreviate(body.trim())),
    })
}

/// What a refused WebSocket upgrade means. Proxies refuse upgrades they do not pass (often
/// with `403`), so only the server's own errors are final; anything else is this transport
/// failing, and the client moves on to the next.
fn upgrade_failure(status: StatusCode, body: &str) -> Failure {
    match failure(status, body) {
        Failure::Fatal(Error::Refused { message, .. })
            if !matches!(
                message.as_str(),
                "wrong-user" | "origin" | "unsupported-version" | "bad-request"
            ) =>
        {
            Failure::Broken(format!("upgrade refused with {status}: {message}"))
        }
        other => other,
    }
}

async fn websocket(url: Url, headers: &HeaderMap) -> Result<Frames, Failure> {
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| Failure::Fatal(Error::Url(e.to_string())))?;
    for (name, value) in headers {
        request.headers_mut().append(name, value.clone());
    }
    let (socket, _) = match tokio_tungstenite::connect_async(request).await {
        Ok(connected) => connected,
        Err(tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            let status =
                StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            return Err(upgrade_failure(status, &body));
        }
        Err(error) => return Err(Failure::Broken(error.to_string())),
    };
    let frames = socket.filter_map(|message| async move {
        match message {
            Ok(tungstenite::Message::Text(text)) => {
                Some(Frame::parse(&text).map_err(Failure::Fatal))
            }
            Ok(tungstenite::Message::Binary(_)) => Some(Err(Failure::Fatal(Error::Protocol(
                "a binary WebSocket message".into(),
            )))),
            // Pings are answered by tungstenite; a close ends the stream after it.
            Ok(_) => None,
            Err(error) => Some(Err(Failure::Broken(error.to_string()))),
        }
    });
    Ok(Box::pin(frames))
}

fn sse(response: reqwest::Response) -> Frames {
    let events = response.bytes_stream().eventsource();
    Box::pin(events.filter_map(|event| async move {
        match event {
            Ok(event) if event.data.is_empty() => None,
            Ok(event) => Some(Frame::parse(&event.data).map_err(Failure::Fatal)),
            Err(error) => Some(Err(Failure::Broken(error.to_string()))),
        }
    }))
}

/// The longest line of a streaming response this client reads: a frame carries a batch of up
/// to 256 messages per topic.
const MAX_LINE: usize = 64 << 20;

/// A streaming response: one frame per line.
fn lines(response: reqwest::Response) -> Frames {
    let bytes = response.bytes_stream().map_err(std::io::Error::other);
    let lines = FramedRead::new(
        StreamReader::new(bytes),
        LinesCodec::new_with_max_length(MAX_LINE),
    );
    Box::pin(lines.filter_map(|line| async move {
        match line {
            Ok(line) if line.trim().is_empty() => None,
            Ok(line) => Some(Frame::parse(&line).map_err(Failure::Fatal)),
            Err(LinesCodecError::MaxLineLengthExceeded) => Some(Err(Failure::Fatal(
                Error::Protocol(format!("a line longer than {MAX_LINE} bytes")),
            ))),
            Err(LinesCodecError::Io(error)) => Some(Err(Failure::Broken(error.to_string()))),
        }
    }))
}

/// One poll's answer: a JSON array of frames.
fn poll(response: reqwest::Response) -> Frames {
    let frames = futures::stream::once(async move {
        let body = response
            .text()
            .await
            .map_err(|e| Failure::Broken(e.to_string()))?;
        let values: Vec<serde_json::Value> = serde_json::from_str(&body).map_err(|e| {
            Failure::Fatal(Error::Protocol(format!(
                "a poll's answer: {e}: {}",
                abbreviate(&body)
            )))
        })?;
        values
            .iter()
            .map(|value| Frame::parse(&value.to_string()).map_err(Failure::Fatal))
            .collect::<Result<Vec<Frame>, Failure>>()
    })
    .map(|frames| match frames {
        Ok(frames) => futures::stream::iter(frames.into_iter().map(Ok)).left_stream(),
        Err(failure) => futures::stream::iter([Err(failure)]).right_stream(),
    })
    .flatten();
    Box::pin(frames)
}
