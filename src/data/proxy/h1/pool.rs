//! The HTTP/1 path's upstream connections: new ones from Pingora's transport connector, idle
//! ones in a table of our own.
//!
//! Pingora's pool (`TransportConnector::release_stream`) spawns a task for every connection
//! it takes back, to watch it while idle; taking the connection out again wakes that task and
//! waits for it to let go: a task spawned and two task switches on every request over a
//! kept-alive upstream connection (with its locks, ~14k instructions per request in all,
//! issue 14). Here an idle connection is an entry in a table: taking one checks it is
//! unexpired and still open (a read that must not be ready, as Pingora's own
//! `test_reusable_stream`), and a sweeper task on the control runtime closes, once a second,
//! the expired ones, those the upstream closed or wrote to, and those of a drained backend:
//! none lingers more than about a second past `idle-timeout`, in CLOSE_WAIT, or past its
//! backend's drain (a drained backend's connection is not kept at all after its request).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use pingora::connectors::TransportConnector;
use pingora::protocols::http::v1::client::HttpSession as Upstream;
use pingora::protocols::l4::socket::SocketAddr;
use pingora::protocols::Stream;
use pingora::upstreams::peer::{HttpPeer, Peer};
use pingora::Result;
use tokio::io::AsyncReadExt;

use crate::data::health::BackendHealth;

/// How often idle connections are looked at.
const SWEEP: Duration = Duration::from_secs(1);

/// Upstream HTTP/1 connections: made, kept while idle, handed out again.
pub(super) struct Pool {
    transport: TransportConnector,
    idle: Arc<Mutex<Table>>,
}

/// The idle connections by `peer.reuse_hash()`, each list oldest first.
#[derive(Default)]
struct Table {
    by_key: HashMap<u64, VecDeque<Idle>>,
    len: usize,
    /// At most this many idle connections (all backends); the oldest goes first.
    max: usize,
}

/// One idle connection, with what it was made for.
struct Idle {
    addr: SocketAddr,
    stream: Stream,
    since: Instant,
    expires: Option<Instant>,
    /// The backend's health: a drained backend's idle connections are closed.
    health: Option<Arc<BackendHealth>>,
}

impl Idle {
    /// Whether the connection may carry another request at `now`.
    fn usable(&mut self, now: Instant) -> bool {
        self.expires.is_none_or(|t| t > now)
            && !self.health.as_ref().is_some_and(|h| h.is_drained())
            && still_open(&mut self.stream)
    }
}

impl Pool {
    /// A pool of at most `max_idle` idle connections, swept by a task on `sweeper` (a
    /// runtime that lives as long as the process serves).
    pub(super) fn new(
        transport: TransportConnector,
        max_idle: usize,
        sweeper: &tokio::runtime::Handle,
    ) -> Self {
        let idle = Arc::new(Mutex::new(Table::with_max(max_idle)));
        sweeper.spawn(sweep(Arc::downgrade(&idle)));
        Pool { transport, idle }
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
    /// (Pingora's `release_http_session`, without its watch task) and its backend (`health`)
    /// is not drained.
    pub(super) async fn release(
        &self,
        mut upstream: Upstream,
        peer: &HttpPeer,
        health: &Arc<BackendHealth>,
    ) {
        if health.is_drained() {
            return;
        }
        upstream.respect_keepalive();
        let Some(mut stream) = upstream.reuse().await else {
            return;
        };
        if !still_open(&mut stream) {
            return;
        }
        let since = Instant::now();
        let entry = Idle {
            addr: peer.address().clone(),
            stream,
            since,
            expires: peer.options.idle_timeout.map(|t| since + t),
            health: Some(health.clone()),
        };
        let evicted = lock(&self.idle).keep(peer.reuse_hash(), entry);
        drop(evicted); // closed outside the lock
    }

    /// The most recently kept connection to `peer` that is unexpired and still open.
    fn take(&self, peer: &HttpPeer) -> Option<Stream> {
        let (key, addr) = (peer.reuse_hash(), peer.address());
        let now = Instant::now();
        loop {
            let mut entry = lock(&self.idle).take(key, addr)?;
            // Dropped (closed) outside the lock if unusable.
            if entry.usable(now) {
                return Some(entry.stream);
            }
        }
    }
}

impl Table {
    fn with_max(max: usize) -> Table {
        Table {
            max,
            ..Table::default()
        }
    }

    /// Adds `entry` under `key`; the oldest idle connection of all when the table is full.
    fn keep(&mut self, key: u64, entry: Idle) -> Option<Idle> {
        if self.max == 0 {
            return Some(entry);
        }
        let evicted = if self.len >= self.max {
            self.take_oldest()
        } else {
            None
        };
        self.by_key.entry(key).or_default().push_back(entry);
        self.len += 1;
        evicted
    }

    /// The newest entry under `key` made for `addr` (another address means a hash collision).
    fn take(&mut self, key: u64, addr: &SocketAddr) -> Option<Idle> {
        let list = self.by_key.get_mut(&key)?;
        let at = list.iter().rposition(|e| e.addr == *addr)?;
        self.len -= 1;
        list.remove(at)
    }

    /// Takes `key`'s whole list out, for checking.
    fn take_list(&mut self, key: u64) -> VecDeque<Idle> {
        let list = self.by_key.remove(&key).unwrap_or_default();
        self.len -= list.len();
        list
    }

    /// Puts back `older` (a checked list of `key`) in front of what was kept meanwhile; the
    /// oldest of all evicted down to `max`.
    fn merge(&mut self, key: u64, mut older: VecDeque<Idle>) -> Vec<Idle> {
        if !older.is_empty() {
            self.len += older.len();
            let list = self.by_key.entry(key).or_default();
            older.append(list);
            *list = older;
        }
        let mut evicted = Vec::new();
        while self.len > self.max {
            evicted.extend(self.take_oldest());
        }
        evicted
    }

    fn take_oldest(&mut self) -> Option<Idle> {
        let list = self
            .by_key
            .values_mut()
            .filter(|l| !l.is_empty())
            .min_by_key(|l| l.front().map(|e| e.since))?;
        self.len -= 1;
        list.pop_front()
    }
}

fn lock(table: &Mutex<Table>) -> MutexGuard<'_, Table> {
    table
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Once a second while the pool lives: closes the idle connections that expired, or that
/// the upstream closed or wrote to. One peer's list at a time is checked outside the lock
/// (each check polls a socket) and the unusable ones closed after it: the other peers' idle
/// connections stay available meanwhile.
async fn sweep(idle: Weak<Mutex<Table>>) {
    loop {
        tokio::time::sleep(SWEEP).await;
        let Some(idle) = idle.upgrade() else {
            return;
        };
        let keys: Vec<u64> = lock(&idle).by_key.keys().copied().collect();
        for key in keys {
            let checking = lock(&idle).take_list(key);
            let now = Instant::now();
            let (mut kept, mut dead) = (VecDeque::new(), Vec::new());
            for mut e in checking {
                if e.usable(now) {
                    kept.push_back(e);
                } else {
                    dead.push(e);
                }
            }
            let evicted = lock(&idle).merge(key, kept);
            drop((dead, evicted)); // closed outside the lock
        }
    }
}

/// Whether an idle connection can carry a request: nothing to read yet. End of stream
/// (closed), bytes (an upstream talking unasked) or an error all rule it out. Unconstrained:
/// tokio's task budget must not make a closed connection look quiet.
fn still_open(stream: &mut Stream) -> bool {
    let mut byte = [0u8; 1];
    let read = pin!(tokio::task::unconstrained(stream.read(&mut byte)));
    match read.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Pending => true,
        Poll::Ready(Ok(0)) => {
            tracing::debug!("an idle upstream connection was closed by the upstream");
            false
        }
        Poll::Ready(Ok(_)) => {
            // Some servers send a 408 before closing an idle connection: not worth a warning.
            tracing::debug!("an idle upstream connection received bytes nobody asked for");
            false
        }
        Poll::Ready(Err(e)) => {
            tracing::debug!(error = %e, "an idle upstream connection failed");
            false
        }
    }
}

#[cfg(test)]
mod tests;
