//! The announcements of a Redis Cluster: a subscribing connection to each primary, on which the
//! shard channels of the groups whose slots it serves are subscribed to.
//!
//! Not the cluster client's own pub/sub: after a whole cluster restarted it was seen to go on
//! without some subscriptions it had confirmed (it replaces connections while it recovers, and
//! sends the subscriptions again without looking at the answers), so that a node heard no more
//! appends of some groups, with nothing logged. Here each connection is a plain one to one
//! node, and every group's channel is known to be subscribed on the node serving its slot, or
//! known not to be:
//!
//! - a connection lost or not answering the ping of every check drops the groups it carried;
//! - a channel Redis unsubscribes (its slot moved) drops that group;
//! - a group whose slot two checks in a row (every 5 s) find served by another node is dropped;
//! - the groups dropped are subscribed to again every 250 ms, each on the node now serving it,
//!   and once one is, the heads of its watched topics are read again, for what was announced
//!   meanwhile. The other groups go on meanwhile: a shard down stops only its own.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, PushInfo, PushKind, Value,
};
use tidings_store::StoreError;
use tokio::sync::mpsc;

use super::heads::Heads;
use super::{Redis, refresh, resp3, unavailable, within};

/// How often the slots are asked again and each connection pinged, to notice a change Redis
/// does not push (a failover) or a node gone quiet.
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// How often the groups not subscribed are tried again.
const RETRY_EVERY: Duration = Duration::from_millis(250);

/// A primary: host and port.
type Node = (String, u16);

/// What connecting to the cluster's nodes needs.
pub(crate) struct Shards {
    redis: Redis,
    /// The settings of the first configured node (password, database, TLS…), for every node.
    settings: ConnectionInfo,
    timeout: Duration,
}

/// A node's subscriptions: its connection to each primary and where each group's channel is
/// subscribed.
pub(crate) struct Subscriptions {
    /// The connection to each primary, with the number it was made under, which its pushes
    /// carry: a push from a connection since replaced is known as such.
    nodes: HashMap<Node, (u64, MultiplexedConnection)>,
    made: u64,
    /// The node each group's channel is subscribed on, if it is.
    at: Vec<Option<Node>>,
    /// The groups the last check found served by another node than the one they are on.
    moved: HashSet<usize>,
    tx: mpsc::UnboundedSender<(u64, PushInfo)>,
    pushes: mpsc::UnboundedReceiver<(u64, PushInfo)>,
}

impl Shards {
    pub(crate) fn new(redis: Redis, settings: ConnectionInfo, timeout: Duration) -> Shards {
        Shards {
            redis,
            settings,
            timeout,
        }
    }

    /// Subscribes to every group's channel, each on the node serving its slot. Fails if one
    /// cannot be.
    pub(crate) async fn subscribe(&self) -> Result<Subscriptions, StoreError> {
        let (tx, pushes) = mpsc::unbounded_channel();
        let mut subscriptions = Subscriptions {
            nodes: HashMap::new(),
            made: 0,
            at: vec![None; self.redis.layout.groups()],
            moved: HashSet::new(),
            tx,
            pushes,
        };
        let owners = self.owners().await?;
        let (_, missing) = self.subscribe_missing(&mut subscriptions, &owners).await;
        match missing {
            Some(error) => Err(error),
            None => Ok(subscriptions),
        }
    }

    /// Takes in the announcements, and keeps every group subscribed, for as long as the store
    /// lives (its drop aborts this task).
    pub(crate) async fn listen(self, mut subscriptions: Subscriptions, heads: Arc<Heads>) {
        let mut check = tokio::time::interval(CHECK_EVERY);
        check.tick().await;
        // Timers that last across turns: announcements coming faster than they tick must not
        // keep putting them off.
        let mut retry = tokio::time::interval(RETRY_EVERY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failures = 0u32;
        loop {
            let missing = subscriptions.at.iter().any(Option::is_none);
            tokio::select! {
                Some((made, push)) = subscriptions.pushes.recv() => {
                    self.pushed(&mut subscriptions, made, push, &heads);
                }
                _ = retry.tick(), if missing => {
                    let error = self.repair(&mut subscriptions, &heads).await;
                    failures = match error {
                        None => 0,
                        Some(error) => {
                            failures += 1;
                            if failures.is_multiple_of(40) {
                                tracing::warn!(%error, "still cannot subscribe to the Redis Cluster");
                            }
                            failures
                        }
                    };
                }
                _ = check.tick() => self.check(&mut subscriptions).await,
            }
        }
    }

    /// Takes in a push of the connection made under `made`.
    fn pushed(&self, subscriptions: &mut Subscriptions, made: u64, push: PushInfo, heads: &Heads) {
        // Which node pushed matters only for a loss, not for the announcements.
        let node = |subscriptions: &Subscriptions| {
            (subscriptions.nodes.iter())
                .find(|(_, (number, _))| *number == made)
                .map(|(node, _)| node.clone())
        };
        match push.kind {
            PushKind::SMessage => {
                if let [_, Value::BulkString(payload)] = push.data.as_slice() {
                    heads.announced(payload);
                }
            }
            PushKind::SUnsubscribe => {
                let group = match push.data.first() {
                    Some(Value::BulkString(channel)) => self.redis.layout.group_of_heads(channel),
                    _ => None,
                };
                if let (Some(group), Some(node)) = (group, node(subscriptions))
                    && subscriptions.at[group].as_ref() == Some(&node)
                {
                    tracing::info!(group, "Redis moved a slot; subscribing again");
                    lost(subscriptions, |g| g == group);
                }
            }
            PushKind::Disconnection => {
                if let Some(node) = node(subscriptions) {
                    tracing::warn!(?node, "lost a Redis Cluster subscription; reconnecting");
                    drop_node(subscriptions, &node);
                }
            }
            _ => {}
        }
    }

    /// Subscribes the groups that are not, each on the node serving it now, and reads their
    /// watched heads again. Says what failed, if something did.
    async fn repair(
        &self,
        subscriptions: &mut Subscriptions,
        heads: &Arc<Heads>,
    ) -> Option<StoreError> {
        let owners = match self.owners().await {
            Ok(owners) => owners,
            Err(error) => return Some(error),
        };
        let (subscribed, missing) = self.subscribe_missing(subscriptions, &owners).await;
        if !subscribed.is_empty() {
            if missing.is_none() {
                tracing::info!("Redis subscription is back");
            }
            let groups = Some(subscribed.into_iter().collect());
            tokio::spawn(refresh(self.redis.clone(), Arc::downgrade(heads), groups));
        }
        missing
    }

    /// Subscribes every group not subscribed on its owner (in `owners`), connecting to owners
    /// as needed. Returns the groups subscribed, and an error if some could not be.
    async fn subscribe_missing(
        &self,
        subscriptions: &mut Subscriptions,
        owners: &[Node],
    ) -> (Vec<usize>, Option<StoreError>) {
        let mut failed = None;
        let wanted: Vec<usize> = (0..owners.len())
            .filter(|&group| subscriptions.at[group].as_ref() != Some(&owners[group]))
            .collect();
        for &group in &wanted {
            let node = &owners[group];
            if !subscriptions.nodes.contains_key(node) {
                subscriptions.made += 1;
                let made = subscriptions.made;
                match self.connect(node, made, subscriptions.tx.clone()).await {
                    Ok(connection) => {
                        subscriptions.nodes.insert(node.clone(), (made, connection));
                    }
                    Err(error) => failed = Some(error),
                }
            }
        }
        let layout = &self.redis.layout;
        let calls = wanted.iter().filter_map(|&group| {
            let (_, connection) = subscriptions.nodes.get(&owners[group])?;
            let mut connection = connection.clone();
            let channel = layout.heads(group);
            Some(async move {
                // The confirmation is the answer; a slot served elsewhere is an error (MOVED).
                let mut command = redis::cmd("SSUBSCRIBE");
                command.arg(&channel);
                let answer = within(self.timeout, command.query_async::<Value>(&mut connection));
                (group, answer.await)
            })
        });
        let mut subscribed = Vec::new();
        for (group, answer) in futures::future::join_all(calls).await {
            match answer {
                Ok(_) => {
                    subscriptions.at[group] = Some(owners[group].clone());
                    subscribed.push(group);
                }
                Err(error) => failed = Some(error),
            }
        }
        if subscribed.len() < wanted.len() && failed.is_none() {
            failed = Some(StoreError::Unavailable(
                "Redis: a node is not connected".into(),
            ));
        }
        (subscribed, failed)
    }

    /// Drops the connections that do not answer a ping, and the groups that two checks in a
    /// row find served by another node than the one they are subscribed on.
    async fn check(&self, subscriptions: &mut Subscriptions) {
        let pings = subscriptions.nodes.iter().map(|(node, (_, connection))| {
            let mut connection = connection.clone();
            async move {
                let ping = redis::cmd("PING");
                let answer = within(self.timeout, ping.query_async::<Value>(&mut connection));
                (node.clone(), answer.await.is_ok())
            }
        });
        for (node, answered) in futures::future::join_all(pings).await {
            if !answered {
                tracing::warn!(?node, "a Redis Cluster node does not answer; reconnecting");
                drop_node(subscriptions, &node);
            }
        }
        // The command connection may be down for a while: the next check looks again.
        let Ok(owners) = self.owners().await else {
            return;
        };
        let moved: HashSet<usize> = (0..owners.len())
            .filter(|&g| {
                subscriptions.at[g]
                    .as_ref()
                    .is_some_and(|at| *at != owners[g])
            })
            .collect();
        // Once could be a node that has not heard of the move yet, or of one not made.
        let confirmed: HashSet<usize> = moved.intersection(&subscriptions.moved).copied().collect();
        subscriptions.moved = moved;
        if !confirmed.is_empty() {
            tracing::info!(
                groups = confirmed.len(),
                "Redis Cluster slots moved; subscribing again"
            );
            lost(subscriptions, |g| confirmed.contains(&g));
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

    /// The host of the first configured node, for a node that does not tell its address.
    fn host(&self) -> &str {
        match self.settings.addr() {
            ConnectionAddr::Tcp(host, _) | ConnectionAddr::TcpTls { host, .. } => host,
            _ => "127.0.0.1",
        }
    }

    /// A connection to `node`, with the first node's settings, whose pushes go to `pushes`
    /// marked `made`.
    async fn connect(
        &self,
        (host, port): &Node,
        made: u64,
        pushes: mpsc::UnboundedSender<(u64, PushInfo)>,
    ) -> Result<MultiplexedConnection, StoreError> {
        let addr = match self.settings.addr().clone() {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host: host.clone(),
                port: *port,
                insecure,
                tls_params,
            },
            _ => ConnectionAddr::Tcp(host.clone(), *port),
        };
        let client =
            Client::open(resp3(self.settings.clone().set_addr(addr))).map_err(unavailable)?;
        let config = AsyncConnectionConfig::new()
            .set_push_sender(move |push: PushInfo| pushes.send((made, push)))
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let connect = client.get_multiplexed_async_connection_with_config(&config);
        within(self.timeout, connect).await
    }
}

/// Marks the groups `which` picks as no longer subscribed, and drops the connections that then
/// carry none.
fn lost(subscriptions: &mut Subscriptions, which: impl Fn(usize) -> bool) {
    metrics::counter!("tidings_redis_subscription_lost_total").increment(1);
    for (group, at) in subscriptions.at.iter_mut().enumerate() {
        if which(group) {
            *at = None;
        }
    }
    let at = &subscriptions.at;
    subscriptions
        .nodes
        .retain(|node, _| at.iter().any(|at| at.as_ref() == Some(node)));
}

/// Drops the connection to `node`, and with it the subscriptions it carried.
fn drop_node(subscriptions: &mut Subscriptions, node: &Node) {
    let on = |group: usize| subscriptions.at[group].as_ref() == Some(node);
    let groups: Vec<usize> = (0..subscriptions.at.len()).filter(|&g| on(g)).collect();
    lost(subscriptions, |g| groups.contains(&g));
    subscriptions.nodes.remove(node);
}

/// The slot ranges of a `CLUSTER SLOTS` answer, each with its primary. A primary that does not
/// tell its address (empty, `?`, null, or any address) is taken to be on `host`.
fn ranges(answer: Value, host: &str) -> Result<Vec<(u16, u16, Node)>, StoreError> {
    let corrupt = || StoreError::Unavailable("Redis: unexpected CLUSTER SLOTS answer".into());
    let number = |value: &Value| match value {
        Value::Int(n) => u16::try_from(*n).map_err(|_| corrupt()),
        _ => Err(corrupt()),
    };
    let Value::Array(entries) = answer else {
        return Err(corrupt());
    };
    entries
        .iter()
        .map(|entry| {
            let Value::Array(entry) = entry else {
                return Err(corrupt());
            };
            let [low, high, Value::Array(primary), ..] = entry.as_slice() else {
                return Err(corrupt());
            };
            let [name, port, ..] = primary.as_slice() else {
                return Err(corrupt());
            };
            let name = match name {
                Value::BulkString(name) => String::from_utf8_lossy(name).into_owned(),
                _ => String::new(),
            };
            let unknown = ["", "?", "0.0.0.0", "::"].contains(&name.as_str());
            let name = if unknown { host.to_owned() } else { name };
            Ok((number(low)?, number(high)?, (name, number(port)?)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn cluster_slots_name_each_ranges_primary() {
        let answer = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                Value::Array(vec![bulk("10.0.0.1"), Value::Int(7000), bulk("id1")]),
                Value::Array(vec![bulk("10.0.0.4"), Value::Int(7003), bulk("id4")]),
            ]),
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(10922),
                Value::Array(vec![bulk(""), Value::Int(7001), bulk("id2")]),
            ]),
            Value::Array(vec![
                Value::Int(10923),
                Value::Int(16383),
                Value::Array(vec![Value::Nil, Value::Int(7002)]),
            ]),
        ]);
        let found = ranges(answer, "seed").expect("a valid answer");
        assert_eq!(
            found,
            vec![
                (0, 5460, ("10.0.0.1".to_owned(), 7000)),
                (5461, 10922, ("seed".to_owned(), 7001)),
                (10923, 16383, ("seed".to_owned(), 7002)),
            ]
        );
        let odd = Value::Array(vec![Value::Array(vec![Value::Int(0), Value::Int(70000)])]);
        assert!(ranges(odd, "seed").is_err());
    }
}
