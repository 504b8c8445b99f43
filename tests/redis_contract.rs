//! The store contract of `tidings::store::contract`, unchanged, against a real `redis-server`.

use tidings_redis::{Options, RedisStore};
use tidings_store::contract;
use tidings_tests::redis::RedisServer;

/// A store on `server` under a prefix of its own, so checks sharing the server do not see each
/// other's channels.
fn store_on(server: &RedisServer) -> impl Fn() -> RedisStore {
    let url = server.url();
    move || {
        let prefix = format!("contract-{:016x}:", rand_suffix());
        let url = url.clone();
        // `run_all` wants the store synchronously; connecting is async, so block on a runtime of
        // the current thread's.
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async move {
                RedisStore::connect_with(&url, Options::default().prefix(prefix))
                    .await
                    .expect("connect to the test redis-server")
            })
        })
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server; run bash tests/run-all.sh"]
async fn redis_store_keeps_the_contract() {
    let server = RedisServer::start();
    contract::run_all(store_on(&server)).await;
}

/// The same contract on a Redis Cluster of three shards, each check under a prefix of its own,
/// so the checks' keys land on different shards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server; run bash tests/run-all.sh"]
async fn redis_cluster_store_keeps_the_contract() {
    contract::run_all(|| {
        // A store of its own for each check: `shared_cluster_stores` connects on a runtime that
        // outlives this test's.
        tidings_tests::redis::shared_cluster_stores(1).remove(0)
    })
    .await;
}
