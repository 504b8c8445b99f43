//! What every route of a service shares.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::handshake::{Handshake, Rejection};
use crate::engine::context::Engine;
use crate::engine::identity::Identity;

/// The auth hook: who the client of a request is, or a refusal that answers the request.
pub(crate) type AuthHook =
    Arc<dyn Fn(Handshake) -> BoxFuture<'static, Result<Identity, Rejection>> + Send + Sync>;

/// The state of a service's routes: its engine, and the auth hook that admission runs.
pub(crate) struct Routes {
    pub(crate) engine: Arc<Engine>,
    pub(crate) auth: AuthHook,
}

impl Routes {
    /// Routes with the default auth hook: everyone is anonymous.
    pub(crate) fn anonymous(engine: Arc<Engine>) -> Self {
        Routes {
            engine,
            auth: Arc::new(|_| Box::pin(async { Ok(Identity::anonymous()) })),
        }
    }
}
