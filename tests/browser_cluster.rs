//! `examples/cluster` under real browser clients: three node processes of one app on a real
//! `redis-server`, behind the example's round-robin balancer, which sends every request to the
//! next node, with Chromium going through it.
//!
//! - sockjs-client (npm, 1.6.1), forced onto xhr-polling or xhr-streaming, echoes 100 messages
//!   through the echo app while its session's requests go round all three nodes;
//! - the native JS client (the chat page), on polling and on SSE, receives 1000 messages that
//!   the test publishes through the balancer's `POST /publish`, so through each node in turn,
//!   exactly once each and in order;
//! - a node is killed (SIGKILL) under native clients on all four transports: each carries on
//!   through the other nodes with every acknowledged message, once, in order;
//! - `redis-server` is stopped for two seconds and started again under native clients:
//!   publishing is refused meanwhile (503, the documented error), and delivery goes on
//!   afterwards with every acknowledged message, once, in order.
//!
//! Each test starts a `redis-server` of its own ([`Redis`], which syncs every write, so a
//! restart keeps what it acknowledged; with `TIDINGS_TEST_STORE=redis-cluster`, a Redis Cluster
//! of three shards, which `tests/run-all.sh` runs these on too), the cluster example with `--nodes 3 --addr
//! 127.0.0.1:0`, and `tests/browser/native_driver.mjs`, which opens pages on the balancer's
//! origin and answers the test's questions about them. The test publishes `m0`, `m1`, … itself,
//! one at a time, each after the answer to the one before, so the order of the numbers is the
//! order of the messages in the room; a page must receive them in that order.
//!
//! Needs chromium, redis-server and the node packages of `tests/browser`; `bash
//! tests/run-all.sh` installs them and runs these.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tidings_tests::driver::{BROWSER_DIR, Browser};
use tidings_tests::example::Running;
use tidings_tests::http::Request;
use tidings_tests::redis::Redis;
use tokio::process::{Child, Command};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::task::JoinHandle;

/// Tests run one at a time: each has a Chromium, three nodes, the balancer and Redis busy on a
/// machine of two shared cores, and the clients' failure detection runs on timers that a
/// starved browser would trip.
static BROWSERS: Semaphore = Semaphore::const_new(1);

/// How many nodes each cluster has.
const NODES: usize = 3;

/// How long a page has to connect, or to get a message once it was acknowledged; also how
/// long the cluster has to print its lines.
const DELIVERY: Duration = Duration::from_secs(30);
/// How long after the last expected message a page is watched for extra (repeated) ones.
const SETTLE: Duration = Duration::from_millis(700);
/// The time between two publishes when the test publishes "at a steady pace".
const PACE: Duration = Duration::from_millis(20);

// ---------------------------------------------------------------------------------------------
// The cluster, the browser, the publisher
// ---------------------------------------------------------------------------------------------

/// The cluster example on a Redis of its own. Dropping it ends the cluster process, and with it
/// the nodes (their stdin closes), and then Redis.
struct Cluster {
    /// The balancer.
    addr: SocketAddr,
    /// Node `n` (counted from 1, as the balancer does) at `n - 1`: where it listens, its pid.
    nodes: Vec<(SocketAddr, u32)>,
    /// Before `redis`: fields drop in order, and nodes whose Redis went first would say so.
    _process: Child,
    redis: Redis,
}

impl Cluster {
    async fn start(app: &str) -> Cluster {
        let redis = tokio::task::block_in_place(Redis::start);
        let (count, url) = (NODES.to_string(), redis.url());
        let args = [
            "--app",
            app,
            "--nodes",
            &count,
            "--redis",
            &url,
            "--addr",
            "127.0.0.1:0",
        ];
        let mut running = Running::start("cluster", &args).await;
        let mut nodes = Vec::new();
        let deadline = Instant::now() + DELIVERY;
        // `node 1 http://ADDR/ pid PID` for each node, then `cluster of 3 chat nodes on
        // http://ADDR/ (round robin, Redis …)`.
        let addr = loop {
            let line = running.line(deadline - Instant::now()).await;
            let words: Vec<&str> = line.split_whitespace().collect();
            match words[..] {
                ["node", _, url, "pid", pid] => {
                    nodes.push((address(url), pid.parse().expect("a pid")));
                }
                ["cluster", "of", _, _, "nodes", "on", url, ..] => break address(url),
                _ => panic!("unexpected line from the cluster: {line:?}"),
            }
        };
        assert_eq!(nodes.len(), NODES, "one line per node");
        Cluster {
            addr,
            nodes,
            _process: running.drain(),
            redis,
        }
    }

    /// `http://<balancer><path>`.
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// What the balancer forwarded so far, oldest first.
    async fn log(&self) -> Vec<Forwarded> {
        let mut response = Request::get("/_balancer/log").send(self.addr).await;
        let body = response.text().await;
        let entries: Vec<Value> = serde_json::from_str(&body).expect("the log is a JSON array");
        entries
            .iter()
            .map(|entry| Forwarded {
                node: entry["node"]
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .expect("node"),
                method: entry["method"].as_str().expect("method").to_owned(),
                path: entry["path"].as_str().expect("path").to_owned(),
            })
            .collect()
    }

    /// Kills node `node` (from 1) with SIGKILL, and waits until its port refuses connections.
    async fn kill(&self, node: usize) {
        let (addr, pid) = self.nodes[node - 1];
        let killed = Command::new("kill")
            .arg("-9")
            .arg(pid.to_string())
            .status()
            .await;
        assert!(killed.is_ok_and(|status| status.success()), "kill -9 {pid}");
        let gone = async {
            while tokio::net::TcpStream::connect(addr).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), gone)
            .await
            .unwrap_or_else(|_| panic!("node {node} (pid {pid}) still listens"));
    }
}

/// One request the balancer forwarded, from `/_balancer/log`.
struct Forwarded {
    node: usize,
    method: String,
    path: String,
}

/// `http://ADDR/` → ADDR.
fn address(url: &str) -> SocketAddr {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    addr.parse()
        .unwrap_or_else(|_| panic!("not an http://ADDR/ URL: {url:?}"))
}

/// One publish: `m<n>` and how `POST /publish` answered it.
#[derive(Clone, Debug)]
struct Attempt {
    n: usize,
    /// When it was sent, from the publisher's start.
    sent: Duration,
    /// When its answer came, from the publisher's start.
    answered: Duration,
    status: u16,
    body: String,
}

impl Attempt {
    fn acknowledged(&self) -> bool {
        self.status == 200
    }
}

/// The test's publisher: `m0`, `m1`, … through the balancer's `POST /publish`, each after the
/// answer to the one before and `pace` after it, until `limit` attempts or [`Publisher::stop`].
/// Every attempt is recorded with its answer, refused ones too: a refused message is not
/// published again.
struct Publisher {
    attempts: Arc<Mutex<Vec<Attempt>>>,
    stop: Arc<AtomicBool>,
    started: Instant,
    task: JoinHandle<()>,
}

impl Publisher {
    fn start(balancer: SocketAddr, pace: Duration, limit: usize) -> Publisher {
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let task = tokio::spawn({
            let (attempts, stop) = (attempts.clone(), stop.clone());
            async move {
                for n in 0..limit {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let sent = started.elapsed();
                    let mut response = Request::post("/publish")
                        .header("Content-Type", "text/plain; charset=utf-8")
                        .body(format!("m{n}"))
                        .send(balancer)
                        .await;
                    let (status, body) = (response.status(), response.text().await);
                    let answered = started.elapsed();
                    let attempt = Attempt {
                        n,
                        sent,
                        answered,
                        status,
                        body,
                    };
                    attempts.lock().expect("not poisoned").push(attempt);
                    tokio::time::sleep(pace).await;
                }
            }
        });
        Publisher {
            attempts,
            stop,
            started,
            task,
        }
    }

    fn attempts(&self) -> Vec<Attempt> {
        self.attempts.lock().expect("not poisoned").clone()
    }

    fn acknowledged(&self) -> usize {
        self.attempts().iter().filter(|a| a.acknowledged()).count()
    }

    /// Waits until `count` messages in all have been acknowledged; panics after `within`.
    async fn until_acknowledged(&self, count: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.acknowledged() < count {
            assert!(
                Instant::now() < deadline && !self.task.is_finished(),
                "{count} publishes were not acknowledged within {within:?}: {:?}",
                self.attempts().last()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops after the publish under way, and returns every attempt.
    async fn stop(self) -> Vec<Attempt> {
        self.stop.store(true, Ordering::Relaxed);
        self.finish().await
    }

    /// Waits until the limit is reached, and returns every attempt.
    async fn finish(self) -> Vec<Attempt> {
        let Publisher { attempts, task, .. } = self;
        task.await.expect("the publisher panicked");
        attempts.lock().expect("not poisoned").clone()
    }
}

/// Checks the messages one page received against the attempts: every acknowledged message,
/// each once, in the order they were published, and nothing that was never published. A
/// refused one may be there too (its store call may have been done when the answer was lost);
/// returns those.
fn check(got: &[String], attempts: &[Attempt]) -> Result<Vec<usize>, String> {
    let mut numbers = Vec::with_capacity(got.len());
    for (i, text) in got.iter().enumerate() {
        let n = text
            .strip_prefix('m')
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&n| n < attempts.len())
            .ok_or_else(|| format!("message {i}, {text:?}, was never published"))?;
        if let Some(&before) = numbers.last()
            && n <= before
        {
            return Err(format!(
                "message {i} is m{n}, after m{before}: repeated or out of order"
            ));
        }
        numbers.push(n);
    }
    let got: BTreeSet<usize> = numbers.iter().copied().collect();
    let missing: Vec<usize> = attempts
        .iter()
        .filter(|a| a.acknowledged() && !got.contains(&a.n))
        .map(|a| a.n)
        .collect();
    if !missing.is_empty() {
        let first = &missing[..missing.len().min(10)];
        return Err(format!(
            "{} acknowledged message(s) missing, first {first:?}",
            missing.len()
        ));
    }
    Ok(numbers
        .into_iter()
        .filter(|&n| !attempts[n].acknowledged())
        .collect())
}

/// What the chat page shows (`window.chat`): its messages, transport, gaps and closes.
const CHAT: &str = "(({ messages, transport, gaps, closes }) => \
    ({ messages, transport, gaps, closes }))(window.chat)";

/// One test's browser and cluster, and what fails it with everything the pages saw.
struct Case {
    label: String,
    started: Instant,
    browser: Browser,
    cluster: Cluster,
    /// The pages opened, each on the chat page forced onto one transport (named as it is).
    pages: Vec<&'static str>,
    _permit: SemaphorePermit<'static>,
}

impl Case {
    async fn start(label: &str, app: &str) -> Case {
        let permit = BROWSERS
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let started = Instant::now();
        let cluster = Cluster::start(app).await;
        let browser = Browser::launch().await;
        Case {
            label: label.to_owned(),
            started,
            browser,
            cluster,
            pages: Vec::new(),
            _permit: permit,
        }
    }

    /// Opens the chat page through the balancer on each of `transports`, one page each named
    /// after it, and waits until every one is ready to receive: connected, or, on polling,
    /// negotiated (its first poll only answers once there is something to say, or after a
    /// heartbeat of 25 s; what is published after the negotiation is its to receive).
    async fn open_chat(&mut self, transports: &[&'static str]) {
        for &transport in transports {
            let url = self.cluster.url(&format!("/?transport={transport}"));
            self.browser.open(transport, &url).await;
            self.pages.push(transport);
        }
        for &transport in transports {
            let ready = match transport {
                "polling" => "performance.getEntriesByType('resource')\
                    .some((e) => e.name.includes('/rt/native/negotiate'))"
                    .to_owned(),
                _ => format!("window.chat.transport === '{transport}'"),
            };
            if !self.browser.wait(transport, &ready, DELIVERY).await {
                self.fail(transport, "did not connect".into()).await;
            }
        }
    }

    /// Notes `text` in every page's log.
    async fn note(&mut self, text: &str) {
        for page in self.pages.clone() {
            self.browser.note(page, text).await;
        }
    }

    /// Waits until every page has `m<last>` and a little longer for extra messages, then checks
    /// each against `attempts` (see [`check`]) and that it stayed on its transport without a
    /// close or a gap. Returns the refused messages each page got anyway.
    async fn delivered(&mut self, attempts: &[Attempt]) -> Vec<(&'static str, Vec<usize>)> {
        let last = attempts
            .iter()
            .rev()
            .find(|a| a.acknowledged())
            .expect("acknowledged")
            .n;
        let expr = format!("window.chat.messages.includes('m{last}')");
        for page in self.pages.clone() {
            self.browser.wait(page, &expr, DELIVERY).await;
        }
        tokio::time::sleep(SETTLE).await;
        let mut extra = Vec::new();
        for page in self.pages.clone() {
            let state = self.browser.eval(page, CHAT).await;
            let got: Vec<String> =
                serde_json::from_value(state["messages"].clone()).expect("strings");
            match check(&got, attempts) {
                Ok(refused) => extra.push((page, refused)),
                Err(why) => self.fail(page, why).await,
            }
            if state["transport"] != json!(page)
                || state["closes"] != json!([])
                || state["gaps"] != json!([])
            {
                self.fail(
                    page,
                    format!("did not stay on {page} without a close or a gap"),
                )
                .await;
            }
        }
        extra
    }

    /// Panics with `why` and what `page` saw.
    async fn fail(&mut self, page: &str, why: String) -> ! {
        eprintln!("{}: {page}: {why}", self.label);
        let mut state = self.browser.eval(page, CHAT).await;
        let messages = state["messages"].as_array().cloned().unwrap_or_default();
        state["messages"] = json!(format!(
            "{} messages, last {:?}",
            messages.len(),
            &messages[messages.len().saturating_sub(5)..]
        ));
        let log = self.browser.log(page).await;
        let tail = log[log.len().saturating_sub(150)..].join("\n  ");
        panic!(
            "{}: page {page}: {why} (after {:.1?})\n{state}\npage log:\n  {tail}",
            self.label,
            self.started.elapsed()
        );
    }

    /// Ends a passing test.
    async fn finish(mut self) {
        let elapsed = self.started.elapsed();
        // `TIDINGS_TEST_VERBOSE=1 cargo test … -- --nocapture` shows what passing pages saw.
        if std::env::var_os("TIDINGS_TEST_VERBOSE").is_some() {
            for page in self.pages.clone() {
                let log = self.browser.log(page).await;
                eprintln!("{}: page {page}:\n  {}", self.label, log.join("\n  "));
            }
        }
        self.browser.quit().await;
        eprintln!("{}: passed in {elapsed:.1?}", self.label);
    }
}

// ---------------------------------------------------------------------------------------------
// 1. sockjs-client through the balancer (the echo app)
// ---------------------------------------------------------------------------------------------

/// How many messages sockjs-client echoes.
const ECHOES: usize = 100;

/// The dist build of sockjs-client among the installed node packages (`TIDINGS_NODE_MODULES`,
/// set by `run-all.sh`, or `tests/browser/node_modules`).
fn sockjs_client() -> PathBuf {
    std::env::var_os("TIDINGS_NODE_MODULES")
        .map_or_else(
            || Path::new(BROWSER_DIR).join("node_modules"),
            PathBuf::from,
        )
        .join("sockjs-client/dist/sockjs.min.js")
}

/// sockjs-client in a page of the balancer's origin (the echo service's welcome page, with the
/// client added as a script) echoes [`ECHOES`] messages over `transport` alone, one at a time,
/// with no close or error. Then the balancer's log must show that every request of the session
/// went to the node after the one that took the request before it (see [`in_turn`]), so on all
/// three nodes, the sends and the receiving requests alike.
async fn sockjs_echo(transport: &str) {
    let mut case = Case::start(&format!("sockjs-client on {transport}"), "echo").await;
    let url = case.cluster.url("/echo");
    let page = "sockjs";
    case.browser.open(page, &url).await;
    for (path, kind) in [
        (sockjs_client(), "text/javascript"),
        (
            Path::new(BROWSER_DIR).join("cluster_echo_page.mjs"),
            "module",
        ),
    ] {
        case.browser.script(page, &path, kind).await;
    }
    let loaded = case
        .browser
        .wait(page, "window.clusterEcho", Duration::from_secs(5))
        .await;
    assert!(loaded, "the page script did not load");
    let start = format!("window.clusterEcho('/echo', '{transport}', {ECHOES})");
    case.browser.eval(page, &start).await;
    case.browser
        .wait(page, "window.report.done", DELIVERY)
        .await;
    let report = case.browser.eval(page, "window.report").await;
    let events: Vec<&str> = report["events"]
        .as_array()
        .map(|events| events.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert_eq!(
        events,
        [
            "open",
            &format!("echoed {ECHOES}"),
            "closed: 1000 Normal closure"
        ],
        "{}: {report}",
        case.label
    );
    assert_eq!(report["transport"], json!(transport), "{report}");

    // Everything the balancer forwarded came from the page: the page itself, maybe its
    // favicon, `/echo/info`, then only the session's requests (`/echo/<server>/<session>/…`).
    let log = case.cluster.log().await;
    let label = &case.label;
    let paths: Vec<&str> = log.iter().map(|e| e.path.as_str()).collect();
    let before = paths
        .iter()
        .position(|p| p.split('/').count() == 5)
        .expect("a session");
    let mut sessions = BTreeSet::new();
    let (mut sends, mut receives) = (Vec::new(), Vec::new());
    for entry in &log[before..] {
        let ["", "echo", _, session, what] = entry.path.split('/').collect::<Vec<_>>()[..] else {
            panic!("{label}: a request of no session among the session's: {paths:?}");
        };
        sessions.insert(session.to_owned());
        match what {
            "xhr_send" => sends.push(entry.node),
            _ => receives.push(entry.node),
        }
    }
    assert_eq!(sessions.len(), 1, "{label}: one session: {sessions:?}");
    assert_eq!(sends.len(), ECHOES, "{label}: a send a message");
    assert!(
        in_turn(before, &sends, &receives),
        "{label}: not each request on the next node after {before} others: \
         sends on {sends:?}, receiving requests on {receives:?}"
    );
    let used = |nodes: &[usize]| nodes.iter().copied().collect::<BTreeSet<_>>().len();
    assert_eq!(used(&sends), NODES, "{label}: sends on {sends:?}");
    assert!(used(&receives) > 1, "{label}: receiving on {receives:?}");
    eprintln!("{label}: sends on nodes {sends:?}, receiving requests on nodes {receives:?}");
    case.finish().await;
}

/// Whether the balancer can have forwarded `sends` and `receives` (the nodes that served each,
/// each kind in the order the client made them) strictly in turn after `before` requests: the
/// `k`-th request it forwards goes to node `k % 3 + 1`. The log is in the order the nodes
/// answered, and a session's sends and receiving requests overlap, so which came first among
/// the two kinds is not known; within each kind it is, as sockjs-client makes the next request
/// of a kind once the one before has been answered. So this looks for an order of the two,
/// each kept in its own order, in which every request went to the node after the one before.
fn in_turn(before: usize, sends: &[usize], receives: &[usize]) -> bool {
    // `reach[i][j]`: the first `i` sends and `j` receiving requests can have gone first.
    let mut reach = vec![vec![false; receives.len() + 1]; sends.len() + 1];
    reach[0][0] = true;
    for i in 0..=sends.len() {
        for j in 0..=receives.len() {
            if !reach[i][j] {
                continue;
            }
            let next = (before + i + j) % NODES + 1;
            if sends.get(i) == Some(&next) {
                reach[i + 1][j] = true;
            }
            if receives.get(j) == Some(&next) {
                reach[i][j + 1] = true;
            }
        }
    }
    reach[sends.len()][receives.len()]
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium, redis-server and the node packages of tests/browser; run bash tests/run-all.sh"]
async fn sockjs_xhr_polling_echoes_through_the_round_robin_balancer() {
    sockjs_echo("xhr-polling").await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium, redis-server and the node packages of tests/browser; run bash tests/run-all.sh"]
async fn sockjs_xhr_streaming_echoes_through_the_round_robin_balancer() {
    sockjs_echo("xhr-streaming").await;
}

// ---------------------------------------------------------------------------------------------
// 2. 1000 messages published through every node (the chat app)
// ---------------------------------------------------------------------------------------------

/// The chat page on polling and on SSE receives `m0`..`m999`, published through the balancer
/// as fast as it answers, so by each node in turn: exactly those, once each, in order.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium, redis-server and the node packages of tests/browser; run bash tests/run-all.sh"]
async fn native_polling_and_sse_receive_what_every_node_published() {
    const COUNT: usize = 1000;
    let mut case = Case::start("1000 messages through every node", "chat").await;
    case.open_chat(&["polling", "sse"]).await;
    let attempts = Publisher::start(case.cluster.addr, Duration::ZERO, COUNT)
        .finish()
        .await;
    let refused: Vec<&Attempt> = attempts.iter().filter(|a| !a.acknowledged()).collect();
    assert!(
        refused.is_empty(),
        "every publish is acknowledged: {refused:?}"
    );
    // Round robin over the publishes and the polls: each node published about a third.
    let mut by_node = [0; NODES];
    for entry in case.cluster.log().await {
        if entry.method == "POST" && entry.path == "/publish" {
            by_node[entry.node - 1] += 1;
        }
    }
    assert_eq!(by_node.iter().sum::<usize>(), COUNT, "{by_node:?}");
    assert!(
        by_node.iter().all(|&n| n > COUNT / 5),
        "published by node: {by_node:?}"
    );
    let extra = case.delivered(&attempts).await;
    assert!(extra.iter().all(|(_, refused)| refused.is_empty()));
    eprintln!("{}: published by node 1, 2, 3: {by_node:?}", case.label);
    case.finish().await;
}

// ---------------------------------------------------------------------------------------------
// 3. A node killed under the clients (the chat app)
// ---------------------------------------------------------------------------------------------

/// The pages on a long-lived transport, and the path of its requests.
const LONG_LIVED: [(&str, &str); 3] = [
    ("websocket", "/rt/native/ws"),
    ("sse", "/rt/native/sse"),
    ("streaming", "/rt/native/stream"),
];

/// The chat page on each of the four transports while `m0`..`m299` are published, one every
/// 20 ms; halfway, the node holding most of the long-lived connections ([`LONG_LIVED`]) is
/// killed with SIGKILL. The pages on it see their connection drop and come back
/// through the balancer, which skips the dead node, from their last position.
///
/// A publish the dead node was handling when it died is answered `502` by the balancer and
/// counts as refused: it may or may not have been stored. Every page must get every
/// acknowledged message (`200`) exactly once and in order, nothing never published, and stay on
/// its transport with no close and no gap.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium, redis-server and the node packages of tests/browser; run bash tests/run-all.sh"]
async fn native_clients_carry_on_through_the_other_nodes_when_a_node_is_killed() {
    const COUNT: usize = 300;
    let mut case = Case::start("a node killed", "chat").await;
    case.open_chat(&["websocket", "sse", "streaming", "polling"])
        .await;
    let publisher = Publisher::start(case.cluster.addr, PACE, COUNT);
    publisher.until_acknowledged(COUNT / 2, DELIVERY).await;

    // Each long-lived connection is on the node that answered the last request on its path.
    let log = case.cluster.log().await;
    let held: Vec<(&str, &str, usize)> = LONG_LIVED
        .into_iter()
        .map(|(page, path)| {
            let last = log.iter().rev().find(|e| e.path == path);
            let node = last.unwrap_or_else(|| panic!("no {path} in the log")).node;
            (page, path, node)
        })
        .collect();
    let holding = |node: usize| held.iter().filter(|&&(_, _, n)| n == node).count();
    // The most held; on a tie, the WebSocket's (`max_by_key` takes the last of equals).
    let victim = held
        .iter()
        .rev()
        .map(|&(_, _, n)| n)
        .max_by_key(|&n| holding(n))
        .expect("held");
    let dropped: Vec<(&str, &str)> = held
        .iter()
        .filter(|&&(_, _, n)| n == victim)
        .map(|&(page, path, _)| (page, path))
        .collect();
    let since = log.len();
    case.note(&format!("killing node {victim}, which holds {dropped:?}"))
        .await;
    case.cluster.kill(victim).await;
    let attempts = publisher.finish().await;
    let extra = case.delivered(&attempts).await;

    let log = case.cluster.log().await;
    for &(page, path) in &dropped {
        let back: Vec<usize> = log[since..]
            .iter()
            .filter(|e| e.path == path)
            .map(|e| e.node)
            .collect();
        let drop = format!("tidings: {page} dropped");
        let drops = case
            .browser
            .log(page)
            .await
            .iter()
            .filter(|l| l.contains(&drop))
            .count();
        if back.is_empty() || back.contains(&victim) || drops == 0 {
            let why = format!("was on node {victim}: {drops} drop(s), then on nodes {back:?}");
            case.fail(page, why).await;
        }
    }
    let refused: Vec<String> = attempts
        .iter()
        .filter(|a| !a.acknowledged())
        .map(|a| format!("m{} {} {:?}", a.n, a.status, a.body))
        .collect();
    eprintln!(
        "{}: killed node {victim} under {dropped:?}; refused {refused:?}; \
         delivered anyway {extra:?}",
        case.label
    );
    case.finish().await;
}

// ---------------------------------------------------------------------------------------------
// 4. Redis stopped and restarted under the clients (the chat app)
// ---------------------------------------------------------------------------------------------

/// How long Redis stays down.
const OUTAGE: Duration = Duration::from_secs(2);
/// How long after Redis answers again the nodes may still refuse: each store connection
/// reconnects on its own (its first command after a loss can fail), within a store call's
/// timeout of 3 s.
const RECONNECTING: Duration = Duration::from_secs(3);

/// The chat page on each of the four transports while `m0`, `m1`, … are published, one every
/// 20 ms; after 100 are acknowledged, `redis-server` is stopped (SIGKILL: it syncs every write,
/// so it loses nothing it acknowledged) for two seconds, then started again on the same port,
/// and publishing goes on until 100 more are acknowledged.
///
/// What must be seen:
///
/// - while Redis is down the nodes refuse publishes with the documented error: `503` and
///   `{"error":"session store: store unavailable: …"}`; at least one is;
/// - a publish may be refused (`503`) only if it was answered after Redis stopped and sent
///   before Redis had been back for [`RECONNECTING`]; no other status is allowed;
/// - every page gets every acknowledged message (`200`) exactly once and in order, and nothing
///   never published. A refused message may be there too: its script may have run in Redis
///   before the answer was lost. So: acknowledged ⊆ received ⊆ attempted, no repeats, in
///   order;
/// - delivery goes on after Redis is back on every transport, with no close and no gap (Redis
///   kept every topic, so no position is from another epoch).
///
/// A page whose own request is answered `503` meanwhile (a poll, a reconnect) treats it as a
/// network error and retries with backoff; the test prints how many each page saw. A
/// connection that was open when Redis stopped just waits: nothing is appended meanwhile.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium, redis-server and the node packages of tests/browser; run bash tests/run-all.sh"]
async fn native_clients_carry_on_when_redis_restarts() {
    let mut case = Case::start("Redis restarted", "chat").await;
    case.open_chat(&["websocket", "sse", "streaming", "polling"])
        .await;
    let publisher = Publisher::start(case.cluster.addr, PACE, usize::MAX);
    publisher.until_acknowledged(100, DELIVERY).await;

    case.note("stopping redis-server").await;
    let stopped = publisher.started.elapsed();
    tokio::task::block_in_place(|| case.cluster.redis.stop());
    tokio::time::sleep(OUTAGE).await;
    tokio::task::block_in_place(|| case.cluster.redis.restart());
    let back = publisher.started.elapsed();
    case.note("redis-server answers again").await;
    let acknowledged = publisher.acknowledged();
    publisher
        .until_acknowledged(acknowledged + 100, DELIVERY)
        .await;
    let attempts = publisher.stop().await;

    let refused: Vec<&Attempt> = attempts.iter().filter(|a| !a.acknowledged()).collect();
    let documented = |a: &Attempt| {
        let body: Value = serde_json::from_str(&a.body).unwrap_or_default();
        let error = body["error"].as_str().unwrap_or_default();
        a.status == 503 && error.starts_with("session store: store unavailable: ")
    };
    assert!(
        refused.iter().any(|a| documented(a)),
        "no publish refused with the documented 503 while Redis was down: {refused:?}"
    );
    for attempt in &refused {
        let while_down = attempt.answered >= stopped && attempt.sent <= back + RECONNECTING;
        assert!(
            attempt.status == 503 && while_down,
            "refused outside the outage ({stopped:?} to {back:?}): {attempt:?}"
        );
    }
    let extra = case.delivered(&attempts).await;
    let refused: Vec<usize> = refused.iter().map(|a| a.n).collect();
    // What the clients saw of it: their own requests answered 503, and retried.
    let mut unavailable = Vec::new();
    for page in case.pages.clone() {
        let log = case.browser.log(page).await;
        let count = log.iter().filter(|l| l.contains("[response] 503")).count();
        unavailable.push((page, count));
    }
    eprintln!(
        "{}: Redis down from {stopped:.1?} to {back:.1?}; refused {refused:?}; delivered anyway \
         {extra:?}; requests of the pages answered 503: {unavailable:?}",
        case.label
    );
    case.finish().await;
}

/// [`in_turn`] tells a log that round robin can explain from one that it cannot.
#[test]
fn in_turn_accepts_round_robin_only() {
    // After two other requests: receive on 3, send on 1, receive on 2, send on 3, …
    assert!(in_turn(2, &[1, 3], &[3, 2]));
    // The two kinds overlap: the last receive was taken after the last send.
    assert!(in_turn(2, &[1, 3], &[3, 2, 1]));
    // Every send on one node: a session stuck to it.
    assert!(!in_turn(0, &[1, 1, 1], &[2, 3, 2]));
    // A receive where the next node cannot be.
    assert!(!in_turn(0, &[2, 1], &[1, 1]));
}
