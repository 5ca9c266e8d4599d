//! The data plane over the live [`crate::data::snapshot::Snapshot`]: our own HTTP/1 path
//! (`h1`, for HTTP/1 clients while every pool speaks HTTP/1 to its backends) and Pingora's
//! [`ProxyHttp`] (HTTP/2 clients, and HTTP/1 clients while a pool speaks h2), both making the
//! decisions of `phases`.
//!
//! Per request: load the snapshot once (one atomic increment), draw a key, route, clone the
//! pre-built peer. Request hop-by-hop headers are stripped (RFC 9110 §7.6.1, WebSocket
//! upgrades kept: Pingora's default upstream request policy, and `h1/head.rs` by its rules);
//! `X-Forwarded-*` added, the response's hop-by-hop headers stripped, upstream failures turned
//! into short 502/504 answers, metrics and the access log recorded once the request is over.
//!
//! Health: routing skips backends that are down, ejected or drained; a failed connect or a
//! 5xx answer counts towards the backend's ejection; a connect failure (nothing sent yet) is
//! retried once on another backend. During graceful shutdown every response carries
//! `Connection: close`.

use std::sync::Arc;

use crate::data::health::Inflight;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::ServerSession;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result};

use crate::data::access_log::AccessLog;
#[cfg(test)]
mod allocations;
mod attempts;
mod ctx;
mod forwarding;
mod h1;
mod log_every;
mod phases;
mod record;
mod redirect;
mod respond;
mod sticky;

use crate::data::snapshot::Live;
pub use ctx::RequestCtx;
pub use h1::H1Proxy;
use phases::{client_ip, is_tls, MAX_ATTEMPTS};
use respond::error_response;

/// Set once a shutdown or upgrade signal arrived (by the process layer): responses then say
/// `Connection: close`.
pub type Stopping = Arc<std::sync::atomic::AtomicBool>;

/// The switchback proxy logic.
pub struct SwitchbackProxy {
    live: Live,
    access_log: Option<AccessLog>,
    inflight: Arc<Inflight>,
    stopping: Stopping,
}

impl SwitchbackProxy {
    /// A proxy routing by whatever snapshot `live` holds at each request's start, counting
    /// its requests in flight in `inflight`; once `stopping` is set, every response says
    /// `Connection: close`.
    pub fn new(
        live: Live,
        access_log: Option<AccessLog>,
        inflight: Arc<Inflight>,
        stopping: Stopping,
    ) -> Self {
        SwitchbackProxy {
            live,
            access_log,
            inflight,
            stopping,
        }
    }
}

#[async_trait]
impl ProxyHttp for SwitchbackProxy {
    type CTX = RequestCtx;

    /// No downstream modules: Pingora's default adds a response-compression module (disabled,
    /// but built and run for every request).
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(&self.inflight)
    }

    /// Routes the request before anything else, so that a request no backend can take is
    /// answered 503 here, where Pingora keeps the client connection open.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if let ServerSession::H1(h1) = session.as_downstream_mut() {
            // Serve pipelined requests in order (RFC 9112 §9.3.2) instead of dropping them.
            h1.set_pipelining_enabled(true);
        }
        let stopping = self.stopping.load(std::sync::atomic::Ordering::Relaxed);
        Ok(phases::front(session.as_downstream_mut(), &self.live, stopping, ctx).await)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let (p, b) = phases::next_backend(&self.live, ctx)?;
        let snapshot = ctx
            .snapshot
            .as_ref()
            .expect("next_backend loads the snapshot");
        Ok(Box::new(snapshot.pools[p].backends[b].peer.clone()))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut RequestCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        phases::connect_failed(ctx, peer, e)
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        // The rule of `h1/exchange.rs`, for HTTP/1 backends only: Pingora's h2 client reads the
        // answer under one timeout while it writes the body, so a backend that stops taking the
        // body cannot be told from a client that stopped sending it.
        if e.esource() == &pingora::ErrorSource::Upstream
            && peer.options.alpn != pingora::protocols::ALPN::H2
            && ctx.request_sent.is_none()
            && ctx.upstream_header.is_none()
            && !session.as_downstream_mut().is_body_done()
            && h1::client_silent(ctx, &e, false)
        {
            // The upstream gave up while the proxy waited on the client for more body: the
            // client's doing — a 408, counted for no pool.
            ctx.client_blocked = true;
            let mut blocked = Error::explain(
                ErrorType::HTTPStatus(408),
                "the client did not send the rest of the request body in time",
            );
            blocked.set_cause(e);
            return blocked.into_down();
        }
        // Pingora's rule: only an idempotent request whose body is still buffered, and only
        // when a reused pooled connection turned out dead. Plus switchback's one-retry cap.
        let mut e = e.more_context(format!("Peer: {peer}"));
        if ctx.attempts >= MAX_ATTEMPTS
            || !session.req_header().method.is_idempotent()
            || session.as_ref().retry_buffer_truncated()
        {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        if e.retry() {
            attempts::plan_retry(ctx, false);
        }
        e
    }

    /// Upgraded (WebSocket) traffic, client to upstream: closed once its backend has been
    /// drained for `[shutdown] drain-timeout`.
    async fn request_body_filter(
        &self,
        session: &mut Session,
        _body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if session.was_upgraded() {
            attempts::close_if_drained_too_long(ctx)?;
            return Ok(());
        }
        ctx.body_at = Some(std::time::Instant::now());
        if end_of_stream && ctx.request_sent.is_none() {
            // The last piece is on its way upstream: the response time starts here.
            ctx.request_sent = Some(std::time::Instant::now());
        }
        Ok(())
    }

    /// Upgraded traffic, upstream to client: as [`Self::request_body_filter`].
    fn response_body_filter(
        &self,
        session: &mut Session,
        _body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        if session.was_upgraded() {
            attempts::close_if_drained_too_long(ctx)?;
        }
        Ok(None)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let (client, tls) = (client_ip(session), is_tls(session));
        let upgrade = upstream_request.headers.contains_key(http::header::UPGRADE);
        if upgrade && !h1::asks_websocket(session.req_header()) {
            // Only a WebSocket asked as RFC 9110 §7.8 says is upgraded (`h1::head`): any other
            // `Upgrade` is dropped, and the request goes on as a plain one.
            if upstream_request
                .remove_header(&http::header::UPGRADE)
                .is_some()
            {
                // Pingora's request policy says `Connection: upgrade` for any `Upgrade`.
                upstream_request.remove_header(&http::header::CONNECTION);
            }
        }
        phases::upstream_request(upstream_request, ctx, client, tls)?;
        let now = std::time::Instant::now();
        ctx.head_sent = Some(now);
        if session.as_downstream_mut().is_body_empty() {
            ctx.request_sent = Some(now);
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        phases::upstream_response(upstream_response, ctx);
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let upgrading = response.status == http::StatusCode::SWITCHING_PROTOCOLS;
        if upgrading && h1::asks_websocket(session.req_header()) {
            // Pingora tunnels from here on; the framing check must stop exactly then.
            if let Some(stream) = session.as_downstream().stream() {
                crate::data::framing::guard::upgraded(stream);
            }
        }
        if phases::for_http10_client(response, session.req_header()) {
            session.set_keepalive(None);
        }
        let stopping = self.stopping.load(std::sync::atomic::Ordering::Relaxed);
        if phases::client_response(response, ctx, stopping)? {
            session.set_keepalive(None);
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        _ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let (code, body) = error_response(e);
        if code > 0 {
            if let Err(write_error) = session
                .respond_error_with_body(code, Bytes::from_static(body.as_bytes()))
                .await
            {
                tracing::debug!(error = %write_error, "could not send the error response");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        phases::finished(session.as_downstream(), self.access_log.as_ref(), ctx, e);
    }
}
