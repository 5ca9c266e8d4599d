//! One attempt's exchange with an HTTP/1 upstream: the request head, the request body
//! streamed while waiting for the answer (an upstream may answer before it read everything),
//! 1xx answers passed on, the response head through switchback's changes, then the response
//! body — or, after a `101` to an upgrade request, a tunnel both ways until either side ends.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::v1::client::HttpSession as Upstream;
use pingora::protocols::http::ServerSession;
use pingora::time::fast_timeout::fast_timeout;
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
/// with whether the upstream connection can go back to the pool. `reused`: the connection
/// carried a request before, so its answer must start right at its first byte.
pub(super) async fn exchange(
    session: &mut ServerSession,
    upstream: &mut Upstream,
    req: Box<RequestHeader>,
    ctx: &mut RequestCtx,
    stopping: &AtomicBool,
    reused: bool,
) -> Result<bool, Failed> {
    let limit = upstream.write_timeout;
    bounded(limit, upstream.write_request_header(req))
        .await
        .map_err(up(true))?;
    ctx.head_sent = Some(std::time::Instant::now());
    let mut body = Body::default();
    if session.is_body_empty() {
        body.forward(session, upstream, None).await;
        ctx.request_sent = ctx.head_sent;
    }
    let mut informed = false; // a 1xx went to the client
    let mut resp = loop {
        tokio::select! {
            biased;
            head = upstream.read_response() => {
                if let Err(e) = head {
                    // No answer a reused connection's first bytes make: stray bytes, as below.
                    let unparsed = e.etype() == &ErrorType::InvalidHTTPHeader;
                    if reused && unparsed && !informed {
                        return Err(up(!body.sent)(stray()));
                    }
                    // Everything the client sent went upstream (a blocked write would have
                    // timed out as `broken`) and the proxy was waiting on the client for the
                    // rest: the client's doing, not the upstream's.
                    if !body.done && !body.broken && client_silent(ctx, &e, true) {
                        return Err(client_blocked(ctx, e));
                    }
                    return Err(up(!body.sent && !informed)(e));
                }
                let Some(head) = upstream.resp_header() else {
                    return Err(up(false)(Error::new(ErrorType::InvalidHTTPHeader)));
                };
                if reused && !informed && !upstream.get_headers_raw_bytes().starts_with(b"HTTP/1.") {
                    return Err(up(!body.sent)(stray()));
                }
                let mut head = Box::new(head.clone());
                if !head.status.is_informational() || head.status == 101 {
                    break head;
                }
                // 100 Continue, 103 Early Hints: to the client, then the final answer; an
                // HTTP/1.0 client gets none (RFC 9110 §15.2).
                if session.req_header().version != http::Version::HTTP_11 {
                    continue;
                }
                phases::upstream_response(&mut head, ctx);
                phases::client_response(&mut head, ctx, false).map_err(down)?;
                informed = true;
                session.write_response_header(head).await.map_err(down)?;
            }
            // After the body, this watches the client: one that hangs up ends the request.
            piece = session.read_body_or_idle(body.done) => {
                ctx.body_at = Some(std::time::Instant::now());
                body.forward(session, upstream, piece.map_err(down)?).await;
                if body.done && ctx.request_sent.is_none() {
                    ctx.request_sent = Some(std::time::Instant::now());
                }
            }
        }
    };
    // A tunnel only when both sides agreed to one: Pingora's check of a 101, and the client's
    // request asked for it as `head` forwards it.
    let upgrading = resp.status == 101;
    if upgrading && !(upstream.was_upgraded() && super::head::asks_websocket(session.req_header()))
    {
        let e = Error::explain(
            ErrorType::InvalidHTTPHeader,
            "101 to a request that asked for no upgrade the upstream was sent",
        );
        return Err(up(false)(e));
    }
    let verified = framing_verifiable(&resp, session.req_header());
    phases::upstream_response(&mut resp, ctx);
    if close_delimited(&mut resp, session.req_header(), upstream) {
        session.set_keepalive(None);
    }
    let stopping = stopping.load(Ordering::Relaxed); // now: a shutdown may have begun since
    if phases::client_response(&mut resp, ctx, stopping).map_err(down)? {
        session.set_keepalive(None);
    }
    if upgrading {
        if let Some(stream) = session.stream() {
            crate::data::framing::guard::upgraded(stream);
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
            piece = session.read_body_or_idle(body.done) => {
                body.forward(session, upstream, piece.map_err(down)?).await;
            }
        }
    }
    session.finish_body().await.map_err(down)?;
    // A connection whose request went out whole, and whose answer ended where its framing
    // says, can carry another one.
    Ok(body.done && !body.broken && verified)
}

/// A reused connection's answer that does not start with a status line: bytes the upstream
/// sent unasked (after an earlier answer) came first. Retried like a connection found closed.
fn stray() -> Box<Error> {
    let mut e = Error::explain(
        ErrorType::InvalidHTTPHeader,
        "a reused upstream connection's answer did not start with its status line",
    );
    e.retry = true.into();
    e
}

/// Whether the end of `resp`'s body can be checked: not for an answer without a body (to
/// `HEAD`, a 204 or 304) that still names a length or chunked coding — an upstream may send
/// that body after all (or bytes of its own), and they would reach the next request's client
/// (issue 24). Such a connection is not pooled again.
fn framing_verifiable(resp: &ResponseHeader, req: &RequestHeader) -> bool {
    !(phases::bodiless(resp, req) && phases::framed(resp))
}

/// How long a client that owes body bytes must have sent nothing for an upstream's failure
/// other than a timeout (a reset, a close: often its own body timeout) to be the client's doing.
const SILENT: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether the upstream's failure `e`, while the request body is unfinished, is the client's
/// doing: a read timeout when the client sent nothing for that long (`timed`: the caller knows
/// the timer restarted with each body piece, as the HTTP/1 path's does), or any other failure
/// once the client was silent for [`SILENT`]. A client waiting for a `100 Continue` is silent
/// too: it must send its body after a short wait all the same (RFC 9110 §10.1.1).
pub(in crate::data::proxy) fn client_silent(ctx: &RequestCtx, e: &Error, timed: bool) -> bool {
    let silent = ctx.body_at.unwrap_or(ctx.started).elapsed();
    match e.etype() {
        ErrorType::ReadTimedout => timed || silent >= SILENT,
        ErrorType::WriteTimedout | ErrorType::WriteError => false,
        _ => silent >= SILENT,
    }
}

/// The upstream gave up while the proxy waited on the client's body: a 408 to the client, and
/// the request counts for no pool.
fn client_blocked(ctx: &mut RequestCtx, e: Box<Error>) -> Failed {
    ctx.client_blocked = true;
    let mut blocked = Error::explain(
        ErrorType::HTTPStatus(408),
        "the client did not send the rest of the request body in time",
    );
    blocked.set_cause(e);
    down(blocked)
}

/// The client's request body on its way upstream.
#[derive(Default)]
struct Body {
    /// The client's body ended (and the upstream was told, unless it stopped taking it).
    done: bool,
    /// Some of it went upstream: the request cannot be sent again.
    sent: bool,
    /// The upstream stopped taking it (it may have answered already).
    broken: bool,
}

impl Body {
    /// Forwards one piece read from the client (`None`: its end). An upstream that stops
    /// taking the body is no error of the request: the rest is read and dropped, the answer
    /// still forwarded, and the connection not pooled again (as `ProxyHttp` does).
    async fn forward(
        &mut self,
        session: &mut ServerSession,
        upstream: &mut Upstream,
        piece: Option<Bytes>,
    ) {
        let end = piece.is_none() || session.is_body_done();
        // Pingora's body readers hand out empty pieces (a partial chunk line); written, an
        // empty piece would end a chunked body.
        if let Some(data) = piece.filter(|d| !d.is_empty()) {
            self.sent = true;
            if !self.broken && upstream.write_body(&data).await.is_err() {
                self.broken = true;
            }
        }
        if end && !self.done {
            self.done = true;
            let limit = upstream.write_timeout;
            if !self.broken && bounded(limit, upstream.finish_body()).await.is_err() {
                self.broken = true;
            }
        }
    }
}

/// Writes response body bytes to the client without copying them into a `Bytes` first.
/// `write` within `limit`: Pingora bounds its upstream writes by the peer's write timeout, but
/// not the flush after the request head nor the one after the body's end.
async fn bounded<T>(limit: Option<Duration>, write: impl Future<Output = Result<T>>) -> Result<T> {
    let Some(limit) = limit else {
        return write.await;
    };
    match fast_timeout(limit, write).await {
        Ok(written) => written,
        Err(_) => Error::e_explain(ErrorType::WriteTimedout, "writing to the upstream"),
    }
}

/// An empty piece (Pingora's readers hand them out) is not written: it would end a chunked body.
async fn write_body(session: &mut ServerSession, data: &[u8]) -> Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    match session {
        ServerSession::H1(h1) => h1.write_body(data).await.map(drop),
        other => {
            let data = Bytes::copy_from_slice(data);
            other.write_response_body(data, false).await
        }
    }
}

/// An answer framed by the upstream closing its connection (HTTP/1.0 style): sent to an
/// HTTP/1.1 client chunked, so its connection can be kept (as `ProxyHttp` does). An HTTP/1.0
/// client knows no chunked coding (RFC 9112 §6.1): its answer, close-delimited or chunked by the
/// upstream, ends with the connection (`true`: the caller closes it after the answer).
fn close_delimited(
    resp: &mut ResponseHeader,
    req: &RequestHeader,
    upstream: &mut Upstream,
) -> bool {
    if req.version < http::Version::HTTP_11 {
        return phases::for_http10_client(resp, req);
    }
    if phases::bodiless(resp, req) || phases::framed(resp) || upstream.is_body_done() {
        return false;
    }
    resp.set_version(http::Version::HTTP_11);
    // A static value: this cannot fail.
    let _ = resp.insert_header(http::header::TRANSFER_ENCODING, "chunked");
    false
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
                if !data.is_empty() {
                    upstream.write_body(&data).await.map_err(up(false))?;
                }
            }
        }
    }
    session.finish_body().await.map_err(down)
}
