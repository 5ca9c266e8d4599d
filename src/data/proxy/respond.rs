//! What the proxy writes itself: 503 for a request no backend can take, the health path's
//! answer, short 502/504/400 bodies for failures, and the response's hop-by-hop headers
//! removed.

use bytes::Bytes;
use http::HeaderName;
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::{Error, ErrorSource, ErrorType};

/// Response headers that describe one connection and must not be forwarded.
const RESPONSE_HOP_BY_HOP: [HeaderName; 3] = [
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("proxy-authenticate"),
];

/// `[proxy] health-path`, answered by the proxy itself: 200 while serving, 503 from the first
/// shutdown signal on (so a load balancer stops sending before the listeners close).
pub(super) async fn respond_health(session: &mut ServerSession, stopping: bool) {
    match stopping {
        false => respond_plain(session, 200, Bytes::from_static(b"ok\n"), false).await,
        true => respond_plain(session, 503, Bytes::from_static(b"stopping\n"), true).await,
    }
}

/// Answers `status` (503 for a request no backend could take) with a plain-text `body`.
/// Unlike Pingora's error responses this keeps the client's connection open (nothing is wrong
/// with it) when the request had no body left to read.
pub(super) async fn respond_plain(
    session: &mut ServerSession,
    status: u16,
    body: Bytes,
    stopping: bool,
) {
    let reusable = session.is_body_empty() && !stopping;
    let Ok(mut resp) = ResponseHeader::build(status, Some(3)) else {
        return;
    };
    let headers = [
        (
            http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8".to_string(),
        ),
        (http::header::CONTENT_LENGTH, body.len().to_string()),
        (
            http::header::CONNECTION,
            if reusable { "keep-alive" } else { "close" }.to_string(),
        ),
    ];
    if !reusable {
        session.set_keepalive(None);
    }
    let written = async {
        for (name, value) in headers {
            resp.insert_header(name, value)?;
        }
        session.write_response_header(Box::new(resp)).await?;
        session.write_response_body(body, true).await
    };
    if let Err(e) = written.await {
        tracing::debug!(error = %e, status, "could not send the proxy's own response");
    }
}

/// Removes the fixed hop-by-hop headers and any the upstream nominated in `Connection`.
/// Allocates only when the upstream nominated extension headers (rare).
pub(super) fn strip_response_hop_by_hop(response: &mut ResponseHeader) {
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
        .map(str::trim)
        .filter(|t| {
            let ours = ["", "close", "keep-alive", "upgrade"];
            !ours.iter().any(|o| t.eq_ignore_ascii_case(o))
        })
        .map(str::to_ascii_lowercase)
        .collect();
    for name in &nominated {
        response.remove_header(name.as_str());
    }
}

/// The status and plain-text body for a failed request; status 0 means the client is gone.
pub(super) fn error_response(e: &Error) -> (u16, &'static str) {
    use ErrorType::*;
    match (e.esource(), e.etype()) {
        (_, HTTPStatus(503)) => (503, "service unavailable: no pool can take traffic\n"),
        (_, HTTPStatus(408)) => (
            408,
            "request timeout: the rest of the request body did not arrive in time\n",
        ),
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
