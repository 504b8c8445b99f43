//! The store contract: the checks every [`Store`] implementation must pass.
//!
//! Each check takes a freshly created store, exercises one rule of the contract and panics with
//! a message naming the check and the rule when the store breaks it. [`run_all`] runs every
//! check, each on a store of its own. `MemoryStore` runs the suite in this module's tests; a store
//! in another crate runs it unchanged by enabling the `contract` feature:
//!
//! ```ignore
//! #[tokio::test]
//! async fn redis_store_keeps_the_contract() {
//!     tidings_store::contract::run_all(|| RedisStore::for_tests()).await;
//! }
//! ```
//!
//! The checks run on real time, never Tokio's paused clock, so they hold for a store whose clock
//! is a remote server's: expiry is tested with time-to-live values of some 50 ms and waits of
//! about 100 ms, and the whole suite takes well under two seconds. Topic and user names carry a
//! random suffix, so checks do not see each other's data even if the stores share a backend.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tidings_core::{CloseCode, Cursor, Epoch, Offset};
use tokio::time::Instant;

use crate::alias::Alias;
use crate::id::ChannelId;
use crate::id::random_id;
use crate::message::{Control, Payload, Record};
use crate::store::{
    ChannelState, Creation, Gap, Presence, ReadBatch, Retention, Store, StoreError, Subscription,
};
use crate::topic::Topic;

/// A time to live that passes during a check.
const SHORT: Duration = Duration::from_millis(50);
/// A wait long enough for [`SHORT`] to have passed.
const PAST_SHORT: Duration = Duration::from_millis(100);
/// A time to live that does not pass during the suite.
const LONG: Duration = Duration::from_secs(60);
/// How long a check waits for something the store does asynchronously (a wake-up, an expiry).
const PATIENCE: Duration = Duration::from_secs(1);

/// Runs every check of the contract, each on a fresh store from `make`.
///
/// Panics on the first rule the store breaks, naming the check and the rule.
pub async fn run_all<S: Store, F: Fn() -> S>(make: F) {
    offsets(make()).await;
    ordering(make()).await;
    reads_from_cursor(make()).await;
    retention_by_count(make()).await;
    retention_by_bytes(make()).await;
    gaps(make()).await;
    epoch_change(make()).await;
    watch_head(make()).await;
    channel_lifecycle(make()).await;
    subscriptions(make()).await;
    labelled_subscriptions(make()).await;
    presence(make()).await;
    user_channels(make()).await;
    mark_closed(make()).await;
    expiry(make()).await;
    expiry_spares_receiver(make()).await;
    receiver_lock(make()).await;
    concurrent_publishers(make()).await;
    batches(make()).await;
    idle_topics(make()).await;
    aliases(make()).await;
    user_limit(make()).await;
    ending(make()).await;
    offline_delivery(make()).await;
    offline_age(make()).await;
}

/// Checks offline delivery: a channel of a user with no open channel starts the user's topic
/// at the delivered mark (what the user's channels saved), one opened beside an open channel
/// starts at the head, the mark only moves forward, and of two channels opened at once only one
/// is handed the backlog.
pub async fn offline_delivery<S: Store>(store: S) {
    let user = unique("offline");
    let mine = Topic::user(&user);
    let backlog = |state: &ChannelState| state.topics[&Topic::user(&user)];
    for n in 1..=2 {
        append(&store, &mine, message(format!("m{n}")), ample()).await;
    }
    let epoch = head(&store, &mine).await.epoch;
    let at = |offset| Cursor::new(epoch, Offset(offset));
    let first = create(&store, Some(&user), &[&mine], LONG).await;
    assert_eq!(
        backlog(&first),
        at(0),
        "[offline_delivery] a user's first channel starts before what was sent while it had none"
    );
    assert_eq!(
        texts(&read(&store, &mine, backlog(&first), 10).await),
        ["m1", "m2"],
        "[offline_delivery] the backlog reads in order"
    );
    let beside = create(&store, Some(&user), &[&mine], LONG).await;
    assert_eq!(
        backlog(&beside),
        at(2),
        "[offline_delivery] a channel opened beside an open one starts at the head"
    );
    append(&store, &mine, message("m3"), ample()).await;
    let saved = [(mine.clone(), at(3))];
    ok(store.save_cursors(first.id, &saved).await, "save_cursors");
    let behind = [(mine.clone(), at(1))];
    ok(store.save_cursors(beside.id, &behind).await, "save_cursors");
    for id in [first.id, beside.id] {
        ok(
            store.mark_closed(id, CloseCode::NORMAL, "bye").await,
            "mark_closed",
        );
    }
    append(&store, &mine, message("m4"), ample()).await;
    let next = create(&store, Some(&user), &[&mine], LONG).await;
    assert_eq!(
        backlog(&next),
        at(3),
        "[offline_delivery] the next channel starts after the furthest cursor saved (never moved back)"
    );
    ok(store.remove_channel(next.id).await, "remove_channel");
    let follows = [&mine];
    let racing = (0..2).map(|_| create(&store, Some(&user), &follows, LONG));
    let mut starts: Vec<Cursor> = futures::future::join_all(racing)
        .await
        .iter()
        .map(backlog)
        .collect();
    starts.sort_by_key(|c| c.offset);
    assert_eq!(
        starts,
        [at(3), at(4)],
        "[offline_delivery] of two channels opened at once, one takes the backlog and one the head"
    );
    let stranger = create(&store, Some(&unique("other")), &[&mine], LONG).await;
    assert_eq!(
        stranger.topics[&mine],
        at(4),
        "[offline_delivery] another user's channel following the topic starts at its head"
    );
}

/// Checks the age bound of retention: records older than it are dropped before a user's
/// channel starts on the backlog (a gap when read), and a topic with an age outlives the idle
/// time.
pub async fn offline_age<S: Store>(store: S) {
    let user = unique("aged");
    let mine = Topic::user(&user);
    let short = Retention {
        age: Some(SHORT),
        ..ample()
    };
    append(&store, &mine, message("stale"), short).await;
    tokio::time::sleep(PAST_SHORT).await;
    let first = create(&store, Some(&user), &[&mine], LONG).await;
    let batch = read(&store, &mine, first.topics[&mine], 10).await;
    assert!(
        batch.records.is_empty() && batch.gap.is_some_and(|g| g.from == Offset(1)),
        "[offline_age] a record older than the age bound is a gap for the next channel: {batch:?}"
    );
    let kept = topic("aged-kept");
    let long = Retention {
        age: Some(LONG),
        ..ample()
    };
    append(&store, &kept, message("kept"), long).await;
    let before = head(&store, &kept).await;
    tokio::time::sleep(Duration::from_millis(120)).await;
    ok(
        store
            .drop_idle_topics(Duration::from_millis(100), 1_000_000)
            .await,
        "drop_idle_topics",
    );
    assert_eq!(
        head(&store, &kept).await,
        before,
        "[offline_age] an idle topic is kept until its age bound has passed"
    );
}

/// Checks that an alias names one channel at a time: a second channel created with a held alias
/// is not stored (the holder is returned instead), and the alias is free again once its holder
/// is removed or expires.
pub async fn aliases<S: Store>(store: S) {
    let alias = Alias::SockJs(unique("alias"));
    let first = create_aliased(&store, &alias, LONG).await;
    assert_eq!(
        first.alias.as_ref(),
        Some(&alias),
        "[aliases] the stored state must keep its alias"
    );
    let found = ok(store.channel_by_alias(&alias).await, "channel_by_alias");
    assert_eq!(
        found.as_ref().map(|s| s.id),
        Some(first.id),
        "[aliases] `channel_by_alias` must find the holder"
    );
    let second = create_aliased(&store, &alias, LONG).await;
    assert_eq!(
        second.id, first.id,
        "[aliases] creating a channel with a held alias must return the holder"
    );
    assert_eq!(
        ok(store.online().await, "online").channels,
        1,
        "[aliases] a channel refused for its alias must not be stored"
    );
    assert_eq!(
        ok(
            store
                .channel_by_alias(&Alias::SockJs(unique("other")))
                .await,
            "channel_by_alias"
        ),
        None,
        "[aliases] an unknown alias names nothing"
    );
    ok(store.remove_channel(first.id).await, "remove_channel");
    assert_eq!(
        ok(store.channel_by_alias(&alias).await, "channel_by_alias"),
        None,
        "[aliases] removing a channel frees its alias"
    );
    let third = create_aliased(&store, &alias, SHORT).await;
    assert_ne!(
        third.id, first.id,
        "[aliases] a freed alias must go to a new channel"
    );
    tokio::time::sleep(PAST_SHORT).await;
    expire(&store, &[third.id], &[], "[aliases]").await;
    assert_eq!(
        ok(store.channel_by_alias(&alias).await, "channel_by_alias"),
        None,
        "[aliases] an expired channel frees its alias"
    );
    let token = Alias::Native(random_id());
    let native = create_aliased(&store, &token, LONG).await;
    let found = ok(store.channel_by_alias(&token).await, "channel_by_alias");
    assert_eq!(
        found.map(|s| (s.id, s.alias)),
        Some((native.id, Some(token))),
        "[aliases] a native token is an alias like any other"
    );
}

/// Checks the per-user limit of `create_channel`: a user at the limit gets no new channel, a
/// closed channel does not count, anonymous channels are not limited, and simultaneous creations
/// for one user store exactly as many as the limit allows.
pub async fn user_limit<S: Store>(store: S) {
    let user = unique("limited");
    let create = |user: Option<String>, limit| {
        let state = ChannelState {
            id: ChannelId::random(),
            user,
            attributes: BTreeMap::new(),
            topics: BTreeMap::new(),
            closed: None,
            alias: None,
            ended: false,
            labels: BTreeMap::new(),
        };
        store.create_channel(state, LONG, limit)
    };
    let first = ok(create(Some(user.clone()), 2).await, "create_channel");
    let Creation::Created(first) = first else {
        panic!("[user_limit] a user under the limit gets a channel, got {first:?}");
    };
    ok(create(Some(user.clone()), 2).await, "create_channel");
    assert_eq!(
        ok(create(Some(user.clone()), 2).await, "create_channel"),
        Creation::UserFull,
        "[user_limit] a user with the most channels allowed gets no new one"
    );
    assert_eq!(
        ok(store.user_channels(&user).await, "user_channels").len(),
        2,
        "[user_limit] a refused creation stores nothing"
    );
    ok(
        store.mark_closed(first.id, CloseCode::NORMAL, "bye").await,
        "mark_closed",
    );
    assert!(
        matches!(
            ok(create(Some(user.clone()), 2).await, "create_channel"),
            Creation::Created(_)
        ),
        "[user_limit] a closed channel does not count against the limit"
    );
    assert!(
        matches!(
            ok(create(None, 0).await, "create_channel"),
            Creation::Created(_)
        ),
        "[user_limit] anonymous channels are not limited"
    );
    let burst = unique("burst");
    let attempts = (0..20).map(|_| create(Some(burst.clone()), 5));
    let created = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|r| ok(r, "create_channel"))
        .filter(|c| matches!(c, Creation::Created(_)))
        .count();
    assert_eq!(
        created, 5,
        "[user_limit] 20 simultaneous creations with a limit of 5 must store exactly 5"
    );
}

/// Checks that ending a channel succeeds once, that an ended channel stays readable for its
/// linger time and then expires, and that ending an unknown channel reports false.
pub async fn ending<S: Store>(store: S) {
    let state = create(&store, None, &[], LONG).await;
    assert!(!state.ended, "[ending] a new channel must not be ended");
    assert!(
        ok(store.end_channel(state.id, SHORT).await, "end_channel"),
        "[ending] the first `end_channel` must return true"
    );
    assert!(
        !ok(store.end_channel(state.id, LONG).await, "end_channel"),
        "[ending] a second `end_channel` must return false"
    );
    assert!(
        !ok(
            store.end_channel(ChannelId::random(), LONG).await,
            "end_channel"
        ),
        "[ending] ending an unknown channel must return false"
    );
    let stored = ok(store.channel(state.id).await, "channel");
    assert!(
        stored.is_some_and(|s| s.ended),
        "[ending] an ended channel lingers, marked ended"
    );
    tokio::time::sleep(PAST_SHORT).await;
    let taken = expire(&store, &[state.id], &[], "[ending]").await;
    assert!(
        taken.iter().all(|s| s.ended),
        "[ending] an ended channel expires after its linger time, still marked ended"
    );
}

/// Checks that a topic nobody follows is dropped once idle, that a followed or recently used
/// topic is kept, and that a dropped topic comes back in a new epoch (so old cursors see a gap).
pub async fn idle_topics<S: Store>(store: S) {
    let idle = topic("idle-unfollowed");
    let busy = topic("idle-recent");
    let followed = topic("idle-followed");
    store
        .append(&idle, message("old"), ample())
        .await
        .expect("append");
    store
        .append(&followed, message("kept"), ample())
        .await
        .expect("append");
    create(&store, None, &[&followed], Duration::from_secs(60)).await;
    let before = head(&store, &idle).await;
    tokio::time::sleep(Duration::from_millis(120)).await;
    store
        .append(&busy, message("fresh"), ample())
        .await
        .expect("append");
    let mut dropped = 0;
    for _ in 0..20 {
        dropped += store
            .drop_idle_topics(Duration::from_millis(100), 1_000_000)
            .await
            .expect("drop");
        let gone = store.read(&idle, before, 10).await.expect("read");
        if gone.gap.is_some_and(|g| g.epoch_changed) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        dropped >= 1,
        "[idle_topics] an idle, unfollowed topic must be dropped"
    );
    let after = store.read(&idle, before, 10).await.expect("read");
    assert!(
        after.gap.is_some_and(|g| g.epoch_changed) && after.records.is_empty(),
        "[idle_topics] a dropped topic must come back empty, in a new epoch: {after:?}"
    );
    let busy_read = store
        .read(
            &busy,
            Cursor::new(head(&store, &busy).await.epoch, Offset::ZERO),
            10,
        )
        .await
        .expect("read");
    assert_eq!(
        busy_read.records.len(),
        1,
        "[idle_topics] a recently used topic must be kept"
    );
    let followed_head = head(&store, &followed).await;
    assert_eq!(
        followed_head.offset,
        Offset(1),
        "[idle_topics] a followed topic must be kept"
    );
}

/// Checks that offsets start at 1 and increase by one per append, that each topic numbers its
/// own records, and that dropping old records never renumbers or reuses an offset.
pub async fn offsets<S: Store>(store: S) {
    let a = topic("offsets-a");
    let b = topic("offsets-b");
    let start = head(&store, &a).await;
    assert_eq!(
        start.offset,
        Offset::ZERO,
        "[offsets] the head of an empty topic must be offset 0"
    );
    for n in 1..=10 {
        let offset = append(&store, &a, message(format!("a{n}")), ample()).await;
        assert_eq!(
            offset,
            Offset(n),
            "[offsets] append #{n} to a topic must return offset {n}"
        );
    }
    let offset = append(&store, &b, message("b1"), ample()).await;
    assert_eq!(
        offset,
        Offset(1),
        "[offsets] each topic numbers its own records from 1"
    );
    let tight = Retention {
        messages: 2,
        bytes: 1 << 20,
        age: None,
    };
    for n in 11..=15 {
        let offset = append(&store, &a, message(format!("a{n}")), tight).await;
        assert_eq!(
            offset,
            Offset(n),
            "[offsets] dropping old records must not renumber: append #{n} must return offset {n}"
        );
    }
    assert_eq!(
        head(&store, &a).await,
        Cursor::new(start.epoch, Offset(15)),
        "[offsets] the head must be the last offset, in the topic's epoch"
    );
}

/// Checks that a read returns records exactly as appended (messages of any text, controls), in
/// append order, with consecutive offsets from 1 and a cursor at the last one.
pub async fn ordering<S: Store>(store: S) {
    let t = topic("ordering");
    let start = head(&store, &t).await;
    let mut sent: Vec<Record> = (1..=40).map(|n| message(format!("message {n}"))).collect();
    sent.push(message(""));
    sent.push(message(
        "caf\u{e9} \u{2028} \"quoted\" \\ <b>&amp;</b> \u{1f600}",
    ));
    sent.push(Record::Message(Payload::with_headers(
        "with headers",
        vec![
            ("content-type".to_owned(), "text/plain".to_owned()),
            ("x:odd\n".to_owned(), "a\\b:c".to_owned()),
        ],
    )));
    sent.push(Record::Control(Control::Reply {
        text: "RECEIPT\nreceipt-id:r1\n\n\0".to_owned(),
    }));
    sent.push(Record::Control(Control::Subscribe {
        topic: topic("room"),
    }));
    sent.push(Record::Control(Control::Takeover {
        holder: random_id(),
    }));
    sent.push(Record::Control(Control::Close {
        code: CloseCode::LAGGED,
        reason: "Missed messages".to_owned(),
    }));
    sent.push(message("last"));
    for record in &sent {
        append(&store, &t, record.clone(), ample()).await;
    }
    let total = sent.len() as u64;
    let batch = read(&store, &t, start, sent.len() + 10).await;
    assert_eq!(
        offsets_of(&batch),
        (1..=total).collect::<Vec<_>>(),
        "[ordering] a read must return offsets in append order, consecutive from 1"
    );
    let expected: Vec<(Offset, Record)> = (1..).map(Offset).zip(sent).collect();
    assert_eq!(
        batch.records, expected,
        "[ordering] a read must return records as they were appended"
    );
    assert_eq!(
        batch.gap, None,
        "[ordering] a reader that missed nothing must not be told of a gap"
    );
    assert_eq!(
        batch.cursor,
        Cursor::new(start.epoch, Offset(total)),
        "[ordering] the returned cursor must be at the last record returned"
    );
}

/// Checks that a read from a cursor returns only the records after it, at most `max` of them
/// (none for `max` 0), and a cursor at the last record returned (unchanged when none was).
pub async fn reads_from_cursor<S: Store>(store: S) {
    let t = topic("cursor");
    let epoch = head(&store, &t).await.epoch;
    let at = |n| Cursor::new(epoch, Offset(n));
    for n in 1..=10 {
        append(&store, &t, message(format!("m{n}")), ample()).await;
    }

    let batch = read(&store, &t, at(4), 3).await;
    assert_eq!(
        offsets_of(&batch),
        [5, 6, 7],
        "[reads_from_cursor] a read after offset 4 with max 3"
    );
    assert_eq!(
        texts(&batch),
        ["m5", "m6", "m7"],
        "[reads_from_cursor] records after offset 4"
    );
    assert_eq!(
        batch.cursor,
        at(7),
        "[reads_from_cursor] the cursor must advance to the last record"
    );
    assert_eq!(
        batch.gap, None,
        "[reads_from_cursor] no gap within the retained window"
    );

    let batch = read(&store, &t, batch.cursor, 100).await;
    assert_eq!(
        offsets_of(&batch),
        [8, 9, 10],
        "[reads_from_cursor] a read from the returned cursor"
    );
    assert_eq!(
        batch.cursor,
        at(10),
        "[reads_from_cursor] the cursor must advance to the head"
    );

    let batch = read(&store, &t, at(10), 100).await;
    assert_eq!(
        offsets_of(&batch),
        [0; 0],
        "[reads_from_cursor] a read at the head returns nothing"
    );
    assert_eq!(
        batch.cursor,
        at(10),
        "[reads_from_cursor] a read at the head keeps the cursor"
    );
    assert_eq!(
        batch.gap, None,
        "[reads_from_cursor] a read at the head reports no gap"
    );

    let batch = read(&store, &t, at(2), 0).await;
    assert_eq!(
        offsets_of(&batch),
        [0; 0],
        "[reads_from_cursor] a read with max 0 returns nothing"
    );
    assert_eq!(
        batch.cursor,
        at(2),
        "[reads_from_cursor] a read with max 0 keeps the cursor"
    );

    let mut cursor = at(0);
    let mut seen = Vec::new();
    for _ in 0..10 {
        let batch = read(&store, &t, cursor, 1).await;
        assert_eq!(
            batch.records.len(),
            1,
            "[reads_from_cursor] a read with max 1 returns one record"
        );
        seen.extend(offsets_of(&batch));
        cursor = batch.cursor;
    }
    assert_eq!(
        seen,
        (1..=10).collect::<Vec<_>>(),
        "[reads_from_cursor] reading one by one from each returned cursor visits every record once"
    );
}

/// Checks that retention by message count keeps exactly the newest `messages` records, dropping
/// the oldest, and that a reader from before them is told what was dropped.
pub async fn retention_by_count<S: Store>(store: S) {
    let t = topic("retention-count");
    let start = head(&store, &t).await;
    let keep = Retention {
        messages: 5,
        bytes: 1 << 20,
        age: None,
    };
    for n in 1..=5 {
        append(&store, &t, message(format!("m{n}")), keep).await;
    }
    let batch = read(&store, &t, start, 100).await;
    assert_eq!(
        offsets_of(&batch),
        [1, 2, 3, 4, 5],
        "[retention_by_count] nothing may be dropped while the count is within retention"
    );
    for n in 6..=12 {
        append(&store, &t, message(format!("m{n}")), keep).await;
    }
    let batch = read(&store, &t, start, 100).await;
    assert_eq!(
        offsets_of(&batch),
        [8, 9, 10, 11, 12],
        "[retention_by_count] with 5 messages retained, the newest 5 of 12 must remain"
    );
    assert_eq!(
        texts(&batch),
        ["m8", "m9", "m10", "m11", "m12"],
        "[retention_by_count] retained records"
    );
    assert_eq!(
        batch.gap,
        Some(Gap {
            from: Offset(1),
            to: Offset(7),
            epoch_changed: false
        }),
        "[retention_by_count] a reader from offset 0 must be told it missed offsets 1 to 7"
    );
}

/// Checks that retention by bytes drops the oldest records until the retained message text fits
/// the byte budget, and no more.
pub async fn retention_by_bytes<S: Store>(store: S) {
    let t = topic("retention-bytes");
    let start = head(&store, &t).await;
    // Ten bytes each: three fit in 35 bytes, four do not.
    let keep = Retention {
        messages: 1000,
        bytes: 35,
        age: None,
    };
    let ten = |n: u64| message(format!("bytes-{n:04}"));
    for n in 1..=3 {
        append(&store, &t, ten(n), keep).await;
    }
    let batch = read(&store, &t, start, 100).await;
    assert_eq!(
        offsets_of(&batch),
        [1, 2, 3],
        "[retention_by_bytes] nothing may be dropped while 30 bytes fit a budget of 35"
    );
    append(&store, &t, ten(4), keep).await;
    let batch = read(&store, &t, start, 100).await;
    assert_eq!(
        offsets_of(&batch),
        [2, 3, 4],
        "[retention_by_bytes] a fourth 10-byte record must push the oldest out of 35 bytes"
    );
    for n in 5..=10 {
        append(&store, &t, ten(n), keep).await;
    }
    let batch = read(&store, &t, start, 100).await;
    assert_eq!(
        offsets_of(&batch),
        [8, 9, 10],
        "[retention_by_bytes] the newest three 10-byte records must remain of 35 bytes"
    );
    assert_eq!(
        batch.gap,
        Some(Gap {
            from: Offset(1),
            to: Offset(7),
            epoch_changed: false
        }),
        "[retention_by_bytes] a reader from offset 0 must be told it missed offsets 1 to 7"
    );
}

/// Checks that a cursor behind the retained window gets a gap naming exactly the missed offsets
/// (`from` after the cursor, `to` before the first retained record) with the retained records,
/// and that a cursor inside the window gets no gap.
pub async fn gaps<S: Store>(store: S) {
    let t = topic("gaps");
    let epoch = head(&store, &t).await.epoch;
    let at = |n| Cursor::new(epoch, Offset(n));
    let keep = Retention {
        messages: 5,
        bytes: 1 << 20,
        age: None,
    };
    for n in 1..=12 {
        append(&store, &t, message(format!("m{n}")), keep).await;
    }
    let missed = |from, to| {
        Some(Gap {
            from: Offset(from),
            to: Offset(to),
            epoch_changed: false,
        })
    };

    let batch = read(&store, &t, at(3), 100).await;
    assert_eq!(
        batch.gap,
        missed(4, 7),
        "[gaps] a reader at offset 3 with 8..=12 retained missed 4 to 7"
    );
    assert_eq!(
        offsets_of(&batch),
        [8, 9, 10, 11, 12],
        "[gaps] the retained records follow the gap"
    );
    assert_eq!(
        batch.cursor,
        at(12),
        "[gaps] the cursor must advance past the gap to the last record"
    );

    let batch = read(&store, &t, at(3), 2).await;
    assert_eq!(
        batch.gap,
        missed(4, 7),
        "[gaps] the gap must be reported whatever `max` is"
    );
    assert_eq!(
        offsets_of(&batch),
        [8, 9],
        "[gaps] `max` still limits the records after a gap"
    );
    assert_eq!(
        batch.cursor,
        at(9),
        "[gaps] the cursor after a gap with max 2"
    );

    let batch = read(&store, &t, at(6), 100).await;
    assert_eq!(
        batch.gap,
        missed(7, 7),
        "[gaps] a reader at offset 6 missed offset 7 only"
    );

    let batch = read(&store, &t, at(7), 100).await;
    assert_eq!(
        batch.gap, None,
        "[gaps] a reader right before the retained window missed nothing"
    );
    assert_eq!(
        offsets_of(&batch),
        [8, 9, 10, 11, 12],
        "[gaps] a reader right before the window"
    );

    let batch = read(&store, &t, at(10), 100).await;
    assert_eq!(
        batch.gap, None,
        "[gaps] a reader inside the retained window missed nothing"
    );
    assert_eq!(
        offsets_of(&batch),
        [11, 12],
        "[gaps] a reader inside the retained window"
    );
}

/// Checks that a cursor from another epoch gets a gap with `epoch_changed`, every retained record
/// (its offset is never matched against this epoch's offsets), and a cursor in the current epoch.
pub async fn epoch_change<S: Store>(store: S) {
    let t = topic("epoch");
    let epoch = head(&store, &t).await.epoch;
    let keep = Retention {
        messages: 5,
        bytes: 1 << 20,
        age: None,
    };
    for n in 1..=12 {
        append(&store, &t, message(format!("m{n}")), keep).await;
    }
    let other = Epoch(epoch.0.wrapping_add(1));
    for stale in [Offset(9), Offset(12), Offset(100), Offset::ZERO] {
        let batch = read(&store, &t, Cursor::new(other, stale), 100).await;
        assert!(
            batch.gap.is_some_and(|gap| gap.epoch_changed),
            "[epoch_change] a cursor at offset {stale} of another epoch must get a gap with \
             `epoch_changed`, got {:?}",
            batch.gap
        );
        assert_eq!(
            offsets_of(&batch),
            [8, 9, 10, 11, 12],
            "[epoch_change] a cursor from another epoch (offset {stale}) must get every retained record"
        );
        assert_eq!(
            batch.cursor,
            Cursor::new(epoch, Offset(12)),
            "[epoch_change] the returned cursor must be in the topic's current epoch"
        );
    }
}

/// Checks that `watch` starts at the topic's head (creating the topic if needed) and that its
/// receivers see the head change on every append.
pub async fn watch_head<S: Store>(store: S) {
    let t = topic("watch");
    let mut rx = watch(&store, &t).await;
    let start = *rx.borrow_and_update();
    assert_eq!(
        start.offset,
        Offset::ZERO,
        "[watch_head] a new topic's head must be offset 0"
    );

    append(&store, &t, message("one"), ample()).await;
    wait_for_head(
        &mut rx,
        Cursor::new(start.epoch, Offset(1)),
        "[watch_head] after one append",
    )
    .await;

    let mut late = watch(&store, &t).await;
    assert_eq!(
        *late.borrow_and_update(),
        Cursor::new(start.epoch, Offset(1)),
        "[watch_head] a receiver created after an append must start at the current head"
    );
    for text in ["two", "three", "four"] {
        append(&store, &t, message(text), ample()).await;
    }
    let four = Cursor::new(start.epoch, Offset(4));
    wait_for_head(
        &mut rx,
        four,
        "[watch_head] after four appends (first receiver)",
    )
    .await;
    wait_for_head(
        &mut late,
        four,
        "[watch_head] after four appends (second receiver)",
    )
    .await;
    assert_eq!(
        read(&store, &t, start, 100).await.cursor,
        four,
        "[watch_head] the watched head must be the cursor a full read ends at"
    );
}

/// Checks that `create_channel` stores the channel subscribed to its topics at their heads and to
/// its private topic, that `channel` returns it, and that `remove_channel` returns its last state
/// and removes it, its subscriptions and its private topic's records.
pub async fn channel_lifecycle<S: Store>(store: S) {
    let room = topic("lifecycle");
    for n in 1..=3 {
        append(&store, &room, message(format!("m{n}")), ample()).await;
    }
    let room_head = head(&store, &room).await;
    let id = ChannelId::random();
    let private = Topic::channel(id);
    let user = unique("user");
    let attributes = BTreeMap::from([("role".to_owned(), "admin".to_owned())]);
    let state = ChannelState {
        id,
        user: Some(user.clone()),
        attributes: attributes.clone(),
        topics: BTreeMap::from([(room.clone(), Cursor::default())]),
        closed: None,
        alias: None,
        ended: false,
        labels: BTreeMap::new(),
    };
    let created = created(ok(
        store.create_channel(state, LONG, usize::MAX).await,
        "create_channel",
    ));
    assert_eq!(
        created.id, id,
        "[channel_lifecycle] the created channel keeps its id"
    );
    assert_eq!(
        created.user,
        Some(user),
        "[channel_lifecycle] the created channel keeps its user"
    );
    assert_eq!(
        created.attributes, attributes,
        "[channel_lifecycle] the created channel keeps its attributes"
    );
    assert_eq!(
        created.closed, None,
        "[channel_lifecycle] a new channel is open"
    );
    assert_eq!(
        created.topics.keys().collect::<Vec<_>>(),
        {
            let mut keys = vec![&room, &private];
            keys.sort();
            keys
        },
        "[channel_lifecycle] a new channel follows its topics and its private topic"
    );
    assert_eq!(
        created.topics[&room], room_head,
        "[channel_lifecycle] a new channel starts at each topic's head"
    );
    assert_eq!(
        created.topics[&private],
        head(&store, &private).await,
        "[channel_lifecycle] a new channel starts at its private topic's head"
    );
    assert_eq!(
        created.topics[&private].offset,
        Offset::ZERO,
        "[channel_lifecycle] a new channel's private topic is empty"
    );
    assert_eq!(
        ok(store.channel(id).await, "channel"),
        Some(created.clone()),
        "[channel_lifecycle] `channel` must return the state `create_channel` returned"
    );
    assert_eq!(
        ok(store.channel(ChannelId::random()).await, "channel"),
        None,
        "[channel_lifecycle] an unknown channel has no state"
    );

    append(&store, &private, message("for the channel only"), ample()).await;
    assert_eq!(
        ok(store.remove_channel(id).await, "remove_channel"),
        Some(created.clone()),
        "[channel_lifecycle] `remove_channel` must return the channel's last state"
    );
    assert_eq!(
        ok(store.channel(id).await, "channel"),
        None,
        "[channel_lifecycle] a removed channel is gone"
    );
    assert_eq!(
        ok(store.remove_channel(id).await, "remove_channel"),
        None,
        "[channel_lifecycle] removing a removed channel returns nothing"
    );
    assert_eq!(
        ok(store.presence(&room).await, "presence"),
        Presence::default(),
        "[channel_lifecycle] a removed channel no longer follows its topics"
    );
    let batch = read(&store, &private, created.topics[&private], 100).await;
    assert!(
        batch.records.is_empty(),
        "[channel_lifecycle] a removed channel's private topic must be removed with it, still holds {:?}",
        batch.records
    );
}

/// Checks that `subscribe` starts at the topic's head, keeps the first cursor when repeated and
/// refuses unknown channels; that `unsubscribe` says whether the channel was subscribed; and that
/// `save_cursors` updates followed topics and ignores the rest.
pub async fn subscriptions<S: Store>(store: S) {
    let room = topic("subscriptions");
    let other = topic("subscriptions-other");
    let epoch = head(&store, &room).await.epoch;
    let at = |n| Cursor::new(epoch, Offset(n));
    for n in 1..=2 {
        append(&store, &room, message(format!("m{n}")), ample()).await;
    }
    let id = create(&store, None, &[], LONG).await.id;
    let unknown = ChannelId::random();

    assert_eq!(
        ok(
            store
                .subscribe(unknown, &room, &Subscription::default())
                .await,
            "subscribe"
        ),
        None,
        "[subscriptions] subscribing an unknown channel must return None"
    );
    let first = ok(
        store.subscribe(id, &room, &Subscription::default()).await,
        "subscribe",
    );
    assert_eq!(
        first,
        Some(at(2)),
        "[subscriptions] `subscribe` must return the topic's head cursor"
    );
    append(&store, &room, message("m3"), ample()).await;
    assert_eq!(
        ok(
            store.subscribe(id, &room, &Subscription::default()).await,
            "subscribe"
        ),
        first,
        "[subscriptions] subscribing twice must keep the first cursor"
    );
    assert_eq!(
        followed(&store, id).await.get(&room),
        Some(&at(2)),
        "[subscriptions] the channel's state must list the subscription at its first cursor"
    );

    let elsewhere = Cursor::new(Epoch(7), Offset(7));
    ok(
        store
            .save_cursors(id, &[(room.clone(), at(3)), (other.clone(), elsewhere)])
            .await,
        "save_cursors",
    );
    let topics = followed(&store, id).await;
    assert_eq!(
        topics.get(&room),
        Some(&at(3)),
        "[subscriptions] `save_cursors` must save a followed topic's cursor"
    );
    assert!(
        !topics.contains_key(&other),
        "[subscriptions] `save_cursors` must ignore a topic the channel does not follow"
    );
    ok(
        store.save_cursors(unknown, &[(room.clone(), at(1))]).await,
        "save_cursors of an unknown channel",
    );

    assert!(
        ok(store.unsubscribe(id, &room).await, "unsubscribe"),
        "[subscriptions] unsubscribing a followed topic must return true"
    );
    assert!(
        !ok(store.unsubscribe(id, &room).await, "unsubscribe"),
        "[subscriptions] unsubscribing a topic no longer followed must return false"
    );
    assert!(
        !ok(store.unsubscribe(unknown, &room).await, "unsubscribe"),
        "[subscriptions] unsubscribing an unknown channel must return false"
    );
    assert!(
        !followed(&store, id).await.contains_key(&room),
        "[subscriptions] an unsubscribed topic must leave the channel's state"
    );
    ok(
        store.save_cursors(id, &[(room.clone(), at(3))]).await,
        "save_cursors",
    );
    assert!(
        !followed(&store, id).await.contains_key(&room),
        "[subscriptions] `save_cursors` must not resubscribe an unsubscribed topic"
    );
    assert_eq!(
        ok(
            store.subscribe(id, &room, &Subscription::default()).await,
            "subscribe"
        ),
        Some(at(3)),
        "[subscriptions] subscribing again after unsubscribing starts at the current head"
    );
    ok(store.remove_channel(id).await, "remove_channel");
}

/// Checks that a subscription can start at an earlier cursor (history, resume), that its label
/// is kept in the channel's state, replaced by a later one, kept when a later subscribe gives
/// none, and dropped with the subscription.
pub async fn labelled_subscriptions<S: Store>(store: S) {
    let room = topic("labelled");
    let epoch = head(&store, &room).await.epoch;
    let at = |n| Cursor::new(epoch, Offset(n));
    for n in 1..=5 {
        append(&store, &room, message(format!("m{n}")), ample()).await;
    }
    let id = create(&store, None, &[], LONG).await.id;
    let how = Subscription {
        from: Some(at(2)),
        label: Some("sub-0".to_owned()),
    };
    assert_eq!(
        ok(store.subscribe(id, &room, &how).await, "subscribe"),
        Some(at(2)),
        "[labelled_subscriptions] a subscription from a cursor must start there"
    );
    let state = ok(store.channel(id).await, "channel").expect("the channel exists");
    assert_eq!(
        (
            state.topics.get(&room),
            state.labels.get(&room).map(String::as_str)
        ),
        (Some(&at(2)), Some("sub-0")),
        "[labelled_subscriptions] the state must hold the cursor and the label"
    );
    let again = Subscription {
        from: Some(at(4)),
        label: Some("sub-0\nsub-1".to_owned()),
    };
    ok(store.subscribe(id, &room, &again).await, "subscribe");
    ok(
        store.subscribe(id, &room, &Subscription::default()).await,
        "subscribe",
    );
    let state = ok(store.channel(id).await, "channel").expect("the channel exists");
    assert_eq!(
        (
            state.topics.get(&room),
            state.labels.get(&room).map(String::as_str)
        ),
        (Some(&at(2)), Some("sub-0\nsub-1")),
        "[labelled_subscriptions] subscribing again keeps the cursor, takes a new label and \
         keeps it when none is given"
    );
    ok(store.unsubscribe(id, &room).await, "unsubscribe");
    let state = ok(store.channel(id).await, "channel").expect("the channel exists");
    assert!(
        state.labels.is_empty(),
        "[labelled_subscriptions] unsubscribing must drop the label"
    );
    ok(store.remove_channel(id).await, "remove_channel");
}

/// Checks that `presence` counts the channels following a topic with their users (anonymous
/// channels counted, not listed) and that `online` counts every channel the same way.
pub async fn presence<S: Store>(store: S) {
    let room = topic("presence");
    let alice = unique("alice");
    let bob = unique("bob");
    let before = ok(store.online().await, "online");
    let a1 = create(&store, Some(&alice), &[&room], LONG).await.id;
    let a2 = create(&store, Some(&alice), &[&room], LONG).await.id;
    let b = create(&store, Some(&bob), &[], LONG).await.id;
    let anon = create(&store, None, &[&room], LONG).await.id;
    let users = |list: &[(&String, usize)]| list.iter().map(|(u, n)| ((*u).clone(), *n)).collect();
    let check = async |topic: &Topic, channels, users: BTreeMap<String, usize>, rule: &str| {
        let presence = ok(store.presence(topic).await, "presence");
        assert_eq!(presence, Presence { channels, users }, "[presence] {rule}");
    };

    check(
        &room,
        3,
        users(&[(&alice, 2)]),
        "two of alice's channels and an anonymous one follow",
    )
    .await;
    let online = ok(store.online().await, "online");
    assert_eq!(
        online.channels,
        before.channels + 4,
        "[presence] `online` must count every new channel"
    );
    assert_eq!(
        online.users.get(&alice),
        Some(&2),
        "[presence] `online` must count alice's two channels"
    );
    assert_eq!(
        online.users.get(&bob),
        Some(&1),
        "[presence] `online` must count bob's channel"
    );
    check(
        &topic("presence-nobody"),
        0,
        users(&[]),
        "a topic nobody follows is empty",
    )
    .await;
    check(
        &Topic::channel(anon),
        1,
        users(&[]),
        "a private topic is followed by its channel",
    )
    .await;

    ok(
        store.subscribe(b, &room, &Subscription::default()).await,
        "subscribe",
    );
    check(
        &room,
        4,
        users(&[(&alice, 2), (&bob, 1)]),
        "bob's channel subscribed",
    )
    .await;
    ok(store.unsubscribe(a1, &room).await, "unsubscribe");
    check(
        &room,
        3,
        users(&[(&alice, 1), (&bob, 1)]),
        "one of alice's channels unsubscribed",
    )
    .await;
    ok(
        store.mark_closed(a2, CloseCode::NORMAL, "bye").await,
        "mark_closed",
    );
    check(
        &room,
        2,
        users(&[(&bob, 1)]),
        "a closed channel (lingering to answer its close) is not counted",
    )
    .await;
    ok(store.remove_channel(a2).await, "remove_channel");
    check(
        &room,
        2,
        users(&[(&bob, 1)]),
        "a user without channels on a topic is not listed",
    )
    .await;
    let online = ok(store.online().await, "online");
    assert_eq!(
        online.channels,
        before.channels + 3,
        "[presence] `online` must drop a removed channel"
    );
    assert_eq!(
        online.users.get(&alice),
        Some(&1),
        "[presence] `online` must drop alice's removed channel"
    );

    for id in [a1, b, anon] {
        ok(store.remove_channel(id).await, "remove_channel");
    }
    check(&room, 0, users(&[]), "every follower removed").await;
    assert_eq!(
        ok(store.online().await, "online").users.get(&alice),
        None,
        "[presence] `online` must not list a user without channels"
    );
}

/// Checks that `user_channels` lists a user's open channels: not other users', not anonymous
/// ones, not closed or removed ones.
pub async fn user_channels<S: Store>(store: S) {
    let alice = unique("alice");
    let bob = unique("bob");
    let a1 = create(&store, Some(&alice), &[], LONG).await.id;
    let a2 = create(&store, Some(&alice), &[], LONG).await.id;
    let b = create(&store, Some(&bob), &[], LONG).await.id;
    let anon = create(&store, None, &[], LONG).await.id;
    let of = async |user: &str| -> BTreeSet<ChannelId> {
        ok(store.user_channels(user).await, "user_channels")
            .into_iter()
            .collect()
    };

    assert_eq!(
        of(&alice).await,
        BTreeSet::from([a1, a2]),
        "[user_channels] alice's two channels"
    );
    assert_eq!(
        of(&bob).await,
        BTreeSet::from([b]),
        "[user_channels] bob's channel"
    );
    assert_eq!(
        of(&unique("carol")).await,
        BTreeSet::new(),
        "[user_channels] a user without channels"
    );
    ok(
        store.mark_closed(a1, CloseCode::NORMAL, "bye").await,
        "mark_closed",
    );
    assert_eq!(
        of(&alice).await,
        BTreeSet::from([a2]),
        "[user_channels] a closed channel is not listed"
    );
    ok(store.remove_channel(a2).await, "remove_channel");
    assert_eq!(
        of(&alice).await,
        BTreeSet::new(),
        "[user_channels] a removed channel is not listed"
    );
    for id in [a1, b, anon] {
        ok(store.remove_channel(id).await, "remove_channel");
    }
}

/// Checks that `mark_closed` records the first close only, says whether this call closed the
/// channel, keeps the closed channel until it is removed, and refuses unknown channels.
pub async fn mark_closed<S: Store>(store: S) {
    let id = create(&store, None, &[], LONG).await.id;
    assert!(
        ok(
            store.mark_closed(id, CloseCode::NORMAL, "bye").await,
            "mark_closed"
        ),
        "[mark_closed] the first close must return true"
    );
    assert!(
        !ok(
            store.mark_closed(id, CloseCode::GOING_AWAY, "later").await,
            "mark_closed"
        ),
        "[mark_closed] a second close must return false"
    );
    let state = ok(store.channel(id).await, "channel");
    assert_eq!(
        state.map(|s| s.closed),
        Some(Some((CloseCode::NORMAL, "bye".to_owned()))),
        "[mark_closed] the first close must win, and the closed channel must remain until removed"
    );
    assert!(
        !ok(
            store
                .mark_closed(ChannelId::random(), CloseCode::NORMAL, "bye")
                .await,
            "mark_closed"
        ),
        "[mark_closed] closing an unknown channel must return false"
    );
    ok(store.remove_channel(id).await, "remove_channel");
}

/// Checks that `take_expired` removes and returns the channels whose time to live has passed, at
/// most `max` per call, and that `touch` keeps a channel alive (and refuses unknown channels).
pub async fn expiry<S: Store>(store: S) {
    let room = topic("expiry");
    let lapsed = create(&store, None, &[&room], SHORT).await;
    let touched = create(&store, None, &[&room], SHORT).await.id;
    let lasting = create(&store, None, &[&room], LONG).await.id;
    let more = [
        create(&store, None, &[], SHORT).await.id,
        create(&store, None, &[], SHORT).await.id,
    ];
    assert!(
        ok(store.touch(touched, LONG).await, "touch"),
        "[expiry] touching a known channel must return true"
    );
    assert!(
        !ok(store.touch(ChannelId::random(), LONG).await, "touch"),
        "[expiry] touching an unknown channel must return false"
    );
    tokio::time::sleep(PAST_SHORT).await;

    assert_eq!(
        ok(store.take_expired(0).await, "take_expired").len(),
        0,
        "[expiry] `take_expired(0)` must take nothing"
    );
    let one = ok(store.take_expired(1).await, "take_expired");
    assert!(
        one.len() <= 1,
        "[expiry] `take_expired(1)` took {} channels",
        one.len()
    );
    assert!(
        one.iter().all(|s| s.id != touched && s.id != lasting),
        "[expiry] `take_expired` took a channel that was touched or has a long time to live"
    );
    let mut wanted = vec![lapsed.id, more[0], more[1]];
    wanted.retain(|id| !one.iter().any(|s| s.id == *id));
    let mut taken = expire(&store, &wanted, &[touched, lasting], "[expiry]").await;
    taken.extend(one);
    let state = taken.into_iter().find(|s| s.id == lapsed.id);
    assert_eq!(
        state,
        Some(lapsed.clone()),
        "[expiry] `take_expired` must return the expired channel's state"
    );
    assert_eq!(
        ok(store.channel(lapsed.id).await, "channel"),
        None,
        "[expiry] an expired channel is removed"
    );
    assert!(
        ok(store.channel(touched).await, "channel").is_some(),
        "[expiry] a touched channel must outlive its first time to live"
    );
    assert_eq!(
        ok(store.presence(&room).await, "presence").channels,
        2,
        "[expiry] an expired channel no longer follows its topics"
    );
    for id in [touched, lasting] {
        ok(store.remove_channel(id).await, "remove_channel");
    }
}

/// Checks that a channel whose receiver lock is held is not expired past its time to live, that it
/// is once the lock is released, and that an expired lock does not keep a channel alive.
pub async fn expiry_spares_receiver<S: Store>(store: S) {
    let plain = create(&store, None, &[], SHORT).await.id;
    let held = create(&store, None, &[], SHORT).await.id;
    let lapsed = create(&store, None, &[], SHORT).await.id;
    let (holder, lapsed_holder) = (random_id(), random_id());
    assert!(
        ok(
            store.acquire_receiver(held, holder, LONG).await,
            "acquire_receiver"
        ),
        "[expiry_spares_receiver] acquire"
    );
    assert!(
        ok(
            store.acquire_receiver(lapsed, lapsed_holder, SHORT).await,
            "acquire_receiver"
        ),
        "[expiry_spares_receiver] acquire"
    );
    tokio::time::sleep(PAST_SHORT).await;

    expire(
        &store,
        &[plain, lapsed],
        &[held],
        "[expiry_spares_receiver] with a live and a lapsed lock",
    )
    .await;
    assert!(
        ok(store.channel(held).await, "channel").is_some(),
        "[expiry_spares_receiver] a channel with a live receiver must not expire"
    );
    ok(
        store.release_receiver(held, holder).await,
        "release_receiver",
    );
    expire(
        &store,
        &[held],
        &[],
        "[expiry_spares_receiver] after its receiver was released",
    )
    .await;
}

/// Checks the one-receiver lock: a second holder is refused, the same holder renews, a release
/// by another holder does nothing, a release frees it, an expired lock can be taken over, a
/// renewed one cannot, and an unknown channel's lock cannot be taken.
pub async fn receiver_lock<S: Store>(store: S) {
    let id = create(&store, None, &[], LONG).await.id;
    let lapsing = create(&store, None, &[], LONG).await.id;
    let renewed = create(&store, None, &[], LONG).await.id;
    let [a, b, c] = [random_id(), random_id(), random_id()];
    let acquire = async |id, holder, ttl| {
        ok(
            store.acquire_receiver(id, holder, ttl).await,
            "acquire_receiver",
        )
    };

    assert!(
        acquire(id, a, LONG).await,
        "[receiver_lock] a free lock must be taken"
    );
    assert!(
        !acquire(id, b, LONG).await,
        "[receiver_lock] a second holder must be refused"
    );
    assert!(
        acquire(id, a, LONG).await,
        "[receiver_lock] the same holder must renew its lock"
    );
    ok(store.release_receiver(id, b).await, "release_receiver");
    assert!(
        !acquire(id, b, LONG).await,
        "[receiver_lock] a release by another holder must do nothing"
    );
    ok(store.release_receiver(id, a).await, "release_receiver");
    assert!(
        acquire(id, b, LONG).await,
        "[receiver_lock] a released lock must be free"
    );
    assert!(
        !acquire(id, a, LONG).await,
        "[receiver_lock] the former holder must be refused"
    );
    assert!(
        !acquire(ChannelId::random(), a, LONG).await,
        "[receiver_lock] an unknown channel has no lock"
    );

    let ttl = Duration::from_millis(60);
    assert!(
        acquire(lapsing, a, ttl).await,
        "[receiver_lock] a free lock must be taken"
    );
    assert!(
        acquire(renewed, a, ttl).await,
        "[receiver_lock] a free lock must be taken"
    );
    assert!(
        !acquire(lapsing, b, LONG).await,
        "[receiver_lock] a live lock must refuse another holder"
    );
    tokio::time::sleep(ttl / 2).await;
    assert!(
        acquire(renewed, a, LONG).await,
        "[receiver_lock] the same holder must renew its lock"
    );
    tokio::time::sleep(ttl + ttl / 2).await;
    assert!(
        acquire(lapsing, b, LONG).await,
        "[receiver_lock] an expired lock must be taken over"
    );
    assert!(
        !acquire(lapsing, a, LONG).await,
        "[receiver_lock] a lock taken over refuses its former holder"
    );
    assert!(
        !acquire(renewed, c, LONG).await,
        "[receiver_lock] a renewed lock must outlast its first time to live"
    );
    for id in [id, lapsing, renewed] {
        ok(store.remove_channel(id).await, "remove_channel");
    }
}

/// Checks that concurrent publishers to one topic get unique, gap-free offsets, that each
/// publisher's records appear in its own order at the offsets it was given, that a reader
/// following the topic meanwhile sees every record exactly once and in order (a record never
/// becomes visible after a later one), and that the watched head ends at the last offset.
pub async fn concurrent_publishers<S: Store>(store: S) {
    const TASKS: usize = 8;
    const PER_TASK: usize = 200;
    const TOTAL: u64 = (TASKS * PER_TASK) as u64;
    let store = Arc::new(store);
    let t = topic("concurrent");
    let start = head(&*store, &t).await;

    let follower = tokio::spawn({
        let (store, t) = (store.clone(), t.clone());
        async move { follow(&*store, &t, start, TOTAL).await }
    });
    let publishers: Vec<_> = (0..TASKS)
        .map(|task| {
            let (store, t) = (store.clone(), t.clone());
            tokio::spawn(async move {
                let mut offsets = Vec::with_capacity(PER_TASK);
                for n in 0..PER_TASK {
                    offsets
                        .push(append(&*store, &t, message(format!("{task}:{n}")), ample()).await);
                    tokio::task::yield_now().await;
                }
                offsets
            })
        })
        .collect();

    let mut given = BTreeMap::new();
    for (task, publisher) in publishers.into_iter().enumerate() {
        let offsets = join(publisher).await;
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "[concurrent_publishers] one publisher's appends must get increasing offsets: {offsets:?}"
        );
        for (n, offset) in offsets.into_iter().enumerate() {
            let previous = given.insert(offset, format!("{task}:{n}"));
            assert_eq!(
                previous, None,
                "[concurrent_publishers] offset {offset} was given twice"
            );
        }
    }
    assert_eq!(
        given.keys().map(|o| o.0).collect::<Vec<_>>(),
        (1..=TOTAL).collect::<Vec<_>>(),
        "[concurrent_publishers] the offsets given must be 1 to {TOTAL} without gaps"
    );

    let mut all = Vec::new();
    let mut cursor = start;
    while cursor.offset.0 < TOTAL {
        let batch = read(&*store, &t, cursor, 300).await;
        assert!(
            !batch.records.is_empty(),
            "[concurrent_publishers] a read before the head returned nothing"
        );
        cursor = batch.cursor;
        all.extend(batch.records);
    }
    let stored: BTreeMap<Offset, String> = all.iter().map(|(o, r)| (*o, text(r))).collect();
    assert_eq!(
        stored, given,
        "[concurrent_publishers] each record must be stored at the offset its append returned"
    );
    let mut next = [0; TASKS];
    for (offset, record) in &all {
        let text = text(record);
        let (task, n) = text.split_once(':').unwrap_or_default();
        let (task, n) = (
            task.parse::<usize>().unwrap_or(TASKS),
            n.parse::<usize>().unwrap_or(0),
        );
        assert!(
            task < TASKS,
            "[concurrent_publishers] offset {offset} holds a foreign record {text:?}"
        );
        assert_eq!(
            n, next[task],
            "[concurrent_publishers] publisher {task}'s records out of order at {offset}"
        );
        next[task] += 1;
    }

    let followed = join(follower).await;
    assert_eq!(
        followed, all,
        "[concurrent_publishers] a reader following the topic must see exactly what a final read sees"
    );
    assert_eq!(
        head(&*store, &t).await,
        Cursor::new(start.epoch, Offset(TOTAL)),
        "[concurrent_publishers] the watched head must end at the last offset"
    );
}

/// Checks batch appends: a batch takes consecutive offsets in its order, keeps what each record
/// holds (headers included), moves the watched head to its last record, applies retention once
/// after its last record, and no other append lands inside it, however many run at once; an
/// empty batch appends nothing.
pub async fn batches<S: Store>(store: S) {
    let store = Arc::new(store);
    let t = topic("batches");
    let start = head(&*store, &t).await;
    let mut rx = watch(&*store, &t).await;
    let first = vec![
        message("b1"),
        Record::Message(Payload::with_headers(
            "b2",
            vec![("h".to_owned(), "v".to_owned())],
        )),
        message("b3"),
    ];
    let offsets = ok(
        store.append_batch(&t, first.clone(), ample()).await,
        "append_batch",
    );
    assert_eq!(
        offsets.iter().map(|o| o.0).collect::<Vec<_>>(),
        [1, 2, 3],
        "[batches] a batch of 3 on a new topic must take offsets 1 to 3"
    );
    wait_for_head(
        &mut rx,
        Cursor::new(start.epoch, Offset(3)),
        "[batches] head",
    )
    .await;
    assert_eq!(append(&*store, &t, message("b4"), ample()).await, Offset(4));
    let batch = read(&*store, &t, start, 10).await;
    assert_eq!(
        batch
            .records
            .iter()
            .take(3)
            .map(|(_, r)| r.clone())
            .collect::<Vec<_>>(),
        first,
        "[batches] a batch's records must be read back as appended, headers included"
    );
    assert_eq!(texts(&batch), ["b1", "b2", "b3", "b4"]);
    assert_eq!(
        ok(
            store.append_batch(&t, Vec::new(), ample()).await,
            "append_batch"
        ),
        Vec::<Offset>::new(),
        "[batches] an empty batch appends nothing"
    );
    assert_eq!(head(&*store, &t).await, Cursor::new(start.epoch, Offset(4)));

    // A batch longer than retention keeps its newest records.
    let small = Retention {
        messages: 3,
        bytes: 1 << 20,
        age: None,
    };
    let five = (5..=9).map(|n| message(format!("b{n}"))).collect();
    ok(store.append_batch(&t, five, small).await, "append_batch");
    let batch = read(&*store, &t, start, 10).await;
    assert_eq!(
        (offsets_of(&batch), texts(&batch)),
        (
            vec![7, 8, 9],
            vec!["b7".to_owned(), "b8".into(), "b9".into()]
        ),
        "[batches] a batch of 5 with 3 retained keeps its newest 3"
    );

    // Batches appended at once never interleave.
    const TASKS: usize = 4;
    const BATCHES: usize = 25;
    const SIZE: usize = 5;
    let t = topic("batches-concurrent");
    let start = head(&*store, &t).await;
    let publishers: Vec<_> = (0..TASKS)
        .map(|task| {
            let (store, t) = (store.clone(), t.clone());
            tokio::spawn(async move {
                for b in 0..BATCHES {
                    let records = (0..SIZE)
                        .map(|n| message(format!("{task}:{b}:{n}")))
                        .collect();
                    let offsets = ok(
                        store.append_batch(&t, records, ample()).await,
                        "append_batch",
                    );
                    assert!(
                        offsets.windows(2).all(|w| w[1] == w[0].next()),
                        "[batches] a batch's offsets must be consecutive: {offsets:?}"
                    );
                }
            })
        })
        .collect();
    for publisher in publishers {
        join(publisher).await;
    }
    let all = read(&*store, &t, start, TASKS * BATCHES * SIZE).await;
    assert_eq!(all.records.len(), TASKS * BATCHES * SIZE);
    for chunk in texts(&all).chunks(SIZE) {
        let batch = chunk[0].rsplit_once(':').map(|(b, _)| b.to_owned());
        let expected: Vec<String> = (0..SIZE)
            .map(|n| format!("{}:{n}", batch.as_deref().unwrap_or_default()))
            .collect();
        assert_eq!(
            chunk, expected,
            "[batches] batches appended at once interleaved"
        );
    }
}

/// Follows `topic` the way a transport does (read, then wait on the watch when caught up) until
/// `until`, checking every batch continues where the last ended.
async fn follow<S: Store>(
    store: &S,
    topic: &Topic,
    mut cursor: Cursor,
    until: u64,
) -> Vec<(Offset, Record)> {
    let mut rx = watch(store, topic).await;
    let deadline = Instant::now() + PATIENCE * 5;
    let mut seen = Vec::new();
    let mut highest = cursor;
    while cursor.offset.0 < until {
        // Marked seen before the read, so an append after the read wakes the wait below.
        let head = *rx.borrow_and_update();
        assert!(
            head.offset >= highest.offset,
            "[concurrent_publishers] the watched head went back from {highest:?} to {head:?}"
        );
        highest = head;
        let batch = read(store, topic, cursor, 64).await;
        assert_eq!(
            batch.gap, None,
            "[concurrent_publishers] a reader keeping up was told of a gap"
        );
        for (offset, _) in &batch.records {
            assert_eq!(
                *offset,
                cursor.offset.next(),
                "[concurrent_publishers] a following reader at {cursor:?} next saw offset {offset}: a \
                 record became visible after a later one, or a batch is out of order"
            );
            cursor.offset = *offset;
        }
        assert_eq!(
            batch.cursor, cursor,
            "[concurrent_publishers] the returned cursor must be at the last record"
        );
        if batch.records.is_empty() {
            let woke = tokio::time::timeout_at(deadline, rx.changed()).await;
            assert!(
                matches!(woke, Ok(Ok(()))),
                "[concurrent_publishers] a following reader at {cursor:?} was not woken by appends"
            );
        }
        seen.extend(batch.records);
        tokio::task::yield_now().await;
    }
    seen
}

/// Polls `take_expired` until every channel of `wanted` has been taken, failing if any of `spared`
/// is. Returns the states of `wanted` as taken.
async fn expire<S: Store>(
    store: &S,
    wanted: &[ChannelId],
    spared: &[ChannelId],
    check: &str,
) -> Vec<ChannelState> {
    let deadline = Instant::now() + PATIENCE;
    let mut taken: Vec<ChannelState> = Vec::new();
    loop {
        for state in ok(store.take_expired(usize::MAX).await, "take_expired") {
            assert!(
                !spared.contains(&state.id),
                "{check}: {:?} must not expire",
                state.id
            );
            taken.push(state);
        }
        let missing: Vec<_> = wanted
            .iter()
            .filter(|id| !taken.iter().any(|s| s.id == **id))
            .collect();
        if missing.is_empty() {
            taken.retain(|s| wanted.contains(&s.id));
            return taken;
        }
        assert!(
            Instant::now() < deadline,
            "{check}: {missing:?} did not expire within {PATIENCE:?} of their time to live"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `rx` shows `head`.
async fn wait_for_head(rx: &mut tokio::sync::watch::Receiver<Cursor>, head: Cursor, check: &str) {
    let deadline = Instant::now() + PATIENCE;
    while *rx.borrow_and_update() != head {
        let woke = tokio::time::timeout_at(deadline, rx.changed()).await;
        assert!(
            matches!(woke, Ok(Ok(()))),
            "{check}: the watched head is {:?}, expected {head:?}",
            *rx.borrow()
        );
    }
}

/// Unwraps a store result, failing the check with what was being done.
#[track_caller]
fn ok<T>(result: Result<T, StoreError>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(err) => panic!("store contract: {what} failed: {err}"),
    }
}

/// Propagates a panic of a spawned check task.
async fn join<T>(handle: tokio::task::JoinHandle<T>) -> T {
    match handle.await {
        Ok(value) => value,
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(err) => panic!("store contract: a check task failed: {err}"),
    }
}

async fn append<S: Store>(
    store: &S,
    topic: &Topic,
    record: Record,
    retention: Retention,
) -> Offset {
    ok(store.append(topic, record, retention).await, "append")
}

async fn read<S: Store>(store: &S, topic: &Topic, cursor: Cursor, max: usize) -> ReadBatch {
    ok(store.read(topic, cursor, max).await, "read")
}

async fn watch<S: Store>(store: &S, topic: &Topic) -> tokio::sync::watch::Receiver<Cursor> {
    ok(store.watch(topic).await, "watch")
}

async fn head<S: Store>(store: &S, topic: &Topic) -> Cursor {
    *watch(store, topic).await.borrow()
}

async fn followed<S: Store>(store: &S, id: ChannelId) -> BTreeMap<Topic, Cursor> {
    match ok(store.channel(id).await, "channel") {
        Some(state) => state.topics,
        None => panic!("store contract: channel {id} vanished"),
    }
}

/// Creates a channel of `user` following `topics`.
async fn create<S: Store>(
    store: &S,
    user: Option<&str>,
    topics: &[&Topic],
    ttl: Duration,
) -> ChannelState {
    let state = ChannelState {
        id: ChannelId::random(),
        user: user.map(str::to_owned),
        attributes: BTreeMap::new(),
        topics: topics
            .iter()
            .map(|t| ((*t).clone(), Cursor::default()))
            .collect(),
        closed: None,
        alias: None,
        ended: false,
        labels: BTreeMap::new(),
    };
    created(ok(
        store.create_channel(state, ttl, usize::MAX).await,
        "create_channel",
    ))
}

/// The state a creation stored or found.
fn created(creation: Creation) -> ChannelState {
    match creation {
        Creation::Created(state) | Creation::Existing(state) => state,
        Creation::UserFull => panic!("no per-user limit was asked for, yet the user was full"),
    }
}

/// Creates a channel with `alias`, following nothing.
async fn create_aliased<S: Store>(store: &S, alias: &Alias, ttl: Duration) -> ChannelState {
    let state = ChannelState {
        id: ChannelId::random(),
        user: None,
        attributes: BTreeMap::new(),
        topics: BTreeMap::new(),
        closed: None,
        alias: Some(alias.clone()),
        ended: false,
        labels: BTreeMap::new(),
    };
    created(ok(
        store.create_channel(state, ttl, usize::MAX).await,
        "create_channel",
    ))
}

/// A name no other run uses.
fn unique(name: &str) -> String {
    format!("contract-{name}-{:016x}", rand::random::<u64>())
}

fn topic(name: &str) -> Topic {
    Topic::from_stored(&unique(name))
}

fn message(text: impl Into<String>) -> Record {
    Record::Message(Payload::new(text))
}

/// Retention that drops nothing in these checks.
fn ample() -> Retention {
    Retention {
        messages: 100_000,
        bytes: 1 << 26,
        age: None,
    }
}

fn offsets_of(batch: &ReadBatch) -> Vec<u64> {
    batch.records.iter().map(|(offset, _)| offset.0).collect()
}

fn text(record: &Record) -> String {
    match record {
        Record::Message(payload) => payload.text().to_owned(),
        Record::Control(control) => format!("{control:?}"),
    }
}

fn texts(batch: &ReadBatch) -> Vec<String> {
    batch
        .records
        .iter()
        .map(|(_, record)| text(record))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::panic::AssertUnwindSafe;

    use async_trait::async_trait;
    use futures::FutureExt;
    use tidings_core::ids::Id128;
    use tokio::sync::watch;

    use super::*;
    use crate::MemoryStore;

    /// Races between appends are rare in one run; a few runs on many threads catch a head that
    /// goes back (the bug `MemoryStore::append` had) most of the time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 8)]
    async fn memory_store_keeps_its_head_under_contention() {
        for _ in 0..20 {
            concurrent_publishers(MemoryStore::new()).await;
        }
    }

    #[tokio::test]
    async fn memory_store_keeps_the_contract() {
        run_all(MemoryStore::new).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn memory_store_keeps_the_contract_across_threads() {
        run_all(MemoryStore::new).await;
    }

    /// A wrapper that passes the contract proves the failures below come from its faults.
    #[tokio::test]
    async fn a_faithful_wrapper_keeps_the_contract() {
        run_all(|| Faulty::new(Fault::None)).await;
    }

    #[tokio::test]
    async fn a_store_that_hides_gaps_fails() {
        let message = failure(gaps(Faulty::new(Fault::HideGaps))).await;
        assert!(
            message.contains("[gaps]") && message.contains("missed"),
            "{message}"
        );
        let message = failure(epoch_change(Faulty::new(Fault::HideGaps))).await;
        assert!(
            message.contains("[epoch_change]") && message.contains("epoch_changed"),
            "{message}"
        );
        let message = failure(retention_by_count(Faulty::new(Fault::HideGaps))).await;
        assert!(
            message.contains("[retention_by_count]") && message.contains("missed"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_store_that_reorders_a_batch_fails() {
        let message = failure(ordering(Faulty::new(Fault::ReverseBatches))).await;
        assert!(
            message.contains("[ordering]") && message.contains("append order"),
            "{message}"
        );
        let message = failure(reads_from_cursor(Faulty::new(Fault::ReverseBatches))).await;
        assert!(message.contains("[reads_from_cursor]"), "{message}");
        let message = failure(concurrent_publishers(Faulty::new(Fault::ReverseBatches))).await;
        assert!(message.contains("[concurrent_publishers]"), "{message}");
    }

    #[tokio::test]
    async fn a_store_whose_head_stands_still_fails() {
        let message = failure(watch_head(Faulty::new(Fault::StaleHead))).await;
        assert!(message.contains("[watch_head]"), "{message}");
    }

    /// Runs a check that must fail and returns its panic message.
    async fn failure(check: impl Future<Output = ()>) -> String {
        let Err(panic) = AssertUnwindSafe(check).catch_unwind().await else {
            panic!("the check passed a faulty store");
        };
        match panic.downcast::<String>() {
            Ok(message) => *message,
            Err(panic) => panic
                .downcast::<&str>()
                .map(|m| (*m).to_owned())
                .unwrap_or_default(),
        }
    }

    #[derive(Clone, Copy)]
    enum Fault {
        None,
        /// Reads never report a gap.
        HideGaps,
        /// Reads return their records newest first.
        ReverseBatches,
        /// Watchers get a head that never moves.
        StaleHead,
    }

    /// A `MemoryStore` with one deliberate fault.
    struct Faulty {
        inner: MemoryStore,
        fault: Fault,
    }

    impl Faulty {
        fn new(fault: Fault) -> Self {
            Faulty {
                inner: MemoryStore::new(),
                fault,
            }
        }
    }

    #[async_trait]
    impl Store for Faulty {
        async fn append(
            &self,
            topic: &Topic,
            record: Record,
            retention: Retention,
        ) -> Result<Offset, StoreError> {
            self.inner.append(topic, record, retention).await
        }

        async fn append_batch(
            &self,
            topic: &Topic,
            records: Vec<Record>,
            retention: Retention,
        ) -> Result<Vec<Offset>, StoreError> {
            self.inner.append_batch(topic, records, retention).await
        }

        async fn read(
            &self,
            topic: &Topic,
            cursor: Cursor,
            max: usize,
        ) -> Result<ReadBatch, StoreError> {
            let mut batch = self.inner.read(topic, cursor, max).await?;
            match self.fault {
                Fault::HideGaps => batch.gap = None,
                Fault::ReverseBatches => batch.records.reverse(),
                Fault::None | Fault::StaleHead => {}
            }
            Ok(batch)
        }

        async fn watch(&self, topic: &Topic) -> Result<watch::Receiver<Cursor>, StoreError> {
            let rx = self.inner.watch(topic).await?;
            match self.fault {
                Fault::StaleHead => {
                    let (tx, rx) = watch::channel(*rx.borrow());
                    // Keep the sender alive so the receiver waits instead of erroring.
                    std::mem::forget(tx);
                    Ok(rx)
                }
                _ => Ok(rx),
            }
        }

        async fn create_channel(
            &self,
            state: ChannelState,
            ttl: Duration,
            max_per_user: usize,
        ) -> Result<Creation, StoreError> {
            self.inner.create_channel(state, ttl, max_per_user).await
        }

        async fn channel(&self, id: ChannelId) -> Result<Option<ChannelState>, StoreError> {
            self.inner.channel(id).await
        }

        async fn channel_by_alias(
            &self,
            alias: &Alias,
        ) -> Result<Option<ChannelState>, StoreError> {
            self.inner.channel_by_alias(alias).await
        }

        async fn end_channel(&self, id: ChannelId, linger: Duration) -> Result<bool, StoreError> {
            self.inner.end_channel(id, linger).await
        }

        async fn subscribe(
            &self,
            id: ChannelId,
            topic: &Topic,
            how: &Subscription,
        ) -> Result<Option<Cursor>, StoreError> {
            self.inner.subscribe(id, topic, how).await
        }

        async fn unsubscribe(&self, id: ChannelId, topic: &Topic) -> Result<bool, StoreError> {
            self.inner.unsubscribe(id, topic).await
        }

        async fn save_cursors(
            &self,
            id: ChannelId,
            cursors: &[(Topic, Cursor)],
        ) -> Result<(), StoreError> {
            self.inner.save_cursors(id, cursors).await
        }

        async fn mark_closed(
            &self,
            id: ChannelId,
            code: CloseCode,
            reason: &str,
        ) -> Result<bool, StoreError> {
            self.inner.mark_closed(id, code, reason).await
        }

        async fn touch(&self, id: ChannelId, ttl: Duration) -> Result<bool, StoreError> {
            self.inner.touch(id, ttl).await
        }

        async fn remove_channel(&self, id: ChannelId) -> Result<Option<ChannelState>, StoreError> {
            self.inner.remove_channel(id).await
        }

        async fn take_expired(&self, max: usize) -> Result<Vec<ChannelState>, StoreError> {
            self.inner.take_expired(max).await
        }

        async fn drop_idle_topics(&self, idle: Duration, max: usize) -> Result<usize, StoreError> {
            self.inner.drop_idle_topics(idle, max).await
        }

        async fn acquire_receiver(
            &self,
            id: ChannelId,
            holder: Id128,
            ttl: Duration,
        ) -> Result<bool, StoreError> {
            self.inner.acquire_receiver(id, holder, ttl).await
        }

        async fn release_receiver(&self, id: ChannelId, holder: Id128) -> Result<(), StoreError> {
            self.inner.release_receiver(id, holder).await
        }

        async fn presence(&self, topic: &Topic) -> Result<Presence, StoreError> {
            self.inner.presence(topic).await
        }

        async fn online(&self) -> Result<Presence, StoreError> {
            self.inner.online().await
        }

        async fn user_channels(&self, user: &str) -> Result<Vec<ChannelId>, StoreError> {
            self.inner.user_channels(user).await
        }
    }
}
