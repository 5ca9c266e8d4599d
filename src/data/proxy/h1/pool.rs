//! The HTTP/1 path's upstream connections: new ones from Pingora's transport connector, idle
//! ones in a list of our own.
//!
//! Pingora's pool (`TransportConnector::release_stream`) spawns a task for every connection
//! it takes back, to watch it while idle; taking the connection out again wakes that task and
//! waits for it to let go. On a kept-alive upstream connection that is a task spawned, two
//! task switches and ~6k instructions on every request (issue 14). Here an idle connection is
//! an entry in a list: taking one checks it is unexpired and still open (a read that must
//! not be ready, as Pingora's own `test_reusable_stream`), and one sweeper task per pool
//! closes, once a second, the expired ones and those the upstream closed or wrote to, so none
//! lingers past `idle-timeout` or in CLOSE_WAIT.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use pingora::connectors::TransportConnector;
use pingora::protocols::http::v1::client::HttpSession as Upstream;
use pingora::protocols::l4::socket::SocketAddr;
use pingora::protocols::Stream;
use pingora::upstreams::peer::{HttpPeer, Peer};
use pingora::Result;
use tokio::io::AsyncReadExt;

/// How often idle connections are looked at.
const SWEEP: Duration = Duration::from_secs(1);

/// Upstream HTTP/1 connections: made, kept while idle, handed out again.
pub(super) struct Pool {
    transport: TransportConnector,
    idle: Arc<Mutex<VecDeque<Idle>>>,
    /// At most this many idle connections (all backends); the oldest goes first.
    max_idle: usize,
    sweeping: AtomicBool,
}

/// One idle connection, with what it was made for.
struct Idle {
    key: u64,
    addr: SocketAddr,
    stream: Stream,
    expires: Option<Instant>,
}

impl Pool {
    pub(super) fn new(transport: TransportConnector, max_idle: usize) -> Self {
        Pool {
            transport,
            idle: Arc::default(),
            max_idle,
            sweeping: AtomicBool::new(false),
        }
    }

    /// An idle connection to `peer` (`true`), else a new one. A new connection's future
    /// (TCP, TLS: over 8 KiB) lives in a box of its own: inline, every request's future would
    /// be that large, and moving it into its box would copy it each time.
    pub(super) async fn connect(&self, peer: &HttpPeer) -> Result<(Upstream, bool)> {
        if let Some(stream) = self.take(peer) {
            return Ok((Upstream::new_with_options(stream, peer), true));
        }
        let stream = Box::pin(self.transport.new_stream(peer)).await?;
        Ok((Upstream::new_with_options(stream, peer), false))
    }

    /// Keeps `upstream`'s connection for the next request to `peer`, if both sides allow it
    /// (Pingora's `release_http_session`, without its watch task).
    pub(super) async fn release(&self, mut upstream: Upstream, peer: &HttpPeer) {
        upstream.respect_keepalive();
        let Some(mut stream) = upstream.reuse().await else {
            return;
        };
        if !still_open(&mut stream) {
            return;
        }
        let expires = peer.options.idle_timeout.map(|t| Instant::now() + t);
        let entry = Idle {
            key: peer.reuse_hash(),
            addr: peer.address().clone(),
            stream,
            expires,
        };
        let evicted = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            let full = idle.len() >= self.max_idle;
            let evicted = if full { idle.pop_front() } else { None };
            idle.push_back(entry);
            evicted
        };
        drop(evicted); // closed outside the lock
        if !self.sweeping.swap(true, Ordering::Relaxed) {
            tokio::spawn(sweep(Arc::downgrade(&self.idle)));
        }
    }

    /// The most recently kept connection to `peer` that is unexpired and still open.
    fn take(&self, peer: &HttpPeer) -> Option<Stream> {
        let (key, addr) = (peer.reuse_hash(), peer.address());
        let now = Instant::now();
        loop {
            let entry = {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                let at = idle.iter().rposition(|e| e.key == key && e.addr == *addr)?;
                idle.remove(at)?
            };
            let mut stream = entry.stream;
            if entry.expires.is_none_or(|t| t > now) && still_open(&mut stream) {
                return Some(stream);
            }
        }
    }
}

/// Once a second while the pool lives: closes the idle connections that expired, or that
/// the upstream closed or wrote to.
async fn sweep(idle: Weak<Mutex<VecDeque<Idle>>>) {
    loop {
        tokio::time::sleep(SWEEP).await;
        let Some(idle) = idle.upgrade() else {
            return;
        };
        let now = Instant::now();
        let mut gone = Vec::new();
        {
            let mut idle = idle.lock().unwrap_or_else(|p| p.into_inner());
            let mut kept = VecDeque::with_capacity(idle.len());
            for mut entry in idle.drain(..) {
                if entry.expires.is_none_or(|t| t > now) && still_open(&mut entry.stream) {
                    kept.push_back(entry);
                } else {
                    gone.push(entry);
                }
            }
            *idle = kept;
        }
        drop(gone); // closed outside the lock
    }
}

/// Whether an idle connection can carry a request: nothing to read yet. End of stream
/// (closed), bytes (an upstream talking unasked) or an error all rule it out. Unconstrained:
/// tokio's task budget must not make a closed connection look quiet.
fn still_open(stream: &mut Stream) -> bool {
    let mut byte = [0u8; 1];
    let read = pin!(tokio::task::unconstrained(stream.read(&mut byte)));
    let quiet = read
        .poll(&mut Context::from_waker(Waker::noop()))
        .is_pending();
    if !quiet {
        tracing::debug!("an idle upstream connection was closed, or sent bytes unasked");
    }
    quiet
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn a_quiet_connection_is_open_and_a_closed_or_talking_one_is_not() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connect = || async {
            let ours = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (theirs, _) = listener.accept().await.unwrap();
            let ours: Stream = Box::new(pingora::protocols::l4::stream::Stream::from(ours));
            (ours, theirs)
        };
        // The reactor sees the peer's close or bytes at its next turn: poll until then.
        let until_not_open = |mut stream: Stream| async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            while still_open(&mut stream) {
                assert!(Instant::now() < deadline, "still looks open");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let (mut quiet, _theirs) = connect().await;

        let (closed, theirs) = connect().await;
        drop(theirs);
        until_not_open(closed).await;

        let (talking, mut theirs) = connect().await;
        theirs.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        until_not_open(talking).await;

        // The reactor has turned since `quiet` was made; nothing arrived on it.
        assert!(still_open(&mut quiet));
    }
}
