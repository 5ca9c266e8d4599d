//! The Pingora app wrapper that puts every HTTP/1 client connection behind [`Guarded`] and
//! serves it with our keep-alive loop ([`keepalive`]).
//!
//! HTTP/2 connections (ALPN `h2` on TLS, or the h2c preface on a plain listener with
//! `[proxy] h2c`) go to the app unguarded: their framing is the h2 codec's, not HTTP/1's;
//! only their preface is held to `header-timeout` ([`PrefaceDeadline`] on TLS; the h2c check
//! reads it under that limit itself).

use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::l4::stream::Stream as TcpStream;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;

use super::guard::{Guarded, Limits, OnRefuse, Refusal};
use super::keepalive::{self, Apps, Closing, OneRequest};
use super::preface::PrefaceDeadline;
use crate::data::snapshot::Live;

/// The client preface that opens an HTTP/2 connection (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Wraps the proxy app: each connection's stream is guarded with the limits of the
/// configuration live at its accept.
pub struct GuardedApp<A> {
    app: Arc<A>,
    live: Live,
    on_refuse: OnRefuse,
    /// `[proxy] h2c`, fixed at start-up like Pingora's own server option.
    h2c: bool,
    /// Closes the HTTP/1 connections waiting for their next request at shutdown.
    closing: Closing,
    /// Serves HTTP/1 requests instead of `app` when it takes them.
    own: Option<Arc<dyn OneRequest>>,
}

impl<A> GuardedApp<A> {
    /// Guards `app`'s connections; `on_refuse` counts what the guard refused. With `h2c`, a
    /// plain connection opening with the HTTP/2 preface is served as HTTP/2.
    pub fn new(app: Arc<A>, live: Live, on_refuse: OnRefuse, h2c: bool) -> Self {
        GuardedApp {
            app,
            live,
            on_refuse,
            h2c,
            closing: Closing::default(),
            own: None,
        }
    }

    /// HTTP/1 requests go to `own` whenever it takes them, `app` serving the others.
    pub fn with_own(mut self, own: Arc<dyn OneRequest>) -> Self {
        self.own = Some(own);
        self
    }
}

/// Whether a plain connection opens with the HTTP/2 preface: reads only until its bytes
/// differ from the preface (an HTTP/1 request differs within its first two bytes), under
/// `timeout`, and puts what it read back. `Err` when the client closed, failed or took too
/// long (with the refusal to count).
async fn prior_knowledge(
    stream: Stream,
    timeout: std::time::Duration,
) -> Result<(Stream, bool), Option<Refusal>> {
    use tokio::io::AsyncReadExt;
    let Ok(mut tcp) = stream.into_any().downcast::<TcpStream>() else {
        return Err(None);
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let mut head = [0u8; H2_PREFACE.len()];
    let mut len = 0;
    let h2 = loop {
        let read = tokio::time::timeout_at(deadline, tcp.read(&mut head[len..])).await;
        let n = match read {
            Err(_) => return Err(Some(Refusal::HeaderTimeout)),
            Ok(Err(_)) => return Err(None),
            Ok(Ok(0)) if len == 0 => return Err(None),
            Ok(Ok(n)) => n,
        };
        len += n;
        if n == 0 || head[..len] != H2_PREFACE[..len] {
            break false;
        }
        if len == H2_PREFACE.len() {
            break true;
        }
    };
    tcp.rewind(&head[..len]);
    Ok((tcp, h2))
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for GuardedApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let limits = {
            let snapshot = self.live.load();
            Limits {
                header_timeout: snapshot.config.proxy.header_timeout,
                idle_timeout: snapshot.config.proxy.client_idle_timeout,
                write_timeout: snapshot.config.proxy.client_write_timeout,
            }
        };
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            let timed = PrefaceDeadline::new(stream, &limits, self.on_refuse.clone());
            return self.app.process_new(Box::new(timed), shutdown).await;
        }
        if self.h2c && stream.get_ssl_digest().is_none() {
            let (plain, h2) = match prior_knowledge(stream, limits.header_timeout).await {
                Ok(seen) => seen,
                Err(Some(refusal)) => {
                    (self.on_refuse)(refusal);
                    return None;
                }
                Err(None) => return None,
            };
            if h2 {
                // The preface is here already (put back): only the write stall applies.
                let timed = PrefaceDeadline::new(plain, &limits, self.on_refuse.clone());
                return self.app.process_new(Box::new(timed), shutdown).await;
            }
            stream = plain;
        }
        // The connection moves to a task of its own: Pingora's per-connection task (~9 KiB,
        // sized for its TLS handshake) and this call's boxed future end here, and an idle
        // keep-alive connection holds only the socket, the guard and the small loop below.
        // (Pingora's custom-ALPN and `force_custom` sessions are not used by switchback: every
        // connection here is HTTP/1.)
        let guarded = Box::new(Guarded::new(stream, limits, self.on_refuse.clone()));
        let (this, shutdown) = (self.clone(), shutdown.clone());
        tokio::spawn(async move {
            let apps = Apps {
                app: &this.app,
                own: this.own.as_deref(),
            };
            keepalive::serve(apps, guarded, &this.closing, &shutdown).await;
        });
        None
    }

    async fn cleanup(&self) {
        self.closing.close();
        self.app.http_cleanup().await;
    }
}
