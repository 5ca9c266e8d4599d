//! What a request leaves behind: its counts, its access-log line, the kind of upstream error,
//! and the log line of a failed TLS handshake to its backend.

use std::time::{Duration, SystemTime};

use pingora::protocols::http::ServerSession;
use pingora::{Error, ErrorSource, ErrorType};

use super::RequestCtx;
use crate::data::access_log::AccessLog;
use crate::data::snapshot::{BackendEntry, PoolEntry, Snapshot};
use pingora::upstreams::peer::HttpPeer;

/// Counts a request that reached `backend`: a tester's override apart from the others, which
/// also feed the pool's latency histograms; upstream errors either way.
///
/// The attribution rule (README, "Automated rollouts"): the rollout analysis counts a request
/// only when the upstream answered it or failed it. It is an error when the upstream answered
/// 5xx, or gave no answer for an upstream reason (connect failure, reset, close, timeout),
/// unless it gave up on a silent client that owed body (answered 408: `h1/exchange.rs`'s
/// `client_silent`); one the client broke (stalled upload, disconnect before its request was
/// sent) counts for no pool. An HTTP/1 client that closes after its whole request does not end
/// it (a half-closed one is answered: `phases::client_settings`); an HTTP/2 client that resets
/// its stream then counts, not as an error, with the time it waited as its latency. Once a
/// response head arrived, its status decides: a failure mid-body may be the client's
/// backpressure (or its write timeout) as well as the upstream's.
pub(super) fn count(ctx: &RequestCtx, pool: &PoolEntry, backend: &BackendEntry, e: Option<&Error>) {
    // A 408 for a silent client is a downstream error already; the flag also covers a path that
    // logs the upstream's own error.
    let upstream_error = e
        .and_then(upstream_error_kind)
        .filter(|_| !ctx.client_blocked);
    let answered = ctx.upstream_header.is_some();
    let class = match ctx.upstream_header {
        Some((status, _)) => usize::from(status / 100).clamp(1, 5) - 1,
        None if upstream_error.is_some() => 5,
        None => 3, // the client's doing: answered 408, or it left (a 4xx in access logs)
    };
    // A client that left after sending its whole request, before any answer: the upstream had
    // not answered in the time it waited — a lower bound of its response time, so that a canary
    // that hangs shows as slow whoever gives up first. Not an error.
    let waited = (!answered && upstream_error.is_none() && !ctx.client_blocked)
        .then_some(ctx.request_sent)
        .flatten()
        .map(|sent| sent.elapsed());
    let response = response_time(ctx);
    if ctx.override_pool.is_none() && (answered || upstream_error.is_some() || waited.is_some()) {
        pool.tally.record(class >= 4, response.or(waited));
    }
    let (Some(pm), Some(bm)) = (&pool.metrics, &backend.metrics) else {
        return;
    };
    if ctx.override_pool.is_some() {
        pm.overrides[class].inc();
    } else {
        pm.duration.observe(ctx.started.elapsed().as_secs_f64());
        if let Some(response) = response {
            pm.upstream_response.observe(response.as_secs_f64());
        }
        bm.requests[class].inc();
    }
    if let Some(kind) = upstream_error {
        bm.errors[kind].inc();
    }
}

/// The upstream's response time: from the request's last byte written upstream (its head, for
/// an answer that came before the body ended) to the response head; `None` without one.
pub(super) fn response_time(ctx: &RequestCtx) -> Option<Duration> {
    let (_, at) = ctx.upstream_header?;
    let from = ctx
        .request_sent
        .filter(|sent| *sent <= at)
        .or(ctx.head_sent)
        .or(ctx.upstream_started)?;
    Some(at.saturating_duration_since(from))
}

pub(super) fn access_line(
    session: &ServerSession,
    ctx: &RequestCtx,
    snapshot: &Snapshot,
    p: usize,
    b: Option<usize>,
    e: Option<&Error>,
) -> String {
    let req = session.req_header();
    let status = session.response_written().map_or(0, |r| r.status.as_u16());
    let upstream_ms = response_time(ctx).map(|d| d.as_secs_f64() * 1e3);
    serde_json::json!({
        "time": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        "client": session.client_addr().map(ToString::to_string),
        "method": req.method.as_str(),
        "path": req.uri.path_and_query().map_or("/", |p| p.as_str()),
        "status": status,
        "pool": snapshot.pools[p].name,
        "backend": b.map(|b| snapshot.pools[p].backends[b].name.as_str()),
        "upstream_ms": upstream_ms,
        "total_ms": ctx.started.elapsed().as_secs_f64() * 1e3,
        "bytes": session.body_bytes_sent(),
        "version": snapshot.version,
        "error": e.map(|e| e.etype().as_str()),
        "override": ctx.override_pool.is_some(),
        "key": ctx.key_from.name(),
    })
    .to_string()
}

/// Index into [`crate::metrics::ERROR_KINDS`] for an upstream-side error.
fn upstream_error_kind(e: &Error) -> Option<usize> {
    use ErrorType::*;
    if e.esource() != &ErrorSource::Upstream {
        return None;
    }
    Some(match e.etype() {
        ConnectRefused | ConnectNoRoute | ConnectError | ConnectProxyFailure
        | TLSHandshakeFailure => 0,
        ConnectTimedout | ReadTimedout | WriteTimedout | TLSHandshakeTimedout => 1,
        ConnectionClosed | ReadError | WriteError => 2,
        _ => 3,
    })
}

/// Counts and logs a request answered 503 because pool `p` had no backend up: it is in
/// `switchback_requests_total{backend="none"}` (or the override count, for a tester's
/// request) and the access log like any other.
pub(super) fn unavailable(
    access_log: Option<&AccessLog>,
    session: &ServerSession,
    ctx: &RequestCtx,
    snapshot: &Snapshot,
    p: usize,
) {
    let pool = &snapshot.pools[p];
    if ctx.override_pool.is_none() {
        pool.tally.record(true, None);
    }
    match (&pool.metrics, ctx.override_pool) {
        (Some(m), Some(_)) => m.overrides[4].inc(),
        (Some(m), None) => {
            m.unavailable.inc();
            m.duration.observe(ctx.started.elapsed().as_secs_f64());
        }
        (None, _) => {}
    }
    if let Some(log) = access_log {
        log.send(access_line(session, ctx, snapshot, p, None, None));
    }
}

/// A backend's TLS handshake failed: which backend, and why in plain words.
pub(super) fn tls_failure(ctx: &RequestCtx, peer: &HttpPeer, e: &Error) {
    let (pool, backend) = match (&ctx.snapshot, ctx.route) {
        (Some(s), Some((p, b))) => (
            s.pools[p].name.as_str(),
            s.pools[p].backends[b].name.as_str(),
        ),
        _ => ("?", "?"),
    };
    tracing::warn!(
        pool,
        backend,
        sni = %peer.sni,
        reason = %crate::data::tls::upstream::failure_reason(e),
        "TLS to the backend failed"
    );
}
