//! What switchback does at each step of a request, as plain functions over Pingora's session
//! and header types: shared by the `ProxyHttp` hooks (HTTP/2 clients, h2 pools) and our own
//! HTTP/1 loop ([`super::h1`]), so both paths behave alike by construction.

use std::net::IpAddr;
use std::time::Instant;

use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::ServerSession;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result};

use super::log_every::Every;
use super::record::{access_line, count};
use super::respond::{respond_plain, strip_response_hop_by_hop};
use super::{attempts, forwarding, record, redirect, respond, sticky, RequestCtx};
use crate::data::access_log::AccessLog;
use crate::data::snapshot::{Live, NoRoute, Snapshot};

/// Connection attempts per request: the first and one retry.
pub(super) const MAX_ATTEMPTS: u8 = 2;

/// The client's IP address (none on a Unix socket).
pub(super) fn client_ip(session: &ServerSession) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// Whether the client's connection is TLS (a `[tls]` listener).
pub(super) fn is_tls(session: &ServerSession) -> bool {
    session.digest().is_some_and(|d| d.ssl_digest.is_some())
}

/// Everything before a backend is chosen: the health path, the https redirect and the first
/// routing decision. `true` when the proxy answered the request itself (a 503 when no backend
/// can take it), which keeps the client connection open where it can.
pub(super) async fn front(
    session: &mut ServerSession,
    live: &Live,
    stopping: bool,
    ctx: &mut RequestCtx,
) -> bool {
    let snapshot = ctx.snapshot.take().unwrap_or_else(|| live.load_full());
    client_settings(session, &snapshot);
    if let Some(path) = &snapshot.config.proxy.health_path {
        if session.req_header().uri.path() == path {
            respond::respond_health(session, stopping).await;
            return true;
        }
    }
    let redirect_http = snapshot
        .config
        .tls
        .as_ref()
        .is_some_and(|t| t.redirect_http);
    if redirect_http && !is_tls(session) {
        redirect::redirect(session, stopping).await;
        return true;
    }
    let routed = sticky::route_first(session.req_header(), client_ip(session), ctx, &snapshot);
    let snapshot = ctx.snapshot.insert(snapshot);
    let Err(why) = routed else {
        return false;
    };
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
    true
}

/// The backend for the next connection attempt, `(pool, backend)`: the one planned (the first
/// route, or the retry's), else routed afresh. Counts the attempt and the request in flight.
pub(super) fn next_backend(live: &Live, ctx: &mut RequestCtx) -> Result<(usize, usize)> {
    let snapshot = ctx.snapshot.get_or_insert_with(|| live.load_full());
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
    (ctx.head_sent, ctx.request_sent) = (None, None);
    Ok((route.pool_index, route.backend_index))
}

/// A connection attempt failed before anything was sent: counts it against the backend and
/// plans the one retry, on another backend if there is one (`e.retry()` then says so).
pub(super) fn connect_failed(
    ctx: &mut RequestCtx,
    peer: &HttpPeer,
    mut e: Box<Error>,
) -> Box<Error> {
    attempts::record_outcome(ctx, false);
    if e.etype() == &ErrorType::TLSHandshakeFailure {
        record::tls_failure(ctx, peer, &e);
    }
    if ctx.attempts < MAX_ATTEMPTS {
        attempts::plan_retry(ctx, true);
    }
    e.set_retry(ctx.retry_to.is_some());
    e
}

/// The upstream request's head: `X-Forwarded-*`, the target's form, and no override header,
/// token or cookie.
pub(super) fn upstream_request(
    req: &mut RequestHeader,
    ctx: &RequestCtx,
    client: Option<IpAddr>,
    tls: bool,
) -> Result<()> {
    let Some(snapshot) = &ctx.snapshot else {
        return Ok(());
    };
    let backend = ctx
        .route
        .map(|(p, b)| snapshot.pools[p].backends[b].name.as_str());
    let mode = snapshot.config.proxy.forwarded_for;
    forwarding::prepare(req, client, mode, backend, tls)?;
    let header = snapshot.config.overrides.as_ref().map(|o| &o.header);
    sticky::strip_overrides(req, header)
}

/// The upstream's answer arrived: a final one counts for passive ejection; its hop-by-hop
/// headers go.
pub(super) fn upstream_response(resp: &mut ResponseHeader, ctx: &mut RequestCtx) {
    if !resp.status.is_informational() {
        ctx.upstream_header = Some((resp.status.as_u16(), Instant::now()));
        attempts::record_outcome(ctx, !resp.status.is_server_error());
    }
    strip_response_hop_by_hop(resp);
}

/// The client's response head: `Connection: close` while stopping (`true` returned: the
/// client connection must not be kept), a minted user's cookie on the final answer, and the
/// pool header.
pub(super) fn client_response(
    resp: &mut ResponseHeader,
    ctx: &mut RequestCtx,
    stopping: bool,
) -> Result<bool> {
    let upgrading = resp.status == http::StatusCode::SWITCHING_PROTOCOLS;
    let close = stopping && !upgrading;
    if close {
        // Graceful shutdown or upgrade: tell keep-alive clients to go elsewhere. A 101 keeps
        // its `Connection: upgrade`: the tunnel is bounded by the drain instead.
        resp.insert_header(http::header::CONNECTION, "close")?;
    }
    // Not on a 100 Continue or 103 Early Hints: browsers keep cookies of final answers.
    if !resp.status.is_informational() || upgrading {
        if let Some(cookie) = ctx.minted.take() {
            resp.append_header(http::header::SET_COOKIE, cookie)?;
        }
    }
    if let (Some(snapshot), Some((pool, _))) = (&ctx.snapshot, ctx.route) {
        if let Some((name, value)) = &snapshot.pools[pool].header {
            resp.insert_header(name.clone(), value.clone())?;
        }
    }
    Ok(close)
}

/// How the client's side of the request is served, on both paths:
/// - an HTTP/1 client that half-closes after its complete request is still answered (RFC 9112
///   §9.6; HAProxy's default): a real disconnect shows when the answer cannot be written;
/// - an HTTP/2 stream whose data the client does not take for `client-write-timeout` is reset
///   (HTTP/1 connections and the h2 connection itself are bounded by the framing guard).
fn client_settings(session: &mut ServerSession, snapshot: &Snapshot) {
    match session {
        ServerSession::H1(h1) => h1.set_abort_on_close(false),
        ServerSession::H2(_) => {
            session.set_write_timeout(Some(snapshot.config.proxy.client_write_timeout));
        }
        _ => {}
    }
}

/// Whether `resp` to `req` has no body whatever its headers say (RFC 9112 §6.3): an answer
/// to `HEAD`, a 1xx, 204 or 304.
pub(super) fn bodiless(resp: &ResponseHeader, req: &RequestHeader) -> bool {
    req.method == http::Method::HEAD
        || resp.status.is_informational()
        || matches!(resp.status.as_u16(), 204 | 304)
}

/// Whether `resp` names its body's framing: a length or a transfer coding.
pub(super) fn framed(resp: &ResponseHeader) -> bool {
    resp.headers.contains_key(http::header::TRANSFER_ENCODING)
        || resp.headers.contains_key(http::header::CONTENT_LENGTH)
}

/// An answer to a client older than HTTP/1.1 (RFC 9112 §6.1: no chunked coding): a body
/// without a length goes out close-delimited, chunked coding removed (the body is decoded on
/// its way). `true` when the connection must close after it; `false`, unchanged, for HTTP/1.1.
pub(super) fn for_http10_client(resp: &mut ResponseHeader, req: &RequestHeader) -> bool {
    if req.version >= http::Version::HTTP_11 {
        return false;
    }
    if resp.headers.contains_key(http::header::TRANSFER_ENCODING) {
        resp.remove_header(&http::header::TRANSFER_ENCODING);
    }
    !bodiless(resp, req) && !resp.headers.contains_key(http::header::CONTENT_LENGTH)
}

/// The request is over (answered, failed or abandoned): the framing guard learns it was
/// answered, the gauges and counters and the access log get it.
pub(super) fn finished(
    session: &ServerSession,
    access_log: Option<&AccessLog>,
    ctx: &RequestCtx,
    e: Option<&Error>,
) {
    if let Some(stream) = session.stream() {
        crate::data::framing::guard::response_done(stream);
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
            record::unavailable(access_log, session, ctx, snapshot, p);
        }
        return;
    };
    let (pool, backend) = (&snapshot.pools[p], &snapshot.pools[p].backends[b]);
    count(ctx, pool, backend, e);
    if let Some(log) = access_log {
        log.send(access_line(session, ctx, snapshot, p, Some(b), e));
    }
    let Some(e) = e else {
        return;
    };
    // One line per 10 s each; `missed`: how many like it were left out since the last.
    static FAILED: Every = Every::new();
    static LEFT: Every = Every::new();
    match e.esource() {
        pingora::ErrorSource::Upstream if ctx.upstream_header.is_none() => {
            if let Some(missed) = FAILED.tick() {
                tracing::warn!(pool = %pool.name, backend = %backend.name, error = %e, missed, "request failed");
            }
        }
        pingora::ErrorSource::Downstream => {
            if let Some(missed) = LEFT.tick() {
                tracing::info!(pool = %pool.name, error = %e, missed, "a client left before its answer was delivered");
            }
        }
        _ => {}
    }
}
