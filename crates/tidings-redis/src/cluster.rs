//! A Redis Cluster connection that is built again when the cluster client's own recovery is
//! stuck.
//!
//! The cluster client recovers from lost nodes by itself, but a whole cluster restarting can
//! leave it with no connection to any node and a slot refresh that fails at once, again and
//! again: every command then fails with `ClusterConnectionNotFound` while the servers answer
//! (seen in the cluster restart test, for 30 s and more). A command that fails that way here has the
//! connection built again from the initial nodes, in the background, at most once a second;
//! the commands after it go to the new one, and the old one stops when its last command ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{ErrorKind, RedisError, RedisResult, Value};
use tidings_store::StoreError;

/// The least time between two attempts to build the connection again.
const REBUILD_EVERY: Duration = Duration::from_secs(1);

/// A connection to a Redis Cluster; cheap to clone, clones share it.
#[derive(Clone)]
pub(crate) struct Cluster {
    shared: Arc<Shared>,
}

struct Shared {
    client: ClusterClient,
    timeout: Duration,
    /// The connection in use and how many times it has been built again.
    current: Mutex<(u64, ClusterConnection)>,
    /// When it was last built again (or tried), held while trying.
    rebuilding: tokio::sync::Mutex<Option<Instant>>,
}

impl Cluster {
    /// Connects through `client`, waiting at most `timeout`.
    pub(crate) async fn connect(
        client: ClusterClient,
        timeout: Duration,
    ) -> Result<Cluster, StoreError> {
        let connection = super::within(timeout, client.get_async_connection()).await?;
        Ok(Cluster {
            shared: Arc::new(Shared {
                client,
                timeout,
                current: Mutex::new((0, connection)),
                rebuilding: tokio::sync::Mutex::new(None),
            }),
        })
    }

    fn current(&self) -> (u64, ClusterConnection) {
        let current = self.shared.current.lock();
        (current.0, current.1.clone())
    }

    /// After a command on the connection of `generation` answered `result`: builds the
    /// connection again if the client found none to send it on.
    fn check<T>(&self, generation: u64, result: &RedisResult<T>) {
        if let Err(error) = result
            && stuck(error)
        {
            tokio::spawn(self.clone().rebuild(generation));
        }
    }

    async fn rebuild(self, generation: u64) {
        let shared = &self.shared;
        let Ok(mut last) = shared.rebuilding.try_lock() else {
            return;
        };
        let recent = last.is_some_and(|at| at.elapsed() < REBUILD_EVERY);
        if recent || shared.current.lock().0 != generation {
            return;
        }
        *last = Some(Instant::now());
        let connection = tokio::time::timeout(shared.timeout, shared.client.get_async_connection());
        let Ok(Ok(connection)) = connection.await else {
            // The cluster is still down: the next command that fails tries again.
            return;
        };
        {
            let mut current = shared.current.lock();
            current.0 += 1;
            current.1 = connection;
        }
        tracing::warn!("built the Redis Cluster connection again: the client found no node");
        metrics::counter!("tidings_redis_cluster_rebuilds_total").increment(1);
    }
}

/// Whether `error` says the client has no connection to send a command on.
fn stuck(error: &RedisError) -> bool {
    error.kind() == ErrorKind::ClusterConnectionNotFound
}

impl redis::aio::ConnectionLike for Cluster {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        Box::pin(async move {
            let (generation, mut connection) = self.current();
            let result = connection.req_packed_command(cmd).await;
            self.check(generation, &result);
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (generation, mut connection) = self.current();
            let result = connection
                .req_packed_commands(pipeline, offset, count)
                .await;
            self.check(generation, &result);
            result
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}
