//! One immutable [`Snapshot`] per configuration version, published through one `ArcSwap`.
//!
//! A request loads the snapshot once and keeps the `Arc` for its whole life, so everything it
//! sees (split, pools, peers, timeouts) belongs to one version. Pingora peers are built here,
//! once per version, never per request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora::upstreams::peer::HttpPeer;

use crate::config::model::{BasisPoints, ProxySettings};
use crate::config::Config;
use crate::metrics::{BackendMetrics, Metrics, PoolMetrics};
use crate::routing::{Schedule, SplitTable};

/// The live snapshot, shared by the data plane and (later) the control plane.
pub type Live = Arc<ArcSwap<Snapshot>>;

/// Everything the data plane needs for one configuration version.
#[derive(Debug)]
pub struct Snapshot {
    /// Generation number; every accepted change bumps it.
    pub version: u64,
    /// The validated configuration this snapshot was built from.
    pub config: Arc<Config>,
    /// Pools in name order; indices match [`Snapshot::route`] results.
    pub pools: Vec<PoolEntry>,
    split: SplitTable,
}

/// A pool, ready to route.
#[derive(Debug)]
pub struct PoolEntry {
    /// Pool name.
    pub name: String,
    /// Share of traffic, in basis points.
    pub share: BasisPoints,
    /// Backends in file order.
    pub backends: Vec<BackendEntry>,
    /// Metric handles, resolved once; `None` when metrics are disabled.
    pub metrics: Option<PoolMetrics>,
    schedule: Schedule,
    cursor: AtomicU64,
}

/// A backend with its pre-built Pingora peer.
#[derive(Debug)]
pub struct BackendEntry {
    /// The address as written in the config file.
    pub name: String,
    /// The resolved address.
    pub addr: SocketAddr,
    /// The peer handed to Pingora (cloned per request; pooled connections are keyed on it).
    pub peer: HttpPeer,
    /// Metric handles, resolved once; `None` when metrics are disabled.
    pub metrics: Option<BackendMetrics>,
}

/// Where one request goes.
#[derive(Debug, Clone, Copy)]
pub struct Route<'a> {
    /// Index into [`Snapshot::pools`].
    pub pool_index: usize,
    /// Index into the pool's backends.
    pub backend_index: usize,
    /// The pool.
    pub pool: &'a PoolEntry,
    /// The backend inside the pool.
    pub backend: &'a BackendEntry,
}

impl Snapshot {
    /// Builds the snapshot for `config` at `version`, resolving metric handles in `metrics`.
    pub fn build(config: Arc<Config>, version: u64, metrics: &Metrics) -> Self {
        let on = config.metrics_enabled;
        let pools: Vec<PoolEntry> = config
            .pools
            .iter()
            .map(|(name, pool)| {
                let weights: Vec<u32> = pool.backends.iter().map(|b| b.weight).collect();
                PoolEntry {
                    name: name.clone(),
                    share: config.split.share(name),
                    backends: pool
                        .backends
                        .iter()
                        .map(|b| BackendEntry {
                            name: b.name.clone(),
                            addr: b.addr,
                            peer: build_peer(b.addr, &config.proxy),
                            metrics: on.then(|| metrics.backend(name, &b.name)),
                        })
                        .collect(),
                    metrics: on.then(|| metrics.pool(name)),
                    schedule: Schedule::smooth_weighted(&weights),
                    cursor: AtomicU64::new(0),
                }
            })
            .collect();
        let split = SplitTable::new(pools.iter().map(|p| p.share));
        Snapshot {
            version,
            config,
            pools,
            split,
        }
    }

    /// Routes a request with `key` (uniform in `[0, 10 000)`): the pool by the split, then the
    /// next backend of that pool's weighted round-robin.
    pub fn route(&self, key: u32) -> Option<Route<'_>> {
        let pool_index = self.split.pick(key)?;
        let pool = &self.pools[pool_index];
        let ticket = pool.cursor.fetch_add(1, Ordering::Relaxed);
        let backend_index = pool.schedule.pick(ticket);
        let backend = pool.backends.get(backend_index)?;
        Some(Route {
            pool_index,
            backend_index,
            pool,
            backend,
        })
    }
}

fn build_peer(addr: SocketAddr, settings: &ProxySettings) -> HttpPeer {
    let mut peer = HttpPeer::new(addr, false, String::new());
    peer.options.connection_timeout = Some(settings.connect_timeout);
    peer.options.read_timeout = Some(settings.read_timeout);
    peer.options.write_timeout = Some(settings.write_timeout);
    peer.options.idle_timeout = Some(settings.idle_timeout);
    peer
}

/// Creates the live cell holding `snapshot`.
pub fn live(snapshot: Snapshot) -> Live {
    Arc::new(ArcSwap::from_pointee(snapshot))
}
