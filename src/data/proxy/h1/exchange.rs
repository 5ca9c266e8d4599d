//! One attempt's exchange with an HTTP/1 upstream: the request head, the request body
//! streamed while waiting for the answer (an upstream may answer before it read everything),
//! 1xx answers passed on, the response head through switchback's changes, then the response
//! body — or, after a `101` to an upgrade request, a tunnel both ways until either side ends.

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::v1::client::HttpSession as Upstream;
use pingora::protocols::http::ServerSession;
use pingora::{Error, ErrorType, Result};

use super::super::{attempts, phases, RequestCtx};

/// Why an attempt failed, and whether another attempt may be made: only while nothing of the
/// request's body has gone upstream and no answer has reached the client.
pub(super) struct Failed {
    pub(super) error: Box<Error>,
    pub(super) before_answer: bool,
}

fn up(before_answer: bool) -> impl FnOnce(Box<Error>) -> Failed {
    move |e| Failed {
        error: e.into_up(),
        before_answer,
    }
}

fn down(e: Box<Error>) -> Failed {
    Failed {
        error: e.into_down(),
        before_answer: false,
    }
}

/// Sends `req` and the client's body to `upstream` and the answer back to the client. `Ok`
/// with whether the upstream connection can go back to the pool.
pub(super) async fn exchange(
    session: &mut ServerSession,
    upstream: &mut Upstream,
    req: Box<RequestHeader>,
    ctx: &mut RequestCtx,
    stopping: &AtomicBool,
) -> Result<bool, Failed> {
    upstream.write_request_header(req).await.map_err(up(true))?;
    let mut body_done = session.is_body_empty();
    if body_done {
        upstream.finish_body().await.map_err(up(true))?;
    }
    let mut body_sent = false;
    let mut resp = loop {
        tokio::select! {
            biased;
            head = upstream.read_response() => {
                head.map_err(up(!body_sent))?;
                let Some(head) = upstream.resp_header() else {
                    return Err(up(false)(Error::new(ErrorType::InvalidHTTPHeader)));
                };
                let mut head = Box::new(head.clone());
                if !head.status.is_informational() || head.status == 101 {
                    break head;
                }
                // 100 Continue, 103 Early Hints: to the client, then the final answer.
                phases::upstream_response(&mut head, ctx);
                phases::client_response(&mut head, ctx, false).map_err(down)?;
                session.write_response_header(head).await.map_err(down)?;
            }
            // After the body, this watches the client: one that hangs up ends the request.
            chunk = session.read_body_or_idle(body_done) => {
                body_sent = true;
                body_done = send_body(upstream, chunk.map_err(down)?).await?;
            }
        }
    };
    let upgrading = resp.status == 101;
    if upgrading && !session.is_upgrade_req() {
        let e = Error::explain(
            ErrorType::InvalidHTTPHeader,
            "101 to a request without Upgrade",
        );
        return Err(up(false)(e));
    }
    phases::upstream_response(&mut resp, ctx);
    close_delimited_to_chunked(&mut resp, session.req_header(), upstream);
    let stopping = stopping.load(Ordering::Relaxed); // now: a shutdown may have begun since
    if phases::client_response(&mut resp, ctx, stopping).map_err(down)? {
        session.set_keepalive(None);
    }
    if upgrading {
        if let Some(stream) = session.stream() {
            crate::framing::guard::upgraded(stream);
        }
    }
    session.write_response_header(resp).await.map_err(down)?;
    if upgrading {
        return tunnel(session, upstream, ctx).await.map(|()| false);
    }
    while !upstream.is_body_done() {
        tokio::select! {
            biased;
            chunk = upstream.read_body_ref() => match chunk.map_err(up(false))? {
                Some(data) => write_body(session, data).await.map_err(down)?,
                None => break,
            },
            chunk = session.read_body_or_idle(body_done) => {
                body_done = send_body(upstream, chunk.map_err(down)?).await?;
            }
        }
    }
    session.finish_body().await.map_err(down)?;
    // A connection whose request went out whole can carry another one.
    Ok(body_done)
}

/// Sends one piece of the client's body (`None`: its end); `true` once it ended.
async fn send_body(upstream: &mut Upstream, chunk: Option<Bytes>) -> Result<bool, Failed> {
    match chunk {
        Some(data) => {
            upstream.write_body(&data).await.map_err(up(false))?;
            Ok(false)
        }
        None => {
            upstream.finish_body().await.map_err(up(false))?;
            Ok(true)
        }
    }
}

/// Writes response body bytes to the client without copying them into a `Bytes` first.
async fn write_body(session: &mut ServerSession, data: &[u8]) -> Result<()> {
    match session {
        ServerSession::H1(h1) => h1.write_body(data).await.map(drop),
        other => {
            let data = Bytes::copy_from_slice(data);
            other.write_response_body(data, false).await
        }
    }
}

/// An answer framed by the upstream closing its connection (HTTP/1.0 style) is sent to the
/// client chunked, so the client's connection can be kept (as `ProxyHttp` does).
fn close_delimited_to_chunked(
    resp: &mut ResponseHeader,
    req: &RequestHeader,
    upstream: &mut Upstream,
) {
    let no_body = req.method == http::Method::HEAD || matches!(resp.status.as_u16(), 204 | 304);
    let framed = resp.headers.contains_key(http::header::TRANSFER_ENCODING)
        || resp.headers.contains_key(http::header::CONTENT_LENGTH);
    if !no_body && !resp.status.is_informational() && !framed && !upstream.is_body_done() {
        resp.set_version(http::Version::HTTP_11);
        // A static value: this cannot fail.
        let _ = resp.insert_header(http::header::TRANSFER_ENCODING, "chunked");
    }
}

/// An upgraded connection: bytes both ways until either side closes; ended early once its
/// backend has been drained for `[shutdown] drain-timeout`.
async fn tunnel(
    session: &mut ServerSession,
    upstream: &mut Upstream,
    ctx: &RequestCtx,
) -> Result<(), Failed> {
    upstream.maybe_upgrade_body_writer();
    loop {
        tokio::select! {
            chunk = upstream.read_body_ref() => {
                let Some(data) = chunk.map_err(up(false))? else { break };
                attempts::close_if_drained_too_long(ctx).map_err(up(false))?;
                write_body(session, data).await.map_err(down)?;
            }
            chunk = session.read_request_body() => {
                let Some(data) = chunk.map_err(down)? else { break };
                attempts::close_if_drained_too_long(ctx).map_err(up(false))?;
                upstream.write_body(&data).await.map_err(up(false))?;
            }
        }
    }
    session.finish_body().await.map_err(down)
}
