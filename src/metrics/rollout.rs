//! The rollout gauges: where the current (or last) rollout is, and its evidence.

use prometheus::{Gauge, GaugeVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::{must, Metrics};

/// Every state a rollout can be in, as the `state` label shows it (the rollout's `Phase` names;
/// a unit test in `control/rollout.rs` keeps the two lists equal).
pub const ROLLOUT_STATES: [&str; 7] = [
    "smoke",
    "running",
    "paused",
    "waiting",
    "promoted",
    "rolled-back",
    "aborted",
];

/// The current (or last) rollout as the gauges show it.
#[derive(Debug, Clone, Copy)]
pub struct RolloutGauge<'a> {
    /// Its state, one of [`ROLLOUT_STATES`].
    pub state: &'a str,
    /// Whether it is still going (its evidence is shown).
    pub active: bool,
    /// The index of the step in force.
    pub step: usize,
    /// The target's share, percent.
    pub weight: f64,
}

/// The families, registered once.
pub(super) struct Gauges {
    weight: Gauge,
    step: IntGauge,
    state: IntGaugeVec,
    evidence: GaugeVec,
}

impl Gauges {
    /// Registers every family in `registry`.
    pub(super) fn register(registry: &Registry) -> Gauges {
        let gauges = Gauges {
            weight: must(Gauge::new(
                "switchback_rollout_weight",
                "The rollout target's share of traffic, percent (the current or last rollout)",
            )),
            step: must(IntGauge::new(
                "switchback_rollout_step",
                "Index of the rollout step in force (the current or last rollout)",
            )),
            state: must(IntGaugeVec::new(
                Opts::new(
                    "switchback_rollout_state",
                    "1 for the state the current or last rollout is in, 0 for the others",
                ),
                &["state"],
            )),
            evidence: must(GaugeVec::new(
                Opts::new(
                    "switchback_rollout_evidence",
                    "The active rollout's log-likelihood ratio per test (error, latency); it rolls back at ln(1/alpha)",
                ),
                &["test"],
            )),
        };
        for family in [
            Box::new(gauges.weight.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(gauges.step.clone()),
            Box::new(gauges.state.clone()),
            Box::new(gauges.evidence.clone()),
        ] {
            must(registry.register(family));
        }
        for state in ROLLOUT_STATES {
            gauges.state.with_label_values(&[state]).set(0);
        }
        gauges
    }
}

impl Metrics {
    /// Publishes the current or last rollout's state, step and weight (percent); `None` when
    /// there has been none.
    pub fn set_rollout(&self, rollout: Option<RolloutGauge<'_>>) {
        let g = &self.rollout;
        for state in ROLLOUT_STATES {
            let on = rollout.is_some_and(|r| r.state == state);
            g.state.with_label_values(&[state]).set(i64::from(on));
        }
        g.step.set(rollout.map_or(0, |r| r.step) as i64);
        g.weight.set(rollout.map_or(0.0, |r| r.weight));
        if !rollout.is_some_and(|r| r.active) {
            self.set_rollout_evidence(0.0, 0.0);
        }
    }

    /// Publishes the active rollout's evidence.
    pub fn set_rollout_evidence(&self, error: f64, latency: f64) {
        self.rollout
            .evidence
            .with_label_values(&["error"])
            .set(error);
        self.rollout
            .evidence
            .with_label_values(&["latency"])
            .set(latency);
    }
}
