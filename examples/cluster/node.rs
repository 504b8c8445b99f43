//! The nodes: the hidden `--node-addr` mode the program re-executes itself in, and the parent's
//! handle on each such process.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tidings::store::StoreError;
use tidings_redis::{Options, RedisStore};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStdin, Command};

use crate::App;
use crate::served::Served;

/// What a node prints, followed by its address, once it listens.
const LISTENING: &str = "node listening on ";

/// How long a node has to connect to Redis and listen. Redis calls time out after 3 s, and the
/// echo app connects four stores.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Messages the broadcast topic retains, as `examples/broadcast` does by default.
const BROADCAST_RETENTION: usize = 10_000;

/// The `--node-addr` mode: serves `app` on `redis` at `addr` until the parent goes away.
pub(crate) async fn serve(app: App, redis: &str, addr: SocketAddr) -> Result<(), String> {
    let served = router(app, redis)
        .await
        .map_err(|e| format!("node for {addr}: cannot use the Redis at {redis}: {e}"))?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("node for {addr}: cannot listen: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("{LISTENING}{addr}");
    // The parent holds our stdin: end of file means it is gone, however it ended.
    tokio::spawn(async {
        let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut tokio::io::sink()).await;
        std::process::exit(0);
    });
    // Stopped on its own (SIGTERM, Ctrl-C), the node ends its connections as a server going
    // away, and its native clients resume on the other nodes.
    served.serve(listener).await.map_err(|e| e.to_string())
}

/// The service of `app`, on a [`RedisStore`] at `redis`.
async fn router(app: App, redis: &str) -> Result<Served, StoreError> {
    match app {
        App::Chat => {
            let heartbeat = Duration::from_millis(crate::chat::HEARTBEAT_MS);
            crate::chat::app(heartbeat, Some(redis)).await
        }
        App::Echo => crate::echo::app(tidings::Config::DEFAULT_SOCKJS_URL, Some(redis)).await,
        App::Broadcast => {
            // The prefix `examples/broadcast --redis` uses, so both kinds of node can mix.
            let options = Options::default().prefix("tidings:broadcast:");
            let store = RedisStore::connect_urls(redis, options).await?;
            let builder = crate::broadcast::builder(BROADCAST_RETENTION).store(store);
            Ok(crate::broadcast::router(builder))
        }
        App::Stomp => {
            let heartbeat = Duration::from_millis(crate::stomp::HEARTBEAT_MS);
            crate::stomp::app(heartbeat, Some(redis), crate::stomp::NODE_MODULES.into()).await
        }
    }
}

/// A running node process. Dropping it kills the process; if the parent dies without dropping
/// it, the node sees its stdin close and exits.
pub(crate) struct Node {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// Its process id, printed so that it can be killed to see the others take over.
    pub(crate) pid: u32,
    child: Child,
    /// Held, never written: the node lives while this is open.
    _stdin: Option<ChildStdin>,
}

impl Node {
    /// Starts a node of `app` on `redis` at `addr` (port 0: a free one) and waits until it
    /// listens.
    pub(crate) async fn start(app: App, redis: &str, addr: SocketAddr) -> Result<Node, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
        let mut child = Command::new(exe)
            .args(["--app", app.name(), "--redis", redis])
            .arg("--node-addr")
            .arg(addr.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start a node: {e}"))?;
        let pid = child.id().ok_or("a node exited at once")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("no pipe from a node")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(START_TIMEOUT, lines.next_line())
            .await
            .map_err(|_| format!("the node for {addr} did not listen within {START_TIMEOUT:?}"))?
            .map_err(|e| format!("cannot read from the node for {addr}: {e}"))?
            .ok_or_else(|| format!("the node for {addr} exited (its error is above)"))?;
        let addr = line
            .strip_prefix(LISTENING)
            .and_then(|addr| addr.parse().ok())
            .ok_or_else(|| format!("unexpected line from a node: {line:?}"))?;
        // Nodes print nothing more, but a full pipe must never block one.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Node {
            addr,
            pid,
            child,
            _stdin: stdin,
        })
    }

    /// Says on stderr when node `index` exits (killed, say), and kills it when the program
    /// ends.
    pub(crate) fn supervise(self, index: usize) {
        let Node {
            pid,
            mut child,
            _stdin: stdin,
            ..
        } = self;
        tokio::spawn(async move {
            let status = child.wait().await;
            // Moved in by name: the node must keep its stdin open as long as it lives.
            drop(stdin);
            match status {
                Ok(status) => eprintln!("node {index} (pid {pid}) exited: {status}"),
                Err(error) => eprintln!("node {index} (pid {pid}): {error}"),
            }
        });
    }
}
