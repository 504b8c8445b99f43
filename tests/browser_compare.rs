//! The compare page (`examples/compare`) in Debian's Chromium: every transport's panel, the
//! native client's four and sockjs-client's four, gets the server's ticks, then a whole burst,
//! and shows its latency.
//!
//! The test runs the example (`compare --addr 127.0.0.1:0`, serving the installed
//! sockjs-client), then `tests/browser/compare_driver.mjs`, which opens
//! `/?sockjs=/sockjs.min.js`, waits for ticks on every panel, clicks the burst button, waits
//! for every panel to count the burst, saves a screenshot to `target/artifacts/compare.png`
//! and prints what the panels show; the test checks that and prints it as a table.
//!
//! Needs chromium and the node packages of `tests/browser`; `bash tests/run-all.sh` installs
//! both and runs this.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tidings_tests::example::Running;
use tokio::process::{Child, Command};

/// The page's clients, by the names its panels carry.
const CLIENTS: [&str; 8] = [
    "websocket",
    "sse",
    "streaming",
    "polling",
    "sockjs-websocket",
    "sockjs-xhr-streaming",
    "sockjs-eventsource",
    "sockjs-xhr-polling",
];

/// Messages in the example's burst (its default).
const BURST: &str = "1000 / 1000";

/// How long the example has to print its address (it is built first if need be, by
/// [`Running::start`]).
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the driver may take: Chromium, 20 s for ticks, 30 s for the burst, a screenshot.
const DRIVER_TIMEOUT: Duration = Duration::from_secs(90);

/// Where the screenshot goes: `target/artifacts/`, beside the profile directories.
fn artifacts() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/browser_compare-<hash>
    let target = exe
        .ancestors()
        .nth(3)
        .expect("the test binary is in target/<profile>/deps");
    target.join("artifacts")
}

/// Runs the compare example, serving the installed sockjs-client, and returns it (killed when
/// dropped) with the URL of its page, SockJS panel included.
async fn compare() -> (Child, String) {
    let modules = std::env::var_os("TIDINGS_NODE_MODULES").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/node_modules"),
        PathBuf::from,
    );
    let sockjs = modules.join("sockjs-client/dist/sockjs.min.js");
    assert!(
        sockjs.is_file(),
        "no {} (run `npm ci` in tests/browser)",
        sockjs.display()
    );
    let sockjs = sockjs.to_str().expect("a UTF-8 path");
    let args = ["--addr", "127.0.0.1:0", "--sockjs-client", sockjs];
    let mut compare = Running::start("compare", &args).await;
    let line = compare.line(START_TIMEOUT).await;
    // "compare on http://127.0.0.1:PORT/"
    let base = line
        .strip_prefix("compare on ")
        .unwrap_or_else(|| panic!("unexpected first line from the compare example: {line:?}"));
    let url = format!("{base}?sockjs=/sockjs.min.js");
    (compare.drain(), url)
}

/// Runs the driver on `url`; returns its report, `{panels: {client: {field: text}}, log}`.
async fn drive(url: &str, screenshot: &Path) -> Value {
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/compare_driver.mjs");
    let node = Command::new("node")
        .arg(driver)
        .arg(url)
        .arg(screenshot)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(DRIVER_TIMEOUT, node)
        .await
        .unwrap_or_else(|_| panic!("compare_driver.mjs ran over {DRIVER_TIMEOUT:?} on {url}"))
        .unwrap_or_else(|e| panic!("run node (is Node.js installed?): {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "compare_driver.mjs failed ({}) on {url}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("compare_driver.mjs printed no report ({e}): {stdout:?}"))
}

/// Whether a panel's text is a latency: `0.41 ms`, `12 ms`.
fn is_latency(text: &str) -> bool {
    text.strip_suffix(" ms")
        .is_some_and(|n| n.parse::<f64>().is_ok_and(f64::is_finite))
}

/// What is wrong with one client's panel, if anything.
fn check(client: &str, panel: &Value) -> Option<String> {
    let field = |name: &str| panel[name].as_str().unwrap_or_default();
    let ticks: u64 = field("ticks").parse().unwrap_or(0);
    let problem = if panel.is_null() {
        "no panel".to_owned()
    } else if ticks == 0 {
        "no ticks".to_owned()
    } else if field("burst-count") != BURST {
        format!("burst {:?}, want {BURST:?}", field("burst-count"))
    } else if !["burst-p50", "burst-p99", "tick-p50"]
        .iter()
        .all(|f| is_latency(field(f)))
    {
        format!(
            "latency p50 {:?}, p99 {:?}, tick p50 {:?}",
            field("burst-p50"),
            field("burst-p99"),
            field("tick-p50")
        )
    } else {
        return None;
    };
    Some(format!("{client}: {problem}"))
}

/// The panels as a table, one client a line, for the log of a passing run and for failures.
fn table(panels: &Value) -> String {
    const COLUMNS: [&str; 12] = [
        "state",
        "ticks",
        "tick-p50",
        "tick-p99",
        "burst-count",
        "burst-p50",
        "burst-p99",
        "burst-time",
        "tick-down",
        "burst-down",
        "tick-requests",
        "burst-requests",
    ];
    let mut out = format!("{:<22}", "client");
    for column in COLUMNS {
        out += &format!("{column:>14}");
    }
    for client in CLIENTS {
        out += &format!("\n{client:<22}");
        for column in COLUMNS {
            let text = panels[client][column].as_str().unwrap_or("?");
            out += &format!("{text:>14}");
        }
    }
    out
}

#[tokio::test]
#[ignore = "needs chromium and the node packages of tests/browser; run bash tests/run-all.sh"]
async fn every_transport_counts_the_whole_burst() {
    let (_compare, url) = compare().await;
    let screenshot = artifacts().join("compare.png");
    let report = drive(&url, &screenshot).await;
    let panels = &report["panels"];
    let problems: Vec<String> = CLIENTS
        .iter()
        .filter_map(|client| check(client, &panels[client]))
        .collect();
    let log = report["log"].as_array().map_or_else(String::new, |lines| {
        lines
            .iter()
            .map(|l| format!("  {}", l.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join("\n")
    });
    assert!(
        problems.is_empty(),
        "{}\n{}\nbrowser log:\n{log}\nscreenshot: {}",
        problems.join("\n"),
        table(panels),
        screenshot.display()
    );
    println!("{}\nscreenshot: {}", table(panels), screenshot.display());
}
