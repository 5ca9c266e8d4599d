//! The data plane: Pingora's [`ProxyHttp`] implemented over the live [`Snapshot`].
//!
//! Per request: load the snapshot once (one atomic increment), draw a key, route, clone the
//! pre-built peer. Request hop-by-hop headers are stripped by Pingora's default upstream request
//! policy (RFC 9110 §7.6.1, WebSocket upgrades kept); this module adds `X-Forwarded-*`, strips
//! the response's hop-by-hop headers, turns upstream failures into short 502/504 answers, and
//! records metrics and the access log in the `logging` phase.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType, Result};

use crate::access_log::AccessLog;
use crate::keys;
use crate::snapshot::{Live, Snapshot};

/// Response headers that describe one connection and must not be forwarded.
const RESPONSE_HOP_BY_HOP: [HeaderName; 3] = [
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("proxy-authenticate"),
];

/// The switchback proxy logic.
pub struct SwitchbackProxy {
    live: Live,
    access_log: Option<AccessLog>,
}

impl SwitchbackProxy {
    /// A proxy routing by whatever snapshot `live` holds at each request's start.
    pub fn new(live: Live, access_log: Option<AccessLog>) -> Self {
        SwitchbackProxy { live, access_log }
    }
}

/// Per-request state.
pub struct RequestCtx {
    started: Instant,
    /// The snapshot this request routes by, loaded once at its first routing decision.
    snapshot: Option<Arc<Snapshot>>,
    /// `(pool index, backend index)` of the last routing decision.
    route: Option<(usize, usize)>,
    upstream_started: Option<Instant>,
    upstream_header: Option<(u16, Instant)>,
}

#[async_trait]
impl ProxyHttp for SwitchbackProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            snapshot: None,
            route: None,
            upstream_started: None,
            upstream_header: None,
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let snapshot = ctx.snapshot.get_or_insert_with(|| self.live.load_full());
        let route = snapshot.route(keys::next()).ok_or_else(|| {
            Error::explain(ErrorType::HTTPStatus(503), "no pool can take traffic")
        })?;
        if ctx.route.is_none() {
            if let Some(m) = &route.pool.metrics {
                m.inflight.inc();
            }
        }
        ctx.route = Some((route.pool_index, route.backend_index));
        ctx.upstream_started = Some(Instant::now());
        Ok(Box::new(route.backend.peer.clone()))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(ip) = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
        {
            let forwarded_for = match upstream_request.headers.get("x-forwarded-for") {
                Some(prior) => format!("{}, {ip}", String::from_utf8_lossy(prior.as_bytes())),
                None => ip.to_string(),
            };
            upstream_request.insert_header("x-forwarded-for", forwarded_for)?;
        }
        upstream_request.insert_header("x-forwarded-proto", HeaderValue::from_static("http"))?;
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if !upstream_response.status.is_informational() {
            ctx.upstream_header = Some((upstream_response.status.as_u16(), Instant::now()));
        }
        strip_response_hop_by_hop(upstream_response);
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let (Some(snapshot), Some((pool, _))) = (&ctx.snapshot, ctx.route) {
            if let Some(header) = &snapshot.config.proxy.pool_header {
                response.insert_header(header.clone(), snapshot.pools[pool].name.as_str())?;
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
        let (Some(snapshot), Some((p, b))) = (&ctx.snapshot, ctx.route) else {
            return;
        };
        let (pool, backend) = (&snapshot.pools[p], &snapshot.pools[p].backends[b]);
        let total = ctx.started.elapsed();
        if let (Some(pm), Some(bm)) = (&pool.metrics, &backend.metrics) {
            pm.inflight.dec();
            pm.duration.observe(total.as_secs_f64());
            let class = ctx
                .upstream_header
                .map_or(5, |(status, _)| usize::from(status / 100).clamp(1, 5) - 1);
            bm.requests[class].inc();
            if let Some(kind) = e.and_then(upstream_error_kind) {
                bm.errors[kind].inc();
            }
        }
        if let Some(log) = &self.access_log {
            log.send(access_line(session, ctx, snapshot, p, b, e));
        }
        if e.is_some() && ctx.upstream_header.is_none() {
            tracing::warn!(pool = %pool.name, backend = %backend.name, error = %e.map(ToString::to_string).unwrap_or_default(), "request failed");
        }
    }
}

fn access_line(
    session: &Session,
    ctx: &RequestCtx,
    snapshot: &Snapshot,
    p: usize,
    b: usize,
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
        "backend": snapshot.pools[p].backends[b].name,
        "upstream_ms": upstream_ms,
        "total_ms": ctx.started.elapsed().as_secs_f64() * 1e3,
        "bytes": session.body_bytes_sent(),
        "version": snapshot.version,
        "error": e.map(|e| e.etype().as_str()),
    })
    .to_string()
}

/// Removes the fixed hop-by-hop headers and any the upstream nominated in `Connection`.
/// Allocates only when the upstream nominated extension headers (rare).
fn strip_response_hop_by_hop(response: &mut ResponseHeader) {
    for name in &RESPONSE_HOP_BY_HOP {
        if response.headers.contains_key(name) {
            response.remove_header(name);
        }
    }
    if !response.headers.contains_key(http::header::CONNECTION) {
        return;
    }
    let nominated: Vec<String> = response
        .headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty() && t != "close" && t != "keep-alive" && t != "upgrade")
        .collect();
    for name in &nominated {
        response.remove_header(name.as_str());
    }
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

/// The status and plain-text body for a failed request; status 0 means the client is gone.
fn error_response(e: &Error) -> (u16, &'static str) {
    use ErrorType::*;
    match (e.esource(), e.etype()) {
        (_, HTTPStatus(503)) => (503, "service unavailable: no pool can take traffic\n"),
        (_, HTTPStatus(code)) if *code >= 500 => (*code, "upstream error\n"),
        (_, HTTPStatus(code)) => (*code, "bad request\n"),
        (ErrorSource::Upstream, ConnectTimedout | ReadTimedout | WriteTimedout) => (
            504,
            "gateway timeout: the upstream did not answer in time\n",
        ),
        (ErrorSource::Upstream, _) => (
            502,
            "bad gateway: the upstream could not be reached or failed\n",
        ),
        (ErrorSource::Downstream, ReadError | WriteError | ConnectionClosed) => (0, ""),
        (ErrorSource::Downstream, _) => (400, "bad request\n"),
        _ => (500, "internal error\n"),
    }
}
