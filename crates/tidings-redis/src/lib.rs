//! A [`Store`] on Redis, so that several Tidings nodes behind a load balancer share every
//! session: any node can serve any request of any session, and no sticky sessions are needed.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = tidings_redis::RedisStore::connect("redis://127.0.0.1:6379/").await?;
//! let tidings = tidings::Tidings::builder().store(store).build();
//! let app = axum::Router::<()>::new().nest_service("/rt", tidings.router());
//! # Ok(()) }
//! ```
//!
//! What Redis holds, and what it costs per message and per session, is in `docs/scaling.md`.
//! In short:
//!
//! - each topic is a Redis stream whose entry ids are the records' offsets, with a hash of its
//!   epoch, head and retained range; retention is applied inside the script that appends;
//! - each channel is a hash (user, attributes, close, alias, and a cursor per followed topic)
//!   whose expiry is a sorted set the sweepers of all nodes share, with a key TTL as a
//!   backstop; the SockJS session id is a key naming its channel, set only if absent;
//! - the one-receiver lock is a key with an expiry;
//! - every change runs as one Lua script, so it is atomic across nodes;
//! - each append is announced on one pub/sub channel with the record itself, so a reader
//!   waiting on any node wakes within a round trip, and the readers of a topic on one node share
//!   one copy of its newest records instead of each reading Redis.
//!
//! The connection to Redis reconnects by itself. While Redis is unreachable every store call
//! fails within [`Options::timeout`] with [`StoreError::Unavailable`], which Tidings answers with
//! HTTP 503 or close code 1013; nothing acknowledged before is lost if Redis persists its data.
//!
//! On a Redis Cluster ([`RedisStore::connect_cluster`]) the topics are spread over the shards
//! (in 64 groups of hash slots, each with its own announcement channel), while the session keys
//! of a service share one slot (`layout.rs`, and `docs/design/redis-cluster.md` for spreading
//! those too).

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::{Client, IntoConnectionInfo, ProtocolVersion, PushKind, Script, Value};
use tidings_core::ids::Id128;
use tidings_core::{CloseCode, Cursor, Epoch, Offset};
use tidings_store::Record;
use tidings_store::{Alias, ChannelId, Creation, Store, Subscription, Topic};
use tidings_store::{ChannelState, Presence, ReadBatch, Retention, StoreError, read_start};
use tokio::sync::{mpsc, watch};

mod cluster;
mod codec;
mod heads;
mod layout;
mod shards;

use cluster::Cluster;
use heads::Heads;
use layout::Layout;

/// The Redis client crate this store is built on, for configuring connections without having
/// to match its version.
pub use redis;

/// How a [`RedisStore`] uses its Redis.
#[derive(Clone, Debug)]
pub struct Options {
    prefix: String,
    timeout: Duration,
    mirror: usize,
}

impl Default for Options {
    /// Keys under `tidings:`, 3 s for any one store call, and mirrors of 16,384 records.
    fn default() -> Self {
        Options {
            prefix: "tidings:".to_owned(),
            timeout: Duration::from_secs(3),
            mirror: 16_384,
        }
    }
}

impl Options {
    /// Puts every key (and the pub/sub channel) under `prefix`, so that several services, or
    /// several tests, can share one Redis. Nodes serving one service must use the same prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one store call may take, reconnecting included, before it fails with
    /// [`StoreError::Unavailable`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many of the newest records of each topic read on this node the node keeps in memory
    /// (no more than Redis retains), from the announcements of the appends. Every reader within
    /// that many of the head reads them from memory; one further behind reads from Redis, a
    /// script run per read of up to 256 records, so a burst larger than this to a topic with
    /// many readers costs Redis one read per reader per 256 records. Set it near the largest
    /// burst a topic takes faster than its readers drain it; memory is at most this many
    /// records per topic read here (and never more than the topic's retention).
    pub fn mirror_records(mut self, records: usize) -> Self {
        self.mirror = records;
        self
    }
}

/// Sessions and topics in Redis, shared by every node that connects with the same prefix.
///
/// Cheap to clone; clones share the connections.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    redis: Redis,
    heads: Arc<Heads>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// The command connection and the scripts: what both the store and its listener use.
#[derive(Clone)]
struct Redis {
    connection: Connection,
    /// Where the keys and the announcement channels are.
    layout: Arc<Layout>,
    timeout: Duration,
    scripts: Arc<Scripts>,
}

/// A connection to one Redis server, or to a Redis Cluster (which routes each script by the
/// key it declares: the base of its keys, whose slot holds every key it touches).
#[derive(Clone)]
enum Connection {
    Server(ConnectionManager),
    Cluster(Cluster),
}

impl redis::aio::ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        match self {
            Connection::Server(connection) => connection.req_packed_command(cmd),
            Connection::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Server(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Server(connection) => connection.get_db(),
            Connection::Cluster(connection) => connection.get_db(),
        }
    }
}

/// A script's arguments after the prefix, as text.
macro_rules! args {
    ($($arg:expr),* $(,)?) => {
        vec![$($arg.to_string()),*]
    };
}

macro_rules! scripts {
    ($($name:ident: $file:literal),* $(,)?) => {
        /// The Lua scripts, each prefixed with `lua/common.lua`.
        struct Scripts {
            $($name: Script,)*
        }

        impl Scripts {
            /// The scripts, announcing with `publish` (`PUBLISH`, or `SPUBLISH` on a cluster).
            fn new(publish: &str) -> Self {
                let source = |file: &str| {
                    format!(
                        "local PUBLISH = '{publish}'\n{}\n{file}",
                        include_str!("lua/common.lua")
                    )
                };
                Scripts {
                    $($name: Script::new(&source(include_str!(concat!("lua/", $file)))),)*
                }
            }
        }
    };
}

scripts! {
    append: "append.lua",
    read: "read.lua",
    follow: "follow.lua",
    create: "create.lua",
    channel: "channel.lua",
    subscribe: "subscribe.lua",
    unsubscribe: "unsubscribe.lua",
    save: "save.lua",
    mark: "mark.lua",
    close: "close.lua",
    end: "end.lua",
    touch: "touch.lua",
    remove: "remove.lua",
    expired: "expired.lua",
    drop: "drop.lua",
    idle: "idle.lua",
    followed: "followed.lua",
    drop_idle: "drop_idle.lua",
    acquire: "acquire.lua",
    release: "release.lua",
    users: "users.lua",
}

impl RedisStore {
    /// Connects to the Redis at `url` (`redis://[user:password@]host:port[/db]`) with the
    /// default [`Options`].
    pub async fn connect(url: &str) -> Result<RedisStore, StoreError> {
        RedisStore::connect_with(url, Options::default()).await
    }

    /// Connects with `options`. Fails if Redis cannot be reached now; once connected, the store
    /// reconnects by itself.
    pub async fn connect_with(url: &str, options: Options) -> Result<RedisStore, StoreError> {
        let info = url.into_connection_info().map_err(unavailable)?;
        let commands = Client::open(info.clone()).map_err(unavailable)?;
        let pushes = Client::open(resp3(info)).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.timeout))
            .set_response_timeout(Some(options.timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let connection = within(
            options.timeout,
            commands.get_connection_manager_with_config(config.clone()),
        )
        .await?;
        let redis = Redis {
            connection: Connection::Server(connection),
            layout: Arc::new(Layout::server(&options.prefix)),
            timeout: options.timeout,
            scripts: Arc::new(Scripts::new("PUBLISH")),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let mut subscriber = within(
            options.timeout,
            pushes.get_connection_manager_with_config(
                config.set_push_sender(tx).set_automatic_resubscription(),
            ),
        )
        .await?;
        within(options.timeout, subscriber.subscribe(redis.layout.heads(0))).await?;
        Ok(RedisStore::listening(redis.clone(), &options, |heads| {
            listen(rx, subscriber, redis, heads)
        }))
    }

    /// Connects to what `urls` names: one URL, a Redis server ([`connect_with`]); several,
    /// separated by commas, nodes of a Redis Cluster ([`connect_cluster`]), as the examples'
    /// `--redis` takes them. A cluster named by one node only needs `connect_cluster`.
    ///
    /// [`connect_with`]: RedisStore::connect_with
    /// [`connect_cluster`]: RedisStore::connect_cluster
    pub async fn connect_urls(urls: &str, options: Options) -> Result<RedisStore, StoreError> {
        let nodes: Vec<&str> = urls.split(',').map(str::trim).collect();
        match nodes[..] {
            [url] => RedisStore::connect_with(url, options).await,
            _ => RedisStore::connect_cluster(&nodes, options).await,
        }
    }

    /// Connects to a Redis Cluster through any of its nodes, `urls` (`redis://host:port`), with
    /// `options`. Fails if none can be reached now; once connected, the store follows the
    /// cluster's slots and reconnects by itself.
    ///
    /// The topics are spread over the shards: each topic belongs to one of 64 groups, whose
    /// keys share a hash tag (`{<prefix><n>}`) and whose slots are evenly spaced, so that the
    /// appends, reads and announcements of a group all go to the shard holding it. Appends are
    /// announced with sharded pub/sub (`SPUBLISH`, Redis 7) on the group's channel, which only
    /// that shard carries; every node subscribes to all 64, on a connection of its own to each
    /// primary. The session keys (channels, aliases, users, followers, expiry) share the hash
    /// tag `{<prefix>}`, so one slot: session operations go to one shard (`docs/scaling.md`).
    /// Each script touches one slot, so it is atomic as on one server; operations that touch a
    /// topic and a session run one script on each, the topic's first. The prefix may not hold
    /// braces. Every node is reached with the settings (password, database) of the first URL.
    ///
    /// A command that finds the cluster client with no connection to any node (it can stay so
    /// after the whole cluster restarted) has the connection built again from `urls`.
    ///
    /// A script is sent again only when the answer says it did not run (a redirection while a
    /// slot moves, the cluster refusing while it recovers), for up to half of `options.timeout`;
    /// one whose connection broke is the caller's error, as on one server, so an interrupted
    /// publish is stored once or not at all.
    pub async fn connect_cluster(
        urls: &[&str],
        options: Options,
    ) -> Result<RedisStore, StoreError> {
        if options.prefix.contains(['{', '}']) {
            return Err(StoreError::Unavailable(format!(
                "a Redis Cluster prefix cannot hold braces: {:?}",
                options.prefix
            )));
        }
        // No retries of the client's: it would also send again a command whose connection
        // broke, after Redis may have run it. Cluster sends again what did not run.
        let commands = ClusterClientBuilder::new(urls.iter().copied())
            .connection_timeout(options.timeout)
            .response_timeout(options.timeout)
            .retries(0)
            .build()
            .map_err(unavailable)?;
        let connection = Cluster::connect(commands, options.timeout).await?;
        let redis = Redis {
            connection: Connection::Cluster(connection),
            layout: Arc::new(Layout::cluster(&options.prefix, layout::CLUSTER_GROUPS)),
            timeout: options.timeout,
            scripts: Arc::new(Scripts::new("SPUBLISH")),
        };
        // Announcements come through connections of their own to each primary (see shards).
        let first = urls.first().copied().unwrap_or_default();
        let settings = first.into_connection_info().map_err(unavailable)?;
        let shards = shards::Shards::new(redis.clone(), settings, options.timeout);
        let subscribed = shards.subscribe().await?;
        Ok(RedisStore::listening(redis, &options, |heads| {
            shards.listen(subscribed, heads)
        }))
    }

    /// The store on `redis`, with the task `listener` makes of its heads: what keeps them
    /// current from the announcements.
    fn listening<L: Future<Output = ()> + Send + 'static>(
        redis: Redis,
        options: &Options,
        listener: impl FnOnce(Arc<Heads>) -> L,
    ) -> RedisStore {
        let heads = Arc::new(Heads::new(options.mirror));
        let listener = tokio::spawn(listener(heads.clone()));
        RedisStore {
            inner: Arc::new(Inner {
                redis,
                heads,
                listener,
            }),
        }
    }

    /// The base of the session keys: the prefix, in braces on a cluster.
    pub fn prefix(&self) -> &str {
        self.inner.redis.layout.sessions()
    }

    fn redis(&self) -> &Redis {
        &self.inner.redis
    }
}

impl Redis {
    /// Runs a script on the keys under `base`, which it gets as `ARGV[1]`, with `args` after.
    async fn run(
        &self,
        script: &Script,
        base: &str,
        args: Vec<String>,
    ) -> Result<Value, StoreError> {
        let mut invocation = script.prepare_invoke();
        // The base as the one key declared: a cluster sends the script to the node serving its
        // slot, which holds every key the script touches.
        invocation.key(base).arg(base).arg(args);
        let mut connection = self.connection.clone();
        within(self.timeout, invocation.invoke_async(&mut connection)).await
    }

    /// Runs a script on the session keys.
    async fn sessions(&self, script: &Script, args: Vec<String>) -> Result<Value, StoreError> {
        self.run(script, self.layout.sessions(), args).await
    }

    /// Runs a script on the session keys that answers 1 for yes and 0 for no.
    async fn flag(&self, script: &Script, args: Vec<String>) -> Result<bool, StoreError> {
        Ok(codec::int(self.sessions(script, args).await?)? == 1)
    }

    /// Reads a topic from Redis: the records from `from` (or from the oldest retained one, if
    /// `from` is gone or `epoch` is not the topic's), with the topic's epoch, head and first
    /// retained offset.
    async fn read(
        &self,
        topic: &Topic,
        epoch: Epoch,
        from: u64,
        max: usize,
    ) -> Result<(Epoch, Offset, Offset, Vec<(Offset, Record)>), StoreError> {
        let answer = self
            .run(
                &self.scripts.read,
                self.layout.topic(topic.as_str()),
                args![topic.as_str(), epoch.0, from, bounded(max), new_epoch()],
            )
            .await?;
        let [epoch, last, first, entries] = parts(answer)?;
        Ok((
            Epoch(codec::number(&codec::text(epoch)?, "epoch")?),
            Offset(codec::int(last)?),
            Offset(codec::int(first)?),
            codec::decode_entries(entries)?,
        ))
    }

    async fn head(&self, topic: &Topic) -> Result<Cursor, StoreError> {
        let (epoch, last, _, _) = self.read(topic, Epoch(0), 0, 0).await?;
        Ok(Cursor::new(epoch, last))
    }

    /// Makes sure `topics` exist and counts them as used now (`follow.lua`), one script per
    /// group, run together: the first step of following them. Returns their heads as stored
    /// cursors, in order, and where the backlog of `backlog` (one of them) starts.
    async fn follow(
        &self,
        topics: &[String],
        backlog: Option<&str>,
    ) -> Result<(Vec<String>, Option<String>), StoreError> {
        let groups = grouped(0..topics.len(), |&i| self.layout.group_of(&topics[i]));
        let calls = groups.into_iter().map(|(group, indices)| async move {
            let backlog = backlog.filter(|topic| indices.iter().any(|&i| topics[i] == *topic));
            let mut args = args![backlog.unwrap_or_default()];
            for &index in &indices {
                args.push(topics[index].clone());
                args.push(new_epoch());
            }
            let answer = self.run(&self.scripts.follow, self.layout.group(group), args);
            let mut heads = codec::texts(answer.await?)?;
            let start = if backlog.is_some() { heads.pop() } else { None };
            if heads.len() != indices.len() {
                return Err(codec::corrupt("heads", &format!("{heads:?}")));
            }
            Ok::<_, StoreError>((indices, heads, start))
        });
        let mut heads = vec![String::new(); topics.len()];
        let mut start = None;
        for (indices, found, backlog) in futures::future::try_join_all(calls).await? {
            for (index, head) in indices.into_iter().zip(found) {
                heads[index] = head;
            }
            start = start.or(backlog);
        }
        Ok((heads, start))
    }

    /// Drops the private topics of removed channels, in their groups. A failure leaves them to
    /// the idle sweep, since nobody follows them any more.
    async fn drop_private(&self, ids: &[ChannelId]) {
        let topics = ids.iter().map(|id| Topic::channel(*id).as_str().to_owned());
        let groups = grouped(topics, |topic| self.layout.group_of(topic));
        let drops = groups
            .into_iter()
            .map(|(group, topics)| self.run(&self.scripts.drop, self.layout.group(group), topics));
        if let Err(error) = futures::future::try_join_all(drops).await {
            tracing::warn!(%error, "could not drop the private topics of removed channels");
        }
    }

    /// Drops up to `max` idle topics of `group` that nobody follows, in three steps: the idle
    /// topics of the group, which of them some channel follows (in the session keys), then the
    /// drop of those still idle and unfollowed. Returns the topics dropped.
    async fn drop_idle(
        &self,
        group: usize,
        idle: Duration,
        max: usize,
    ) -> Result<Vec<String>, StoreError> {
        let base = self.layout.group(group);
        let answer = self.run(&self.scripts.idle, base, args![millis(idle), max]);
        let [cutoff, candidates] = parts(answer.await?)?;
        let candidates = codec::texts(candidates)?;
        if candidates.is_empty() {
            return Ok(candidates);
        }
        let flags = codec::texts(
            self.sessions(&self.scripts.followed, candidates.clone())
                .await?,
        )?;
        if flags.len() != candidates.len() {
            return Err(codec::corrupt("flags", &format!("{flags:?}")));
        }
        let mut args = args![codec::text(cutoff)?];
        for (topic, followed) in candidates.into_iter().zip(flags) {
            args.push(topic);
            args.push(followed);
        }
        codec::texts(self.run(&self.scripts.drop_idle, base, args).await?)
    }
}

/// Receives the announcements of appends and drops from one server, and reads every watched
/// head again each time the subscription is (re)established.
async fn listen(
    mut pushes: mpsc::UnboundedReceiver<redis::PushInfo>,
    subscriber: ConnectionManager,
    redis: Redis,
    heads: Arc<Heads>,
) {
    while let Some(push) = pushes.recv().await {
        match push.kind {
            PushKind::Message => {
                if let [_, Value::BulkString(payload)] = push.data.as_slice() {
                    heads.announced(payload);
                }
            }
            PushKind::Subscribe => {
                tokio::spawn(refresh(redis.clone(), Arc::downgrade(&heads), None));
            }
            PushKind::Disconnection => {
                tracing::warn!("lost the Redis subscription; reconnecting");
                metrics::counter!("tidings_redis_subscription_lost_total").increment(1);
                tokio::spawn(revive(subscriber.clone()));
            }
            _ => {}
        }
    }
}

/// Pings through the subscribing connection until it is back: a connection manager that gave up
/// reconnecting tries again on its next command, and resubscribes when it succeeds.
async fn revive(mut subscriber: ConnectionManager) {
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let pong: redis::RedisResult<Value> = redis::cmd("PING").query_async(&mut subscriber).await;
        if pong.is_ok() {
            tracing::info!("Redis subscription is back");
            return;
        }
    }
}

/// Reads the head of every watched topic (of `groups`, or of all), for the announcements that
/// may have been lost. The command connection may still be reconnecting (its first command
/// after a loss fails), so topics that fail are tried again, every 250 ms for 10 s, then every
/// second, for as long as the store lives: a head not read is a wake-up missed for good.
async fn refresh(redis: Redis, heads: Weak<Heads>, groups: Option<HashSet<usize>>) {
    let Some(mut pending) = heads.upgrade().map(|heads| heads.watched()) else {
        return;
    };
    if let Some(groups) = &groups {
        pending.retain(|(topic, _)| groups.contains(&redis.layout.group_of(topic.as_str())));
    }
    for attempt in 1u32.. {
        let failed = Mutex::new(Vec::new());
        futures::stream::iter(pending)
            .for_each_concurrent(64, |(topic, mirror)| {
                let (redis, failed) = (&redis, &failed);
                async move {
                    match redis.head(&topic).await {
                        Ok(head) => mirror.head_read(head),
                        Err(_) => failed.lock().push((topic, mirror)),
                    }
                }
            })
            .await;
        pending = failed.into_inner();
        if pending.is_empty() {
            return;
        }
        if attempt == 40 {
            tracing::warn!(
                topics = pending.len(),
                "could not read the heads of watched topics after Redis came back; still trying"
            );
        }
        let wait = if attempt < 40 { 250 } else { 1000 };
        tokio::time::sleep(Duration::from_millis(wait)).await;
        if heads.strong_count() == 0 {
            return;
        }
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn append(
        &self,
        topic: &Topic,
        record: Record,
        retention: Retention,
    ) -> Result<Offset, StoreError> {
        self.append_all(topic, vec![record], retention).await
    }

    async fn append_batch(
        &self,
        topic: &Topic,
        records: Vec<Record>,
        retention: Retention,
    ) -> Result<Vec<Offset>, StoreError> {
        let count = records.len() as u64;
        if count == 0 {
            return Ok(Vec::new());
        }
        let last = self.append_all(topic, records, retention).await?;
        Ok((last.0 + 1 - count..=last.0).map(Offset).collect())
    }

    async fn read(
        &self,
        topic: &Topic,
        cursor: Cursor,
        max: usize,
    ) -> Result<ReadBatch, StoreError> {
        if let Some(batch) = self.inner.heads.read(topic, cursor, max) {
            return Ok(batch);
        }
        let from = cursor.offset.0.saturating_add(1);
        let (epoch, last, first, records) =
            self.redis().read(topic, cursor.epoch, from, max).await?;
        let (after, gap) = read_start(cursor, epoch, first);
        let offset = records.last().map_or(after, |(offset, _)| *offset);
        let batch = ReadBatch {
            records,
            gap,
            cursor: Cursor::new(epoch, offset),
        };
        self.inner.heads.learned(topic, &batch, last);
        Ok(batch)
    }

    async fn watch(&self, topic: &Topic) -> Result<watch::Receiver<Cursor>, StoreError> {
        let (mirror, rx, fresh) = self.inner.heads.mirror(topic);
        // A mirror others here watch is kept current by the announcements; a new or unwatched
        // one learns the head from Redis.
        if fresh || mirror.watchers() <= 1 {
            mirror.head_read(self.redis().head(topic).await?);
        }
        Ok(rx)
    }

    async fn create_channel(
        &self,
        state: ChannelState,
        ttl: Duration,
        max_per_user: usize,
    ) -> Result<Creation, StoreError> {
        let redis = self.redis();
        let attributes = serde_json::to_string(&state.attributes)
            .map_err(|error| StoreError::Corrupt(error.to_string()))?;
        let mut topics: Vec<String> = state.topics.keys().map(|t| t.as_str().to_owned()).collect();
        let private = Topic::channel(state.id);
        if !state.topics.contains_key(&private) {
            topics.push(private.as_str().to_owned());
        }
        let id = state.id.to_string();
        let alias = state
            .alias
            .as_ref()
            .map(Alias::to_string)
            .unwrap_or_default();
        let user = state.user.clone().unwrap_or_default();
        // The user's topic, which a user's first channel starts on the backlog of.
        let backlog = state
            .user
            .as_deref()
            .map(Topic::user)
            .filter(|topic| state.topics.contains_key(topic))
            .map(|topic| topic.as_str().to_owned());
        let (heads, start) = redis.follow(&topics, backlog.as_deref()).await?;
        let mut args = args![
            id,
            alias,
            user,
            attributes,
            millis(ttl),
            max_per_user,
            backlog.unwrap_or_default(),
            start.unwrap_or_default()
        ];
        for (topic, head) in topics.into_iter().zip(heads) {
            args.push(topic);
            args.push(head);
        }
        let answer = redis.sessions(&redis.scripts.create, args).await?;
        codec::decode_creation(answer)
    }

    async fn channel(&self, id: ChannelId) -> Result<Option<ChannelState>, StoreError> {
        let redis = self.redis();
        let answer = redis
            .sessions(&redis.scripts.channel, args![id, "id"])
            .await?;
        codec::decode_channel(answer)
    }

    async fn channel_by_alias(&self, alias: &Alias) -> Result<Option<ChannelState>, StoreError> {
        let redis = self.redis();
        let answer = redis
            .sessions(&redis.scripts.channel, args![alias.to_string(), "alias"])
            .await?;
        codec::decode_channel(answer)
    }

    async fn subscribe(
        &self,
        id: ChannelId,
        topic: &Topic,
        how: &Subscription,
    ) -> Result<Option<Cursor>, StoreError> {
        let redis = self.redis();
        let from = how.from.map(codec::encode_cursor).unwrap_or_default();
        let label = how
            .label
            .as_ref()
            .map(|l| format!("={l}"))
            .unwrap_or_default();
        let (heads, _) = redis.follow(&[topic.as_str().to_owned()], None).await?;
        let [head] = <[String; 1]>::try_from(heads)
            .map_err(|heads| codec::corrupt("heads", &format!("{heads:?}")))?;
        let answer = redis
            .sessions(
                &redis.scripts.subscribe,
                args![id, topic.as_str(), head, from, label],
            )
            .await?;
        match answer {
            Value::Nil => Ok(None),
            cursor => Ok(Some(codec::decode_cursor(&codec::text(cursor)?)?)),
        }
    }

    async fn unsubscribe(&self, id: ChannelId, topic: &Topic) -> Result<bool, StoreError> {
        let redis = self.redis();
        redis
            .flag(&redis.scripts.unsubscribe, args![id, topic.as_str()])
            .await
    }

    async fn save_cursors(
        &self,
        id: ChannelId,
        cursors: &[(Topic, Cursor)],
    ) -> Result<(), StoreError> {
        if cursors.is_empty() {
            return Ok(());
        }
        let redis = self.redis();
        let mut args = args![id];
        for (topic, cursor) in cursors {
            args.push(topic.as_str().to_owned());
            args.push(codec::encode_cursor(*cursor));
        }
        // The user's topic's mark follows its cursor, in the topic's keys.
        if let [topic, cursor] =
            &codec::texts(redis.sessions(&redis.scripts.save, args).await?)?[..]
        {
            let base = redis.layout.topic(topic);
            redis
                .run(&redis.scripts.mark, base, args![topic, cursor])
                .await?;
        }
        Ok(())
    }

    async fn mark_closed(
        &self,
        id: ChannelId,
        code: CloseCode,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let redis = self.redis();
        let close = format!("{} {reason}", code.as_u16());
        redis.flag(&redis.scripts.close, args![id, close]).await
    }

    async fn end_channel(&self, id: ChannelId, linger: Duration) -> Result<bool, StoreError> {
        let redis = self.redis();
        redis
            .flag(&redis.scripts.end, args![id, millis(linger)])
            .await
    }

    async fn touch(&self, id: ChannelId, ttl: Duration) -> Result<bool, StoreError> {
        let redis = self.redis();
        redis
            .flag(&redis.scripts.touch, args![id, millis(ttl)])
            .await
    }

    async fn remove_channel(&self, id: ChannelId) -> Result<Option<ChannelState>, StoreError> {
        let redis = self.redis();
        let answer = redis.sessions(&redis.scripts.remove, args![id]).await?;
        let state = codec::decode_channel(answer)?;
        if state.is_some() {
            redis.drop_private(&[id]).await;
        }
        self.inner.heads.dropped(&Topic::channel(id));
        Ok(state)
    }

    async fn take_expired(&self, max: usize) -> Result<Vec<ChannelState>, StoreError> {
        let redis = self.redis();
        let answer = redis
            .sessions(&redis.scripts.expired, args![bounded(max)])
            .await?;
        let states = codec::decode_channels(answer)?;
        let ids: Vec<ChannelId> = states.iter().map(|state| state.id).collect();
        redis.drop_private(&ids).await;
        for state in &states {
            self.inner.heads.dropped(&Topic::channel(state.id));
        }
        Ok(states)
    }

    async fn drop_idle_topics(&self, idle: Duration, max: usize) -> Result<usize, StoreError> {
        let redis = self.redis();
        let (groups, max) = (redis.layout.groups(), bounded(max));
        // Each group gets its share of `max`. One after the other: every node sweeps every
        // second, and while Redis is away a sweep should cost it one failed call, not one per
        // group.
        let mut count = 0;
        for group in 0..groups {
            let share = max / groups + usize::from(group < max % groups);
            if share == 0 {
                continue;
            }
            let dropped = redis.drop_idle(group, idle, share).await?;
            count += dropped.len();
            for topic in &dropped {
                self.inner.heads.dropped(&Topic::from_stored(topic));
            }
        }
        Ok(count)
    }

    async fn acquire_receiver(
        &self,
        id: ChannelId,
        holder: Id128,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let redis = self.redis();
        redis
            .flag(
                &redis.scripts.acquire,
                args![id, holder.to_string(), millis(ttl).max(1)],
            )
            .await
    }

    async fn release_receiver(&self, id: ChannelId, holder: Id128) -> Result<(), StoreError> {
        let redis = self.redis();
        redis
            .sessions(&redis.scripts.release, args![id, holder.to_string()])
            .await?;
        Ok(())
    }

    async fn presence(&self, topic: &Topic) -> Result<Presence, StoreError> {
        self.users("topic", topic.as_str()).await
    }

    async fn online(&self) -> Result<Presence, StoreError> {
        self.users("online", "").await
    }

    async fn user_channels(&self, user: &str) -> Result<Vec<ChannelId>, StoreError> {
        let redis = self.redis();
        let answer = redis
            .sessions(&redis.scripts.users, args!["user", user])
            .await?;
        codec::texts(answer)?
            .iter()
            .map(|id| id.parse().map_err(|_| codec::corrupt("channel id", id)))
            .collect()
    }
}

impl RedisStore {
    /// Appends `records` (at least one) with one script, which announces them together; returns
    /// the offset of the last.
    async fn append_all(
        &self,
        topic: &Topic,
        records: Vec<Record>,
        retention: Retention,
    ) -> Result<Offset, StoreError> {
        let redis = self.redis();
        let mut args = args![
            topic.as_str(),
            retention.messages.max(1),
            retention.bytes,
            new_epoch(),
            retention.age.map_or(0, millis)
        ];
        args.reserve(records.len() * 2);
        for record in &records {
            args.push(codec::encode_record(record)?);
            args.push(record.len().to_string());
        }
        let base = redis.layout.topic(topic.as_str());
        let answer = redis.run(&redis.scripts.append, base, args).await?;
        let [epoch, offset, first] = parts(answer)?;
        let epoch = Epoch(codec::number(&codec::text(epoch)?, "epoch")?);
        let (offset, first) = (Offset(codec::int(offset)?), Offset(codec::int(first)?));
        self.inner
            .heads
            .appended_here(topic, epoch, offset, first, records);
        Ok(offset)
    }

    /// Counts the channels of a topic (or all of them) by user.
    async fn users(&self, what: &str, name: &str) -> Result<Presence, StoreError> {
        let redis = self.redis();
        let answer = redis
            .sessions(&redis.scripts.users, args![what, name])
            .await?;
        let mut presence = Presence::default();
        for user in codec::texts(answer)? {
            presence.channels += 1;
            if !user.is_empty() {
                *presence.users.entry(user).or_default() += 1;
            }
        }
        Ok(presence)
    }
}

/// A fresh epoch for a topic the script may have to create: a topic's every life gets its own,
/// so a cursor from an earlier life is never taken for one in this life.
fn new_epoch() -> String {
    (rand::random::<u64>() | 1).to_string()
}

/// `items` in groups of equal `key`, in the order each key first appears.
fn grouped<T>(
    items: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> usize,
) -> Vec<(usize, Vec<T>)> {
    let mut groups: Vec<(usize, Vec<T>)> = Vec::new();
    for item in items {
        let group = key(&item);
        match groups.iter_mut().find(|(g, _)| *g == group) {
            Some((_, members)) => members.push(item),
            None => groups.push((group, vec![item])),
        }
    }
    groups
}

/// Caps a count handed to a script: Lua numbers are doubles, and Redis takes no `LIMIT` in
/// exponent form.
fn bounded(max: usize) -> usize {
    max.min(1 << 20)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Splits a script's array answer into exactly `N` parts.
fn parts<const N: usize>(answer: Value) -> Result<[Value; N], StoreError> {
    match answer {
        Value::Array(parts) => parts
            .try_into()
            .map_err(|parts: Vec<Value>| codec::corrupt("answer", &format!("{parts:?}"))),
        other => Err(codec::corrupt("answer", &format!("{other:?}"))),
    }
}

/// Bounds a Redis call by `timeout`.
async fn within<T>(
    timeout: Duration,
    call: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result.map_err(unavailable),
        Err(_) => Err(StoreError::Unavailable(format!(
            "Redis did not answer within {timeout:?}"
        ))),
    }
}

/// `info` for a listening connection: pushed pub/sub messages need RESP3.
fn resp3(info: redis::ConnectionInfo) -> redis::ConnectionInfo {
    let settings = info.redis_settings().clone();
    info.set_redis_settings(settings.set_protocol(ProtocolVersion::RESP3))
}

fn unavailable(error: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("Redis: {error}"))
}
