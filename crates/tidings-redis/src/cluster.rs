//! The command connection to a Redis Cluster: the cluster client's, with two things of ours.
//!
//! - **A command is sent again only when it did not run.** The client itself (built with no
//!   retries) would also send again a command whose connection broke, after Redis may have run
//!   it: a publish then stored twice. Here a command is sent again, for up to half the store's
//!   timeout, only when the answer says it was not run: a redirection (`MOVED`, `ASK`, a replica
//!   answering `READONLY`), the cluster refusing (`TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN`,
//!   `LOADING`), or the client finding no connection to send it on. Anything else, a broken
//!   connection or a timeout among them, is the caller's error, as on one server.
//! - **The connection is built again when the client's own recovery is stuck.** A whole cluster
//!   restarting can leave the client with no connection to any node and a slot refresh that
//!   fails at once, again and again: every command then fails with `ClusterConnectionNotFound`
//!   while the servers answer (seen in the cluster restart test, for 30 s and more). A command
//!   that fails that way has the connection built again from the initial nodes, in the
//!   background, at most once a second; the commands after it go to the new one, and the old
//!   one stops when its last command ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{ErrorKind, RedisError, RedisResult, RetryMethod, Value};
use tidings_store::StoreError;

/// The least time between two attempts to build the connection again.
const REBUILD_EVERY: Duration = Duration::from_secs(1);
/// The first wait before sending a command again, doubled each time up to the second.
const RESEND_AFTER: (Duration, Duration) = (Duration::from_millis(10), Duration::from_millis(250));

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

/// Whether `error` says the command was not run, so that sending it again cannot run it twice.
fn unsent(error: &RedisError) -> bool {
    matches!(
        error.retry_method(),
        RetryMethod::MovedRedirect
            | RetryMethod::AskRedirect
            | RetryMethod::RefreshSlotsAndRetry
            | RetryMethod::WaitAndRetry
    ) || stuck(error)
}

impl redis::aio::ConnectionLike for Cluster {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        Box::pin(async move {
            let until = Instant::now() + self.shared.timeout / 2;
            let (mut wait, longest) = RESEND_AFTER;
            loop {
                let (generation, mut connection) = self.current();
                let result = connection.req_packed_command(cmd).await;
                self.check(generation, &result);
                match &result {
                    // The client learns the new slot owner from the redirection meanwhile.
                    Err(error) if unsent(error) && Instant::now() + wait < until => {
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(longest);
                    }
                    _ => return result,
                }
            }
        })
    }

    /// Not sent again: a pipeline's commands may have run in part. The store sends none.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn error(reply: &str) -> RedisError {
        let value = redis::parse_redis_value(reply.as_bytes()).expect("a RESP reply");
        value.extract_error().expect_err("an error reply")
    }

    #[test]
    fn only_commands_redis_did_not_run_are_sent_again() {
        for reply in [
            "-MOVED 3999 127.0.0.1:6381\r\n",
            "-ASK 3999 127.0.0.1:6381\r\n",
            "-TRYAGAIN Multiple keys request during rehashing of slot\r\n",
            "-CLUSTERDOWN The cluster is down\r\n",
            "-MASTERDOWN Link with MASTER is down\r\n",
            "-READONLY You can't write against a read only replica.\r\n",
        ] {
            assert!(unsent(&error(reply)), "{reply}");
        }
        let no_node = RedisError::from((ErrorKind::ClusterConnectionNotFound, "No connections"));
        assert!(unsent(&no_node));

        let broken = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        let timed_out = RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        for error in [broken, timed_out, error("-ERR user_script:1: oops\r\n")] {
            assert!(!unsent(&error), "{error}");
        }
    }
}
