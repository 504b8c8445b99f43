//! The STOMP chat service, shared by `examples/stomp` and the cluster tests that run it on
//! several nodes sharing one Redis.
//!
//! What the application handles (everything under `/app`):
//!
//! - `SEND /app/echo`: the body comes back on the sender's `/user/queue/echo`, to every session
//!   of the sender's user (Spring's `@SendToUser`).
//! - `SEND /app/rooms/{room}`: published to `/topic/rooms/{room}` with a `sender` header
//!   (Spring's `@MessageMapping` with `@SendTo`).
//! - `SEND /app/private/{user}`: published to every session of `{user}` on
//!   `/user/queue/private`, and a copy to the sender's, with a `sender` and a `to` header.
//!
//! Clients may also SEND to `/topic/…` and `/queue/…` directly, as to Spring's simple broker.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tidings::stomp::{StompConfig, StompLogin, StompMessage};
use tidings::store::StoreError;
use tidings::{Channel, Identity, Retention, Tidings};
use tidings_redis::{Options, RedisStore};

use crate::served::Served;

/// How often the server sends heart-beats, and asks clients to, by default: 10 s both ways, as
/// Spring's simple broker does once it has a task scheduler.
pub(crate) const HEARTBEAT_MS: u64 = 10_000;

/// Where `npm ci` in `tests/browser` installs the page's scripts.
pub(crate) const NODE_MODULES: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/browser/node_modules");

/// The scripts the page may load, by the name it asks for and their place under
/// `node_modules`.
const SCRIPTS: &[(&str, &str)] = &[
    (
        "stomp.umd.min.js",
        "@stomp/stompjs/bundles/stomp.umd.min.js",
    ),
    ("sockjs.min.js", "sockjs-client/dist/sockjs.min.js"),
    ("stomp.min.js", "stompjs/lib/stomp.min.js"),
];

async fn page() -> Html<&'static str> {
    Html(include_str!("index.html"))
}

/// `GET /vendor/{name}`: one of [`SCRIPTS`], read from `node_modules`.
async fn script(State(dir): State<Arc<PathBuf>>, UrlPath(name): UrlPath<String>) -> Response {
    let Some((_, path)) = SCRIPTS.iter().find(|(n, _)| *n == name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let file = dir.join(path);
    match tokio::fs::read(&file).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, "text/javascript")], bytes).into_response(),
        Err(error) => {
            let text = format!(
                "{}: {error}\nInstall the page's scripts with `npm ci` in tests/browser, or \
                 point --node-modules at a node_modules that has them.\n",
                file.display()
            );
            (StatusCode::NOT_FOUND, text).into_response()
        }
    }
}

/// Who a session is: `?user=NAME` on the endpoint URL, else anonymous until CONNECT names a
/// `login`.
fn user_of(query: Option<String>) -> Identity {
    match query.filter(|u| valid_user(u)) {
        Some(user) => Identity::user(user),
        None => Identity::anonymous(),
    }
}

fn valid_user(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && !name.contains(|c: char| c.is_control() || c == '/')
}

/// A demo's login: any `login` is taken as the user's name (a real service checks the
/// passcode here).
async fn login(_channel: Channel, login: StompLogin) -> Result<Option<String>, String> {
    match login.login {
        None => Ok(None),
        Some(user) if valid_user(&user) => Ok(Some(user)),
        Some(_) => Err("a login is 1 to 64 characters, without `/`".to_owned()),
    }
}

/// The sender's name as the others see it.
fn sender(message: &StompMessage) -> String {
    message
        .user
        .clone()
        .unwrap_or_else(|| format!("guest-{}", &message.channel.id().to_string()[..6]))
}

async fn on_send(message: StompMessage) {
    let from = sender(&message);
    let broker = &message.broker;
    let path = message.destination.trim_start_matches("/app/");
    let sent = match path.split_once('/') {
        _ if path == "echo" => message.reply("/queue/echo", message.body.clone()).await,
        Some(("rooms", room)) if !room.is_empty() => {
            let headers = vec![("sender".to_owned(), from)];
            let topic = format!("/topic/rooms/{room}");
            broker
                .send_with_headers(&topic, headers, message.body.clone())
                .await
        }
        Some(("private", to)) if valid_user(to) => {
            let headers = vec![
                ("sender".to_owned(), from),
                ("to".to_owned(), to.to_owned()),
            ];
            let destination = format!("/user/{to}/queue/private");
            let copy = broker
                .send_with_headers(&destination, headers.clone(), message.body.clone())
                .await;
            match message.user.as_deref() {
                Some(user) if user != to => {
                    let own = format!("/user/{user}/queue/private");
                    broker
                        .send_with_headers(&own, headers, message.body.clone())
                        .await
                }
                _ => copy,
            }
        }
        _ => {
            tracing::info!(destination = message.destination, "no handler");
            return;
        }
    };
    if let Err(error) = sent {
        tracing::warn!(%error, destination = message.destination, "could not answer");
    }
}

/// The page at `/`, its scripts under `/vendor/`, and the STOMP endpoint at `/stomp`. With
/// `redis`, sessions and rooms live in that Redis (under `tidings:stomp:`), so any number of
/// nodes can serve them.
///
/// Fails only when Redis cannot be reached.
pub(crate) async fn app(
    heartbeat: Duration,
    redis: Option<&str>,
    node_modules: PathBuf,
) -> Result<Served, StoreError> {
    let mut builder = Tidings::builder()
        .heartbeat(heartbeat)
        .retention(Retention {
            messages: 1000,
            bytes: 8 << 20,
            age: None,
        })
        .auth(|handshake| async move { Ok(user_of(handshake.query("user"))) })
        .stomp(StompConfig {
            client_heartbeat: heartbeat,
            ..StompConfig::default()
        })
        .stomp_login(login)
        .on_stomp_send(on_send);
    if let Some(url) = redis {
        let options = Options::default().prefix("tidings:stomp:");
        builder = builder.store(RedisStore::connect_urls(url, options).await?);
    }
    let tidings = builder.build();
    let router = Router::new()
        .route("/", get(page))
        .route("/vendor/{name}", get(script))
        .with_state(Arc::new(node_modules))
        .nest_service("/stomp", tidings.stomp_router());
    Ok(Served::new(router, vec![tidings]))
}
