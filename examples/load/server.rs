//! The server side of a run: the hidden `--serve` mode the load program re-executes itself in,
//! and the parent's handle on that child process (start, address, memory and CPU readings,
//! and killing it however the parent ends).

use std::io;
use std::net::SocketAddr;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use axum::serve::ListenerExt;
use clap::ValueEnum;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// What the child prints, followed by its port, once it listens.
const LISTENING: &str = "listening on port ";

/// Which server a child runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ServerKind {
    /// The broadcast example's Tidings service (`examples/broadcast/app.rs`).
    Tidings,
    /// The plain axum + `tokio::sync::broadcast` server of `baseline.rs`.
    Baseline,
}

impl ServerKind {
    fn arg(self) -> &'static str {
        match self {
            ServerKind::Tidings => "tidings",
            ServerKind::Baseline => "baseline",
        }
    }
}

/// The `--serve` mode: listens on `addr`, prints the port, serves until the parent goes away.
///
/// Both servers get the same runtime (Tokio's multi-thread scheduler with one worker per CPU
/// the process may use, so one when pinned) and the same listener settings.
pub(crate) fn serve(kind: ServerKind, addr: &str, retention: usize) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("load server: cannot start a runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let router = match kind {
            ServerKind::Tidings => crate::app::app(retention),
            ServerKind::Baseline => crate::baseline::router(retention),
        };
        let listener = TcpListener::bind(addr).await?;
        println!("{LISTENING}{}", listener.local_addr()?.port());
        // The parent holds our stdin: end of file means it is gone, however it ended.
        tokio::spawn(async {
            let mut stdin = tokio::io::stdin();
            let mut buf = [0u8; 64];
            while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
            std::process::exit(0);
        });
        // Small frames are the whole workload; without this, Nagle's algorithm and delayed
        // acknowledgements would add tens of milliseconds to some deliveries.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, router).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("load server: {error}");
            ExitCode::FAILURE
        }
    }
}

/// A running server child. Dropping it kills the child, so a run that fails, panics or times
/// out leaves nothing behind; if the parent dies outright, the child sees its stdin close.
pub(crate) struct ServerProcess {
    child: Child,
    /// Held only so the child's stdin stays open while it should live.
    _stdin: Option<ChildStdin>,
    /// Held so the child never writes into a closed pipe.
    _stdout: BufReader<ChildStdout>,
    pid: u32,
    addr: SocketAddr,
}

impl ServerProcess {
    /// Starts `kind` in a child process, on CPU `pin` when given (through `taskset`, which
    /// execs the program, so the child's pid is the server's).
    pub(crate) async fn start(
        kind: ServerKind,
        retention: usize,
        pin: Option<usize>,
    ) -> io::Result<ServerProcess> {
        let exe = std::env::current_exe()?;
        let mut command = match pin {
            Some(cpu) => {
                let mut command = Command::new("taskset");
                command.arg("-c").arg(cpu.to_string()).arg(&exe);
                command
            }
            None => Command::new(&exe),
        };
        command
            .args([
                "--serve",
                kind.arg(),
                "--addr",
                "127.0.0.1:0",
                "--retention",
            ])
            .arg(retention.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = command.spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| io::Error::other("the server exited at once"))?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout pipe"))?;
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stdout.read_line(&mut line)).await;
        let port = match read {
            Ok(Ok(_)) => line
                .trim()
                .strip_prefix(LISTENING)
                .and_then(|p| p.parse::<u16>().ok()),
            Ok(Err(error)) => return Err(error),
            Err(_) => None,
        };
        let port = port.ok_or_else(|| {
            io::Error::other(format!("the {} server did not report its port", kind.arg()))
        })?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        Ok(ServerProcess {
            child,
            _stdin: stdin,
            _stdout: stdout,
            pid,
            addr,
        })
    }

    /// Where it listens.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its resident set size in KiB (`VmRSS`).
    pub(crate) fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid)
    }

    /// CPU time its threads have used so far.
    pub(crate) fn cpu_time(&self) -> Option<Duration> {
        cpu_time(&self.pid.to_string())
    }

    /// Kills it and waits for it to go.
    pub(crate) async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// `VmRSS` of a process, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time used by every thread of a process (`"self"` for this one), from the scheduler's
/// nanosecond counters in `/proc/<pid>/task/*/schedstat`.
pub(crate) fn cpu_time(pid: &str) -> Option<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = task.ok()?.path().join("schedstat");
        // A thread that exited since the directory was listed used no more CPU.
        let Ok(stat) = std::fs::read_to_string(path) else {
            continue;
        };
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total))
}
