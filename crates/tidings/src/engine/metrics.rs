//! What Tidings measures, through the [`metrics`] facade: the application installs the recorder
//! (an exporter: Prometheus, StatsD, …) it wants; without one, each measurement costs a load of
//! an unset global. Names, labels and what they mean: `docs/operations.md`.
//!
//! `tidings-redis` adds `tidings_redis_subscription_lost_total`: each time its pub/sub
//! connection to Redis was lost, and `tidings_redis_cluster_rebuilds_total`: each time a Redis
//! Cluster connection was built again.
//!
//! Per-connection instruments are resolved once, when the connection starts
//! ([`ConnectionMeter`]), so a delivery costs an atomic add, not a registry lookup.

use metrics::{Counter, Gauge, counter, gauge};
use tidings_core::CloseCode;

/// Transport connections this node holds (gauge; `protocol`, `transport`).
pub(crate) const CONNECTIONS: &str = "tidings_connections";
/// Messages written to clients (counter; `protocol`, `transport`).
pub(crate) const DELIVERED: &str = "tidings_messages_delivered_total";
/// Bytes of frames written to clients (counter; `protocol`, `transport`).
pub(crate) const BYTES: &str = "tidings_bytes_written_total";
/// Gaps reported to clients (counter; `protocol`, `transport`).
pub(crate) const GAPS: &str = "tidings_gaps_total";
/// Channels opened on this node (counter).
pub(crate) const OPENED: &str = "tidings_sessions_opened_total";
/// Channels ended, reported by this node, by close code (counter; `code`).
pub(crate) const CLOSED: &str = "tidings_sessions_closed_total";
/// Messages published through the hub of this node (counter).
pub(crate) const PUBLISHED: &str = "tidings_messages_published_total";
/// Native connections (WebSocket, SSE, streaming: not polls, which always carry one) that
/// resumed a session from a client's position (counter).
pub(crate) const RESUMED: &str = "tidings_resumes_total";
/// Native connections that came after their client gave up a better transport, as the client
/// says (`fb=`) (counter; `from`, `to`).
pub(crate) const FALLBACKS: &str = "tidings_transport_fallbacks_total";
/// How long store operations took, in seconds (histogram; `operation`: the `Store` method).
pub(crate) const STORE_SECONDS: &str = "tidings_store_seconds";
/// Store operations that failed (counter).
pub(crate) const STORE_ERRORS: &str = "tidings_store_errors_total";

/// The instruments of one transport connection; it counts in [`CONNECTIONS`] while it lives.
pub(crate) struct ConnectionMeter {
    open: Gauge,
    delivered: Counter,
    bytes: Counter,
    gaps: Counter,
}

impl ConnectionMeter {
    /// A connection of `protocol` (`native`, `sockjs`, `raw`, `stomp`) over `transport`.
    pub(crate) fn new(protocol: &'static str, transport: &'static str) -> Self {
        let labels = [("protocol", protocol), ("transport", transport)];
        let open = gauge!(CONNECTIONS, &labels);
        open.increment(1.0);
        ConnectionMeter {
            open,
            delivered: counter!(DELIVERED, &labels),
            bytes: counter!(BYTES, &labels),
            gaps: counter!(GAPS, &labels),
        }
    }

    /// `messages` were written.
    pub(crate) fn delivered(&self, messages: usize) {
        self.delivered.increment(messages as u64);
    }

    /// `bytes` of frames were written.
    pub(crate) fn wrote(&self, bytes: usize) {
        self.bytes.increment(bytes as u64);
    }

    /// A gap was reported.
    pub(crate) fn gap(&self) {
        self.gaps.increment(1);
    }
}

impl Drop for ConnectionMeter {
    fn drop(&mut self) {
        self.open.decrement(1.0);
    }
}

/// A channel opened.
pub(crate) fn session_opened() {
    counter!(OPENED).increment(1);
}

/// A channel ended with `code`.
pub(crate) fn session_closed(code: CloseCode) {
    counter!(CLOSED, "code" => code.as_u16().to_string()).increment(1);
}

/// A message was published.
pub(crate) fn published(messages: usize) {
    counter!(PUBLISHED).increment(messages as u64);
}

/// A native connection resumed a session from its client's position.
pub(crate) fn resumed() {
    counter!(RESUMED).increment(1);
}

/// A native client gave up transport `from` and came on `to`.
pub(crate) fn fell_back(from: &'static str, to: &'static str) {
    counter!(FALLBACKS, "from" => from, "to" => to).increment(1);
}

/// A store operation failed.
pub(crate) fn store_error() {
    counter!(STORE_ERRORS).increment(1);
}
