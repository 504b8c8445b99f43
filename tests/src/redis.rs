//! A real `redis-server` (the Debian package) on a free loopback port, for the tests of the
//! Redis store and of clusters: started by [`RedisServer::start`], stopped when dropped, and
//! stoppable and restartable on the same port mid-test.
//!
//! The server appends every write to its log and syncs it before answering (`appendfsync
//! always`), so a stop and restart keeps everything Redis acknowledged; its files live in a
//! fresh directory under the system's temporary directory, removed on drop.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tidings_redis::{Options, RedisStore};

/// The server and runtime behind [`shared_store`]: tests each run on a runtime of their own,
/// which ends with the test, while a store's connections and listener must outlive any one.
static SHARED: LazyLock<(RedisServer, tokio::runtime::Runtime)> =
    LazyLock::new(|| (RedisServer::start(), shared_runtime()));

/// A runtime of one worker for the connections of a shared Redis's stores.
fn shared_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime for the shared Redis stores")
}

/// A `RedisStore` under a fresh prefix on a `redis-server` shared by the whole test process.
pub fn shared_store() -> RedisStore {
    shared_stores(1).remove(0)
}

/// `n` `RedisStore`s, each with connections of its own, under one fresh prefix on the shared
/// `redis-server`: the stores of `n` nodes of one service.
pub fn shared_stores(n: usize) -> Vec<RedisStore> {
    let (server, runtime) = &*SHARED;
    let url = server.url();
    connected(runtime, n, |options| {
        RedisStore::connect_with(&url, options)
    })
}

/// `n` stores that `connect` makes under one fresh prefix, each with connections of its own.
/// Connecting blocks on `runtime` from a thread of its own: the caller may be on a runtime,
/// where blocking is not allowed.
fn connected<F>(
    runtime: &tokio::runtime::Runtime,
    n: usize,
    connect: impl Fn(Options) -> F + Sync,
) -> Vec<RedisStore>
where
    F: Future<Output = Result<RedisStore, tidings::store::StoreError>>,
{
    let prefix = format!("test-{:016x}:", rand::random::<u64>());
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                (0..n)
                    .map(|_| {
                        let options = Options::default().prefix(prefix.clone());
                        runtime
                            .block_on(connect(options))
                            .expect("connect to the test's Redis")
                    })
                    .collect()
            })
            .join()
            .expect("connecting thread")
    })
}

/// How long `redis-server` has to answer its first PING.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running (or stopped) `redis-server`.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// Arguments beyond the port, directory and persistence (a cluster node's).
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts `redis-server` on a free port of 127.0.0.1. Panics, saying how to install it, if
    /// it is missing.
    pub fn start() -> RedisServer {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        RedisServer::start_on(port, Vec::new())
    }

    /// Starts `redis-server` on `port` with `extra` arguments.
    fn start_on(port: u16, extra: Vec<String>) -> RedisServer {
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        let dir = std::env::temp_dir().join(format!(
            "tidings-redis-{}-{port}-{stamp:x}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("create the redis directory");
        let mut server = RedisServer {
            port,
            dir,
            child: None,
            extra,
        };
        server.restart();
        server
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Stops the server (SIGKILL: acknowledged writes are already on disk) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Closing its stdin makes the wrapping shell kill the server and wait for it.
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, with the data it had, and waits until it
    /// answers.
    ///
    /// The server runs under a shell that kills it once its stdin closes, which happens when
    /// this process ends however it ends: a server of a `static` (never dropped) or of a test
    /// that aborted does not outlive the tests.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(error) = Command::new("redis-server").arg("--version").output() {
            panic!(
                "cannot run redis-server ({error}); install it with \
                 `apt-get install redis-server`, or run `bash tests/run-all.sh`"
            );
        }
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#"redis-server "$@" & server=$!; cat >/dev/null; kill -9 $server; wait $server"#)
            .arg("sh")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
            .args(["--appendfsync", "always", "--protected-mode", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sh for redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.answers() {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING within {START_TIMEOUT:?}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200))
        else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The cluster and runtime behind [`shared_cluster_stores`].
static SHARED_CLUSTER: LazyLock<(RedisCluster, tokio::runtime::Runtime)> =
    LazyLock::new(|| (RedisCluster::start(3), shared_runtime()));

/// `n` `RedisStore`s on a Redis Cluster of three shards shared by the whole test process, under
/// one fresh prefix: the stores of `n` nodes of one service.
pub fn shared_cluster_stores(n: usize) -> Vec<RedisStore> {
    let (cluster, runtime) = &*SHARED_CLUSTER;
    let urls = cluster.urls();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    connected(runtime, n, |options| {
        RedisStore::connect_cluster(&urls, options)
    })
}

/// A Redis Cluster of `redis-server` processes on free loopback ports, one primary per shard,
/// made with `redis-cli --cluster create`; stopped when dropped.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `shards` nodes and joins them into a cluster whose slots are all served, or
    /// panics saying what failed.
    pub fn start(shards: usize) -> RedisCluster {
        RedisCluster::start_with(shards, &[])
    }

    /// [`RedisCluster::start`], with `extra` arguments for every node.
    pub fn start_with(shards: usize, extra: &[&str]) -> RedisCluster {
        let cluster_args = |port: u16| {
            let mut args = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &format!("nodes-{port}.conf"),
                "--cluster-node-timeout",
                "2000",
            ]
            .map(str::to_owned)
            .to_vec();
            args.extend(extra.iter().map(|arg| arg.to_string()));
            args
        };
        let nodes: Vec<RedisServer> = (0..shards)
            .map(|_| {
                let port = cluster_port();
                RedisServer::start_on(port, cluster_args(port))
            })
            .collect();
        let addrs: Vec<String> = nodes.iter().map(|n| n.addr().to_string()).collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli (it comes with redis-server)");
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        let cluster = RedisCluster { nodes };
        cluster.wait_ok();
        cluster
    }

    /// `redis://127.0.0.1:<port>/` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The keys matching `pattern` on each node, in node order.
    pub fn keys_per_node(&self, pattern: &str) -> Vec<Vec<String>> {
        (0..self.nodes.len())
            .map(|node| self.cli(node, &["--scan", "--pattern", pattern]))
            .map(|keys| keys.lines().map(str::to_owned).collect())
            .collect()
    }

    /// The line of `INFO all` starting with `field` on each node, in node order.
    pub fn info_per_node(&self, field: &str) -> Vec<String> {
        (0..self.nodes.len())
            .map(|node| {
                let info = self.cli(node, &["info", "all"]);
                let line = info.lines().find(|line| line.starts_with(field));
                line.unwrap_or_default().trim().to_owned()
            })
            .collect()
    }

    /// The hash slot of `key`.
    pub fn slot_of(&self, key: &str) -> u16 {
        let slot = self.cli(0, &["cluster", "keyslot", key]);
        slot.trim()
            .parse()
            .expect("CLUSTER KEYSLOT answers a number")
    }

    /// The node serving `slot`, as node 0 sees the cluster.
    pub fn slot_owner(&self, slot: u16) -> usize {
        let nodes = self.cli(0, &["cluster", "nodes"]);
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let serves = fields.iter().skip(8).any(|range| {
                let (low, high) = range.split_once('-').unwrap_or((range, range));
                match (low.parse::<u16>(), high.parse::<u16>()) {
                    (Ok(low), Ok(high)) => (low..=high).contains(&slot),
                    _ => false,
                }
            });
            if serves {
                let port: u16 = fields[1]
                    .split(['@', ':'])
                    .nth(1)
                    .and_then(|port| port.parse().ok())
                    .expect("CLUSTER NODES names each node's port");
                return self
                    .nodes
                    .iter()
                    .position(|n| n.port == port)
                    .expect("the slot's owner is one of the cluster's nodes");
            }
        }
        panic!("no node serves slot {slot}: {nodes}");
    }

    /// Moves `slot`, with its keys, to node `to`, as `redis-cli --cluster reshard` does:
    /// importing and migrating, the keys migrated, then the slot given to `to` on every node.
    pub fn move_slot(&self, slot: u16, to: usize) {
        let from = self.slot_owner(slot);
        if from == to {
            return;
        }
        let id = |node: usize| self.cli(node, &["cluster", "myid"]).trim().to_owned();
        let (slot_text, from_id, to_id) = (slot.to_string(), id(from), id(to));
        self.cli(
            to,
            &["cluster", "setslot", &slot_text, "importing", &from_id],
        );
        self.cli(
            from,
            &["cluster", "setslot", &slot_text, "migrating", &to_id],
        );
        loop {
            let keys = self.cli(from, &["cluster", "getkeysinslot", &slot_text, "100"]);
            let keys: Vec<&str> = keys.lines().filter(|key| !key.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let port = self.nodes[to].port.to_string();
            let mut migrate = vec!["migrate", "127.0.0.1", &port, "", "0", "5000", "keys"];
            migrate.extend(keys);
            let answer = self.cli(from, &migrate);
            assert!(answer.trim() == "OK", "MIGRATE failed: {answer}");
        }
        for node in 0..self.nodes.len() {
            self.cli(node, &["cluster", "setslot", &slot_text, "node", &to_id]);
        }
        self.wait_ok();
    }

    /// What `redis-cli -p <node's port> <args>` prints.
    fn cli(&self, node: usize, args: &[&str]) -> String {
        let port = self.nodes[node].port.to_string();
        let out = Command::new("redis-cli")
            .args(["-p", &port])
            .args(args)
            .output()
            .expect("run redis-cli (it comes with redis-server)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops every node (their data is on disk).
    pub fn stop(&mut self) {
        for node in &mut self.nodes {
            node.stop();
        }
    }

    /// Stops node `node` (its data is on disk).
    pub fn stop_node(&mut self, node: usize) {
        self.nodes[node].stop();
    }

    /// Starts node `node` again, and waits until the cluster is ok.
    pub fn restart_node(&mut self, node: usize) {
        self.nodes[node].restart();
        self.wait_ok();
    }

    /// Starts every node again on its port, with its data and its place in the cluster, and
    /// waits until the cluster is ok.
    pub fn restart(&mut self) {
        for node in &mut self.nodes {
            node.restart();
        }
        self.wait_ok();
    }

    /// Waits until every node says the cluster is ok, with all slots served.
    fn wait_ok(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        for node in &self.nodes {
            loop {
                let info = Command::new("redis-cli")
                    .args(["-p", &node.port.to_string(), "cluster", "info"])
                    .output()
                    .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
                    .unwrap_or_default();
                let known = format!("cluster_known_nodes:{}", self.nodes.len());
                if info.contains("cluster_state:ok")
                    && info.contains("cluster_slots_ok:16384")
                    && info.contains(&known)
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the cluster was not ok within {START_TIMEOUT:?}: {info}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// A free loopback port whose cluster bus port (10,000 above it, where `redis-cli --cluster
/// create` expects it) is free too.
///
/// Both below Linux's default range of ports given to outgoing connections (32,768 and up):
/// a port there can be free when checked and taken by a browser's or a client's connection
/// before `redis-server` binds it, which then exits and never answers (seen in run-all).
fn cluster_port() -> u16 {
    for _ in 0..200 {
        let port = 20_000 + rand::random::<u16>() % 2_768;
        let free = |port: u16| TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok();
        if free(port) && free(port + 10_000) {
            return port;
        }
    }
    panic!("no free pair of loopback ports for a cluster node");
}

/// The Redis a test of several processes runs on: one `redis-server`, or, with
/// `TIDINGS_TEST_STORE=redis-cluster`, a Redis Cluster of three shards.
pub enum Redis {
    /// One server.
    Server(RedisServer),
    /// A cluster.
    Cluster(RedisCluster),
}

impl Redis {
    /// Starts what `TIDINGS_TEST_STORE` asks for.
    pub fn start() -> Redis {
        match std::env::var("TIDINGS_TEST_STORE").as_deref() {
            Ok("redis-cluster") => Redis::Cluster(RedisCluster::start(3)),
            _ => Redis::Server(RedisServer::start()),
        }
    }

    /// What the examples' `--redis` takes: the server's URL, or the nodes' separated by commas.
    pub fn url(&self) -> String {
        match self {
            Redis::Server(server) => server.url(),
            Redis::Cluster(cluster) => cluster.urls().join(","),
        }
    }

    /// Stops it.
    pub fn stop(&mut self) {
        match self {
            Redis::Server(server) => server.stop(),
            Redis::Cluster(cluster) => cluster.stop(),
        }
    }

    /// Starts it again with its data.
    pub fn restart(&mut self) {
        match self {
            Redis::Server(server) => server.restart(),
            Redis::Cluster(cluster) => cluster.restart(),
        }
    }
}
