//! A bounded loopback load program: one publisher and many subscribers on the broadcast service,
//! over any of its transports, measured against a plain axum WebSocket broadcast server.
//!
//! ```text
//! cargo run --release --example load -- --subscribers 1000
//! cargo run --release --example load -- --transport all --subscribers 1000 --rate 1000 --json
//! cargo run --release --example load -- --mode idle --transport native-sse --subscribers 10000
//! cargo run --release --example load -- --mode echo --transport xhr-polling
//! cargo run --release --example load -- --store redis --redis redis://127.0.0.1:6379 --nodes 3
//! ```
//!
//! Each target runs in its own child process (this program, re-executed with a hidden
//! `--serve`): the Tidings broadcast service of `examples/broadcast/app.rs`, then the baseline
//! of `baseline.rs` (axum WebSocket + `tokio::sync::broadcast`). With `taskset` available the
//! server runs on CPU 0 and this program on CPU 1. Three modes:
//!
//! - `fanout`: the publisher sends `--messages` at `--rate` (0: as fast as possible); for each
//!   target, delivered messages/s, latency p50/p99/max, lost, duplicated and out-of-order
//!   messages, the server's resident memory per session and its CPU use (summed over nodes);
//! - `idle`: the sessions are held open for `--duration` with only heartbeats flowing; memory
//!   per session, heartbeats received, and how many sessions still deliver at the end;
//! - `echo`: one session sends over its own transport, each message after the last came back;
//!   round-trip latency.
//!
//! Then the ratio of each Tidings target to the baseline. Every run ends when each subscriber
//! has every message or after `--timeout` (plus the hold of an idle run, and at most a second
//! for messages already in flight). `docs/benchmarks.md` describes the method and records
//! results.

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};
use std::time::Duration;

use clap::{Parser, ValueEnum};

#[path = "../broadcast/app.rs"]
mod app;
mod baseline;
mod client;
mod http;
mod publisher;
mod report;
mod run;
#[path = "../served.rs"]
mod served;
mod server;
mod transport;

use run::{Mode, Plan, Target};
use server::{HttpServer, ServerKind, ServerOptions, StoreKind};
use transport::Transport;

/// Set in the environment of the copy of this program that runs pinned under `taskset`.
const PINNED_ENV: &str = "TIDINGS_LOAD_PINNED";
const SERVER_CPU: usize = 0;
const LOAD_CPU: usize = 1;

#[derive(Parser, Debug)]
#[command(
    about = "Measure Tidings' broadcast over each transport against a plain axum \
                   WebSocket broadcast, on 127.0.0.1"
)]
struct Args {
    /// What to measure: fan-out throughput and latency, idle sessions, or echo round trips.
    #[arg(long, value_enum, default_value_t = Mode::Fanout)]
    mode: Mode,
    /// Tidings transports to measure, comma-separated: sockjs-ws, raw-ws, xhr-streaming,
    /// eventsource, xhr-polling, native-ws, native-sse, native-stream, native-poll, stomp-ws;
    /// or `all`, or `none` (only the baseline).
    #[arg(long, default_value = "sockjs-ws")]
    transport: String,
    /// Sessions per run.
    #[arg(long, visible_alias = "sessions", default_value_t = 1000)]
    subscribers: usize,
    /// Messages the publisher (or the echo sender) sends per run.
    #[arg(long, default_value_t = 2000)]
    messages: u64,
    /// Messages per second; 0 sends as fast as the server takes them (fanout).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Bytes per message (at least the sequence number and timestamp it carries).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Seconds an idle run holds its sessions open.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// The Tidings server's heartbeat in seconds (default: the library's, 25 s).
    #[arg(long)]
    heartbeat: Option<f64>,
    /// Heartbeats between renewals of a channel in the store (default: the library's, 1).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    renew_every: Option<u32>,
    /// Skip the baseline run (and so the ratio).
    #[arg(long)]
    no_baseline: bool,
    /// Seconds each run may take, opening sessions included (an idle run: plus its hold).
    /// When it is up, sending stops and messages already sent get at most one more second to
    /// arrive; what has not is lost.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Sessions opening at the same time.
    #[arg(long, default_value_t = 100)]
    connect_concurrency: usize,
    /// Messages the server retains; a subscriber further behind is closed (3001).
    #[arg(long, default_value_t = 10_000)]
    retention: usize,
    /// Where the Tidings server keeps topics and sessions.
    #[arg(long, value_enum, default_value_t = StoreKind::Memory)]
    store: StoreKind,
    /// The Redis server for `--store redis`; several URLs, separated by commas, are the nodes of
    /// a Redis Cluster.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis: String,
    /// How the Tidings server serves HTTP: `tidings::serve` (hyper tuned for long-lived
    /// responses) or `axum::serve` (hyper's defaults). The baseline always uses `axum::serve`.
    #[arg(long, value_enum, default_value_t = HttpServer::Tidings)]
    http: HttpServer,
    /// Tidings server children per run, all on the same Redis (more than one needs `--store
    /// redis`). Subscriber `i` connects to node `i % nodes`; the publisher to node 0. The
    /// baseline always runs one.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    nodes: u16,
    /// Do not pin the server and this program to CPUs with `taskset`.
    #[arg(long)]
    no_pin: bool,
    /// Print one JSON summary line on stdout (the table goes to stderr).
    #[arg(long)]
    json: bool,
    /// Internal: run a server instead of measuring one.
    #[arg(long, value_enum, hide = true)]
    serve: Option<ServerKind>,
    /// Internal: where `--serve` listens.
    #[arg(long, hide = true, default_value = "127.0.0.1:0")]
    addr: String,
    /// Internal: the `--serve` child's heartbeat.
    #[arg(long, hide = true)]
    heartbeat_ms: Option<u64>,
    /// Internal: the `--serve` child's Redis key prefix.
    #[arg(long, hide = true)]
    redis_prefix: Option<String>,
}

/// The transports `--transport` names.
fn transports(list: &str) -> Result<Vec<Transport>, String> {
    let mut chosen = Vec::new();
    for name in list.split(',').map(str::trim) {
        match name {
            "all" => chosen.extend(Transport::ALL),
            "none" => {}
            _ => chosen.push(Transport::from_str(name, true).map_err(|_| {
                let names: Vec<_> = Transport::ALL.iter().map(|t| t.name()).collect();
                format!(
                    "unknown transport {name:?}; one of {}, all, none",
                    names.join(", ")
                )
            })?),
        }
    }
    chosen.sort();
    chosen.dedup();
    Ok(chosen)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(kind) = args.serve {
        let options = ServerOptions {
            retention: args.retention,
            heartbeat: args.heartbeat_ms.map(Duration::from_millis),
            renew_every: args.renew_every,
            store: args.store,
            redis: args.redis.clone(),
            prefix: args.redis_prefix.clone(),
            cpu: None,
            http: args.http,
        };
        return server::serve(kind, &args.addr, &options);
    }
    let cpus = cpu_count();
    let pin = !args.no_pin && cpus > LOAD_CPU && on_path("taskset");
    if pin && std::env::var_os(PINNED_ENV).is_none() {
        // Run this very command again on its own CPU; `exec` only returns on failure.
        let error = match std::env::current_exe() {
            Ok(exe) => Command::new("taskset")
                .arg("-c")
                .arg(LOAD_CPU.to_string())
                .arg(exe)
                .args(std::env::args_os().skip(1))
                .env(PINNED_ENV, "1")
                .exec(),
            Err(error) => error,
        };
        eprintln!("load: could not re-run under taskset ({error}); running unpinned");
        return measure_all(&args, cpus, false);
    }
    measure_all(&args, cpus, pin)
}

fn measure_all(args: &Args, cpus: usize, pinned: bool) -> ExitCode {
    if let Some(limit) = open_files_limit() {
        let needed = args.subscribers as u64 + 64;
        if limit < needed {
            eprintln!(
                "load: {} subscribers need about {needed} file descriptors but the limit is {limit}; \
                 raise it with `ulimit -n {needed}` (or fewer --subscribers)",
                args.subscribers
            );
            return ExitCode::FAILURE;
        }
    }
    if args.nodes > 1 && args.store != StoreKind::Redis {
        eprintln!("load: --nodes {} needs --store redis", args.nodes);
        return ExitCode::FAILURE;
    }
    let chosen = match transports(&args.transport) {
        Ok(chosen) => chosen,
        Err(error) => {
            eprintln!("load: {error}");
            return ExitCode::FAILURE;
        }
    };
    let heartbeat = match args.heartbeat.map(Duration::try_from_secs_f64) {
        None => None,
        Some(Ok(heartbeat)) if heartbeat >= Duration::from_millis(100) => Some(heartbeat),
        Some(_) => {
            eprintln!("load: --heartbeat must be at least 0.1 s");
            return ExitCode::FAILURE;
        }
    };
    let plan = Plan {
        mode: args.mode,
        subscribers: args.subscribers,
        messages: args.messages,
        rate: args.rate,
        size: args.size,
        hold: Duration::from_secs(args.duration),
        timeout: Duration::from_secs(args.timeout),
        connect_concurrency: args.connect_concurrency,
        server: ServerOptions {
            retention: args.retention,
            heartbeat,
            renew_every: args.renew_every,
            store: args.store,
            redis: args.redis.clone(),
            // Each run sets its own.
            prefix: None,
            cpu: pinned.then_some(SERVER_CPU),
            http: args.http,
        },
        nodes: usize::from(args.nodes),
    };
    let mut targets: Vec<Target> = chosen
        .into_iter()
        .map(|transport| Target {
            name: transport.name(),
            server: ServerKind::Tidings,
            transport,
        })
        .collect();
    if !args.no_baseline {
        targets.push(Target {
            name: "baseline",
            server: ServerKind::Baseline,
            transport: Transport::RawWs,
        });
    }

    // One worker per CPU this process may use: one when pinned, so the load side never
    // competes with the server for its core.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("load: cannot start a runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    let (outcomes, failures) = runtime.block_on(async {
        let mut outcomes = Vec::new();
        let mut failures = Vec::new();
        for (i, target) in targets.iter().enumerate() {
            if !args.json {
                eprintln!("load: measuring {} ...", target.name);
            }
            match run::measure(*target, &plan, i).await {
                Ok(outcome) => outcomes.push(outcome),
                Err(run::Failed(error)) => failures.push((target.name, error)),
            }
        }
        (outcomes, failures)
    });
    let context = report::Context {
        plan: &plan,
        pinned,
        cpus,
        loadavg,
    };
    let table = report::table(&context, &outcomes, &failures);
    if args.json {
        eprint!("{table}");
        println!("{}", report::json_line(&context, &outcomes, &failures));
    } else {
        print!("{table}");
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// CPUs of the machine (not only those this process may use).
fn cpu_count() -> usize {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|info| info.lines().filter(|l| l.starts_with("processor")).count())
        .ok()
        .filter(|&n| n > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(1)
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// The soft limit on open files, from `/proc/self/limits`.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}
