//! A channel's life on the server: opening it, picking it up again, handing its client's
//! messages to the application, and ending it.
//!
//! All delivery state (cursors, subscriptions, the close reason) lives in the store, so another
//! connection, on any node, can pick up where this one stopped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tidings_core::Cursor;
use tidings_core::ids::Id128;
use tidings_store::{Alias, ChannelId, ChannelState, Control, Creation, Record, StoreError, Topic};

use crate::engine::channel::{Channel, Closed};
use crate::engine::context::{Engine, MessageHandler};
use crate::engine::error::Error;
use crate::engine::hub::Event;
use crate::engine::identity::Identity;
use crate::engine::metrics;
use crate::engine::reader::Reader;
use crate::engine::sweeper;

/// A live channel on this node.
#[derive(Clone)]
pub(crate) struct Session {
    pub(crate) engine: Arc<Engine>,
    pub(crate) channel: Channel,
}

/// What [`open`] found.
pub(crate) enum Opened {
    /// A new channel, with a reader positioned at the heads of its topics.
    Created(Session, Reader),
    /// Another request created the channel with this alias first.
    Found(ChannelState),
}

/// Creates a channel for `identity` (found again later by `alias`, when given), runs `on_open`,
/// and returns it with a reader positioned at the heads of its topics (so `on_open`'s own sends
/// are delivered).
///
/// The per-user limit is checked by the store as it creates the channel, in one step, so a burst
/// of simultaneous opens cannot pass it together: [`Error::TooManyChannels`].
pub(crate) async fn open(
    engine: &Arc<Engine>,
    identity: Identity,
    alias: Option<Alias>,
) -> Result<Opened, Error> {
    let store = engine.store();
    let config = &engine.config;
    let id = ChannelId::random();
    let mut topics = BTreeMap::new();
    topics.insert(Topic::broadcast(), Cursor::default());
    if let Some(user) = &identity.user {
        topics.insert(Topic::user(user), Cursor::default());
    }
    let state = ChannelState {
        id,
        user: identity.user.clone(),
        attributes: identity.attributes.clone(),
        topics,
        closed: None,
        alias,
        ended: false,
        labels: BTreeMap::new(),
    };
    let limit = config.max_channels_per_user;
    let state = match store
        .create_channel(state, engine.session_ttl(), limit)
        .await?
    {
        Creation::Created(state) => state,
        Creation::Existing(state) => return Ok(Opened::Found(state)),
        Creation::UserFull => return Err(Error::TooManyChannels { limit }),
    };
    let mut reader = Reader::new(store.clone(), &state, config.max_lag).await?;
    reader.opened(identity.user.as_deref()).await?;
    let channel = Channel::new(
        id,
        identity.user.clone(),
        identity.attributes,
        engine.hub.clone(),
    );
    sweeper::ensure(engine);
    metrics::session_opened();
    engine.hub.emit(Event::Connected {
        channel: id,
        user: identity.user,
    });
    let session = Session {
        engine: engine.clone(),
        channel,
    };
    if let Some(on_open) = &engine.handlers.open {
        on_open(session.channel.clone()).await;
    }
    Ok(Opened::Created(session, reader))
}

/// Picks up a channel another request opened: a reader from its saved cursors.
pub(crate) async fn attach(
    engine: &Arc<Engine>,
    state: &ChannelState,
) -> Result<(Session, Reader), Error> {
    let reader = Reader::new(engine.store().clone(), state, engine.config.max_lag).await?;
    Ok((Session::of(engine, state), reader))
}

/// Picks up a channel for a resumable connection `holder`, reading from the cursors in `state`
/// (the client's position applied to them): gaps are reported, and the connection takes the
/// channel over from any receiver that started before it.
pub(crate) async fn take_over(
    engine: &Arc<Engine>,
    state: &ChannelState,
    holder: Id128,
) -> Result<(Session, Reader), Error> {
    let private = Topic::channel(state.id);
    let takeover = Record::Control(Control::Takeover { holder });
    let since = engine
        .store()
        .append(&private, takeover, engine.config.retention)
        .await?;
    let mut reader = Reader::new(engine.store().clone(), state, engine.config.max_lag).await?;
    reader.resumable(holder, since);
    Ok((Session::of(engine, state), reader))
}

impl Session {
    /// The session of a stored channel, to hand its messages to the application.
    pub(crate) fn of(engine: &Arc<Engine>, state: &ChannelState) -> Self {
        Session {
            engine: engine.clone(),
            channel: Channel::new(
                state.id,
                state.user.clone(),
                state.attributes.clone(),
                engine.hub.clone(),
            ),
        }
    }

    /// Hands messages the client sent together to the application (`on_message` one at a time,
    /// or `on_messages` all at once) and waits for it, so messages of one channel are handled
    /// in order.
    pub(crate) async fn incoming(&self, messages: Vec<String>) {
        match &self.engine.handlers.message {
            Some(MessageHandler::Each(on_message)) => {
                for text in messages {
                    on_message(self.channel.clone(), text).await;
                }
            }
            Some(MessageHandler::Batch(on_messages)) => {
                on_messages(self.channel.clone(), messages).await;
            }
            None => {}
        }
    }

    /// Sends the client a frame of the channel's protocol, through the channel, so that it is
    /// written by whichever connection receives, on any node, in order with the rest.
    pub(crate) async fn reply(&self, text: String) -> Result<(), Error> {
        self.engine.hub.reply(self.channel.id(), text).await?;
        Ok(())
    }

    /// Keeps the channel alive in the store for `ttl` from now.
    pub(crate) async fn touch(&self, ttl: Duration) -> Result<(), Error> {
        self.engine.store().touch(self.channel.id(), ttl).await?;
        Ok(())
    }

    /// A resumable connection left: the session waits `resume` for its client, and how far the
    /// connection took the user's topic (`delivered`) moves that topic's delivered mark, should
    /// the client never come back.
    pub(crate) async fn leave(
        &self,
        delivered: &[(Topic, Cursor)],
        resume: Duration,
    ) -> Result<(), Error> {
        if !delivered.is_empty() {
            let store = self.engine.store();
            store.save_cursors(self.channel.id(), delivered).await?;
        }
        self.touch(resume).await
    }

    /// Saves how far `reader` delivered, so the next request of this channel goes on from there.
    pub(crate) async fn save(&self, reader: &Reader) -> Result<(), Error> {
        let store = self.engine.store();
        store
            .save_cursors(self.channel.id(), &reader.cursors())
            .await?;
        Ok(())
    }

    /// Ends the channel and tells the application how, once however many requests race to end
    /// it. The closed channel lingers in the store for `linger` (so late requests are answered
    /// with its close), or is removed at once when `linger` is zero.
    pub(crate) async fn finish(
        self,
        cursors: &[(Topic, Cursor)],
        closed: Closed,
        linger: Duration,
    ) {
        let store = self.engine.store();
        let id = self.channel.id();
        let ended = async {
            if !cursors.is_empty() {
                store.save_cursors(id, cursors).await?;
            }
            store.mark_closed(id, closed.code, &closed.reason).await?;
            let first = store.end_channel(id, linger).await?;
            if linger.is_zero() {
                store.remove_channel(id).await?;
            }
            Ok::<_, StoreError>(first)
        };
        match ended.await {
            Ok(true) => self.engine.closed(self.channel, closed).await,
            // The sweeper, or another request, ended it first and has told the application.
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(%error, channel = %id, "could not end a channel");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tidings_core::CloseCode;

    use super::*;
    use crate::engine::config::Config;
    use crate::engine::context::{Handlers, testing};
    use crate::engine::reader::Delivery;
    use tidings_store::Retention;

    fn engine(config: Config) -> Arc<Engine> {
        testing::engine(config, Handlers::default())
    }

    async fn opened(engine: &Arc<Engine>) -> (Session, Reader) {
        match open(engine, Identity::user("u"), None).await.expect("open") {
            Opened::Created(session, reader) => (session, reader),
            Opened::Found(_) => panic!("no alias, so nothing to find"),
        }
    }

    fn texts(delivery: Delivery) -> Vec<String> {
        match delivery {
            Delivery::Messages(m) => m.iter().map(|d| d.payload.text().to_owned()).collect(),
            other => panic!("expected messages, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn merges_private_user_and_broadcast_topics() {
        let engine = engine(Config::default());
        let (session, mut reader) = opened(&engine).await;
        let hub = engine.hub.clone();
        session.channel.send("private").await.expect("send");
        hub.send_to_user("u", "user").await.expect("user");
        hub.broadcast("all").await.expect("broadcast");
        let mut got = texts(reader.next().await.expect("next"));
        got.sort();
        assert_eq!(got, ["all", "private", "user"]);
    }

    #[tokio::test]
    async fn close_comes_after_earlier_messages() {
        let engine = engine(Config::default());
        let (session, mut reader) = opened(&engine).await;
        session.channel.send("last words").await.expect("send");
        session.channel.close(4000, "bye").await.expect("close");
        session
            .channel
            .send("never")
            .await
            .expect("send after close is accepted");
        assert_eq!(texts(reader.next().await.expect("next")), ["last words"]);
        match reader.next().await.expect("next") {
            Delivery::Close(c) => assert_eq!((c.code.as_u16(), c.reason.as_str()), (4000, "bye")),
            other => panic!("expected close, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_gap_closes_as_lagged() {
        let engine = engine(Config {
            retention: Retention {
                messages: 5,
                bytes: 1 << 20,
                age: None,
            },
            ..Config::default()
        });
        let (session, mut reader) = opened(&engine).await;
        for i in 0..10 {
            session.channel.send(format!("m{i}")).await.expect("send");
        }
        match reader.next().await.expect("next") {
            Delivery::Close(c) => assert_eq!(c.code, CloseCode::LAGGED),
            other => panic!("expected lagged, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn too_far_behind_closes_as_lagged_even_when_retained() {
        let engine = engine(Config {
            max_lag: 3,
            ..Config::default()
        });
        let (_session, mut reader) = opened(&engine).await;
        let hub = engine.hub.clone();
        for i in 0..300 {
            hub.broadcast(format!("m{i}")).await.expect("broadcast");
        }
        // The first read takes one batch; what is left behind is still over the bound.
        match reader.next().await.expect("next") {
            Delivery::Close(c) => assert_eq!(c.code, CloseCode::LAGGED),
            other => panic!("expected lagged, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn subscriptions_take_effect_in_order() {
        let engine = engine(Config::default());
        let (session, mut reader) = opened(&engine).await;
        let hub = engine.hub.clone();
        let room = Topic::new("room").expect("topic");
        hub.publish(&room, "before").await.expect("publish");
        session.channel.subscribe(&room).await.expect("subscribe");
        hub.publish(&room, "after").await.expect("publish");
        assert_eq!(texts(reader.next().await.expect("next")), ["after"]);
        session
            .channel
            .unsubscribe(&room)
            .await
            .expect("unsubscribe");
        hub.publish(&room, "gone").await.expect("publish");
        session.channel.send("mine").await.expect("send");
        assert_eq!(texts(reader.next().await.expect("next")), ["mine"]);
    }

    #[tokio::test]
    async fn cancelled_next_loses_nothing() {
        let engine = engine(Config::default());
        let (_session, mut reader) = opened(&engine).await;
        let hub = engine.hub.clone();
        let mut seen = Vec::new();
        for i in 0..200 {
            hub.broadcast(i.to_string()).await.expect("broadcast");
            // Poll once and drop: a cancelled call must not skip what it read.
            if let Some(Ok(d)) = futures::FutureExt::now_or_never(reader.next()) {
                seen.extend(texts(d));
            }
        }
        while seen.len() < 200 {
            seen.extend(texts(reader.next().await.expect("next")));
        }
        let expected: Vec<String> = (0..200).map(|i: i32| i.to_string()).collect();
        assert_eq!(seen, expected);
    }

    #[tokio::test(start_paused = true)]
    async fn expired_channels_are_swept_and_reported() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let config = Config {
            heartbeat: Duration::from_secs(1),
            disconnect_delay: Duration::from_secs(2),
            ..Config::default()
        };
        let handlers = Handlers {
            close: Some(testing::report_closes(tx)),
            ..Handlers::default()
        };
        let engine = testing::engine(config, handlers);
        let (session, _reader) = opened(&engine).await;
        let id = session.channel.id();
        // Nobody renews the channel: after 2 heartbeats + the disconnect delay it is swept.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let (closed_id, code) = rx.recv().await.expect("on_close ran");
        assert_eq!((closed_id, code), (id, CloseCode::SESSION_EXPIRED));
        assert_eq!(engine.hub.online().await.expect("online").channels, 0);
    }
}
