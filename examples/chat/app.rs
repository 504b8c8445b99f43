//! The chat service itself, shared by `examples/chat` and `examples/cluster` (which runs the very
//! same service on several nodes sharing one Redis).
//!
//! # Routes
//!
//! - `GET /`: the page.
//! - `/rt`: the Tidings service. `?user=NAME` on its requests (the JS client sends its URL's
//!   query with every request: `connect('/rt?user=alice')`) names the person; the auth hook
//!   makes it the channel's user, or refuses a bad one: `400` with the rule as plain text
//!   ([`NAME_RULE`]). A name is 1 to 32 ASCII letters, digits, spaces and `_-.`, neither
//!   starting nor ending with a space, and not `server`, which the server's own messages are
//!   from. Without it, the client is anonymous: it reads the room and may write to it, not to
//!   one person. Nobody checks who is who: it is a demo.
//! - `POST /publish`: the body (UTF-8 text) to the room, from the server side, as a backend
//!   would: `{"type":"message","from":"server","text":BODY}`. It answers `200 {"offset":N}` once
//!   the message is stored (`N` is its offset in the room's topic), and `503
//!   {"error":"session store: store unavailable: …"}` when the store failed (Redis unreachable,
//!   or silent for longer than its timeout). A `503` does not always mean the message was not
//!   stored: when Redis took it and only its answer was lost, it is delivered like any other.
//!   The cluster's browser tests (`tests/browser_cluster.rs`) publish through it.
//! - `POST /send?user=NAME`: the body to that person alone, as a private message from `server`.
//!   `200 {"offset":N}` (in the person's topic), `400 {"error":…}` for a missing or bad name,
//!   and the store's errors as for `/publish`. A person with no page open gets it on their next
//!   visit, as any private message.
//!
//! # Messages
//!
//! A client sends JSON: `{"text":"…"}` to the room, `{"to":"NAME","text":"…"}` to one person
//! (and to the sender's other tabs); a text is 1 to 2000 characters. The server sends JSON:
//!
//! - `{"type":"message","from":NAME,"text":"…"}`: to the room; `from` is `null` for an
//!   anonymous sender and `"server"` for `/publish`.
//! - `{"type":"private","from":NAME,"to":NAME,"text":"…"}`: to both people's channels.
//! - `{"type":"presence","users":["alice","bob"],"count":2}`: who is online, on every node;
//!   each replaces the one before.
//! - `{"type":"error","message":"…"}`: to the sender's channel alone, for a message it refused.
//!
//! An anonymous client's text that is not a JSON object goes to the room as it is: the chat's
//! first format, plain text, which the transport tests and plain clients of the protocol still
//! send. So the room's topic carries such texts too, and an anonymous channel gets the room's
//! messages and nothing else (no presence): exactly what was published.
//!
//! # Topics
//!
//! Every channel follows the room, starting with its last [`HISTORY`] messages. Channels with a
//! name also follow the presence topic, starting with its last announcement; each node announces
//! there when named channels open or close on it ([`announce_presence`]). Private messages go to
//! each person's own topic, which keeps them for a person with no channel open until their next
//! one opens (up to a day, the library's default `offline_age`).

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tidings::store::StoreError;
use tidings::{
    Channel, Event, Hub, Identity, Offset, Presence, Rejection, Retention, Tidings, Topic,
};
use tidings_redis::{Options, RedisStore};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::served::Served;

/// The heartbeat interval, in milliseconds, unless the command line says otherwise.
pub(crate) const HEARTBEAT_MS: u64 = 25_000;

/// The topic everyone follows.
static ROOM: LazyLock<Topic> =
    LazyLock::new(|| Topic::new("room").expect("`room` is a valid topic name"));

/// Who is online, for the channels with a name.
static PRESENCE: LazyLock<Topic> =
    LazyLock::new(|| Topic::new("presence").expect("`presence` is a valid topic name"));

/// How many of the room's last messages a channel gets when it opens.
const HISTORY: u64 = 50;

/// The longest message text, in characters.
const MAX_TEXT: usize = 2000;

/// The longest name, in characters (all ASCII, so bytes too).
const MAX_NAME: usize = 32;

/// What a name may be, as every refusal of one says.
const NAME_RULE: &str = "a name is 1 to 32 characters: ASCII letters, digits, spaces, `_`, `-` \
    and `.`, neither starting nor ending with a space, and not `server`";

/// The answer to a message from someone that is not a JSON object.
const FORMAT: &str =
    r#"send JSON: {"text":"…"} to the room, {"to":"NAME","text":"…"} to one person"#;

/// Who the server's own messages are from; no one may take the name.
const SERVER: &str = "server";

/// How long a burst of opens and closes (a page reloading, a node's clients moving over) is
/// gathered before who is online is announced, once.
const PRESENCE_GATHER: Duration = Duration::from_millis(200);

/// How long after announcing who is online a node looks again; see [`announce_presence`].
const PRESENCE_RECHECK: Duration = Duration::from_secs(1);

/// The chat page: plain HTML and a module script, no framework.
async fn page() -> Html<&'static str> {
    Html(include_str!("index.html"))
}

/// Whether `name` may be someone's name: see [`NAME_RULE`].
fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b" _-.".contains(&b))
        && !name.starts_with(' ')
        && !name.ends_with(' ')
        && !name.eq_ignore_ascii_case(SERVER)
}

/// Whether `text` is a message's length: 1 to [`MAX_TEXT`] characters.
fn fits(text: &str) -> bool {
    (1..=MAX_TEXT).contains(&text.chars().count())
}

/// The auth hook's answer for a request with `?user=name`, or anonymous without one.
fn identify(name: Option<String>) -> Result<Identity, Rejection> {
    match name {
        None => Ok(Identity::anonymous()),
        Some(name) if valid_name(&name) => Ok(Identity::user(name)),
        Some(_) => Err(Rejection::new(StatusCode::BAD_REQUEST, NAME_RULE)),
    }
}

/// What a client's message asks for, once checked.
#[derive(Debug, PartialEq, Eq)]
enum Said {
    /// This, published to the room.
    Room(String),
    /// `message`, sent to `to` and to `from`.
    Private {
        from: String,
        to: String,
        message: String,
    },
}

/// Reads a message `from` sent (`None`: an anonymous channel). `Err` tells the sender what is
/// wrong with it.
fn read(from: Option<&str>, text: String) -> Result<Said, String> {
    let text_rule = || format!("a message's `text` is 1 to {MAX_TEXT} characters");
    let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(&text) else {
        // Only the page sends as someone, and it speaks JSON.
        return match from {
            None if fits(&text) => Ok(Said::Room(text)),
            None => Err(text_rule()),
            Some(_) => Err(FORMAT.to_owned()),
        };
    };
    let text = match fields.get("text") {
        Some(Value::String(text)) if fits(text) => text,
        _ => return Err(text_rule()),
    };
    match (fields.get("to"), from) {
        (None | Some(Value::Null), _) => {
            let message = json!({"type": "message", "from": from, "text": text});
            Ok(Said::Room(message.to_string()))
        }
        (Some(Value::String(_)), None) => {
            Err("join with a name to send private messages".to_owned())
        }
        (Some(Value::String(to)), Some(from)) if valid_name(to) => {
            let message = json!({"type": "private", "from": from, "to": to, "text": text});
            Ok(Said::Private {
                from: from.to_owned(),
                to: to.clone(),
                message: message.to_string(),
            })
        }
        (Some(_), _) => Err(format!("`to` is not a name: {NAME_RULE}")),
    }
}

/// A new channel follows the room, from its last [`HISTORY`] messages; one with a name also
/// follows the presence topic, from its last announcement, so that it shows who is online at
/// once, and each announcement after it in order.
async fn on_open(channel: Channel) {
    let (hub, id) = (channel.hub(), channel.id());
    let mut joined = hub.subscribe_with_history(id, &ROOM, HISTORY).await;
    // Anonymous channels are left out: a plain client of the protocol gets what was published
    // to the room and nothing else.
    if joined.is_ok() && channel.user().is_some() {
        joined = hub.subscribe_with_history(id, &PRESENCE, 1).await;
    }
    if let Err(error) = joined {
        tracing::warn!(%error, channel = %id, "could not join the room");
    }
}

/// Checks a client's message and delivers it, or tells the sender alone what is wrong with it.
async fn on_message(channel: Channel, text: String) {
    let hub = channel.hub();
    let done = match read(channel.user(), text) {
        Ok(Said::Room(message)) => hub.publish(&ROOM, message).await,
        Ok(Said::Private { from, to, message }) => {
            let sent = hub.send_to_user(&to, message.clone()).await;
            // The sender's copy, for their other tabs; one is enough when writing to oneself.
            match sent {
                Ok(_) if from != to => hub.send_to_user(&from, message).await,
                sent => sent,
            }
        }
        Err(why) => {
            let error = json!({"type": "error", "message": why});
            channel.send(error.to_string()).await
        }
    };
    if let Err(error) = done {
        tracing::warn!(%error, channel = %channel.id(), "could not deliver a message");
    }
}

/// The presence announcement for `online`: the names, sorted, and how many.
fn presence_message(online: &Presence) -> String {
    let users: Vec<&str> = online.users.keys().map(String::as_str).collect();
    json!({"type": "presence", "count": users.len(), "users": users}).to_string()
}

/// Waits until a channel with a name opens or closes on this node, or until events were lost to
/// lag (some may have been such). `false` once no more can come.
async fn someone_came_or_went(events: &mut broadcast::Receiver<Event>) -> bool {
    loop {
        match events.recv().await {
            Ok(
                Event::Connected { user: Some(_), .. } | Event::Disconnected { user: Some(_), .. },
            )
            | Err(RecvError::Lagged(_)) => return true,
            Ok(_) => {}
            Err(RecvError::Closed) => return false,
        }
    }
}

/// Announces who is online to the presence topic whenever a channel with a name opens or closes
/// on this node, for as long as the hub lives.
///
/// Every node does so for its own channels, each time with the store's whole answer, so the
/// last announcement is right for the cluster; but two nodes announcing at once can land in the
/// other order, the older answer last. So a node that announced looks again
/// [`PRESENCE_RECHECK`] later, and announces once more if the answer changed since. A change
/// seen here is announced even when the answer is what this node said last: another node may
/// have announced something else since.
async fn announce_presence(hub: Hub, mut events: broadcast::Receiver<Event>) {
    // What this node announced last, and whether it is to look again.
    let mut announced: Option<String> = None;
    let mut recheck = false;
    loop {
        let woken = if recheck {
            tokio::time::timeout(PRESENCE_RECHECK, someone_came_or_went(&mut events)).await
        } else {
            Ok(someone_came_or_went(&mut events).await)
        };
        let rechecking = match woken {
            Ok(true) => false,
            Ok(false) => return,
            Err(_elapsed) => true,
        };
        if !rechecking {
            tokio::time::sleep(PRESENCE_GATHER).await;
            // The answer read next covers them all.
            while let Ok(_) | Err(TryRecvError::Lagged(_)) = events.try_recv() {}
        }
        // Until it is done, including when the store fails.
        recheck = true;
        let now = match hub.online().await {
            Ok(online) => presence_message(&online),
            Err(error) => {
                tracing::warn!(%error, "could not read who is online; trying again");
                continue;
            }
        };
        if rechecking && announced.as_ref() == Some(&now) {
            recheck = false;
            continue;
        }
        match hub.publish(&PRESENCE, now.clone()).await {
            Ok(_) => announced = Some(now),
            Err(error) => tracing::warn!(%error, "could not announce who is online; trying again"),
        }
    }
}

/// How `/publish` and `/send` answer: `{"offset":N}`, or the error with its status.
fn answer(sent: Result<Offset, tidings::Error>) -> Response {
    match sent {
        Ok(offset) => axum::Json(json!({ "offset": offset.0 })).into_response(),
        Err(error) => {
            let body = axum::Json(json!({ "error": error.to_string() }));
            (error.status(), body).into_response()
        }
    }
}

/// `POST /publish`: the body to the room, from the server.
async fn publish(State(hub): State<Hub>, text: String) -> Response {
    let message = json!({"type": "message", "from": SERVER, "text": text});
    answer(hub.publish(&ROOM, message.to_string()).await)
}

/// `POST /send?user=NAME`: the body to one person, as a private message from the server.
async fn send(
    State(hub): State<Hub>,
    Query(query): Query<HashMap<String, String>>,
    text: String,
) -> Response {
    let Some(to) = query.get("user").filter(|name| valid_name(name)) else {
        let error = json!({ "error": format!("`user` must name the recipient: {NAME_RULE}") });
        return (StatusCode::BAD_REQUEST, axum::Json(error)).into_response();
    };
    let message = json!({"type": "private", "from": SERVER, "to": to, "text": text});
    answer(hub.send_to_user(to, message.to_string()).await)
}

/// The routes above, with the room's history, presence and private messages. With `redis`,
/// sessions and topics live in that Redis (under `tidings:chat:`, apart from the other
/// examples), so any number of nodes can serve them; without it, in this process.
///
/// Starts the task that announces who is online, so it must be called within a Tokio runtime.
/// Fails only when Redis cannot be reached.
pub(crate) async fn app(heartbeat: Duration, redis: Option<&str>) -> Result<Served, StoreError> {
    let mut builder = Tidings::builder()
        .heartbeat(heartbeat)
        .retention(Retention {
            messages: 1000,
            bytes: 8 << 20,
            age: None,
        })
        .max_lag(1000)
        .auth(|handshake| async move { identify(handshake.query("user")) })
        .on_open(on_open)
        .on_message(on_message);
    if let Some(url) = redis {
        let options = Options::default().prefix("tidings:chat:");
        builder = builder.store(RedisStore::connect_urls(url, options).await?);
    }
    let tidings = builder.build();
    let hub = tidings.hub();
    // Subscribed before any channel can open, so that none is missed.
    tokio::spawn(announce_presence(hub.clone(), hub.events()));
    let router = Router::new()
        .route("/", get(page))
        .route("/publish", post(publish))
        .route("/send", post(send))
        .with_state(hub)
        .nest_service("/rt", tidings.router());
    Ok(Served::new(router, vec![tidings]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let (longest, long) = ("n".repeat(32), "n".repeat(33));
        for good in ["alice", "Bob", "a", "Mary Ann", "x_y-z.0", longest.as_str()] {
            assert!(valid_name(good), "{good:?}");
        }
        for bad in [
            "",
            " alice",
            "alice ",
            "al/ice",
            "Zoë",
            "a\tb",
            "server",
            "Server",
            long.as_str(),
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_hook_takes_the_name_or_refuses_it() {
        assert_eq!(identify(None), Ok(Identity::anonymous()));
        assert_eq!(
            identify(Some("Mary Ann".to_owned())),
            Ok(Identity::user("Mary Ann"))
        );
        let refused = Rejection::new(StatusCode::BAD_REQUEST, NAME_RULE);
        for bad in ["", "?", "server", "Zoë"] {
            assert_eq!(identify(Some(bad.to_owned())), Err(refused.clone()));
        }
    }

    fn room(message: Value) -> Result<Said, String> {
        Ok(Said::Room(message.to_string()))
    }

    #[test]
    fn messages_to_the_room() {
        let said = read(Some("alice"), r#"{"text":"hi <b>"}"#.to_owned());
        assert_eq!(
            said,
            room(json!({"type": "message", "from": "alice", "text": "hi <b>"}))
        );
        let said = read(None, r#"{"text":"hi","to":null}"#.to_owned());
        assert_eq!(
            said,
            room(json!({"type": "message", "from": null, "text": "hi"}))
        );
        // Plain text, from anonymous clients only.
        assert_eq!(read(None, "m0".to_owned()), Ok(Said::Room("m0".to_owned())));
        assert_eq!(
            read(None, r#"["m0"]"#.to_owned()),
            Ok(Said::Room(r#"["m0"]"#.to_owned()))
        );
        assert!(read(Some("alice"), "m0".to_owned()).is_err());
    }

    #[test]
    fn private_messages() {
        let said = read(Some("alice"), r#"{"to":"bob","text":"psst"}"#.to_owned());
        let message = json!({"type": "private", "from": "alice", "to": "bob", "text": "psst"});
        assert_eq!(
            said,
            Ok(Said::Private {
                from: "alice".to_owned(),
                to: "bob".to_owned(),
                message: message.to_string(),
            })
        );
        assert!(read(None, r#"{"to":"bob","text":"psst"}"#.to_owned()).is_err());
        for bad_to in [r#""b/ob""#, r#""server""#, "7", r#"["bob"]"#] {
            let text = format!(r#"{{"to":{bad_to},"text":"psst"}}"#);
            assert!(read(Some("alice"), text).is_err(), "{bad_to}");
        }
    }

    #[test]
    fn bad_texts_are_refused() {
        let long = format!(r#"{{"text":"{}"}}"#, "é".repeat(MAX_TEXT + 1));
        let longest = format!(r#"{{"text":"{}"}}"#, "é".repeat(MAX_TEXT));
        assert!(read(Some("alice"), longest).is_ok());
        for bad in [
            r#"{"text":""}"#,
            r#"{"text":5}"#,
            r#"{"to":"bob"}"#,
            "{}",
            long.as_str(),
        ] {
            assert!(read(Some("alice"), bad.to_owned()).is_err(), "{bad}");
            assert!(read(None, bad.to_owned()).is_err(), "{bad}");
        }
        assert!(read(None, String::new()).is_err());
        assert!(read(None, "x".repeat(MAX_TEXT + 1)).is_err());
    }

    #[test]
    fn presence_lists_people_sorted() {
        let online = Presence {
            channels: 4,
            users: [("bob".to_owned(), 2), ("alice".to_owned(), 1)].into(),
        };
        let message: Value = serde_json::from_str(&presence_message(&online)).expect("JSON");
        assert_eq!(
            message,
            json!({"type": "presence", "users": ["alice", "bob"], "count": 2})
        );
    }
}
