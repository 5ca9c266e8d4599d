//! Prometheus metrics. Families are registered once; every label set the data path touches is
//! resolved when a snapshot is built ([`PoolMetrics`], [`BackendMetrics`]), so a request pays
//! only atomic increments, with no lookups and no locks.
//!
//! Backend state gauges (`switchback_backend_up`, `switchback_backend_drained`,
//! `switchback_backend_inflight`) are sampled by the health supervisor, not the data path.

use std::collections::BTreeSet;
use std::sync::Mutex;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::config::model::Split;

/// Response classes counted per backend; `error` is a request with no upstream response.
pub const CODE_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "error"];
/// Upstream error kinds.
pub const ERROR_KINDS: [&str; 4] = ["connect", "timeout", "reset", "other"];
/// Latency buckets, 100 µs to 30 s.
const BUCKETS: [f64; 17] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// Every metric family switchback exports.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    overrides: IntCounterVec,
    duration: HistogramVec,
    upstream_errors: IntCounterVec,
    inflight: IntGaugeVec,
    version: IntGauge,
    reloads: IntCounterVec,
    admin_requests: IntCounterVec,
    backend_up: IntGaugeVec,
    backend_drained: IntGaugeVec,
    backend_inflight: IntGaugeVec,
    /// Access-log lines dropped because the writer fell behind.
    pub access_log_dropped: IntCounter,
    /// `switchback_client_closed_total{reason}`, indexed like [`CLIENT_CLOSE_REASONS`].
    pub client_closed: [IntCounter; 4],
    /// Pools and `(pool, backend)` pairs that have series, so a reload can drop the series of
    /// what it removed.
    known: Mutex<Known>,
    ops: ops::Ops,
    /// The rollout analysis counters (kept whether or not metrics are on).
    pub tallies: tally::Tallies,
    rollout: rollout::Gauges,
    tls: tls::Families,
}

mod ops;
mod rollout;
pub use rollout::{RolloutGauge, ROLLOUT_STATES};
pub mod tally;
pub mod tls;

/// Pools, and `(pool, backend)` pairs, that have series.
type Known = (BTreeSet<String>, BTreeSet<(String, String)>);

/// Why the proxy closed a client connection on its own: refused framing (`bad-request`), an
/// oversized head (`head-too-large`), `header-timeout`, `idle-timeout`.
pub const CLIENT_CLOSE_REASONS: [&str; 4] = [
    "bad-request",
    "head-too-large",
    "header-timeout",
    "idle-timeout",
];

/// Pre-resolved handles for one pool.
#[derive(Debug, Clone)]
pub struct PoolMetrics {
    /// `switchback_in_flight_requests{pool}`.
    pub inflight: IntGauge,
    /// `switchback_request_duration_seconds{pool}`.
    pub duration: Histogram,
    /// `switchback_requests_total{pool,backend="none",code_class="5xx"}`: answered 503
    /// because the pool had no backend up.
    pub unavailable: IntCounter,
    /// `switchback_override_requests_total{pool,code_class}`, indexed like [`CODE_CLASSES`]:
    /// requests a tester sent to this pool on purpose (kept out of `requests`).
    pub overrides: [IntCounter; 6],
    /// `switchback_retries_total{pool}`: a request sent to a second backend.
    pub retries: IntCounter,
    /// `switchback_upstream_response_seconds{pool}`: what the rollout analysis measures.
    pub upstream_response: Histogram,
}

/// Pre-resolved handles for one backend.
#[derive(Debug, Clone)]
pub struct BackendMetrics {
    /// `switchback_requests_total{pool,backend,code_class}`, indexed like [`CODE_CLASSES`].
    pub requests: [IntCounter; 6],
    /// `switchback_upstream_errors_total{pool,backend,kind}`, indexed like [`ERROR_KINDS`].
    pub errors: [IntCounter; 4],
    /// `switchback_health_checks_total{pool,backend,result}`: `[pass, fail]`.
    pub checks: [IntCounter; 2],
    /// `switchback_ejections_total{pool,backend}`.
    pub ejections: IntCounter,
}

fn must<T>(result: prometheus::Result<T>) -> T {
    result.expect("metric definitions are static and valid")
}

impl Metrics {
    /// Registers every family.
    pub fn new() -> Self {
        let registry = Registry::new();
        let reg = |c: Box<dyn prometheus::core::Collector>| must(registry.register(c));
        let requests = must(IntCounterVec::new(
            Opts::new(
                "switchback_requests_total",
                "Requests by pool, backend and response class",
            ),
            &["pool", "backend", "code_class"],
        ));
        let overrides = must(IntCounterVec::new(
            Opts::new(
                "switchback_override_requests_total",
                "Requests a tester sent to a pool on purpose, by response class",
            ),
            &["pool", "code_class"],
        ));
        let duration = must(HistogramVec::new(
            HistogramOpts::new(
                "switchback_request_duration_seconds",
                "Request duration by pool",
            )
            .buckets(BUCKETS.to_vec()),
            &["pool"],
        ));
        let upstream_errors = must(IntCounterVec::new(
            Opts::new(
                "switchback_upstream_errors_total",
                "Upstream failures by kind",
            ),
            &["pool", "backend", "kind"],
        ));
        let inflight = must(IntGaugeVec::new(
            Opts::new(
                "switchback_in_flight_requests",
                "Requests in flight by pool",
            ),
            &["pool"],
        ));
        let version = must(IntGauge::new(
            "switchback_config_version",
            "Live configuration version",
        ));
        let reloads = must(IntCounterVec::new(
            Opts::new(
                "switchback_config_reloads_total",
                "Config file reloads by result",
            ),
            &["result"],
        ));
        let admin_requests = must(IntCounterVec::new(
            Opts::new(
                "switchback_admin_requests_total",
                "Admin API requests by endpoint and status",
            ),
            &["endpoint", "code"],
        ));
        let backend_gauge = |name: &str, help: &str| {
            must(IntGaugeVec::new(
                Opts::new(name, help),
                &["pool", "backend"],
            ))
        };
        let backend_up = backend_gauge(
            "switchback_backend_up",
            "1 when the backend takes new requests (passing checks, not ejected, not drained)",
        );
        let backend_drained = backend_gauge(
            "switchback_backend_drained",
            "1 when an operator drained the backend",
        );
        let backend_inflight = backend_gauge(
            "switchback_backend_in_flight_requests",
            "Requests in flight by backend",
        );
        let access_log_dropped = must(IntCounter::new(
            "switchback_access_log_dropped_total",
            "Access-log lines dropped because the writer fell behind",
        ));
        let client_closed_vec = must(IntCounterVec::new(
            Opts::new(
                "switchback_client_closed_total",
                "Client connections the proxy closed on its own, by reason",
            ),
            &["reason"],
        ));
        let client_closed = CLIENT_CLOSE_REASONS.map(|r| client_closed_vec.with_label_values(&[r]));
        let build_info = must(IntGaugeVec::new(
            Opts::new("switchback_build_info", "Build information"),
            &["version", "commit"],
        ));
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), env!("SWITCHBACK_COMMIT")])
            .set(1);
        for result in ["applied", "rejected"] {
            reloads.with_label_values(&[result]);
        }
        reg(Box::new(requests.clone()));
        reg(Box::new(overrides.clone()));
        reg(Box::new(duration.clone()));
        reg(Box::new(upstream_errors.clone()));
        reg(Box::new(inflight.clone()));
        reg(Box::new(version.clone()));
        reg(Box::new(reloads.clone()));
        reg(Box::new(admin_requests.clone()));
        reg(Box::new(access_log_dropped.clone()));
        reg(Box::new(backend_up.clone()));
        reg(Box::new(backend_drained.clone()));
        reg(Box::new(backend_inflight.clone()));
        reg(Box::new(client_closed_vec));
        reg(Box::new(build_info));
        let ops = ops::Ops::register(&registry);
        let rollout = rollout::Gauges::register(&registry);
        let tls = tls::Families::register(&registry);
        Metrics {
            registry,
            requests,
            overrides,
            duration,
            upstream_errors,
            inflight,
            version,
            reloads,
            admin_requests,
            backend_up,
            backend_drained,
            backend_inflight,
            access_log_dropped,
            client_closed,
            known: Mutex::default(),
            ops,
            tallies: Default::default(),
            rollout,
            tls,
        }
    }

    /// Samples one backend's state gauges.
    pub fn set_backend_state(
        &self,
        pool: &str,
        backend: &str,
        up: bool,
        drained: bool,
        inflight: i64,
    ) {
        self.remember(pool, Some(backend));
        let labels = [pool, backend];
        self.backend_up
            .with_label_values(&labels)
            .set(i64::from(up));
        self.backend_drained
            .with_label_values(&labels)
            .set(i64::from(drained));
        self.backend_inflight
            .with_label_values(&labels)
            .set(inflight);
    }

    /// Drops a removed backend's state gauges.
    pub fn forget_backend(&self, pool: &str, backend: &str) {
        let labels = [pool, backend];
        for gauge in [
            &self.backend_up,
            &self.backend_drained,
            &self.backend_inflight,
        ] {
            let _ = gauge.remove_label_values(&labels);
        }
    }

    /// Drops every series of the pools and backends not in `keep` (`(pool, backend)` pairs of
    /// the new configuration): a reload that removes them leaves nothing behind in `/metrics`.
    pub fn retain(&self, keep: &[(String, String)]) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let (pools, backends) = &mut *known;
        let gone: Vec<(String, String)> = backends
            .iter()
            .filter(|pair| !keep.contains(pair))
            .cloned()
            .collect();
        for (pool, backend) in &gone {
            for class in CODE_CLASSES {
                let _ = self.requests.remove_label_values(&[pool, backend, class]);
            }
            for kind in ERROR_KINDS {
                let _ = self
                    .upstream_errors
                    .remove_label_values(&[pool, backend, kind]);
            }
            self.forget_backend(pool, backend);
            self.ops.forget_backend(pool, backend);
            backends.remove(&(pool.clone(), backend.clone()));
        }
        let gone: Vec<String> = pools
            .iter()
            .filter(|p| !keep.iter().any(|(kp, _)| kp == *p))
            .cloned()
            .collect();
        for pool in gone {
            let _ = self.duration.remove_label_values(&[&pool]);
            let _ = self.inflight.remove_label_values(&[&pool]);
            let _ = self.requests.remove_label_values(&[&pool, "none", "5xx"]);
            for class in CODE_CLASSES {
                let _ = self.overrides.remove_label_values(&[&pool, class]);
            }
            self.ops.forget_pool(&pool);
            pools.remove(&pool);
        }
    }

    fn remember(&self, pool: &str, backend: Option<&str>) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.0.insert(pool.to_string());
        if let Some(backend) = backend {
            known.1.insert((pool.to_string(), backend.to_string()));
        }
    }

    /// Handles for `pool`.
    pub fn pool(&self, pool: &str) -> PoolMetrics {
        self.remember(pool, None);
        PoolMetrics {
            inflight: self.inflight.with_label_values(&[pool]),
            duration: self.duration.with_label_values(&[pool]),
            unavailable: self.requests.with_label_values(&[pool, "none", "5xx"]),
            overrides: CODE_CLASSES.map(|c| self.overrides.with_label_values(&[pool, c])),
            retries: self.ops.retries.with_label_values(&[pool]),
            upstream_response: self.ops.upstream_response.with_label_values(&[pool]),
        }
    }

    /// Handles for `backend` of `pool`.
    pub fn backend(&self, pool: &str, backend: &str) -> BackendMetrics {
        self.remember(pool, Some(backend));
        let (checks, ejections) = self.ops.backend(pool, backend);
        BackendMetrics {
            requests: CODE_CLASSES.map(|c| self.requests.with_label_values(&[pool, backend, c])),
            errors: ERROR_KINDS
                .map(|k| self.upstream_errors.with_label_values(&[pool, backend, k])),
            checks,
            ejections,
        }
    }

    /// Publishes a new live version and split.
    pub fn set_live(&self, version: u64, split: &Split) {
        self.version.set(version as i64);
        for (pool, bp) in split.shares() {
            self.ops
                .split_ratio
                .with_label_values(&[pool])
                .set(f64::from(*bp) / 10_000.0);
        }
    }

    /// Whether the state store answers (`switchback_state_store_up`).
    pub fn set_store_up(&self, up: bool) {
        self.ops.store_up.set(i64::from(up));
    }

    /// Counts a file reload: `applied` or `rejected`.
    pub fn reload(&self, result: &str) {
        self.reloads.with_label_values(&[result]).inc();
        self.ops.reload(result);
    }

    /// Counts an admin request.
    pub fn admin_request(&self, endpoint: &str, code: u16) {
        self.admin_requests
            .with_label_values(&[endpoint, &code.to_string()])
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        must(TextEncoder::new().encode(&self.registry.gather(), &mut out));
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
