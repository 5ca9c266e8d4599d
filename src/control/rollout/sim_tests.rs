//! The seeded simulation: Poisson traffic through the real state machine, 100 runs per case.
//! `cargo test --lib simulation_table -- --nocapture` prints the table in the closing note.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::analysis::{Counts, Second};
use super::latency::Counted;
use super::launch::Launch;
use super::machine::{ends, Active, Observation};
use super::{Phase, Reason};
use crate::config::model::{AnalysisSettings, OnInconclusive, Plan, Step};

const RUNS: u64 = 100;
const RATES: [f64; 3] = [10.0, 100.0, 1000.0];
/// Simulated time a run may take.
const BUDGET: u64 = 12 * 3600;

/// Error and slow rates of both pools.
#[derive(Clone, Copy)]
struct Case {
    base_errors: f64,
    canary_errors: f64,
    slow: f64,
}

/// The plan simulated: five steps, a minute each, the default analysis, and a step limit long
/// enough for 10 req/s to reach the default max-error-rate honestly.
fn plan() -> Arc<Plan> {
    let step = |pct: u32| Step {
        weight: pct * 100,
        hold: Duration::from_secs(60),
        min_requests: 100,
        gate: false,
    };
    Arc::new(Plan {
        steps: [10, 25, 50, 75, 100].map(step).to_vec(),
        max_step_time: Duration::from_secs(3 * 3600),
        on_inconclusive: OnInconclusive::Pause,
        smoke: None,
        analysis: AnalysisSettings::default(),
    })
}

fn poisson(rng: &mut StdRng, mean: f64) -> u64 {
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
fn binomial(rng: &mut StdRng, n: u64, p: f64) -> u64 {
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

/// One run: the end state, its reason, and the seconds from the first canary request to it.
fn run(seed: u64, rate: f64, case: Case, budget: u64) -> (Phase, Option<Reason>, u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let t0 = Instant::now();
    let start = crate::config::percent::checked_split(
        [("blue".to_string(), 10_000), ("green".to_string(), 0)].into(),
    )
    .unwrap();
    let mut active = Active::launch(
        Launch {
            id: 1,
            plan_name: "sim".into(),
            plan: plan(),
            from: "blue".into(),
            to: "green".into(),
            start,
            dry_run: false,
            release: None,
        },
        t0,
        "",
    );
    let first = active.first_step();
    active.apply(&first, t0, "");
    let pool = |n: u64, errors: f64, rng: &mut StdRng| Counts {
        requests: n,
        errors: binomial(rng, n, errors),
        slow: binomial(rng, n, case.slow),
    };
    for t in 1..=budget {
        let n = poisson(&mut rng, rate);
        let canary = binomial(&mut rng, n, f64::from(active.weight) / 10_000.0);
        let second = Second {
            baseline: pool(n - canary, case.base_errors, &mut rng),
            canary: pool(canary, case.canary_errors, &mut rng),
        };
        let now = t0 + Duration::from_secs(t);
        let obs = Observation {
            counted: Counted {
                second,
                p99_ms: [None, None],
                slow_above_ms: None,
            },
            target_up: true,
            now,
        };
        if let Some(decision) = active.tick(&obs) {
            active.apply(&decision, now, "");
            if ends(decision.kind) {
                return (active.record.state, active.record.reason, t);
            }
        }
        if active.record.reason == Some(Reason::Inconclusive) {
            return (active.record.state, active.record.reason, t);
        }
    }
    (active.record.state, active.record.reason, budget)
}

fn outcomes(rate: f64, case: Case, salt: u64) -> Vec<(Phase, Option<Reason>, u64)> {
    (0..RUNS)
        .map(|i| run(salt * 1_000 + i, rate, case, BUDGET))
        .collect()
}

const HEALTHY: Case = Case {
    base_errors: 0.005,
    canary_errors: 0.005,
    slow: 0.005,
};

#[test]
fn a_healthy_canary_is_promoted_in_at_least_95_of_100_runs_at_every_rate() {
    for rate in RATES {
        let results = outcomes(rate, HEALTHY, 1);
        let promoted = results.iter().filter(|r| r.0 == Phase::Promoted).count();
        assert!(
            promoted >= 95,
            "{rate} req/s: promoted {promoted}/100: {results:?}"
        );
    }
}

#[test]
fn a_canary_at_ten_times_the_baseline_error_rate_is_never_promoted() {
    let case = Case {
        canary_errors: 0.05,
        ..HEALTHY
    };
    for rate in RATES {
        let results = outcomes(rate, case, 2);
        assert!(
            results.iter().all(|r| r.0 != Phase::Promoted),
            "{rate} req/s: {results:?}"
        );
        // Not only held back by max-error-rate: the sequential test rolls it back.
        let caught = results
            .iter()
            .filter(|r| r.0 == Phase::RolledBack && r.1 == Some(Reason::ErrorRegression))
            .count();
        assert!(
            caught >= 95,
            "{rate} req/s: {caught}/100 rolled back for errors"
        );
    }
}

#[test]
fn a_shared_outage_never_rolls_the_canary_back() {
    let case = Case {
        base_errors: 0.2,
        canary_errors: 0.2,
        slow: 0.005,
    };
    for rate in RATES {
        for seed in 0..RUNS {
            let (phase, reason, _) = run(seed, rate, case, 600);
            assert_eq!(
                (phase, reason),
                (Phase::Paused, Some(Reason::BaselineDegraded)),
                "{rate} req/s seed {seed}: held, neither rolled back nor promoted"
            );
        }
    }
}

#[test]
fn simulation_table() {
    let broken = Case {
        canary_errors: 1.0,
        ..HEALTHY
    };
    let ten_times = Case {
        canary_errors: 0.05,
        ..HEALTHY
    };
    println!("| req/s | healthy promoted | healthy median s | 10x rolled back | 10x median s to rollback | broken median s to rollback |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for rate in RATES {
        let healthy = outcomes(rate, HEALTHY, 1);
        let slow = outcomes(rate, ten_times, 2);
        let dead = outcomes(rate, broken, 3);
        let median = |v: &[(Phase, Option<Reason>, u64)], phase: Phase| {
            let mut t: Vec<u64> = v.iter().filter(|r| r.0 == phase).map(|r| r.2).collect();
            t.sort_unstable();
            t.get(t.len() / 2).copied().unwrap_or(0)
        };
        let count = |v: &[(Phase, Option<Reason>, u64)], phase: Phase| {
            v.iter().filter(|r| r.0 == phase).count()
        };
        println!(
            "| {rate} | {}/100 | {} | {}/100 | {} | {} |",
            count(&healthy, Phase::Promoted),
            median(&healthy, Phase::Promoted),
            count(&slow, Phase::RolledBack),
            median(&slow, Phase::RolledBack),
            median(&dead, Phase::RolledBack),
        );
        assert_eq!(count(&dead, Phase::RolledBack), 100);
    }
}
