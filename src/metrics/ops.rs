//! Operational families beside the request counters: the split as a ratio, the last reload's
//! outcome, active health-check results, ejections, retries, and the `process_*` metrics.

use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

use super::{must, BUCKETS};

/// The families, registered once.
pub(super) struct Ops {
    pub(super) split_ratio: GaugeVec,
    pub(super) last_reload_ok: IntGauge,
    pub(super) last_reload_success: IntGauge,
    pub(super) checks: IntCounterVec,
    pub(super) ejections: IntCounterVec,
    pub(super) retries: IntCounterVec,
    pub(super) upstream_response: HistogramVec,
    pub(super) store_up: IntGauge,
}

impl Ops {
    /// Registers every family in `registry` (and the process collector on Linux).
    pub(super) fn register(registry: &Registry) -> Ops {
        let ops = Ops {
            split_ratio: must(GaugeVec::new(
                Opts::new(
                    "switchback_split_ratio",
                    "Live traffic share by pool, 0 to 1",
                ),
                &["pool"],
            )),
            last_reload_ok: must(IntGauge::new(
                "switchback_config_last_reload_successful",
                "1 when the last config reload was applied (or changed nothing), 0 when rejected",
            )),
            store_up: must(IntGauge::new(
                "switchback_state_store_up",
                "1 while the state store answers (always 1 for a local store), 0 while the shared state is unreachable",
            )),
            last_reload_success: must(IntGauge::new(
                "switchback_config_last_reload_success_timestamp_seconds",
                "When the configuration was last loaded or reloaded successfully",
            )),
            checks: must(IntCounterVec::new(
                Opts::new(
                    "switchback_health_checks_total",
                    "Active health checks by backend and result (pass, fail)",
                ),
                &["pool", "backend", "result"],
            )),
            ejections: must(IntCounterVec::new(
                Opts::new(
                    "switchback_ejections_total",
                    "Passive ejections (outlier detection) by backend",
                ),
                &["pool", "backend"],
            )),
            retries: must(IntCounterVec::new(
                Opts::new(
                    "switchback_retries_total",
                    "Requests sent to a second backend after the first could not be reached",
                ),
                &["pool"],
            )),
            upstream_response: must(HistogramVec::new(
                HistogramOpts::new(
                    "switchback_upstream_response_seconds",
                    "Upstream response time by pool: from the request's last byte written \
                     upstream (its head, for an answer before the body ended) to the response head",
                )
                .buckets(BUCKETS.to_vec()),
                &["pool"],
            )),
        };
        for family in [
            Box::new(ops.split_ratio.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(ops.last_reload_ok.clone()),
            Box::new(ops.last_reload_success.clone()),
            Box::new(ops.checks.clone()),
            Box::new(ops.ejections.clone()),
            Box::new(ops.retries.clone()),
            Box::new(ops.upstream_response.clone()),
            Box::new(ops.store_up.clone()),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ] {
            must(registry.register(family));
        }
        ops.last_reload_ok.set(1);
        ops.store_up.set(1);
        ops.last_reload_success.set(now());
        ops
    }

    /// Records a reload's result (`applied` or `rejected`).
    pub(super) fn reload(&self, result: &str) {
        let ok = result != "rejected";
        self.last_reload_ok.set(i64::from(ok));
        if ok {
            self.last_reload_success.set(now());
        }
    }

    /// Drops the series of a removed backend.
    pub(super) fn forget_backend(&self, pool: &str, backend: &str) {
        for result in ["pass", "fail"] {
            let _ = self.checks.remove_label_values(&[pool, backend, result]);
        }
        let _ = self.ejections.remove_label_values(&[pool, backend]);
    }

    /// Drops the series of a removed pool.
    pub(super) fn forget_pool(&self, pool: &str) {
        let _ = self.split_ratio.remove_label_values(&[pool]);
        let _ = self.retries.remove_label_values(&[pool]);
        let _ = self.upstream_response.remove_label_values(&[pool]);
    }

    /// `[pass, fail]` check counters and the ejection counter of one backend.
    pub(super) fn backend(&self, pool: &str, backend: &str) -> ([IntCounter; 2], IntCounter) {
        (
            ["pass", "fail"].map(|r| self.checks.with_label_values(&[pool, backend, r])),
            self.ejections.with_label_values(&[pool, backend]),
        )
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
