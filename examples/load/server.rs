//! The server side of a run: the hidden `--serve` mode the load program re-executes itself in,
//! and the parent's handle on those child processes (start, addresses, memory and CPU readings,
//! and killing them however the parent ends).

use std::io;
use std::net::SocketAddr;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use axum::serve::ListenerExt;
use clap::ValueEnum;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// An environment variable naming a program (with its arguments) to run each server child
/// under, for profiling: `TIDINGS_LOAD_SERVER_WRAPPER="valgrind --tool=massif"`.
const SERVER_WRAPPER_ENV: &str = "TIDINGS_LOAD_SERVER_WRAPPER";

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

/// Which store the Tidings server keeps its topics and sessions in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum StoreKind {
    /// `tidings::MemoryStore`, in the server process.
    Memory,
    /// `tidings_redis::RedisStore`, at `--redis`.
    Redis,
}

/// The HTTP server loop a Tidings child serves with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum HttpServer {
    /// `tidings::serve`: hyper's HTTP/1 with the smallest read buffer and no mid-response reads.
    Tidings,
    /// `axum::serve`, hyper's defaults (the baseline always serves this way).
    Axum,
}

/// How a server child is set up; the parent passes it on the child's command line.
#[derive(Clone, Debug)]
pub(crate) struct ServerOptions {
    /// Messages the broadcast topic retains (and how far a session may lag).
    pub(crate) retention: usize,
    /// The Tidings heartbeat, when not the library's default.
    pub(crate) heartbeat: Option<Duration>,
    /// Heartbeats between renewals of a channel in the store, when not the library's default.
    pub(crate) renew_every: Option<u32>,
    pub(crate) store: StoreKind,
    /// The Redis URL, for `StoreKind::Redis`.
    pub(crate) redis: String,
    /// The Redis key prefix, when not the store's default. Every node of one run shares it, so
    /// they serve one service; each run has its own, so no run sees another's topic or sessions.
    pub(crate) prefix: Option<String>,
    /// The CPU to pin the child to.
    pub(crate) cpu: Option<usize>,
    pub(crate) http: HttpServer,
}

impl ServerOptions {
    /// The arguments that give a `--serve` child these options.
    fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--retention".to_owned(),
            self.retention.to_string(),
            "--store".to_owned(),
            match self.store {
                StoreKind::Memory => "memory",
                StoreKind::Redis => "redis",
            }
            .to_owned(),
            "--redis".to_owned(),
            self.redis.clone(),
            "--http".to_owned(),
            match self.http {
                HttpServer::Tidings => "tidings",
                HttpServer::Axum => "axum",
            }
            .to_owned(),
        ];
        if let Some(prefix) = &self.prefix {
            args.extend(["--redis-prefix".to_owned(), prefix.clone()]);
        }
        if let Some(heartbeat) = self.heartbeat {
            args.extend([
                "--heartbeat-ms".to_owned(),
                heartbeat.as_millis().to_string(),
            ]);
        }
        if let Some(every) = self.renew_every {
            args.extend(["--renew-every".to_owned(), every.to_string()]);
        }
        args
    }
}

/// The `--serve` mode: listens on `addr`, prints the port, serves until the parent goes away.
///
/// Both servers get the same runtime (Tokio's multi-thread scheduler with one worker per CPU
/// the process may use, so one when pinned) and the same listener settings.
pub(crate) fn serve(kind: ServerKind, addr: &str, options: &ServerOptions) -> ExitCode {
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
        let (router, http) = match kind {
            ServerKind::Tidings => (tidings(options).await?, options.http),
            ServerKind::Baseline => (crate::baseline::router(options.retention), HttpServer::Axum),
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
        match http {
            HttpServer::Tidings => tidings::serve(listener, router).await,
            HttpServer::Axum => axum::serve(listener, router).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("load server: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The broadcast service of `examples/broadcast/app.rs` with `options`' heartbeat and store.
async fn tidings(options: &ServerOptions) -> io::Result<axum::Router> {
    let mut builder = crate::app::builder(options.retention);
    if let Some(heartbeat) = options.heartbeat {
        builder = builder.heartbeat(heartbeat);
    }
    if let Some(every) = options.renew_every {
        builder = builder.renew_every(every);
    }
    if options.store == StoreKind::Redis {
        let mut redis = tidings_redis::Options::default();
        if let Some(prefix) = &options.prefix {
            redis = redis.prefix(prefix.clone());
        }
        let store = tidings_redis::RedisStore::connect_urls(&options.redis, redis)
            .await
            .map_err(|e| io::Error::other(format!("Redis at {}: {e}", options.redis)))?;
        builder = builder.store(store);
    }
    Ok(crate::app::router(builder).router)
}

/// The server children of one run: one, or with `--nodes`, several on one Redis and one key
/// prefix, serving one service.
pub(crate) struct Servers {
    nodes: Vec<ServerProcess>,
}

impl Servers {
    /// Starts `count` children of `kind`, one after the other. If one fails, those already
    /// started are dropped, which kills them.
    pub(crate) async fn start(
        kind: ServerKind,
        options: &ServerOptions,
        count: usize,
    ) -> io::Result<Servers> {
        let mut nodes = Vec::with_capacity(count);
        for _ in 0..count.max(1) {
            nodes.push(ServerProcess::start(kind, options).await?);
        }
        Ok(Servers { nodes })
    }

    /// Where each node listens, node 0 first.
    pub(crate) fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(ServerProcess::addr).collect()
    }

    /// The nodes' resident set sizes summed, in KiB; `None` if any cannot be read.
    pub(crate) fn rss_kib(&self) -> Option<u64> {
        self.nodes.iter().map(ServerProcess::rss_kib).sum()
    }

    /// CPU time the nodes have used so far, summed; `None` if any cannot be read.
    pub(crate) fn cpu_time(&self) -> Option<Duration> {
        self.nodes.iter().map(ServerProcess::cpu_time).sum()
    }

    /// Ends every node (see [`ServerProcess::stop`]).
    pub(crate) async fn stop(self) {
        futures::future::join_all(self.nodes.into_iter().map(ServerProcess::stop)).await;
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
    /// Starts `kind` in a child process, on CPU `options.cpu` when given (through `taskset`,
    /// which execs the program, so the child's pid is the server's).
    pub(crate) async fn start(
        kind: ServerKind,
        options: &ServerOptions,
    ) -> io::Result<ServerProcess> {
        let exe = std::env::current_exe()?;
        // A profiler that runs the server as its own process (`valgrind --tool=massif`, `perf
        // stat`), from the environment, so the measured server is the one profiled.
        let mut program: Vec<std::ffi::OsString> = std::env::var(SERVER_WRAPPER_ENV)
            .map(|w| w.split_whitespace().map(Into::into).collect())
            .unwrap_or_default();
        if let Some(cpu) = options.cpu {
            program.splice(
                0..0,
                ["taskset".into(), "-c".into(), cpu.to_string().into()],
            );
        }
        program.push(exe.into_os_string());
        let mut command = Command::new(&program[0]);
        command.args(&program[1..]);
        command
            .args(["--serve", kind.arg(), "--addr", "127.0.0.1:0"])
            .args(options.args())
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
        // Long enough for a server under valgrind.
        let read = tokio::time::timeout(Duration::from_secs(60), stdout.read_line(&mut line)).await;
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
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its resident set size in KiB (`VmRSS`).
    fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid)
    }

    /// CPU time its threads have used so far.
    fn cpu_time(&self) -> Option<Duration> {
        cpu_time(&self.pid.to_string())
    }

    /// Ends it: closes its stdin, so it exits by itself (and a profiler wrapping it writes its
    /// report), and kills it if it has not gone within a few seconds.
    async fn stop(mut self) {
        drop(self._stdin.take());
        let grace = if std::env::var_os(SERVER_WRAPPER_ENV).is_some() {
            Duration::from_secs(120)
        } else {
            Duration::from_secs(3)
        };
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
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
