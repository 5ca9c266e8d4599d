//! What a request leaves behind: its access-log line and the kind of upstream error.

use std::time::SystemTime;

use pingora::proxy::Session;
use pingora::{Error, ErrorSource, ErrorType};

use super::RequestCtx;
use crate::snapshot::Snapshot;

pub(super) fn access_line(
    session: &Session,
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
    })
    .to_string()
}

/// Index into [`crate::metrics::ERROR_KINDS`] for an upstream-side error.
pub(super) fn upstream_error_kind(e: &Error) -> Option<usize> {
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
