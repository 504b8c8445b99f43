//! Two stores on one Redis behave as two nodes of one service: what one writes the other reads,
//! an append on one wakes a watcher on the other, and work both may do happens once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tidings::store::Record;
use tidings::store::{Alias, ChannelState, Creation, Retention, Store};
use tidings::{ChannelId, Cursor, Offset, Payload, Topic};
use tidings_redis::{Options, RedisStore};
use tidings_tests::redis::RedisServer;

async fn nodes(server: &RedisServer, n: usize) -> Vec<RedisStore> {
    let prefix = format!("nodes-{:x}:", rand::random::<u64>());
    let mut stores = Vec::new();
    for _ in 0..n {
        let options = Options::default().prefix(prefix.clone());
        stores.push(
            RedisStore::connect_with(&server.url(), options)
                .await
                .expect("connect"),
        );
    }
    stores
}

fn message(text: &str) -> Record {
    Record::Message(Payload::new(text))
}

fn channel(alias: Option<&str>) -> ChannelState {
    ChannelState {
        id: ChannelId::random(),
        user: None,
        attributes: BTreeMap::new(),
        topics: BTreeMap::new(),
        closed: None,
        alias: alias.map(|a| Alias::SockJs(a.to_owned())),
        ended: false,
        labels: BTreeMap::new(),
    }
}

#[tokio::test]
#[ignore = "needs redis-server; run bash tests/run-all.sh"]
async fn an_append_on_one_node_wakes_a_watcher_on_another_at_once() {
    let server = RedisServer::start();
    let [a, b] = <[RedisStore; 2]>::try_from(nodes(&server, 2).await)
        .ok()
        .unwrap();
    let topic = Topic::from_stored("room");
    let mut head = b.watch(&topic).await.unwrap();
    let start = *head.borrow_and_update();
    let mut cursor = start;
    let mut worst = Duration::ZERO;
    for n in 1..=200u64 {
        let sent = Instant::now();
        let offset = a
            .append(&topic, message(&format!("m{n}")), Retention::default())
            .await
            .unwrap();
        assert_eq!(offset, Offset(n));
        tokio::time::timeout(Duration::from_secs(2), head.changed())
            .await
            .expect("woken within 2 s")
            .unwrap();
        worst = worst.max(sent.elapsed());
        let batch = b.read(&topic, cursor, 10).await.unwrap();
        let texts: Vec<String> = batch
            .records
            .iter()
            .map(|(_, r)| match r {
                Record::Message(p) => p.text().to_owned(),
                Record::Control(c) => format!("{c:?}"),
            })
            .collect();
        assert_eq!(
            texts,
            [format!("m{n}")],
            "node B reads what node A appended"
        );
        cursor = batch.cursor;
    }
    assert_eq!(cursor, Cursor::new(start.epoch, Offset(200)));
    println!("slowest wake-up across nodes, append included: {worst:?}");
}

#[tokio::test]
#[ignore = "needs redis-server; run bash tests/run-all.sh"]
async fn nodes_agree_on_an_alias_and_report_an_expiry_once() {
    let server = RedisServer::start();
    let stores = nodes(&server, 3).await;
    // Three nodes race to create the same SockJS session: one channel results.
    let created = futures::future::join_all(
        stores
            .iter()
            .map(|s| s.create_channel(channel(Some("session-1")), Duration::from_millis(50), 1)),
    )
    .await;
    let ids: Vec<ChannelId> = created
        .into_iter()
        .map(|c| match c.unwrap() {
            Creation::Created(state) | Creation::Existing(state) => state.id,
            Creation::UserFull => panic!("anonymous channels have no limit"),
        })
        .collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "one channel: {ids:?}");
    assert_eq!(
        stores[1]
            .channel_by_alias(&Alias::SockJs("session-1".into()))
            .await
            .unwrap()
            .map(|s| s.id),
        Some(ids[0])
    );
    for _ in 0..20 {
        stores[0]
            .create_channel(channel(None), Duration::from_millis(50), usize::MAX)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    // Every node sweeps at once: each expired channel is taken by exactly one.
    let taken = futures::future::join_all(stores.iter().map(|s| s.take_expired(1000))).await;
    let mut all: Vec<ChannelId> = taken
        .into_iter()
        .flat_map(|t| t.unwrap().into_iter().map(|s| s.id))
        .collect();
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(total, 21, "every expired channel taken");
    assert_eq!(all.len(), 21, "none taken twice");
}

#[tokio::test]
#[ignore = "needs redis-server; run bash tests/run-all.sh"]
async fn calls_fail_clearly_while_redis_is_down_and_work_again_after() {
    let mut server = RedisServer::start();
    let options = Options::default()
        .prefix(format!("down-{:x}:", rand::random::<u64>()))
        .timeout(Duration::from_millis(800));
    let store = RedisStore::connect_with(&server.url(), options)
        .await
        .unwrap();
    let other = RedisStore::connect_with(&server.url(), Options::default().prefix(store.prefix()))
        .await
        .unwrap();
    let topic = Topic::from_stored("room");
    let mut head = other.watch(&topic).await.unwrap();
    for n in 1..=5 {
        store
            .append(&topic, message(&format!("m{n}")), Retention::default())
            .await
            .unwrap();
    }
    server.stop();
    let started = Instant::now();
    let error = store
        .append(&topic, message("refused"), Retention::default())
        .await
        .expect_err("an append without Redis fails");
    assert!(
        error.to_string().starts_with("store unavailable"),
        "a clear error: {error}"
    );
    assert!(started.elapsed() < Duration::from_secs(3), "and fails soon");
    server.restart();
    // Service resumes by itself; what was acknowledged before is there.
    let deadline = Instant::now() + Duration::from_secs(10);
    let offset = loop {
        match store
            .append(&topic, message("m6"), Retention::default())
            .await
        {
            Ok(offset) => break offset,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("Redis is back but appends still fail: {error}"),
        }
    };
    assert_eq!(offset, Offset(6));
    // The other node's watcher hears of appends again once its subscription is back.
    let deadline = Instant::now() + Duration::from_secs(10);
    while head.borrow_and_update().offset < Offset(6) {
        assert!(Instant::now() < deadline, "the watcher never saw m6");
        let _ = tokio::time::timeout(Duration::from_millis(200), head.changed()).await;
    }
    let start = Cursor::new(head.borrow().epoch, Offset::ZERO);
    let batch = other.read(&topic, start, 100).await.unwrap();
    assert_eq!(batch.records.len(), 6, "nothing acknowledged was lost");
}

/// Prints what Redis holds per session and per retained message, and the commands a publish
/// and a session's life cost: the figures in docs/scaling.md. Measures, asserts nothing.
#[tokio::test]
#[ignore = "needs redis-server; run bash tests/run-all.sh"]
async fn cost_per_session_and_per_message() {
    use tidings_redis::redis::{self, AsyncCommands};

    let server = RedisServer::start();
    let client = redis::Client::open(server.url()).unwrap();
    let mut info = client.get_multiplexed_async_connection().await.unwrap();
    let [store] = <[RedisStore; 1]>::try_from(nodes(&server, 1).await)
        .ok()
        .unwrap();
    let used = async |info: &mut redis::aio::MultiplexedConnection| -> i64 {
        let text: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(info)
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    };
    let calls = async |info: &mut redis::aio::MultiplexedConnection| -> i64 {
        let text: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(info)
            .await
            .unwrap();
        text.lines()
            .filter_map(|l| {
                l.split_once("calls=")?
                    .1
                    .split(',')
                    .next()?
                    .parse::<i64>()
                    .ok()
            })
            .sum()
    };
    let _: () = info.set("warm", "up").await.unwrap();

    const SESSIONS: usize = 1000;
    let before = used(&mut info).await;
    let topic = Topic::from_stored("$all");
    for n in 0..SESSIONS {
        let mut state = channel(Some(&format!("{n:08}")));
        state.user = Some(format!("user-{n}"));
        state.topics.insert(topic.clone(), Cursor::default());
        store
            .create_channel(state, Duration::from_secs(60), usize::MAX)
            .await
            .unwrap();
    }
    let per_session = (used(&mut info).await - before) / SESSIONS as i64;

    const MESSAGES: usize = 10_000;
    let retention = Retention {
        messages: MESSAGES,
        bytes: 1 << 30,
        age: None,
    };
    let room = Topic::from_stored("room");
    store
        .append(&room, message("first"), retention)
        .await
        .unwrap();
    let before = used(&mut info).await;
    let commands_before = calls(&mut info).await;
    let text = "x".repeat(64);
    for _ in 0..MESSAGES {
        store
            .append(&room, message(&text), retention)
            .await
            .unwrap();
    }
    let commands = calls(&mut info).await - commands_before;
    let per_message = (used(&mut info).await - before) / MESSAGES as i64;
    // Past retention: each append also drops the oldest record.
    let commands_before = calls(&mut info).await;
    for _ in 0..1000 {
        store
            .append(&room, message(&text), retention)
            .await
            .unwrap();
    }
    let trimming = calls(&mut info).await - commands_before;
    println!(
        "Redis {} — per session (alias, user, one topic, private topic): {per_session} bytes; \
         per retained 64-byte message: {per_message} bytes; commands per append: {:.1} \
         (one EVALSHA), {:.1} once retention trims",
        server.url(),
        commands as f64 / MESSAGES as f64,
        trimming as f64 / 1000.0
    );
}
