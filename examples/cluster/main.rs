//! Several nodes of one example app sharing one Redis, behind a round-robin balancer: the
//! smallest deployment that shows sessions surviving any request landing on any node.
//!
//! ```text
//! cargo run --example cluster -- --app chat --redis redis://127.0.0.1:6379/ [--nodes 3] [--addr 127.0.0.1:3000]
//! ```
//!
//! The program starts `--nodes` node processes of `--app` (`chat`, `echo`, `broadcast` or
//! `stomp`, the same services as those examples), each on [`tidings_redis::RedisStore`], on the
//! ports after the balancer's (3001, 3002, … for the default `--addr`; with port 0, on free ports). It prints
//! one line per node, `node 1 http://127.0.0.1:3001/ pid 1234`, and then, last, the balancer's:
//! `cluster of 3 chat nodes on http://127.0.0.1:3000/ (round robin, Redis redis://…)`.
//!
//! The balancer sends every request to the next node in turn, with no affinity of any kind, and
//! skips nodes it cannot connect to; see `balancer.rs` and `docs/scaling.md`. Each node is an
//! OS process of its own, so one can be killed to watch its clients carry on through the
//! others; nodes end with this program, however it ends.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use tokio::net::TcpListener;

mod balancer;
mod node;
#[path = "../served.rs"]
mod served;

#[path = "../broadcast/app.rs"]
mod broadcast;
#[path = "../chat/app.rs"]
mod chat;
#[path = "../echo/app.rs"]
mod echo;
#[path = "../stomp/app.rs"]
mod stomp;

/// Which example's service the nodes run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum App {
    /// The chat room of `examples/chat`: its page at `/`, the native protocol at `/rt`.
    Chat,
    /// The SockJS reference services of `examples/echo` (`/echo`, `/close`, …).
    Echo,
    /// The fan-out service of `examples/broadcast`, at `/broadcast`.
    Broadcast,
    /// The STOMP chat of `examples/stomp`: its page at `/`, STOMP at `/stomp`.
    Stomp,
}

impl App {
    /// The name on the command line.
    fn name(self) -> &'static str {
        match self {
            App::Chat => "chat",
            App::Echo => "echo",
            App::Broadcast => "broadcast",
            App::Stomp => "stomp",
        }
    }
}

#[derive(Parser)]
#[command(about = "Nodes of one example app on one Redis, behind a round-robin balancer")]
struct Args {
    /// The service every node runs.
    #[arg(long, value_enum, default_value_t = App::Chat)]
    app: App,
    /// How many nodes to start.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..))]
    nodes: u16,
    /// The Redis all nodes share. Several URLs, separated by commas, are the nodes of a Redis
    /// Cluster.
    #[arg(long, value_name = "URL", default_value = "redis://127.0.0.1:6379/")]
    redis: String,
    /// Where the balancer listens; nodes take the ports after it (free ones if this is 0).
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
    /// Run as one node on this address (how the program starts its nodes).
    #[arg(long, hide = true)]
    node_addr: Option<SocketAddr>,
}

#[tokio::main]
async fn main() -> ExitCode {
    // Stdout carries the lines other programs read (addresses), so logs go to stderr.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let result = match args.node_addr {
        Some(addr) => node::serve(args.app, &args.redis, addr).await,
        None => cluster(&args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cluster: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Starts the nodes, then balances requests over them until killed.
async fn cluster(args: &Args) -> Result<(), String> {
    let listener = TcpListener::bind(args.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.addr))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let node_addrs = (1..=args.nodes)
        .map(|i| match args.addr.port() {
            0 => Ok(SocketAddr::new(addr.ip(), 0)),
            port => port
                .checked_add(i)
                .map(|port| SocketAddr::new(addr.ip(), port))
                .ok_or_else(|| format!("no port {port} + {i} for node {i}")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    // One node first, so that what stops every node (no Redis, say) is reported once.
    let start = |addr| node::Node::start(args.app, &args.redis, addr);
    let mut nodes = vec![start(node_addrs[0]).await?];
    nodes.extend(futures::future::try_join_all(node_addrs[1..].iter().copied().map(start)).await?);
    for (i, node) in nodes.iter().enumerate() {
        println!("node {} http://{}/ pid {}", i + 1, node.addr, node.pid);
    }
    println!(
        "cluster of {} {} nodes on http://{addr}/ (round robin, Redis {})",
        nodes.len(),
        args.app.name(),
        redacted(&args.redis)
    );
    let addrs = nodes.iter().map(|node| node.addr).collect();
    for (i, node) in nodes.into_iter().enumerate() {
        node.supervise(i + 1);
    }
    balancer::serve(listener, addrs)
        .await
        .map_err(|e| format!("balancer: {e}"))
}

/// `url` with its password, if any, replaced by `***`, for printing.
fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_owned(),
    }
}
