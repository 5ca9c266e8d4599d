//! The Pingora app wrapper that puts every accepted client connection behind [`Guarded`].

use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;

use super::guard::{Guarded, Limits, OnRefuse};
use crate::snapshot::Live;

/// Wraps the proxy app: each connection's stream is guarded with the limits of the
/// configuration live at its accept.
pub struct GuardedApp<A> {
    app: Arc<A>,
    live: Live,
    on_refuse: OnRefuse,
}

impl<A> GuardedApp<A> {
    /// Guards `app`'s connections; `on_refuse` counts what the guard refused.
    pub fn new(app: A, live: Live, on_refuse: OnRefuse) -> Self {
        GuardedApp {
            app: Arc::new(app),
            live,
            on_refuse,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for GuardedApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let limits = {
            let snapshot = self.live.load();
            Limits {
                header_timeout: snapshot.config.proxy.header_timeout,
                idle_timeout: snapshot.config.proxy.client_idle_timeout,
            }
        };
        let guarded: Stream = Box::new(Guarded::new(stream, limits, self.on_refuse.clone()));
        self.app.process_new(guarded, shutdown).await
    }

    async fn cleanup(&self) {
        self.app.cleanup().await;
    }
}
