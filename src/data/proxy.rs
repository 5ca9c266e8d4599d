//! The data plane: Pingora's [`ProxyHttp`] implemented over the live
//! [`crate::snapshot::Snapshot`].
//!
//! Per request: load the snapshot once (one atomic increment), draw a key, route, clone the
//! pre-built peer. Request hop-by-hop headers are stripped by Pingora's default upstream request
//! policy (RFC 9110 §7.6.1, WebSocket upgrades kept); this module adds `X-Forwarded-*`, strips
//! the response's hop-by-hop headers, turns upstream failures into short 502/504 answers, and
//! records metrics and the access log in the `logging` phase.
//!
//! Health: routing skips backends that are down, ejected or drained; a failed connect or a
//! 5xx answer counts towards the backend's ejection; a connect failure (nothing sent yet) is
//! retried once on another backend. During graceful shutdown every response carries
//! `Connection: close`.

use std::sync::Arc;
use std::time::Instant;

use crate::health::Inflight;
use crate::shutdown::Stopping;
use crate::snapshot::NoRoute;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::ServerSession;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result};

use crate::access_log::AccessLog;
#[cfg(test)]
mod allocations;
mod attempts;
mod ctx;
mod forwarding;
mod record;
mod redirect;
mod respond;
mod sticky;

use crate::snapshot::Live;
pub use ctx::RequestCtx;
use record::{access_line, count};
use respond::{error_response, respond_plain, strip_response_hop_by_hop};

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

/// The client's IP address (none on a Unix socket).
fn client_ip(session: &Session) -> Option<std::net::IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// Whether the client's connection is TLS (a `[tls]` listener).
fn is_tls(session: &Session) -> bool {
    session.digest().is_some_and(|d| d.ssl_digest.is_some())
}

/// Connection attempts per request: the first and one retry.
const MAX_ATTEMPTS: u8 = 2;

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
        let snapshot = ctx.snapshot.take().unwrap_or_else(|| self.live.load_full());
        let stopping = self.stopping.load(std::sync::atomic::Ordering::Relaxed);
        if let Some(path) = &snapshot.config.proxy.health_path {
            if session.req_header().uri.path() == path {
                respond::respond_health(session, stopping).await;
                return Ok(true);
            }
        }
        if snapshot
            .config
            .tls
            .as_ref()
            .is_some_and(|t| t.redirect_http)
            && !is_tls(session)
        {
            redirect::redirect(session, stopping).await;
            return Ok(true);
        }
        let routed = sticky::route_first(session.req_header(), client_ip(session), ctx, &snapshot);
        let snapshot = ctx.snapshot.insert(snapshot);
        match routed {
            Ok(()) => Ok(false),
            Err(why) => {
                let reason = match why {
                    NoRoute::NoShare => "no pool can take traffic".to_string(),
                    NoRoute::PoolDown(p) => {
                        ctx.unavailable = Some(p);
                        let asked = if ctx.override_pool.is_some() {
                            " (override)"
                        } else {
                            ""
                        };
                        format!("pool {} has no backend up{asked}", snapshot.pools[p].name)
                    }
                };
                let body = Bytes::from(format!("service unavailable: {reason}\n"));
                respond_plain(session, 503, body, stopping).await;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let snapshot = ctx.snapshot.get_or_insert_with(|| self.live.load_full());
        let planned = ctx.retry_to.take().map(|(p, b)| snapshot.route_to(p, b));
        let afresh = || match ctx.override_pool {
            Some(p) => snapshot.route_in_pool(p, None),
            None => snapshot.route(ctx.key).ok(),
        };
        let Some(route) = planned.or_else(afresh) else {
            return Err(Error::explain(
                ErrorType::HTTPStatus(503),
                "no backend can take the request",
            ));
        };
        if ctx.inflight_pool.is_none() {
            ctx.inflight_pool = Some(route.pool_index);
            if let Some(m) = &route.pool.metrics {
                m.inflight.inc();
            }
        }
        ctx.attempts += 1;
        ctx.route = Some((route.pool_index, route.backend_index));
        ctx.backend_inflight = Some(route.backend.health.begin());
        ctx.upstream_started = Some(Instant::now());
        Ok(Box::new(route.backend.peer.clone()))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        attempts::record_outcome(ctx, false);
        if e.etype() == &ErrorType::TLSHandshakeFailure {
            record::tls_failure(ctx, peer, &e);
        }
        // Nothing reached the upstream: safe to retry once, on another backend if there is one.
        if ctx.attempts < MAX_ATTEMPTS {
            attempts::plan_retry(ctx, true);
        }
        e.set_retry(ctx.retry_to.is_some());
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
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
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if session.was_upgraded() {
            attempts::close_if_drained_too_long(ctx)?;
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
        let client = client_ip(session);
        let snapshot = ctx.snapshot.get_or_insert_with(|| self.live.load_full());
        let backend = ctx
            .route
            .map(|(p, b)| snapshot.pools[p].backends[b].name.as_str());
        forwarding::prepare(
            upstream_request,
            client,
            snapshot.config.proxy.forwarded_for,
            backend,
            is_tls(session),
        )?;
        let header = snapshot.config.overrides.as_ref().map(|o| &o.header);
        sticky::strip_overrides(upstream_request, header)
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if !upstream_response.status.is_informational() {
            ctx.upstream_header = Some((upstream_response.status.as_u16(), Instant::now()));
            attempts::record_outcome(ctx, !upstream_response.status.is_server_error());
        }
        strip_response_hop_by_hop(upstream_response);
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let upgrading = response.status == http::StatusCode::SWITCHING_PROTOCOLS;
        if upgrading && session.is_upgrade_req() {
            // Pingora tunnels from here on; the framing check must stop exactly then.
            if let Some(stream) = session.as_downstream().stream() {
                crate::framing::guard::upgraded(stream);
            }
        }
        if self.stopping.load(std::sync::atomic::Ordering::Relaxed) && !upgrading {
            // Graceful shutdown or upgrade: tell keep-alive clients to go elsewhere. A 101
            // keeps its `Connection: upgrade`: the tunnel is bounded by the drain instead.
            session.set_keepalive(None);
            response.insert_header(http::header::CONNECTION, "close")?;
        }
        // Not on a 100 Continue or 103 Early Hints: browsers keep cookies of final answers.
        if !response.status.is_informational() || upgrading {
            if let Some(cookie) = ctx.minted.take() {
                response.append_header(http::header::SET_COOKIE, cookie)?;
            }
        }
        if let (Some(snapshot), Some((pool, _))) = (&ctx.snapshot, ctx.route) {
            if let Some((name, value)) = &snapshot.pools[pool].header {
                response.insert_header(name.clone(), value.clone())?;
            }
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
        if let Some(stream) = session.as_downstream().stream() {
            crate::framing::guard::response_done(stream);
        }
        let Some(snapshot) = &ctx.snapshot else {
            return;
        };
        if let Some(m) = ctx
            .inflight_pool
            .and_then(|p| snapshot.pools[p].metrics.as_ref())
        {
            m.inflight.dec();
        }
        let Some((p, b)) = ctx.route else {
            if let Some(p) = ctx.unavailable {
                record::unavailable(self.access_log.as_ref(), session, ctx, snapshot, p);
            }
            return;
        };
        let (pool, backend) = (&snapshot.pools[p], &snapshot.pools[p].backends[b]);
        count(ctx, pool, backend, e);
        if let Some(log) = &self.access_log {
            log.send(access_line(session, ctx, snapshot, p, Some(b), e));
        }
        if e.is_some() && ctx.upstream_header.is_none() {
            tracing::warn!(pool = %pool.name, backend = %backend.name, error = %e.map(ToString::to_string).unwrap_or_default(), "request failed");
        }
    }
}
