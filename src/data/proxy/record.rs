//! What a request leaves behind: its counts, its access-log line, the kind of upstream error,
//! and the log line of a failed TLS handshake to its backend.

use std::time::SystemTime;

use pingora::protocols::http::ServerSession;
use pingora::{Error, ErrorSource, ErrorType};

use super::RequestCtx;
use crate::access_log::AccessLog;
use crate::snapshot::{BackendEntry, PoolEntry, Snapshot};
use pingora::upstreams::peer::HttpPeer;

/// Counts a request that reached `backend`: a tester's override apart from the others, which
/// also feed the pool's latency histogram; upstream errors either way.
pub(super) fn count(ctx: &RequestCtx, pool: &PoolEntry, backend: &BackendEntry, e: Option<&Error>) {
    let class = ctx
        .upstream_header
        .map_or(5, |(status, _)| usize::from(status / 100).clamp(1, 5) - 1);
    let upstream_error = e.and_then(upstream_error_kind);
    let elapsed = ctx.started.elapsed(); // one clock read for the analysis and the histogram
    if ctx.override_pool.is_none() {
        // 5xx, or no upstream answer for an upstream reason (a client that left is not one).
        let failed = class == 4 || (class == 5 && upstream_error.is_some());
        pool.tally.record(failed, elapsed);
    }
    let (Some(pm), Some(bm)) = (&pool.metrics, &backend.metrics) else {
        return;
    };
    if ctx.override_pool.is_some() {
        pm.overrides[class].inc();
    } else {
        pm.duration.observe(elapsed.as_secs_f64());
        bm.requests[class].inc();
    }
    if let Some(kind) = upstream_error {
        bm.errors[kind].inc();
    }
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
    let upstream_ms = match (ctx.upstream_started, ctx.upstream_header) {
        (Some(start), Some((_, at))) => Some(at.duration_since(start).as_secs_f64() * 1e3),
        _ => None,
    };
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
        pool.tally.record(true, ctx.started.elapsed());
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
        reason = %crate::tls::upstream::failure_reason(e),
        "TLS to the backend failed"
    );
}
