//! The programs of `examples/`, built by the cargo that built the tests (same target directory,
//! same profile) and run as child processes whose output the tests read.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::Mutex;

/// How long building an example may take (it is usually built already).
const BUILD_TIMEOUT: Duration = Duration::from_secs(600);

/// The examples built so far by this test process. A Tokio mutex, held across the build: the
/// tests of one binary that want the same example wait for one build.
static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::const_new(None);

/// The path of the example `name` of `tidings-examples`, built first if this test process has
/// not built it yet. Panics, with cargo's output, if the build fails.
pub async fn binary(name: &str) -> PathBuf {
    let mut built = BUILT.lock().await;
    let built = built.get_or_insert_with(HashMap::new);
    if let Some(path) = built.get(name) {
        return path.clone();
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test>-<hash>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary is in target/<profile>/deps");
    let target_dir = profile_dir.parent().expect("target dir");
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("profile dir name");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let mut build = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    build
        .args([
            "build",
            "--quiet",
            "-p",
            "tidings-examples",
            "--example",
            name,
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(workspace)
        .kill_on_drop(true);
    if profile != "debug" {
        build.args(["--profile", profile]);
    }
    let output = tokio::time::timeout(BUILD_TIMEOUT, build.output())
        .await
        .unwrap_or_else(|_| panic!("cargo build --example {name} ran over {BUILD_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("run cargo build --example {name}: {e}"));
    assert!(
        output.status.success(),
        "cargo build --example {name} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let path = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    built.insert(name.to_owned(), path.clone());
    path
}

/// An example program running in a child process, killed when dropped.
pub struct Running {
    name: String,
    lines: Lines<BufReader<ChildStdout>>,
    process: Child,
}

impl Running {
    /// Builds the example `name` if needed and starts it with `args`, reading its standard
    /// output (its standard error goes to the test's).
    pub async fn start(name: &str, args: &[&str]) -> Running {
        let binary = binary(name).await;
        let mut process = Command::new(&binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("run {}: {e}", binary.display()));
        let stdout = process.stdout.take().expect("piped stdout");
        Running {
            name: name.to_owned(),
            lines: BufReader::new(stdout).lines(),
            process,
        }
    }

    /// The next line it prints. Panics if none comes within `within`, or if it exits first.
    pub async fn line(&mut self, within: Duration) -> String {
        let name = &self.name;
        tokio::time::timeout(within, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("the {name} example printed nothing in {within:?}"))
            .unwrap_or_else(|e| panic!("read the {name} example's output: {e}"))
            .unwrap_or_else(|| panic!("the {name} example exited"))
    }

    /// Reads and drops whatever it prints from now on, so that it never blocks on a full pipe;
    /// returns the process, killed when dropped.
    pub fn drain(self) -> Child {
        let mut lines = self.lines;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.process
    }
}

/// How long the chat example has to print its address.
const CHAT_START_TIMEOUT: Duration = Duration::from_secs(20);

/// The chat example (`examples/chat`), running on a free loopback port; killed when dropped.
pub struct Chat {
    /// Where it serves.
    pub addr: std::net::SocketAddr,
    _process: Child,
}

impl Chat {
    /// Starts it with a heartbeat of `heartbeat_ms` and waits for its address.
    pub async fn start(heartbeat_ms: u64) -> Chat {
        let heartbeat_ms = heartbeat_ms.to_string();
        let args = ["--addr", "127.0.0.1:0", "--heartbeat-ms", &heartbeat_ms];
        let mut chat = Running::start("chat", &args).await;
        let line = chat.line(CHAT_START_TIMEOUT).await;
        // "chat on http://127.0.0.1:PORT/"
        let addr = line
            .trim()
            .strip_prefix("chat on http://")
            .and_then(|rest| rest.strip_suffix('/'))
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from the chat example: {line:?}"));
        Chat {
            addr,
            _process: chat.drain(),
        }
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The samples of its `GET /metrics` (Prometheus text): `name{labels}` → value.
    pub async fn scrape(&self) -> BTreeMap<String, f64> {
        let mut response = crate::http::Request::get("/metrics").send(self.addr).await;
        assert_eq!(response.status(), 200);
        let page = response.text().await;
        page.lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').expect("`series value`");
                (series.to_owned(), value.parse().expect("a number"))
            })
            .collect()
    }
}
