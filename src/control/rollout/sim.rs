//! The seeded simulation's engine: Poisson traffic through the real state machine, second by
//! second, with error and slow rates that may change with time and with the target's weight.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::active::Active;
use super::analysis::{Counts, Second};
use super::latency::Counted;
use super::launch::Launch;
use super::machine::{ends, Observation, Operator};
use super::{Phase, Reason};
use crate::config::model::{AnalysisSettings, BasisPoints, OnInconclusive, Plan, Step};

/// Both pools' rates in one second.
#[derive(Clone, Copy, Debug)]
pub(super) struct Rates {
    pub(super) base_errors: f64,
    pub(super) canary_errors: f64,
    pub(super) slow: f64,
}

/// 0.5 % errors and 0.5 % slow on both pools.
pub(super) const HEALTHY: Rates = Rates {
    base_errors: 0.005,
    canary_errors: 0.005,
    slow: 0.005,
};

/// What a run simulates.
pub(super) struct Scenario<'a> {
    /// Requests per second, both pools together.
    pub(super) rate: f64,
    pub(super) plan: Arc<Plan>,
    /// The rates at second `t` (from the start) with the target at `weight`; `paused_at` is
    /// when the operator's pause came, if it did.
    pub(super) rates: &'a dyn Fn(u64, BasisPoints, Option<u64>) -> Rates,
    /// Simulated seconds at most.
    pub(super) budget: u64,
    /// An operator pauses the rollout as soon as the target reaches this weight.
    pub(super) pause_at_weight: Option<BasisPoints>,
    /// The baseline's `(requests, errors)` in the 30 minutes before the rollout.
    pub(super) before: Option<(u64, u64)>,
}

/// How a run ended: its phase and reason, when (seconds from the start), and when the operator
/// paused it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Outcome {
    pub(super) phase: Phase,
    pub(super) reason: Option<Reason>,
    pub(super) at: u64,
    pub(super) paused_at: Option<u64>,
}

impl Outcome {
    pub(super) fn promoted(&self) -> bool {
        self.phase == Phase::Promoted
    }

    pub(super) fn rolled_back(&self) -> bool {
        self.phase == Phase::RolledBack
    }
}

/// A plan of steps at `weights` %, each held `hold_s` with 100 requests at least, the default
/// analysis, `max_step_s` per step, pausing when inconclusive.
pub(super) fn plan(weights: &[u32], hold_s: u64, max_step_s: u64) -> Arc<Plan> {
    Arc::new(Plan {
        steps: weights
            .iter()
            .map(|w| Step {
                weight: w * 100,
                hold: Duration::from_secs(hold_s),
                min_requests: 100,
                gate: false,
            })
            .collect(),
        max_step_time: Duration::from_secs(max_step_s),
        on_inconclusive: OnInconclusive::Pause,
        smoke: None,
        analysis: AnalysisSettings::default(),
    })
}

pub(super) fn poisson(rng: &mut StdRng, mean: f64) -> u64 {
    if mean > 30.0 {
        return normal(rng, mean, mean.sqrt());
    }
    let (limit, mut k, mut p) = ((-mean).exp(), 0, 1.0);
    loop {
        p *= rng.gen::<f64>();
        if p <= limit {
            return k;
        }
        k += 1;
    }
}

fn normal(rng: &mut StdRng, mean: f64, sd: f64) -> u64 {
    let (u1, u2): (f64, f64) = (rng.gen::<f64>().max(1e-12), rng.gen());
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    (mean + sd * z).round().max(0.0) as u64
}

/// Binomial(n, p): exact by geometric skips when few successes are expected.
pub(super) fn binomial(rng: &mut StdRng, n: u64, p: f64) -> u64 {
    if p <= 0.0 || n == 0 {
        return 0;
    }
    if p >= 1.0 {
        return n;
    }
    let mean = n as f64 * p;
    if mean * (1.0 - p) > 50.0 {
        return normal(rng, mean, (mean * (1.0 - p)).sqrt()).min(n);
    }
    let (log_q, mut at, mut hits) = ((1.0 - p).ln(), 0u64, 0u64);
    loop {
        let gap = (rng.gen::<f64>().max(1e-300).ln() / log_q).floor() as u64;
        at += gap + 1;
        if at > n {
            return hits;
        }
        hits += 1;
    }
}

/// One run: to its end, an inconclusive pause, or the budget.
pub(super) fn run(seed: u64, s: &Scenario) -> Outcome {
    let mut rng = StdRng::seed_from_u64(seed);
    let t0 = Instant::now();
    let start = crate::config::percent::checked_split(
        [("blue".to_string(), 10_000), ("green".to_string(), 0)].into(),
    )
    .unwrap();
    let launch = Launch {
        id: 1,
        plan_name: "sim".into(),
        plan: s.plan.clone(),
        from: "blue".into(),
        to: "green".into(),
        start,
        dry_run: false,
        release: None,
        before: s.before,
    };
    let mut active = Active::launch(launch, t0, "");
    let first = active.first_step();
    active.apply(&first, t0, "");
    let mut paused_at = None;
    let outcome = |a: &Active, at, paused_at| Outcome {
        phase: a.record.state,
        reason: a.record.reason,
        at,
        paused_at,
    };
    for t in 1..=s.budget {
        let now = t0 + Duration::from_secs(t);
        if paused_at.is_none() && s.pause_at_weight.is_some_and(|w| active.weight >= w) {
            let pause = active.operator(Operator::Pause).expect("running");
            active.apply(&pause, now, "");
            paused_at = Some(t);
        }
        let rates = (s.rates)(t, active.weight, paused_at);
        let n = poisson(&mut rng, s.rate);
        let canary = binomial(&mut rng, n, f64::from(active.weight) / 10_000.0);
        let mut pool = |n: u64, errors: f64| Counts {
            requests: n,
            errors: binomial(&mut rng, n, errors),
            slow: 0,
        };
        let (mut baseline, mut target) = (
            pool(n - canary, rates.base_errors),
            pool(canary, rates.canary_errors),
        );
        baseline.slow = binomial(&mut rng, baseline.requests, rates.slow);
        target.slow = binomial(&mut rng, target.requests, rates.slow);
        let obs = Observation {
            counted: Counted {
                second: Second {
                    baseline,
                    canary: target,
                },
                p99_ms: [None, None],
                slow_above_ms: None,
            },
            target_up: true,
            now,
        };
        if let Some(decision) = active.tick(&obs) {
            active.apply(&decision, now, "");
            if ends(decision.kind) || active.record.reason == Some(Reason::Inconclusive) {
                return outcome(&active, t, paused_at);
            }
        }
    }
    outcome(&active, s.budget, paused_at)
}

/// `runs` runs of `s`, seeds `salt * 1_000_000 + i`.
pub(super) fn runs(runs: u64, salt: u64, s: &Scenario) -> Vec<Outcome> {
    (0..runs).map(|i| run(salt * 1_000_000 + i, s)).collect()
}
