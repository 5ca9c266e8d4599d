//! The canary analysis: a pure function of per-second counts.
//!
//! Every second the engine hands in, per pool, requests, errors and slow requests, counted as
//! the *upstream's* doing only (see the README's attribution rule; overridden requests never
//! reach these counts). Two sequential tests, one on errors and one on slow requests, weigh
//! θ = `detect-ratio` against θ = `tolerated-ratio` (the canary's rate as a multiple of the
//! baseline's):
//!
//! - **Both pools have traffic**: with `s` the canary's *measured* share of that second's
//!   requests, an event comes from the canary with probability q(θ) = θs / (θs + 1 − s), and
//!   the evidence adds ln(q₁/q₀) per canary event and ln((1 − q₁)/(1 − q₀)) per baseline event.
//!   A shared outage moves both pools and gives no evidence; traffic swings and sticky skew
//!   cancel out.
//! - **The baseline has no traffic** (the 100 % bake): a one-sample test against the
//!   baseline's level measured before ([`reference`](mod@reference)), ln(θ₁/θ₀) per canary event and
//!   ln((1 − θ₁p)/(1 − θ₀p)) per canary request without one.
//!
//! Each ratio moves at most ln(1/α)/2 in one second (bursts of errors that hit both pools alike
//! cannot roll back alone) and never sinks below −ln(1/α) (a long healthy stretch cannot hide a
//! late regression); it rolls back at ln(1/α). Beside the tests: a hard-failure window, and a
//! baseline-degraded flag that stops advancing (never a rollback).

mod baseline;
mod gate;
pub mod reference;

use crate::config::model::AnalysisSettings;

pub use gate::{needed_requests, RATE_FLOOR};
pub use reference::Reference;

/// One pool's counts over some time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests the upstream answered or failed.
    pub requests: u64,
    /// Of which errors: 5xx, or no upstream answer for an upstream reason.
    pub errors: u64,
    /// Of which slow (upstream response time above the slow line).
    pub slow: u64,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.requests = self.requests.saturating_add(other.requests);
        self.errors = self.errors.saturating_add(other.errors);
        self.slow = self.slow.saturating_add(other.slow);
    }

    fn subtract(&mut self, other: Counts) {
        self.requests = self.requests.saturating_sub(other.requests);
        self.errors = self.errors.saturating_sub(other.errors);
        self.slow = self.slow.saturating_sub(other.slow);
    }

    /// Errors per request; 0 with no requests.
    pub fn error_rate(&self) -> f64 {
        ratio(self.errors, self.requests)
    }
}

/// One second of both pools.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Second {
    /// The pool the rollout started from.
    pub baseline: Counts,
    /// The target pool.
    pub canary: Counts,
}

/// What the analysis says after a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to act on.
    Clear,
    /// The baseline is failing too: no advance (the tests still run).
    BaselineDegraded,
    /// The canary is much worse on errors.
    ErrorRegression,
    /// The canary is much worse on latency.
    LatencyRegression,
    /// The canary is broken outright.
    HardFailure,
}

/// What the canary was compared with in the last second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compared {
    /// Nothing yet (no canary traffic).
    #[default]
    Nothing,
    /// The live baseline, second by second.
    Baseline,
    /// The baseline's level before (the bake, or a second without baseline traffic).
    Reference,
}

/// The running analysis of one rollout.
#[derive(Debug, Clone)]
pub struct Analysis {
    settings: AnalysisSettings,
    /// Log-likelihood ratio on errors.
    pub error_evidence: f64,
    /// Log-likelihood ratio on slow requests.
    pub latency_evidence: f64,
    /// `[baseline, canary]` counts in the current step.
    pub step: [Counts; 2],
    /// The canary's counts since the rollout started, the baseline's degraded seconds left out.
    pub canary_total: Counts,
    /// The baseline's counts since the rollout started (and its 30 minutes before), its
    /// degraded seconds left out.
    pub baseline_total: Counts,
    /// What the canary was compared with last.
    pub compared: Compared,
    /// The target has all traffic (the bake): compared with the reference whatever the
    /// baseline still gets (a retry, a straggler), never with a handful of baseline requests.
    pub bake: bool,
    baseline: baseline::Baseline,
}

impl Analysis {
    /// A fresh analysis.
    pub fn new(settings: AnalysisSettings) -> Self {
        Analysis {
            settings,
            error_evidence: 0.0,
            latency_evidence: 0.0,
            step: [Counts::default(); 2],
            canary_total: Counts::default(),
            baseline_total: Counts::default(),
            compared: Compared::Nothing,
            bake: false,
            baseline: baseline::Baseline::default(),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &AnalysisSettings {
        &self.settings
    }

    /// ln(1/α): the evidence that rolls back.
    pub fn threshold(&self) -> f64 {
        (1.0 / self.settings.alpha).ln()
    }

    /// A new step begins: its counts restart (the evidence carries on, bounded both ways).
    pub fn new_step(&mut self) {
        self.step = [Counts::default(); 2];
    }

    /// Forgets the evidence of `verdict` (after a dry run reported it), so that the next report
    /// needs fresh evidence.
    pub fn forget(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::ErrorRegression => self.error_evidence = 0.0,
            Verdict::LatencyRegression => self.latency_evidence = 0.0,
            Verdict::HardFailure => self.baseline.forget_window(),
            Verdict::Clear | Verdict::BaselineDegraded => {}
        }
    }

    /// `[baseline, canary]` counts over the hard-failure window.
    pub fn window(&self) -> [Counts; 2] {
        self.baseline.window()
    }

    /// The baseline's error rate over its last 30 minutes of traffic.
    pub fn baseline_level(&self) -> f64 {
        self.baseline.level().error_rate()
    }

    /// The baseline's level the bake is compared with (its last 30 minutes of traffic, without
    /// the seconds it was degraded).
    pub fn reference(&self) -> Reference {
        Reference(self.baseline.clean())
    }

    /// Starts from the baseline's counts before: its last 30 minutes before the rollout, or the
    /// reference kept with the rollout's record (after a restart). They join its level (the
    /// bake's reference) and its totals (the advance gate's rate).
    pub fn seed(&mut self, before: Counts) {
        self.baseline.restore(before);
        self.baseline_total.add(before);
    }

    /// Takes in one second and says what it shows. A regression or a hard failure wins over a
    /// degraded baseline: a hold never stops a rollback.
    pub fn observe(&mut self, second: Second) -> Verdict {
        let window_len = self.settings.hard_failure.window.as_secs().max(1) as usize;
        let reference = self.reference();
        self.baseline.push_window(second, window_len);
        let hard = self.hard_failure(&reference);
        let degraded = self.baseline.degraded();
        self.baseline.push_level(second.baseline, degraded);
        self.step[0].add(second.baseline);
        self.step[1].add(second.canary);
        if !degraded {
            // The advance gate compares both pools over the same seconds, outages left out
            // (they would widen it, or hold a healthy canary back for the baseline's trouble).
            self.canary_total.add(second.canary);
            self.baseline_total.add(second.baseline);
        }
        self.weigh(second, &reference);
        let threshold = self.threshold();
        if hard {
            Verdict::HardFailure
        } else if self.error_evidence >= threshold {
            Verdict::ErrorRegression
        } else if self.latency_evidence >= threshold {
            Verdict::LatencyRegression
        } else if degraded {
            Verdict::BaselineDegraded
        } else {
            Verdict::Clear
        }
    }

    /// Adds one second's evidence to both tests, each step capped and floored.
    fn weigh(&mut self, second: Second, reference: &Reference) {
        let (b, c) = (second.baseline, second.canary);
        let s = &self.settings;
        let (theta0, theta1) = (s.tolerated_ratio, s.detect_ratio);
        let (errors, slow) = if c.requests == 0 {
            return;
        } else if b.requests > 0 && !self.bake {
            self.compared = Compared::Baseline;
            let share = c.requests as f64 / (c.requests + b.requests) as f64;
            let (per_canary, per_baseline) = weights(share, theta0, theta1);
            (
                c.errors as f64 * per_canary + b.errors as f64 * per_baseline,
                c.slow as f64 * per_canary + b.slow as f64 * per_baseline,
            )
        } else {
            self.compared = Compared::Reference;
            let one = |events: u64, p: f64| {
                let (per_event, per_other) = reference::weights(p, theta0, theta1);
                events as f64 * per_event + c.requests.saturating_sub(events) as f64 * per_other
            };
            (
                one(c.errors, reference.error_rate()),
                one(c.slow, reference.slow_rate()),
            )
        };
        let t = self.threshold();
        let step = |evidence: f64, add: f64| (evidence + add.min(t / 2.0)).max(-t);
        self.error_evidence = step(self.error_evidence, errors);
        self.latency_evidence = step(self.latency_evidence, slow);
    }

    /// The canary fails outright: over the window at least `hard-failure.min-requests`, an
    /// error rate of at least `hard-failure.error-rate`, and (by its 99.7 % lower bound) at
    /// least twice the baseline's 99.7 % upper bound — the live baseline's, or the reference's
    /// when the baseline had no traffic in the window.
    fn hard_failure(&self, reference: &Reference) -> bool {
        let hard = self.settings.hard_failure;
        let [b, c] = self.window();
        // A reference measured on nothing (or on an outage) would make the rule unreachable: it
        // falls back to "twice 5 %", the absolute line a broken canary always crosses.
        let baseline_upper = match b.requests {
            0 => reference.error_rate().min(HARD_REFERENCE_CAP),
            _ if self.bake => reference.error_rate().min(HARD_REFERENCE_CAP),
            _ => wilson(b.errors, b.requests, Z_HARD).1,
        };
        c.requests >= hard.min_requests
            && c.error_rate() >= hard.error_rate
            && wilson(c.errors, c.requests, Z_HARD).0 >= 2.0 * baseline_upper
    }

    /// Why the current step may not advance yet (`None`: it may), given the time spent in it.
    pub fn not_ready(
        &self,
        step: &crate::config::model::Step,
        held: std::time::Duration,
    ) -> Option<String> {
        gate::not_ready(self, step, held)
    }
}

/// The evidence per canary event and per baseline event at canary share `s`.
pub fn weights(s: f64, tolerated: f64, detect: f64) -> (f64, f64) {
    let q = |theta: f64| theta * s / (theta * s + 1.0 - s);
    let (q0, q1) = (q(tolerated), q(detect));
    ((q1 / q0).ln(), ((1.0 - q1) / (1.0 - q0)).ln())
}

/// z of the two-sided 95 % interval.
const Z95: f64 = 1.96;
/// z of the hard failure's bounds (99.7 %): a handful of requests must not look broken by chance.
const Z_HARD: f64 = 3.0;
/// The most a reference's rate counts for in the hard failure.
const HARD_REFERENCE_CAP: f64 = 0.05;

/// The Wilson score interval of `errors` in `n` at `z`, as (lower, upper); (0, 1) with no
/// requests.
fn wilson(errors: u64, n: u64, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (n, p) = (n as f64, errors as f64 / n as f64);
    let z2 = z * z;
    let centre = p + z2 / (2.0 * n);
    let spread = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    let scale = 1.0 + z2 / n;
    (
        ((centre - spread) / scale).max(0.0),
        ((centre + spread) / scale).min(1.0),
    )
}

/// The upper end of the 95 % Wilson score interval of `errors` in `n`; 1 with no requests.
pub fn wilson_upper(errors: u64, n: u64) -> f64 {
    wilson(errors, n, Z95).1
}

/// The lower end of the 95 % Wilson score interval of `errors` in `n`; 0 with no requests.
pub fn wilson_lower(errors: u64, n: u64) -> f64 {
    wilson(errors, n, Z95).0
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

#[cfg(test)]
mod tests;
