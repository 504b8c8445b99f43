//! The STOMP routes: SockJS's, laid out as Spring lays out a STOMP endpoint, with STOMP inside.
//! SockJS sessions at `<prefix>/<server>/<session>/…` (every SockJS transport) carry STOMP frames
//! as SockJS messages; the raw WebSocket at `<prefix>/websocket`, and at `<prefix>` itself (a
//! Spring endpoint without SockJS), carries one frame per text message and answers the
//! subprotocols `v12.stomp`, `v11.stomp` and `v10.stomp`.

use std::sync::Arc;

use axum::Router;
use tidings_store::ChannelState;

use super::sockjs::{self, Dialect};
use super::state::Routes;
use crate::protocol::stomp::{Envelope, Stomp, StompService};

/// STOMP inside SockJS, and on the raw WebSocket.
#[derive(Clone)]
pub(crate) struct StompDialect {
    pub(crate) service: StompService,
}

impl Dialect for StompDialect {
    type Session = Stomp;
    type Raw = Stomp;

    fn session(&self, state: Option<&ChannelState>) -> Stomp {
        Stomp::new(Envelope::SockJs, self.service.clone(), state)
    }

    fn raw(&self) -> Stomp {
        Stomp::new(Envelope::WebSocket, self.service.clone(), None)
    }

    fn subprotocols(&self) -> &'static [&'static str] {
        &["v12.stomp", "v11.stomp", "v10.stomp"]
    }

    fn websocket_at_root(&self) -> bool {
        true
    }
}

/// The routes of a STOMP service.
pub(crate) fn router(routes: Arc<Routes>, service: StompService) -> Router {
    super::finish(sockjs::routes(&routes, StompDialect { service }), routes)
}
