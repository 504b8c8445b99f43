//! How the examples serve and stop: an app's routes with the Tidings services behind them,
//! served until Ctrl-C or SIGTERM; then every service ends its connections as a server going
//! away (close code 1001: native clients resume where they were, on another node if there is
//! one), within [`SHUTDOWN_BOUND`], and the server stops.

use std::time::Duration;

use axum::Router;
use metrics_exporter_prometheus::PrometheusBuilder;
use tidings::Tidings;
use tidings::store::StoreError;
use tokio::net::TcpListener;

/// How long the connections have to end once the signal came.
pub(crate) const SHUTDOWN_BOUND: Duration = Duration::from_secs(10);

/// An example's routes and the Tidings services behind them.
pub(crate) struct Served {
    pub(crate) router: Router,
    pub(crate) services: Vec<Tidings>,
}

#[allow(
    dead_code,
    reason = "the load program serves its own way, and compare its two listeners with `shut_down`"
)]
impl Served {
    pub(crate) fn new(router: Router, services: Vec<Tidings>) -> Served {
        Served { router, services }
    }

    /// The app `built` is, or, when it could not use its Redis, the reason on stderr (as
    /// `program`) and exit status 1.
    pub(crate) fn or_exit(
        built: Result<Served, StoreError>,
        program: &str,
        redis: Option<&str>,
    ) -> Served {
        built.unwrap_or_else(|error| {
            let url = redis.unwrap_or_default();
            eprintln!("{program}: cannot use the Redis at {url}: {error}");
            std::process::exit(1);
        })
    }

    /// Serves on `listener` with [`tidings::serve`] (hyper tuned for long-lived responses) until
    /// Ctrl-C or SIGTERM, then shuts down gracefully. Connections whose client stopped reading
    /// are cut ([`Tidings::listener`], with the first service's `client_timeout`). `GET /metrics` answers the process's metrics in Prometheus' text
    /// format (docs/operations.md).
    pub(crate) async fn serve(self, listener: TcpListener) -> std::io::Result<()> {
        let Served { router, services } = self;
        let router = router.route("/metrics", axum::routing::get(metrics_page()));
        let first = services
            .first()
            .expect("an example serves a Tidings service");
        tidings::serve(first.listener(listener), router)
            .with_graceful_shutdown(shut_down(tidings::shutdown_signal(), services))
            .await
    }
}

/// Installs the process's Prometheus recorder; the handler of `GET /metrics`, which renders
/// what it recorded. A process serves once, so the recorder is installed once.
fn metrics_page() -> impl Fn() -> std::future::Ready<String> + Clone + Send + Sync + 'static {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .expect("one metrics recorder per process");
    move || std::future::ready(handle.render())
}

/// Waits for `signal`, then shuts `services` down together within [`SHUTDOWN_BOUND`].
pub(crate) async fn shut_down(signal: impl Future<Output = ()>, services: Vec<Tidings>) {
    signal.await;
    let shutdowns = services.iter().map(|s| s.shutdown(SHUTDOWN_BOUND));
    let left: usize = futures::future::join_all(shutdowns).await.into_iter().sum();
    if left > 0 {
        eprintln!("{left} connection(s) still open after {SHUTDOWN_BOUND:?}; stopping anyway");
    }
}
