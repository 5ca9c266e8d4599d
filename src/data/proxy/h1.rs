//! switchback's HTTP/1 data path: one request from a client connection to an HTTP/1
//! upstream and back, on Pingora's own v1 sessions and transport connector, with idle
//! upstream connections in a list of our own ([`pool`]), without Pingora's `ProxyHttp`
//! state machine (issue 14: the same job in ~1/3 fewer instructions).
//!
//! ```text
//! read head ─▶ phases::front (health path, redirect, route or 503)
//!          ─▶ attempt: next backend ─▶ pooled/new connection ─▶ exchange (bodies, 1xx, tunnel)
//!               └─ connect failed, or a reused connection found dead: one more attempt
//!          ─▶ error answer (502/503/504/400) ─▶ phases::finished (metrics, access log)
//!          ─▶ client connection handed back for the next request (or closed)
//! ```
//!
//! Every decision is the one the `ProxyHttp` hooks make ([`super::phases`] holds both); the
//! `ProxyHttp` path serves HTTP/2 clients, and HTTP/1 clients while a pool speaks h2 to its
//! backends ([`H1Proxy::takes`]).

mod exchange;
pub(super) use exchange::client_silent;
pub(super) use head::asks_websocket;
mod head;
mod pool;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use pingora::apps::{HttpPersistentSettings, ReusedHttpStream};
use pingora::connectors::{ConnectorOptions, TransportConnector};
use pingora::protocols::http::authority::validate_request_authority;
use pingora::protocols::http::ServerSession;
use pingora::server::configuration::ServerConf;
use pingora::server::ShutdownWatch;
use pingora::{Error, ErrorType, Result};

use super::phases::{self, client_ip, is_tls, MAX_ATTEMPTS};
use super::respond::error_response;
use super::Stopping;
use super::{attempts, RequestCtx};
use crate::config::model::Protocol;
use crate::data::access_log::AccessLog;
use crate::data::health::Inflight;
use crate::data::snapshot::{Live, Snapshot};
use exchange::Failed;

/// The HTTP/1 proxy: the same state as [`super::SwitchbackProxy`], and its own upstream pool.
pub struct H1Proxy {
    live: Live,
    access_log: Option<AccessLog>,
    inflight: Arc<Inflight>,
    stopping: Stopping,
    pool: pool::Pool,
}

impl H1Proxy {
    /// As [`super::SwitchbackProxy::new`]; the upstream pool is sized from `conf` as Pingora
    /// sizes `ProxyHttp`'s, and swept by a task on `control` (the process-long runtime).
    pub fn new(
        conf: &ServerConf,
        live: Live,
        access_log: Option<AccessLog>,
        inflight: Arc<Inflight>,
        stopping: Stopping,
        control: &tokio::runtime::Handle,
    ) -> Self {
        let mut options = ConnectorOptions::from_server_conf(conf);
        let max_idle = options.keepalive_pool_size;
        options.keepalive_pool_size = 0; // the connector's own pool stays unused
        let transport = TransportConnector::new(Some(options));
        H1Proxy {
            live,
            access_log,
            inflight,
            stopping,
            pool: pool::Pool::new(transport, max_idle, control),
        }
    }

    /// Whether this path serves the next request: not while a pool speaks h2 to its backends
    /// (Pingora's `ProxyHttp` does then, with its h2 client).
    pub fn takes(&self) -> bool {
        !speaks_h2(&self.live.load())
    }

    /// Serves one request on `session` (an HTTP/1 session whose first bytes have arrived);
    /// the connection comes back when it can carry another one. The contract of Pingora's
    /// `HttpServerApp::process_new_http`.
    pub async fn serve(
        &self,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        match session.read_request().await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                if e.etype() == &ErrorType::InvalidHTTPHeader {
                    let _ = session.respond_error(400).await;
                }
                return None;
            }
        }
        if *shutdown.borrow() {
            session.set_keepalive(None);
        }
        if let ServerSession::H1(h1) = &mut session {
            // Serve pipelined requests in order (RFC 9112 §9.3.2) instead of dropping them.
            h1.set_pipelining_enabled(true);
        }
        let mut ctx = RequestCtx::new(&self.inflight);
        let stopping = self.stopping.load(Ordering::Relaxed);
        let answered = phases::front(&mut session, &self.live, stopping, &mut ctx).await;
        let error = match answered {
            true => None,
            false => self.proxy(&mut session, &mut ctx).await.err(),
        };
        if let Some(e) = &error {
            let (code, body) = error_response(e);
            if code > 0 {
                let body = bytes::Bytes::from_static(body.as_bytes());
                if let Err(write) = session.respond_error_with_body(code, body).await {
                    tracing::debug!(error = %write, "could not send the error response");
                }
            }
        }
        phases::finished(&session, self.access_log.as_ref(), &ctx, error.as_deref());
        if error.is_some() {
            return None;
        }
        let settings = HttpPersistentSettings::for_session(&session);
        // The request stays in flight (`ctx`) until its connection is reusable: `finish`
        // may still read the rest of the client's body.
        let reusable = session.finish().await.ok().flatten();
        drop(ctx);
        Some(ReusedHttpStream::from_reusable_stream(reusable?, settings))
    }

    /// Proxies the request to a backend: the first attempt and, when nothing reached the
    /// upstream or a reused connection turned out dead, one more.
    async fn proxy(&self, session: &mut ServerSession, ctx: &mut RequestCtx) -> Result<()> {
        let (client, tls) = (client_ip(session), is_tls(session));
        let client_is_http11 = session.req_header().version == http::Version::HTTP_11;
        if ctx.snapshot.as_deref().is_some_and(speaks_h2) {
            // A reload between `takes` and the request's routing added an h2 pool: this path
            // has no h2 client. The request reached no backend; the client may send it again.
            let why = "a pool speaks h2 since this request began; send it again";
            return Err(Error::explain(ErrorType::HTTPStatus(503), why));
        }
        loop {
            let (p, b) = phases::next_backend(&self.live, ctx)?;
            let snapshot = ctx
                .snapshot
                .clone()
                .expect("next_backend loads the snapshot");
            let peer = &snapshot.pools[p].backends[b].peer;
            // Built before a connection is taken: a request refused here returns nothing.
            let req = head::upstream_head(session.req_header(), client_is_http11);
            let mut req = Box::new(req.map_err(|e| e.into_down())?);
            phases::upstream_request(&mut req, ctx, client, tls).map_err(|e| e.into_down())?;
            validate_request_authority(&req).map_err(|e| e.into_down())?;
            head::frame(&mut req, !session.is_body_empty())?;
            let (mut upstream, reused) = match self.pool.connect(peer).await {
                Ok(connected) => connected,
                Err(e) => {
                    let e = phases::connect_failed(ctx, peer, e.into_up());
                    if e.retry() {
                        continue;
                    }
                    return Err(e);
                }
            };
            upstream.read_timeout = peer.options.read_timeout;
            upstream.write_timeout = peer.options.write_timeout;

            match exchange::exchange(session, &mut upstream, req, ctx, &self.stopping, reused).await
            {
                Ok(true) => {
                    let health = &snapshot.pools[p].backends[b].health;
                    self.pool.release(upstream, peer, health).await;
                    return Ok(());
                }
                Ok(false) => return Ok(()),
                Err(Failed {
                    mut error,
                    before_answer,
                }) => {
                    // Pingora's rule: a reused pooled connection that turned out dead (the
                    // errors Pingora marks so: closed, reset), for an idempotent request with
                    // nothing of its body sent and nothing answered yet; one retry at most.
                    error.retry.decide_reuse(reused);
                    let retry = before_answer
                        && error.retry()
                        && ctx.attempts < MAX_ATTEMPTS
                        && session.req_header().method.is_idempotent()
                        && session.is_body_empty();
                    if !retry {
                        return Err(error.more_context(format!("Peer: {peer}")));
                    }
                    attempts::plan_retry(ctx, false);
                }
            }
        }
    }
}

/// Whether a pool of `snapshot` speaks h2 to its backends.
fn speaks_h2(snapshot: &Snapshot) -> bool {
    snapshot
        .config
        .pools
        .values()
        .any(|p| p.protocol == Protocol::H2)
}

impl crate::data::framing::keepalive::OneRequest for H1Proxy {
    fn takes(&self) -> bool {
        H1Proxy::takes(self)
    }

    fn serve<'a>(
        &'a self,
        session: ServerSession,
        shutdown: &'a ShutdownWatch,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<ReusedHttpStream>> + Send + 'a>>
    {
        Box::pin(H1Proxy::serve(self, session, shutdown))
    }
}
