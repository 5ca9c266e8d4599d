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

use crate::config::model::{BasisPoints, OnPoolDown, PoolPolicy, ProxySettings};
use crate::config::Config;
use crate::data::affinity::BucketTable;
use crate::data::health::{BackendHealth, HealthRegistry};
use crate::data::routing::Schedule;
use crate::data::tokens::Tokens;
use crate::metrics::{BackendMetrics, Metrics, PoolMetrics};

// Pool indices in the bucket lookup are bytes.
const _: () = assert!(crate::config::defaults::MAX_POOLS <= 256);

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
    /// The `[override]` tokens (`pool:token`), when overrides are on.
    pub override_tokens: Option<Arc<Tokens>>,
    /// The pool index owning each of the 10,000 buckets (the split, laid out by the table).
    buckets: Box<[u8]>,
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
    /// The rollout analysis counters (shared by every version holding this pool).
    pub tally: Arc<crate::metrics::tally::PoolTally>,
    /// Health checks, ejection, slow start and pool-down behaviour.
    pub policy: PoolPolicy,
    /// The `[proxy] pool-header` line naming this pool, built once: the name as Pingora's
    /// case-preserving key and the value, both cloned per response without allocating.
    pub header: Option<(bytes::Bytes, http::HeaderValue)>,
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
    /// Live health, shared with every other snapshot holding this backend.
    pub health: Arc<BackendHealth>,
}

/// The `[proxy] pool-header` line naming pool `name`: the name as Pingora would case it on
/// the wire, and the value (validated pool names always are one).
fn pool_line(header: &http::HeaderName, name: &str) -> Option<(bytes::Bytes, http::HeaderValue)> {
    use pingora::http::IntoCaseHeaderName;
    let cased = header.into_case_header_name();
    let value = http::HeaderValue::from_str(name).ok()?;
    Some((bytes::Bytes::copy_from_slice(cased.as_slice()), value))
}

/// Why a request could not be routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRoute {
    /// No pool has a share of traffic.
    NoShare,
    /// The chosen pool (index) has no backend that can take requests, and it fails rather
    /// than fails over, or no other pool can take its share.
    PoolDown(usize),
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

/// Serialises ejection decisions, so that counting the ejected backends of a pool and
/// ejecting one more is a single step: two simultaneous failures cannot both pass the cap.
/// Taken only when a request failed.
static EJECTION: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl PoolEntry {
    /// Feeds a failed request on backend `b` into passive ejection, never ejecting more than
    /// `max-ejected-percent` of the pool. Returns the ejection's length when it ejected. The
    /// lock is taken only when a failure streak reaches the threshold.
    pub fn record_failure(&self, b: usize) -> Option<std::time::Duration> {
        let outlier = &self.policy.outlier;
        let health = &self.backends[b].health;
        if !health.count_failure(outlier) {
            return None;
        }
        let _one_at_a_time = EJECTION.lock().unwrap_or_else(|e| e.into_inner());
        if health.is_ejected() {
            return None;
        }
        let ejected = self
            .backends
            .iter()
            .filter(|b| b.health.is_ejected())
            .count();
        let may_eject =
            (ejected + 1) * 100 <= self.backends.len() * outlier.max_ejected_percent as usize;
        may_eject.then(|| health.eject(outlier))
    }
}

impl Snapshot {
    /// [`Snapshot::build_with`] the fresh bucket layout of the split and no override tokens.
    pub fn build(
        config: Arc<Config>,
        version: u64,
        metrics: &Metrics,
        health: &HealthRegistry,
    ) -> Self {
        let table = BucketTable::fresh(config.split.shares());
        Self::build_with(config, version, metrics, health, &table, None)
    }

    /// Builds the snapshot for `config` at `version`, resolving metric handles in `metrics`
    /// and each backend's shared health in `health` (backends no longer configured are
    /// forgotten there). `table` must fit the split ([`BucketTable::fits`]).
    pub fn build_with(
        config: Arc<Config>,
        version: u64,
        metrics: &Metrics,
        health: &HealthRegistry,
        table: &BucketTable,
        override_tokens: Option<Arc<Tokens>>,
    ) -> Self {
        let moved;
        let table = match table.fits(config.split.shares()) {
            true => table,
            false => {
                tracing::error!("the bucket table does not fit the split; moving it (a bug)");
                moved = table.next(config.split.shares());
                &moved
            }
        };
        let on = config.metrics_enabled;
        let pools: Vec<PoolEntry> = config
            .pools
            .iter()
            .map(|(name, pool)| {
                let weights: Vec<u32> = pool.backends.iter().map(|b| b.weight).collect();
                let ca = crate::data::tls::upstream::ca_list(pool);
                PoolEntry {
                    name: name.clone(),
                    share: config.split.share(name),
                    backends: pool
                        .backends
                        .iter()
                        .map(|b| BackendEntry {
                            name: b.name.clone(),
                            addr: b.addr,
                            peer: build_peer(b, pool, &config.proxy, ca.as_ref()),
                            metrics: on.then(|| metrics.backend(name, &b.name)),
                            health: health.get_or_add(name, &b.name, pool.policy.slow_start),
                        })
                        .collect(),
                    metrics: on.then(|| metrics.pool(name)),
                    tally: metrics.tallies.get(name),
                    policy: pool.policy.clone(),
                    header: config
                        .proxy
                        .pool_header
                        .as_ref()
                        .and_then(|h| pool_line(h, name)),
                    schedule: Schedule::smooth_weighted(&weights),
                    cursor: AtomicU64::new(0),
                }
            })
            .collect();
        let keep: Vec<(String, String)> = pools
            .iter()
            .flat_map(|p| p.backends.iter().map(|b| (p.name.clone(), b.name.clone())))
            .collect();
        health.retain(&keep);
        metrics.retain(&keep);
        let names: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
        metrics.tallies.retain(&names);
        let (names, owners) = table.owners();
        let index: Vec<u8> = names
            .iter()
            .map(|n| pools.iter().position(|p| &p.name == n).unwrap_or(0) as u8)
            .collect();
        let buckets = owners.iter().map(|o| index[usize::from(*o)]).collect();
        Snapshot {
            version,
            config,
            pools,
            override_tokens,
            buckets,
        }
    }

    /// Routes a request with `key` in `[0, 10 000)` (a user's bucket, or drawn at random): the
    /// pool owning that bucket, then the
    /// next backend of that pool's weighted round-robin that can take requests. When the pool
    /// has none, its `on-pool-down` policy decides: fail, or fail over to the other pools with
    /// a share, in proportion to their shares.
    ///
    /// # Errors
    /// [`NoRoute`] when no backend may take the request.
    pub fn route(&self, key: u32) -> Result<Route<'_>, NoRoute> {
        let pool_index = usize::from(*self.buckets.get(key as usize).ok_or(NoRoute::NoShare)?);
        if let Some(route) = self.pick_backend(pool_index, None) {
            return Ok(route);
        }
        match self.pools[pool_index].policy.on_pool_down {
            OnPoolDown::Fail => Err(NoRoute::PoolDown(pool_index)),
            OnPoolDown::Failover => self
                .failover(key, pool_index)
                .ok_or(NoRoute::PoolDown(pool_index)),
        }
    }

    /// The second and last attempt after the connection to `failed` could not be made: another
    /// backend of the same pool first, else — unless the pool is set to `on-pool-down = "fail"`
    /// — any other pool with a share and a backend up.
    pub fn route_retry(&self, key: u32, failed: (usize, usize)) -> Option<Route<'_>> {
        self.pick_backend(failed.0, Some(failed.1)).or_else(|| {
            match self.pools[failed.0].policy.on_pool_down {
                OnPoolDown::Fail => None,
                OnPoolDown::Failover => self.failover(key, failed.0),
            }
        })
    }

    /// The next available backend of pool `p` other than `avoid`, never another pool: a
    /// tester's override.
    pub fn route_in_pool(&self, p: usize, avoid: Option<usize>) -> Option<Route<'_>> {
        self.pick_backend(p, avoid)
    }

    /// Whether any backend of pool `index` can take requests now.
    pub fn pool_up(&self, index: usize) -> bool {
        self.pools[index]
            .backends
            .iter()
            .any(|b| b.health.available())
    }

    /// The next available backend of pool `p` other than `avoid`. Follows the weighted
    /// schedule; a backend in slow start is skipped with a probability that falls as it ramps
    /// up. When the schedule's next few slots are all unavailable, scans the pool.
    fn pick_backend(&self, p: usize, avoid: Option<usize>) -> Option<Route<'_>> {
        let pool = &self.pools[p];
        let n = pool.backends.len();
        let ticket = pool.cursor.fetch_add(1, Ordering::Relaxed);
        let ramp = pool.policy.slow_start;
        let mut ramping = None;
        let scheduled = (0..n as u64).map(|i| pool.schedule.pick(ticket.wrapping_add(i)));
        let scan = (0..n).map(|i| (ticket as usize).wrapping_add(i) % n);
        for b in scheduled.chain(scan) {
            let backend = &pool.backends[b];
            if Some(b) == avoid || !backend.health.available() {
                continue;
            }
            if !ramp.is_zero() {
                let share = backend.health.ramp_share(ramp);
                if share < 1024 && mix(ticket ^ b as u64) % 1024 >= share {
                    ramping.get_or_insert(b);
                    continue;
                }
            }
            return Some(self.route_to(p, b));
        }
        ramping.map(|b| self.route_to(p, b))
    }

    /// The share of pool `down` goes to the other pools with a share and a backend up, in
    /// proportion to their shares.
    fn failover(&self, key: u32, down: usize) -> Option<Route<'_>> {
        let candidates = || {
            self.pools
                .iter()
                .enumerate()
                .filter(move |(i, p)| *i != down && p.share > 0 && self.pool_up(*i))
        };
        let total: u64 = candidates().map(|(_, p)| u64::from(p.share)).sum();
        if total == 0 {
            return None;
        }
        // The key already decided which pool was down, so it is not uniform over `total`;
        // a hash of it is.
        let mut target = mix(u64::from(key)) % total;
        for (i, pool) in candidates() {
            if target < u64::from(pool.share) {
                return self.pick_backend(i, None);
            }
            target -= u64::from(pool.share);
        }
        None
    }

    /// The route to a known backend (indices from an earlier [`Route`] of this snapshot).
    pub fn route_to(&self, pool_index: usize, backend_index: usize) -> Route<'_> {
        let pool = &self.pools[pool_index];
        Route {
            pool_index,
            backend_index,
            pool,
            backend: &pool.backends[backend_index],
        }
    }
}

/// A cheap 64-bit mix (SplitMix64's finaliser): the slow-start coin and the failover draw.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn build_peer(
    backend: &crate::config::model::Backend,
    pool: &crate::config::model::Pool,
    settings: &ProxySettings,
    ca: Option<&Arc<[pingora::utils::tls::WrappedX509]>>,
) -> HttpPeer {
    let mut peer = HttpPeer::new(backend.addr, false, String::new());
    crate::data::tls::upstream::configure(&mut peer, pool, &backend.name, ca);
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

#[cfg(test)]
mod tests;
