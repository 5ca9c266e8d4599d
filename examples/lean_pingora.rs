//! The load benchmark's "lean Pingora" contender, the ceiling experiment of issue 14: the same
//! job as `plain_pingora` (90/10 over two upstreams, keep-alive pooling) as a hand-written
//! HTTP/1 loop on Pingora's own parts — its v1 server session, v1 connector and connection
//! pool — with no `ProxyHttp` state machine. Against `plain_pingora` it shows what the
//! `ProxyHttp` machinery costs per request; against `hello_pingora`, what proxying costs at all.
//!
//! `lean_pingora <listen> <blue addr> <green addr> [threads]`
//!
//! Per request: read the head, pick the peer (request n goes to green when n % 10 == 9), take
//! a pooled (or new) upstream connection, send the head (HTTP/1.1, `X-Forwarded-For` set to
//! the client address, `Connection`/`Keep-Alive`/`Upgrade` dropped), stream the request body,
//! copy the response head and stream its body back, then return both connections for reuse.
//! A failed connect answers 502; no response head within the read timeout answers 504. Any
//! other error just ends the connection. Plain HTTP/1 only: no TLS, h2c, upgrades or retries.
//! The listener has no L4 read buffer and, with one thread, no work stealing (as switchback).
//! `LEAN_GUARD=1` puts switchback's strict HTTP/1 framing guard (`switchback::framing::guard`)
//! under the session, as switchback has it: the closest this loop comes to switchback's
//! behaviour on the wire.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{header, HeaderName, HeaderValue, StatusCode, Version};
use pingora::apps::ServerApp;
use pingora::connectors::http::v1::Connector;
use pingora::connectors::ConnectorOptions;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::protocols::http::error_resp::gen_error_response;
use pingora::protocols::http::v1::client::HttpSession as Upstream;
use pingora::protocols::http::v1::server::HttpSession as Downstream;
use pingora::protocols::Stream;
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::listening::Service;
use pingora::upstreams::peer::HttpPeer;
use pingora::ErrorType;
use switchback::framing::guard::{response_done, Guarded, Limits};

/// How long a client connection may wait idle for its next request (switchback's default).
const CLIENT_IDLE_SECS: u64 = 60;
/// How long an upstream connect may take (switchback's default).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long an upstream read may wait: past it, no response head means 504 (switchback's default).
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The guard's limits: switchback's default header, idle and client write timeouts.
const LIMITS: Limits = Limits {
    header_timeout: Duration::from_secs(10),
    idle_timeout: Duration::from_secs(CLIENT_IDLE_SECS),
    write_timeout: Duration::from_secs(60),
};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// Hop-by-hop fields not forwarded: a client's `Connection: close` must not end the pooled
/// upstream connection, and this loop cannot tunnel an upgrade.
static HOP_BY_HOP: [HeaderName; 3] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::UPGRADE,
];

struct Lean {
    blue: HttpPeer,
    green: HttpPeer,
    counter: AtomicU64,
    /// Client streams behind switchback's framing guard.
    guard: bool,
    /// Pingora's HTTP/1 connector; it owns the upstream keep-alive pool.
    connector: Connector,
}

impl Lean {
    /// Proxies the request `session` has just read. `Some` when the client connection may
    /// serve another request.
    async fn proxy(&self, session: &mut Downstream, xff: Option<&HeaderValue>) -> Option<()> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let peer = if n % 10 == 9 { &self.green } else { &self.blue };
        let Ok((mut upstream, _reused)) = self.connector.get_http_session(peer).await else {
            return respond_error(session, 502).await;
        };
        set_timeouts(&mut upstream, peer);

        let mut req = Box::new(session.req_header().clone());
        req.set_version(Version::HTTP_11);
        for name in &HOP_BY_HOP {
            req.remove_header(name);
        }
        if let Some(xff) = xff {
            req.insert_header(X_FORWARDED_FOR, xff.clone()).ok()?;
        }
        upstream.write_request_header(req).await.ok()?;
        while !session.is_body_done() {
            let Some(chunk) = session.read_body_bytes().await.ok()? else {
                break;
            };
            upstream.write_body(&chunk).await.ok()?;
        }
        upstream.finish_body().await.ok()?;

        // Interim 1xx heads are skipped; a 101 is passed on like a final head.
        let resp = loop {
            match upstream.read_resp_header_parts().await {
                Ok(resp)
                    if resp.status.is_informational()
                        && resp.status != StatusCode::SWITCHING_PROTOCOLS => {}
                Ok(resp) => break resp,
                Err(e) => {
                    let timed_out = matches!(e.etype(), ErrorType::ReadTimedout);
                    return respond_error(session, if timed_out { 504 } else { 502 }).await;
                }
            }
        };
        // Pingora's v1 server frames the body from the head and sets `Date`/`Connection`.
        session.write_response_header(resp).await.ok()?;
        while let Some(chunk) = upstream.read_body_bytes().await.ok()? {
            session.write_body(&chunk).await.ok()?;
        }
        // The upstream response is complete: back to the pool if its framing allows.
        self.connector
            .release_http_session(upstream, peer, peer.options.idle_timeout)
            .await;
        session.finish_body().await.ok()?;
        Some(())
    }
}

/// The peer's limits on this upstream session, as `ProxyHttp` applies them.
fn set_timeouts(upstream: &mut Upstream, peer: &HttpPeer) {
    upstream.read_timeout = peer.options.read_timeout;
    upstream.write_timeout = peer.options.write_timeout;
}

/// Answers `code` with an empty body and `Connection: close`; always `None` (the connection ends).
async fn respond_error(session: &mut Downstream, code: u16) -> Option<()> {
    session.set_server_keepalive(None);
    if session
        .write_response_header(Box::new(gen_error_response(code)))
        .await
        .is_ok()
    {
        let _ = session.finish_body().await;
    }
    None
}

#[async_trait]
impl ServerApp for Lean {
    /// Serves every request of one client connection, then closes it (never hands it back).
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let mut shutdown = shutdown.clone();
        let stream: Stream = match self.guard {
            true => Box::new(Guarded::new(stream, LIMITS, Arc::new(|_| {}))),
            false => stream,
        };
        let mut session = Downstream::new(stream);
        // The client address is the connection's: formatted once, cloned per request.
        let xff = session
            .client_addr()
            .and_then(|addr| addr.as_inet())
            .and_then(|addr| HeaderValue::try_from(addr.ip().to_string()).ok());
        loop {
            // Pingora's idiom: a fresh session per request, the idle wait bounded.
            session.set_server_keepalive(Some(CLIENT_IDLE_SECS));
            let read = tokio::select! {
                biased;
                read = session.read_request() => read,
                // Shutting down: a connection waiting for its next request closes.
                _ = shutdown.wait_for(|down| *down) => return None,
            };
            if !matches!(read, Ok(Some(_))) {
                return None; // closed, idle too long, or a malformed head
            }
            let shutting_down = *shutdown.borrow();
            if shutting_down {
                session.set_server_keepalive(None); // answer with `Connection: close`
            }
            self.proxy(&mut session, xff.as_ref()).await?;
            response_done(session.stream());
            // Drains any unread body; `None` unless the connection can be kept alive.
            let (stream, pipelined) = session.reuse().await.ok().flatten()?.into_parts();
            session = Downstream::new(stream);
            if let Some(prefix) = pipelined {
                session.set_pipelined_prefix(prefix);
            }
        }
    }
}

fn peer(addr: &str) -> HttpPeer {
    let mut peer = HttpPeer::new(addr, false, String::new());
    peer.options.connection_timeout = Some(CONNECT_TIMEOUT);
    peer.options.read_timeout = Some(READ_TIMEOUT);
    peer
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, blue, green, rest @ ..] = args.as_slice() else {
        eprintln!("usage: lean_pingora <listen> <blue addr> <green addr> [threads]");
        std::process::exit(2);
    };
    let threads = rest.first().and_then(|t| t.parse().ok()).unwrap_or(1);
    let conf = ServerConf {
        threads,
        work_stealing: threads != 1,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let guard = std::env::var("LEAN_GUARD").is_ok_and(|v| v == "1");
    let lean = Lean {
        blue: peer(blue),
        green: peer(green),
        counter: AtomicU64::new(0),
        guard,
        // As `http_proxy_service` builds its connector (pool size per thread from the conf).
        connector: Connector::new(Some(ConnectorOptions::from_server_conf(
            &server.configuration,
        ))),
    };
    let mut service = Service::new("lean".to_string(), lean);
    // The guard coalesces writes itself (as in switchback); without it, Pingora's buffer does.
    let buffers = match guard {
        true => L4BufferSettings::default().read(0).write(0),
        false => L4BufferSettings::default().read(0),
    };
    service.add_listener(ListenerConfig::tcp(listen.as_str()).l4_buffer(buffers));
    server.add_service(service);
    server.run_forever();
}
