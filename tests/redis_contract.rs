//! The store contract of `tidings::store::contract`, unchanged, against a real `redis-server`.

use std::time::Duration;

use tidings::{Cursor, Payload};
use tidings_redis::{Options, RedisStore};
use tidings_store::{Record, Retention, Store, Topic, contract};
use tidings_tests::redis::{RedisCluster, RedisServer};
use tokio::sync::watch;

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

/// One service's topics are spread over the shards of a cluster, and an append to any of them
/// wakes a watcher on another node, whichever shard carries its announcement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server; run bash tests/run-all.sh"]
async fn one_services_topics_spread_over_the_shards() {
    let cluster = RedisCluster::start(3);
    let urls = cluster.urls();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let connect = || RedisStore::connect_cluster(&urls, Options::default().prefix("spread:"));
    let (a, b) = (connect().await.unwrap(), connect().await.unwrap());
    for n in 0..96 {
        let topic = Topic::from_stored(&format!("room-{n}"));
        let mut head = b.watch(&topic).await.unwrap();
        let start = *head.borrow_and_update();
        let record = Record::Message(Payload::new(format!("hello {n}")));
        a.append(&topic, record.clone(), Retention::default())
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(2), head.changed())
            .await
            .unwrap_or_else(|_| panic!("{topic:?}: node B woken within 2 s"))
            .unwrap();
        let batch = b.read(&topic, start, 10).await.unwrap();
        assert_eq!(batch.records.len(), 1, "{topic:?}: {batch:?}");
        assert_eq!(batch.records[0].1, record);
    }
    let streams: Vec<usize> = cluster
        .keys_per_node("{spread:*}t:room-*")
        .iter()
        .map(Vec::len)
        .collect();
    assert_eq!(streams.iter().sum::<usize>(), 96, "{streams:?}");
    assert!(
        streams.iter().all(|&count| count >= 16),
        "every shard holds a share of the topics: {streams:?}"
    );
    println!("topic streams per shard: {streams:?}");
    println!(
        "scripts per shard: {:?}",
        cluster.info_per_node("cmdstat_evalsha")
    );
}

/// Appends `record` to `topic` through `on`, then waits up to `secs` seconds for `head`
/// (another node's watch of the topic) to move; panics saying `what` did not happen.
async fn append_seen(
    on: &RedisStore,
    topic: &Topic,
    record: Record,
    head: &mut watch::Receiver<Cursor>,
    secs: u64,
    what: &str,
) {
    on.append(topic, record, Retention::default())
        .await
        .expect("the append is stored");
    tokio::time::timeout(Duration::from_secs(secs), head.changed())
        .await
        .unwrap_or_else(|_| panic!("{what} within {secs} s"))
        .expect("node B's store lives");
}

/// A topic whose slot moves to another shard (as resharding does) still wakes a watcher on
/// another node, and loses nothing: Redis drops the subscribers of a moved slot's shard
/// channel, and the store subscribes again on the new shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server; run bash tests/run-all.sh"]
async fn a_topic_whose_slot_moves_keeps_waking_its_watchers() {
    let cluster = RedisCluster::start(3);
    let urls = cluster.urls();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let connect = || RedisStore::connect_cluster(&urls, Options::default().prefix("moving:"));
    let (a, b) = (connect().await.unwrap(), connect().await.unwrap());
    let topic = Topic::from_stored("room");
    let mut head = b.watch(&topic).await.unwrap();
    let start = *head.borrow_and_update();
    let mut sent = Vec::new();
    let mut publish = async |text: String| {
        let record = Record::Message(Payload::new(text));
        sent.push(record.clone());
        append_seen(&a, &topic, record, &mut head, 5, "node B woken").await;
    };
    publish("before".to_owned()).await;
    let stream = cluster.keys_per_node("{moving:*}t:room").concat();
    let slot = cluster.slot_of(&stream[0]);
    let owner = cluster.slot_owner(slot);
    cluster.move_slot(slot, (owner + 1) % 3);
    assert_eq!(cluster.slot_owner(slot), (owner + 1) % 3);
    for n in 0..3 {
        publish(format!("after {n}")).await;
    }
    let batch = b.read(&topic, start, 10).await.unwrap();
    let read: Vec<Record> = batch.records.into_iter().map(|(_, r)| r).collect();
    assert_eq!(read, sent, "node B reads every record, in order");
}

/// A shard down stops the wake-ups of its own topics only: a node's subscriptions on the other
/// shards go on, and those on the shard come back with it, with what was appended meanwhile.
/// The cluster serves the other shards' slots meanwhile (`cluster-require-full-coverage no`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server; run bash tests/run-all.sh"]
async fn a_shard_down_stops_only_its_own_topics_wake_ups() {
    let mut cluster = RedisCluster::start_with(3, &["--cluster-require-full-coverage", "no"]);
    let urls = cluster.urls();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let connect = || RedisStore::connect_cluster(&urls, Options::default().prefix("partial:"));
    let (a, b) = (connect().await.unwrap(), connect().await.unwrap());
    let message = |text: &str| Record::Message(Payload::new(text.to_owned()));
    // One topic on shard 0 and one on shard 1, found by where their keys went.
    for n in 0..32 {
        let topic = Topic::from_stored(&format!("room-{n}"));
        a.append(&topic, message("hello"), Retention::default())
            .await
            .unwrap();
    }
    let on_shard = |shard: usize| {
        let keys = &cluster.keys_per_node("{partial:*}t:room-*")[shard];
        let key = keys.first().expect("32 topics leave some on every shard");
        let name = key.rsplit_once("}t:").expect("a topic key").1;
        Topic::from_stored(name)
    };
    let (down, up) = (on_shard(0), on_shard(1));
    let mut down_head = b.watch(&down).await.unwrap();
    let mut up_head = b.watch(&up).await.unwrap();
    let (down_start, up_start) = (*down_head.borrow_and_update(), *up_head.borrow_and_update());

    tokio::task::block_in_place(|| cluster.stop_node(0));
    // Node B has seen its connection to shard 0 go, and tries it again meanwhile.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let record = message("while shard 0 is down");
    let what = "node B woken for shard 1's topic while shard 0 is down";
    append_seen(&a, &up, record, &mut up_head, 5, what).await;

    tokio::task::block_in_place(|| cluster.restart_node(0));
    // Node A's first command to shard 0 may meet its broken connection (and is not sent again:
    // it might have run); reads, which may be repeated, tell when it is back.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while a.read(&down, down_start, 1).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node A reaches shard 0 again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let what = "node B woken for shard 0's topic once it is back";
    append_seen(&a, &down, message("after"), &mut down_head, 10, what).await;
    for (topic, start, last) in [
        (&up, up_start, "while shard 0 is down"),
        (&down, down_start, "after"),
    ] {
        let batch = b.read(topic, start, 10).await.unwrap();
        let read: Vec<Record> = batch.records.into_iter().map(|(_, r)| r).collect();
        assert_eq!(read, vec![message(last)], "{topic:?}");
    }
}
