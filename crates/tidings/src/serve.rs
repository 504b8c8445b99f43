//! Serving an app over HTTP/1.1 with the per-connection memory of long-lived responses kept
//! small: [`serve`].
//!
//! `axum::serve` runs hyper with its defaults, under which the read buffer of a connection
//! that waits grows to 16 KiB; with an 8 KiB write buffer, an idle SSE, streaming or polling
//! session then cost 26–33 KiB (measured in `docs/benchmarks.md`, "Memory per HTTP session").
//! [`serve`] keeps hyper's read buffer at its smallest, 8 KiB, which brings those sessions to
//! 16–22 KiB; hyper allows no less (its `max_buf_size` refuses less than 8 KiB, and its write
//! buffer starts at 8 KiB).

use std::future::{Future, IntoFuture};
use std::io;
use std::pin::{Pin, pin};

use axum::Router;
use axum::extract::Request;
use axum::serve::Listener;
use futures::future::BoxFuture;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::watch;
use tower::ServiceExt;

/// Serves `app` on `listener` over HTTP/1.1 (WebSocket upgrades included) with hyper configured
/// for many long-lived responses. Await it to run until the listener fails; add
/// [`with_graceful_shutdown`](Serve::with_graceful_shutdown) to stop on a signal.
///
/// What it changes from `axum::serve`, per connection:
///
/// - the read buffer stays at hyper's smallest, 8 KiB (`max_buf_size`). hyper still reads a
///   connection in the middle of a response, so a client that hangs up is noticed at once (a
///   SockJS session whose streaming request was aborted ends with 1002 right away, as the
///   protocol wants), and the read reuses that one buffer, since Tidings keeps nothing of a
///   request while its answer waits;
/// - only HTTP/1.1 and 1.0: no HTTP/2 with prior knowledge (`axum::serve` looks for its preface
///   on every connection). Behind TLS or a proxy that speaks HTTP/2 to clients, the proxy's
///   hop to this server is HTTP/1.1 anyway.
///
/// Measured on an idle session, 10,000 of each transport: see `docs/benchmarks.md`, "Memory per
/// HTTP session". WebSocket sessions are the same either way: an upgraded connection hands its
/// socket over and hyper's buffers go with the HTTP part.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// use std::time::Duration;
/// use axum::Router;
/// use tidings::Tidings;
///
/// let tidings = Tidings::builder().build();
/// let app = Router::new().nest_service("/rt", tidings.router());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// let stop = tidings.graceful_shutdown(tidings::shutdown_signal(), Duration::from_secs(10));
/// tidings::serve(tidings.listener(listener), app)
///     .with_graceful_shutdown(stop)
///     .await
/// # }
/// ```
pub fn serve<L: Listener>(listener: L, app: Router) -> Serve<L> {
    Serve {
        listener,
        app,
        signal: None,
    }
}

/// The future of [`serve`]: await it.
#[must_use = "a server does nothing until awaited"]
pub struct Serve<L> {
    listener: L,
    app: Router,
    signal: Option<BoxFuture<'static, ()>>,
}

impl<L: Listener> Serve<L> {
    /// Stops accepting connections once `signal` completes, lets hyper end each connection
    /// once its response in flight is done, and completes when every HTTP connection has ended
    /// (upgraded ones, WebSockets, are no longer HTTP). Long-lived responses end when their
    /// sessions do, so let Tidings end those first:
    /// [`Tidings::graceful_shutdown`](crate::Tidings::graceful_shutdown) makes the signal.
    pub fn with_graceful_shutdown<F>(mut self, signal: F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.signal = Some(Box::pin(signal));
        self
    }
}

impl<L: Listener> IntoFuture for Serve<L> {
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(run(self))
    }
}

/// How every connection's HTTP/1 is configured.
fn http1() -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).max_buf_size(8192);
    builder
}

async fn run<L: Listener>(serve: Serve<L>) -> io::Result<()> {
    let Serve {
        mut listener,
        app,
        signal,
    } = serve;
    let mut signal = signal.unwrap_or_else(|| Box::pin(std::future::pending()));
    // `stop` tells the connections to finish; every connection holds a receiver of `open` until
    // it has ended, so that its sender's `closed` says when all have.
    let (stop, _) = watch::channel(());
    let (open, _) = watch::channel(());
    let builder = http1();
    loop {
        let (io, _) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut signal => break,
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            app.clone().oneshot(request.map(axum::body::Body::new))
        });
        let connection = builder
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        let (mut stopping, alive) = (stop.subscribe(), open.subscribe());
        tokio::spawn(async move {
            let mut connection = pin!(connection);
            // A client that goes away mid-request is no error of the server's.
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = stopping.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop(alive);
        });
    }
    drop(listener);
    drop(stop);
    open.closed().await;
    Ok(())
}
