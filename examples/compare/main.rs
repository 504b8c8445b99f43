//! One page that follows the same server stream over every transport at once and shows, per
//! transport, what arrived, how late, and what it cost on the wire: the native protocol's four
//! transports, and SockJS's four when the page is given a sockjs-client.
//!
//! ```text
//! cargo run --example compare -- [--addr 127.0.0.1:3001] [--sockjs-client PATH]
//! ```
//!
//! The server publishes a tick every 50 ms and, on `POST /burst` (the page's button), 1000
//! numbered messages as fast as it can; every message carries the time it was published.
//! `--sockjs-client` serves a copy of sockjs-client (`sockjs.min.js`, from npm) at
//! `/sockjs.min.js`; `/?sockjs=/sockjs.min.js` then adds the SockJS panel, which connects to
//! a second port of the same server (`--sockjs-addr`). The page loads nothing from the
//! internet. What each figure means is at the foot of the page and in
//! `docs/transports.md`.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use clap::Parser;
use futures::FutureExt;
use serde_json::{Value, json};
use tidings::{Hub, Retention, Tidings};
use tokio::net::TcpListener;

mod meter;
#[path = "../served.rs"]
mod served;

use meter::{Line, Meter, MeteredListener};

/// Where the Tidings service is nested. The page's clients connect to metered prefixes that
/// lead here (see `meter.rs`); `/rt/tidings.js` is the JS client.
const SERVICE: &str = "/rt";

/// Messages kept and tolerated behind: a burst must reach a polling client whole, with the
/// ticks around it, even when a transport is between requests.
const RETAINED: usize = 5000;

#[derive(Parser)]
#[command(about = "Compare the transports of Tidings (and SockJS) on one page")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3001")]
    addr: String,
    /// Address of the second listener, which the SockJS panel connects to: another origin, so
    /// that the two panels do not share Chromium's six connections per host. Default: the
    /// IP of `--addr`, any free port.
    #[arg(long)]
    sockjs_addr: Option<String>,
    /// A sockjs-client build (`sockjs.min.js`) to serve at `/sockjs.min.js`.
    #[arg(long)]
    sockjs_client: Option<PathBuf>,
    /// Milliseconds between ticks.
    #[arg(long, default_value_t = 50)]
    tick_ms: u64,
    /// Messages in a burst.
    #[arg(long, default_value_t = 1000)]
    burst: u32,
}

/// What the page's own routes share.
struct Shared {
    hub: Hub,
    bursts: AtomicU64,
    burst: u32,
    tick_ms: u64,
    sockjs_port: u16,
    sockjs_client: Option<Bytes>,
}

/// Milliseconds since the UNIX epoch, to the microsecond: the page subtracts it from its own
/// clock, on the same machine.
fn now_ms() -> f64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    since.as_micros() as f64 / 1000.0
}

/// Publishes `{"kind":"tick","seq":n,"sent":ms}` every `every`, for as long as the server runs.
async fn tick(hub: Hub, every: Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for seq in 0u64.. {
        interval.tick().await;
        let message = json!({ "kind": "tick", "seq": seq, "sent": now_ms() });
        if let Err(error) = hub.broadcast(message.to_string()).await {
            tracing::warn!(%error, "tick not published");
        }
    }
}

/// `POST /burst`: publishes `{"kind":"burst","burst":b,"i":i,"n":n,"sent":ms}` for `i` in
/// `0..n` as fast as the hub takes them, and answers `{"burst":b,"n":n,"publish_ms":…}`.
async fn burst(State(shared): State<Arc<Shared>>) -> Response {
    let id = shared.bursts.fetch_add(1, Ordering::Relaxed) + 1;
    let (hub, n) = (shared.hub.clone(), shared.burst);
    // Spawned so that a page that goes away mid-burst does not cut it short for the others.
    let publish = tokio::spawn(async move {
        let started = Instant::now();
        for i in 0..n {
            let message = json!({ "kind": "burst", "burst": id, "i": i, "n": n, "sent": now_ms() });
            hub.broadcast(message.to_string()).await?;
        }
        Ok::<_, tidings::Error>(started.elapsed())
    });
    let published = match publish.await {
        Ok(published) => published.map_err(|error| error.to_string()),
        Err(panicked) => Err(panicked.to_string()),
    };
    match published {
        Ok(took) => {
            let publish_ms = took.as_secs_f64() * 1000.0;
            Json(json!({ "burst": id, "n": n, "publish_ms": publish_ms })).into_response()
        }
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error).into_response(),
    }
}

/// `GET /config`: what the page needs to know before it connects.
async fn config(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({
        "sockjs_port": shared.sockjs_port,
        "burst": shared.burst,
        "tick_ms": shared.tick_ms,
    }))
}

async fn page() -> Html<&'static str> {
    Html(include_str!("index.html"))
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("compare.js"),
    )
}

async fn sockjs_client(State(shared): State<Arc<Shared>>) -> Response {
    match &shared.sockjs_client {
        Some(script) => (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            script.clone(),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "start compare with --sockjs-client PATH",
        )
            .into_response(),
    }
}

/// The page and its routes, and the Tidings service at [`SERVICE`], all behind the meter:
/// wrapped around a router that only falls back to the real one, it runs before routing, so
/// the paths it rewrites are routed as rewritten.
fn app(tidings: &Tidings, shared: Arc<Shared>, meter: Meter) -> Router {
    let routes = Router::new()
        .route("/", get(page))
        .route("/compare.js", get(script))
        .route("/sockjs.min.js", get(sockjs_client))
        .route("/config", get(config))
        .route("/burst", post(burst))
        .with_state(shared)
        .route("/stats", get(meter::stats).with_state(meter.clone()))
        .nest_service(SERVICE, tidings.router());
    Router::new()
        .fallback_service(routes)
        .layer(middleware::from_fn_with_state(meter, meter::track))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let sockjs_client = match &args.sockjs_client {
        Some(path) => Some(Bytes::from(std::fs::read(path).map_err(|e| {
            std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
        })?)),
        None => None,
    };
    let listener = TcpListener::bind(&args.addr).await?;
    let addr = listener.local_addr()?;
    let sockjs_listener = match &args.sockjs_addr {
        Some(sockjs_addr) => TcpListener::bind(sockjs_addr).await?,
        None => TcpListener::bind(SocketAddr::new(addr.ip(), 0)).await?,
    };
    let sockjs_addr = sockjs_listener.local_addr()?;

    let tidings = Tidings::builder()
        .retention(Retention {
            messages: RETAINED,
            bytes: 16 << 20,
            age: None,
        })
        .max_lag(RETAINED as u64)
        .build();
    let tick_every = Duration::from_millis(args.tick_ms.max(1));
    tokio::spawn(tick(tidings.hub(), tick_every));
    let shared = Arc::new(Shared {
        hub: tidings.hub(),
        bursts: AtomicU64::new(0),
        burst: args.burst,
        tick_ms: args.tick_ms,
        sockjs_port: sockjs_addr.port(),
        sockjs_client,
    });
    let app = app(&tidings, shared, Meter::new(SERVICE));

    println!("compare on http://{addr}/");
    if args.sockjs_client.is_some() {
        println!(
            "with SockJS: http://{addr}/?sockjs=/sockjs.min.js (SockJS at http://{sockjs_addr}{SERVICE})"
        );
    }
    // Both listeners stop together, once the service's connections have ended.
    let stop = served::shut_down(tidings::shutdown_signal(), vec![tidings.clone()]).shared();
    let serve = |listener| {
        axum::serve(
            MeteredListener(listener),
            app.clone().into_make_service_with_connect_info::<Line>(),
        )
        .with_graceful_shutdown(stop.clone())
        .into_future()
    };
    tokio::try_join!(serve(listener), serve(sockjs_listener))?;
    Ok(())
}
