//! The client of `tests/browser/native_driver.mjs`, which the browser tests of the native
//! client and of the cluster share.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// The browser harness: `native_driver.mjs`, its pages and `node_modules`.
pub const BROWSER_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/browser");

/// How long one driver command may take beyond its own wait, on a busy machine.
const COMMAND_SLACK: Duration = Duration::from_secs(20);

/// A client of `tests/browser/native_driver.mjs`: Chromium with named pages, driven one command
/// at a time over the driver's stdin, answered on its stdout (lines starting `@@`). The driver's
/// standard error is kept (the last 64 KiB) and shown when a command fails.
pub struct Browser {
    process: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Arc<Mutex<String>>,
}

impl Browser {
    /// Starts the driver, which starts Chromium.
    pub async fn launch() -> Browser {
        let mut process = Command::new("node")
            .arg(Path::new(BROWSER_DIR).join("native_driver.mjs"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("run node (is Node.js installed?): {e}"));
        let stdin = process.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(process.stdout.take().expect("piped stdout")).lines();
        let mut err = process.stderr.take().expect("piped stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                if s.len() < 64 * 1024 {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        Browser {
            process,
            stdin,
            stdout,
            stderr,
        }
    }

    /// What the driver wrote to its standard error so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sends one command and returns its result; panics when the driver fails or runs over.
    pub async fn call(&mut self, command: Value, within: Duration) -> Value {
        let what = command.to_string();
        let exchange = async {
            let mut line = what.clone();
            line.push('\n');
            self.stdin.write_all(line.as_bytes()).await?;
            self.stdin.flush().await?;
            loop {
                match self.stdout.next_line().await? {
                    Some(line) => {
                        if let Some(answer) = line.strip_prefix("@@") {
                            return Ok::<_, std::io::Error>(Some(answer.to_owned()));
                        }
                    }
                    None => return Ok(None),
                }
            }
        };
        let answer = match tokio::time::timeout(within + COMMAND_SLACK, exchange).await {
            Ok(Ok(Some(answer))) => answer,
            Ok(Ok(None)) => panic!("driver exited during {what}; stderr:\n{}", self.stderr()),
            Ok(Err(e)) => panic!("driver i/o during {what}: {e}; stderr:\n{}", self.stderr()),
            Err(_) => panic!("driver ran over on {what}; stderr:\n{}", self.stderr()),
        };
        let answer: Value = serde_json::from_str(&answer)
            .unwrap_or_else(|e| panic!("driver answered {answer:?} ({e})"));
        if answer["ok"] != json!(true) {
            panic!(
                "driver failed {what}: {}\nstderr:\n{}",
                answer["error"].as_str().unwrap_or_default(),
                self.stderr()
            );
        }
        answer["result"].clone()
    }

    /// Opens `url` in the page named `page` (a new one if need be).
    pub async fn open(&mut self, page: &str, url: &str) {
        let command = json!({"cmd": "open", "page": page, "url": url});
        self.call(command, Duration::from_secs(15)).await;
    }

    /// The value of `expr` evaluated in `page`.
    pub async fn eval(&mut self, page: &str, expr: &str) -> Value {
        let command = json!({"cmd": "eval", "page": page, "expr": expr});
        self.call(command, Duration::from_secs(10)).await
    }

    /// Whether `expr` became truthy on `page` within `within`.
    pub async fn wait(&mut self, page: &str, expr: &str, within: Duration) -> bool {
        let timeout = u64::try_from(within.as_millis()).unwrap_or(u64::MAX);
        let command = json!({"cmd": "wait", "page": page, "expr": expr, "timeout": timeout});
        self.call(command, within).await == json!(true)
    }

    /// Adds a line to the page's log, so the test's steps show among the page's events.
    pub async fn note(&mut self, page: &str, text: &str) {
        let command = json!({"cmd": "note", "page": page, "text": text});
        self.call(command, Duration::from_secs(5)).await;
    }

    /// Makes `page`'s requests to the server fail (the network is gone).
    pub async fn block(&mut self, page: &str) {
        let command = json!({"cmd": "block", "page": page});
        self.call(command, Duration::from_secs(5)).await;
    }

    /// Adds a `<script>` of `kind` (`text/javascript` or `module`) with the file at `path` to
    /// `page`.
    pub async fn script(&mut self, page: &str, path: &Path, kind: &str) {
        let command = json!({"cmd": "script", "page": page, "path": path, "type": kind});
        self.call(command, Duration::from_secs(5)).await;
    }

    /// Takes the browser off the network (`offline`), or puts it back: `navigator.onLine` and
    /// the pages' `online` and `offline` events follow. Noted in `page`'s log.
    pub async fn offline(&mut self, page: &str, offline: bool) {
        let command = json!({"cmd": "offline", "page": page, "offline": offline});
        self.call(command, Duration::from_secs(5)).await;
    }

    /// Undoes [`Browser::block`].
    pub async fn unblock(&mut self, page: &str) {
        let command = json!({"cmd": "unblock", "page": page});
        self.call(command, Duration::from_secs(5)).await;
    }

    /// The page's console, errors and native requests, one line each.
    pub async fn log(&mut self, page: &str) -> Vec<String> {
        let command = json!({"cmd": "log", "page": page});
        let log = self.call(command, Duration::from_secs(5)).await;
        log.as_array()
            .map(|lines| {
                lines
                    .iter()
                    .map(|l| l.as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Closes Chromium and waits for the driver to exit.
    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            let _ = self.stdin.write_all(b"{\"cmd\":\"quit\"}\n").await;
            let _ = self.stdin.flush().await;
            self.process.wait().await
        })
        .await;
    }
}
