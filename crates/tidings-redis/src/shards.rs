//! The announcements of a Redis Cluster: one subscribing connection to each primary, on which
//! the shard channels of the groups whose slots it serves are subscribed to.
//!
//! Not the cluster client's own pub/sub: after a whole cluster restarted it was seen to go on
//! without some subscriptions it had confirmed (it replaces connections while it recovers, and
//! sends the subscriptions again without looking at the answers), so that a node heard no more
//! appends of some groups, with nothing logged. Here each connection is a plain one to one
//! node, and any doubt — a connection lost or not answering, a channel unsubscribed by Redis
//! (its slot moved), a slot served by another node — drops them all and starts over: the slots
//! asked again, a connection to each primary, every channel subscribed to, and once all are
//! confirmed, every watched head read again for what was announced meanwhile.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, ProtocolVersion, PushInfo,
    PushKind, Value,
};
use tidings_store::StoreError;
use tokio::sync::mpsc;

use super::heads::Heads;
use super::{Redis, refresh, unavailable, within};

/// How often the slots are asked again and each connection pinged, to notice a change Redis
/// does not push (a failover) or a node gone quiet.
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// How long to wait before starting over after a failed attempt.
const RETRY_AFTER: Duration = Duration::from_millis(250);

/// A primary: host and port.
type Node = (String, u16);

/// What connecting to the cluster's nodes needs.
pub(crate) struct Shards {
    redis: Redis,
    /// The settings of the first configured node (password, database…), for every node.
    settings: ConnectionInfo,
    timeout: Duration,
}

/// The connections of one attempt, with what they push, and the primary of each group.
pub(crate) struct Subscribed {
    connections: Vec<MultiplexedConnection>,
    pushes: mpsc::UnboundedReceiver<PushInfo>,
    owners: Vec<Node>,
}

impl Shards {
    pub(crate) fn new(redis: Redis, settings: ConnectionInfo, timeout: Duration) -> Shards {
        Shards {
            redis,
            settings,
            timeout,
        }
    }

    /// Connects to each primary and subscribes to every group's channel there. Fails if a slot
    /// of a group is not served, a node cannot be reached, or a subscription is refused.
    pub(crate) async fn subscribe(&self) -> Result<Subscribed, StoreError> {
        let owners = self.owners().await?;
        let (tx, pushes) = mpsc::unbounded_channel();
        let mut connections: HashMap<&Node, MultiplexedConnection> = HashMap::new();
        for node in &owners {
            if !connections.contains_key(node) {
                let connection = self.connect(node, tx.clone()).await?;
                connections.insert(node, connection);
            }
        }
        let layout = &self.redis.layout;
        let subscriptions = owners.iter().enumerate().map(|(group, node)| {
            let mut connection = connections[node].clone();
            let channel = layout.heads(group);
            async move {
                // The confirmation is the answer; a slot served elsewhere is an error (MOVED).
                let mut command = redis::cmd("SSUBSCRIBE");
                command.arg(&channel);
                within(self.timeout, command.query_async::<Value>(&mut connection)).await
            }
        });
        futures::future::try_join_all(subscriptions).await?;
        let connections = connections.into_values().collect();
        Ok(Subscribed {
            connections,
            pushes,
            owners,
        })
    }

    /// Takes in the announcements `subscribed` brings until something is wrong with it, then
    /// subscribes again, for as long as the store lives (its drop aborts this task).
    pub(crate) async fn listen(self, mut subscribed: Subscribed, heads: Arc<Heads>) {
        loop {
            let why = self.serve(&mut subscribed, &heads).await;
            tracing::warn!(why, "lost a Redis Cluster subscription; subscribing again");
            metrics::counter!("tidings_redis_subscription_lost_total").increment(1);
            subscribed.connections.clear();
            let mut attempt = 0u32;
            subscribed = loop {
                attempt += 1;
                match self.subscribe().await {
                    Ok(subscribed) => break subscribed,
                    Err(error) if attempt.is_multiple_of(40) => {
                        tracing::warn!(%error, "still cannot subscribe to the Redis Cluster");
                    }
                    Err(_) => {}
                }
                tokio::time::sleep(RETRY_AFTER).await;
            };
            tracing::info!("Redis subscription is back");
            // Subscribed: whatever was appended before is in the heads.
            tokio::spawn(refresh(self.redis.clone(), heads.clone()));
        }
    }

    /// Passes on the announcements until a connection is lost or quiet, Redis unsubscribes a
    /// channel, or a group's slot is served by another node; says which.
    async fn serve(&self, subscribed: &mut Subscribed, heads: &Heads) -> &'static str {
        let mut check = tokio::time::interval(CHECK_EVERY);
        check.tick().await;
        loop {
            tokio::select! {
                push = subscribed.pushes.recv() => {
                    let Some(push) = push else {
                        return "the connections closed";
                    };
                    match push.kind {
                        PushKind::SMessage => {
                            if let [_, Value::BulkString(payload)] = push.data.as_slice() {
                                heads.announced(payload);
                            }
                        }
                        PushKind::SUnsubscribe => return "Redis unsubscribed a channel (its slot moved)",
                        PushKind::Disconnection => return "a connection was lost",
                        _ => {}
                    }
                }
                _ = check.tick() => {
                    if let Some(why) = self.check(subscribed).await {
                        return why;
                    }
                }
            }
        }
    }

    /// Whether every connection answers and every group is served where it was subscribed to.
    async fn check(&self, subscribed: &Subscribed) -> Option<&'static str> {
        for connection in &subscribed.connections {
            let mut connection = connection.clone();
            let ping = redis::cmd("PING");
            if within(self.timeout, ping.query_async::<Value>(&mut connection))
                .await
                .is_err()
            {
                return Some("a connection does not answer");
            }
        }
        match self.owners().await {
            Ok(owners) if owners != subscribed.owners => Some("a slot moved to another node"),
            // The command connection may be down for a while: the next check looks again.
            _ => None,
        }
    }

    /// The primary serving each group's slot, by group.
    async fn owners(&self) -> Result<Vec<Node>, StoreError> {
        let mut connection = self.redis.connection.clone();
        let mut command = redis::cmd("CLUSTER");
        command.arg("SLOTS");
        let answer = within(self.timeout, command.query_async::<Value>(&mut connection)).await?;
        let ranges = ranges(answer, self.host())?;
        let layout = &self.redis.layout;
        (0..layout.groups())
            .map(|group| {
                let slot = layout.slot_of_group(group);
                ranges
                    .iter()
                    .find(|(low, high, _)| (*low..=*high).contains(&slot))
                    .map(|(_, _, node)| node.clone())
                    .ok_or_else(|| StoreError::Unavailable(format!("no node serves slot {slot}")))
            })
            .collect()
    }

    /// The host of the first configured node, for a node that does not know its own address.
    fn host(&self) -> &str {
        match self.settings.addr() {
            ConnectionAddr::Tcp(host, _) => host,
            _ => "127.0.0.1",
        }
    }

    async fn connect(
        &self,
        (host, port): &Node,
        pushes: mpsc::UnboundedSender<PushInfo>,
    ) -> Result<MultiplexedConnection, StoreError> {
        let settings = self.settings.redis_settings().clone();
        let info = self
            .settings
            .clone()
            .set_addr(ConnectionAddr::Tcp(host.clone(), *port))
            .set_redis_settings(settings.set_protocol(ProtocolVersion::RESP3));
        let client = Client::open(info).map_err(unavailable)?;
        let config = AsyncConnectionConfig::new()
            .set_push_sender(pushes)
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let connect = client.get_multiplexed_async_connection_with_config(&config);
        within(self.timeout, connect).await
    }
}

/// The slot ranges of a `CLUSTER SLOTS` answer, each with its primary; `host` stands for a
/// primary that does not know its address (an empty one).
fn ranges(answer: Value, host: &str) -> Result<Vec<(u16, u16, Node)>, StoreError> {
    let corrupt = || StoreError::Unavailable("Redis: unexpected CLUSTER SLOTS answer".into());
    let Value::Array(entries) = answer else {
        return Err(corrupt());
    };
    entries
        .into_iter()
        .map(|entry| match entry {
            Value::Array(entry) => match entry.as_slice() {
                [Value::Int(low), Value::Int(high), Value::Array(primary), ..] => {
                    let node = match primary.as_slice() {
                        [Value::BulkString(name), Value::Int(port), ..] => {
                            let name = String::from_utf8_lossy(name);
                            let name = if name.is_empty() { host } else { &name };
                            (
                                name.to_owned(),
                                u16::try_from(*port).map_err(|_| corrupt())?,
                            )
                        }
                        _ => return Err(corrupt()),
                    };
                    let low = u16::try_from(*low).map_err(|_| corrupt())?;
                    let high = u16::try_from(*high).map_err(|_| corrupt())?;
                    Ok((low, high, node))
                }
                _ => Err(corrupt()),
            },
            _ => Err(corrupt()),
        })
        .collect()
}
