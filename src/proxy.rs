//! The data plane: Pingora's [`ProxyHttp`] implemented over the live [`Snapshot`].
//!
//! Per request: load the snapshot once (one atomic increment), draw a key, route, clone the
//! pre-built peer. Request hop-by-hop headers are stripped by Pingora's default upstream request
//! policy (RFC 9110 §7.6.1, WebSocket upgrades kept); this module adds `X-Forwarded-*`, strips
//! the response's hop-by-hop headers and turns upstream failures into short 502/504 answers.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType, Result};

use crate::keys;
use crate::snapshot::{Live, Snapshot};

/// Response headers that describe one connection and must not be forwarded.
const RESPONSE_HOP_BY_HOP: [&str; 3] = ["keep-alive", "proxy-connection", "proxy-authenticate"];

/// The switchback proxy logic.
pub struct SwitchbackProxy {
    live: Live,
}

impl SwitchbackProxy {
    /// A proxy routing by whatever snapshot `live` holds at each request's start.
    pub fn new(live: Live) -> Self {
        SwitchbackProxy { live }
    }
}

/// Per-request state.
#[derive(Default)]
pub struct RequestCtx {
    /// The snapshot this request routes by, loaded once at its first routing decision.
    snapshot: Option<Arc<Snapshot>>,
    /// `(pool index, backend name)` of the last routing decision, for logs.
    routed: Option<(usize, String)>,
}

#[async_trait]
impl ProxyHttp for SwitchbackProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::default()
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
        ctx.routed = Some((route.pool_index, route.backend.name.clone()));
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
        upstream_request.insert_header("x-forwarded-proto", "http")?;
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        let nominated: Vec<String> = upstream_response
            .headers
            .get_all("connection")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty() && t != "close" && t != "keep-alive" && t != "upgrade")
            .collect();
        for name in nominated
            .iter()
            .map(String::as_str)
            .chain(RESPONSE_HOP_BY_HOP)
        {
            upstream_response.remove_header(name);
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let (code, body) = error_response(e);
        if code > 0 {
            if let Some((pool, backend)) = &ctx.routed {
                tracing::warn!(pool, backend, status = code, error = %e, "request failed");
            }
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
