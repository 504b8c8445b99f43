//! The options of one service and their defaults.

use std::time::Duration;

use tidings_store::Retention;

/// Options of one Tidings service. Built by [`Builder`](crate::Builder); every field has a
/// documented default.
#[derive(Clone, Debug)]
pub struct Config {
    /// Send a heartbeat after this long without other output. Default 25 s: below the 60 s
    /// idle timeout of nginx and most load balancers.
    pub heartbeat: Duration,
    /// Close a session that has had no receiving connection for this long. Default 5 s.
    pub disconnect_delay: Duration,
    /// Renew a connected channel in the store every this many heartbeats. Each renewal is one
    /// store operation per connection (a script on Redis): at a million connections and the
    /// default heartbeat, 40,000 a second at 1, 10,000 at 4. The price of a larger value: a
    /// channel whose node died without closing it stays in the store (counted in presence,
    /// holding a SockJS session's receiver lock) until it expires,
    /// `heartbeat × (renew_every + 1) + disconnect_delay` after its last renewal (55 s at the
    /// defaults, 130 s at 4). A channel that closes or is lost while its node lives is ended at
    /// once either way.
    /// Default 1; 0 counts as 1.
    pub renew_every: u32,
    /// How long a native session with no transport connected waits for its client to come
    /// back with its token and position before it is closed (3002). Default 2 minutes.
    pub resume: Duration,
    /// How long a WebSocket client may leave the server's ping unanswered, or what the server
    /// writes untaken, before its connection is dropped as dead (3003, "Client stopped
    /// answering pings" or "Client stopped reading"): the server pings after every `heartbeat`
    /// of silence, and every client answers pings by itself. A client that stops reading is
    /// therefore let go within `heartbeat + client_timeout`. A native session stays resumable;
    /// the others end. Default 30 s.
    pub client_timeout: Duration,
    /// Largest incoming message, in bytes of its wire frame. Larger messages close the session
    /// with [`CloseCode::TOO_BIG`](crate::CloseCode::TOO_BIG). Default 1 MiB: sockjs-client batches queued sends into one frame, so a
    /// limit near the largest single message would refuse bursts of them.
    pub max_message_size: usize,
    /// How much history every topic keeps. Default 1000 messages or 1 MiB.
    pub retention: Retention,
    /// How long a message sent to a user ([`Hub::send_to_user`](crate::Hub::send_to_user))
    /// waits for that user to open a channel when none is open: the next channel the user
    /// opens, on any node, is handed what was sent since the user's channels last took their
    /// messages, up to this age and within `retention`; what fell out is reported as a gap
    /// (native) or logged (the protocols with no word for it). User topics also outlive
    /// `topic_idle_ttl` by this much. Default 1 day.
    pub offline_age: Duration,
    /// How many messages a channel may fall behind a topic's head before it is treated as
    /// lagging (SockJS: closed with [`CloseCode::LAGGED`](crate::CloseCode::LAGGED)). Default 1000.
    pub max_lag: u64,
    /// How long a topic that no channel follows is kept after its last message, so a client
    /// that comes back soon can still resume from it. Default 1 hour.
    pub topic_idle_ttl: Duration,
    /// Origins allowed to open channels (`scheme://host[:port]`), or `None` for any.
    /// Default `None`.
    pub allowed_origins: Option<Vec<String>>,
    /// Most channels one user may have open at once. Default 100.
    pub max_channels_per_user: usize,
    /// Whether the WebSocket endpoints are served. Default true.
    pub websocket: bool,
    /// Where the SockJS iframe page (`<prefix>/iframe.html`) loads sockjs-client from. It
    /// should be the same sockjs-client release the application's pages use (the client checks
    /// the versions match), reachable by the browser. Default
    /// [`Config::DEFAULT_SOCKJS_URL`]; set through
    /// [`Builder::sockjs_url`](crate::Builder::sockjs_url), which checks it.
    pub sockjs_url: String,
    /// Whether SockJS sets a `JSESSIONID` cookie on session URLs, for load balancers that keep
    /// a client on one node by that cookie. `/info` reports it to the client (as
    /// `cookie_needed`), which then sends credentials with its XHRs. Default false.
    pub cookie_needed: bool,
    /// How many bytes of frames a streaming response (SockJS xhr-streaming, EventSource and
    /// htmlfile; native SSE and streaming) carries before the server ends it and the client
    /// opens the next one, so the browser can free what it has read. Default 128 KiB.
    pub response_limit: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            heartbeat: Duration::from_secs(25),
            disconnect_delay: Duration::from_secs(5),
            renew_every: 1,
            resume: Duration::from_secs(120),
            client_timeout: Duration::from_secs(30),
            max_message_size: 1 << 20,
            retention: Retention::default(),
            offline_age: Duration::from_secs(24 * 3600),
            max_lag: 1000,
            topic_idle_ttl: Duration::from_secs(3600),
            allowed_origins: None,
            max_channels_per_user: 100,
            websocket: true,
            sockjs_url: Config::DEFAULT_SOCKJS_URL.to_owned(),
            cookie_needed: false,
            response_limit: 128 * 1024,
        }
    }
}

impl Config {
    /// The default [`sockjs_url`](Config::sockjs_url): sockjs-client 1.x from jsDelivr, as
    /// sockjs-node.
    pub const DEFAULT_SOCKJS_URL: &'static str =
        "https://cdn.jsdelivr.net/npm/sockjs-client@1/dist/sockjs.min.js";

    /// Whether a request with this `Origin` header may open a channel.
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        match (&self.allowed_origins, origin) {
            (None, _) => true,
            // Same-origin requests from non-browser clients carry no Origin header.
            (Some(_), None) => true,
            (Some(allowed), Some(origin)) => allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockjs_defaults() {
        let config = Config::default();
        assert_eq!(
            config.sockjs_url,
            "https://cdn.jsdelivr.net/npm/sockjs-client@1/dist/sockjs.min.js"
        );
        assert!(!config.cookie_needed);
        assert_eq!(config.response_limit, 131_072);
    }
}
