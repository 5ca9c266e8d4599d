//! The canary analysis: a pure function of per-second counts.
//!
//! Every second the engine hands in, per pool, requests, errors and slow requests (overridden
//! requests never reach these counts). With `s` the canary's *measured* share of that second's
//! requests, an error comes from the canary with probability q(θ) = θs / (θs + 1 − s) when its
//! error rate is θ times the baseline's. The evidence is the log-likelihood ratio of
//! θ = `detect-ratio` against θ = `tolerated-ratio` over the error events:
//!
//! ```text
//! + ln(q₁/q₀)             per canary error
//! + ln((1 − q₁)/(1 − q₀))  per baseline error (negative)
//! ```
//!
//! It rolls back at ln(1/α). This sequential test may be checked every second without
//! inflating α, is exact at tiny counts, and cancels out traffic swings and sticky skew because
//! it uses the measured share. The same test runs on slow requests. Beside it: a hard-failure
//! window, and a guard that holds everything while the baseline itself is failing.

use std::collections::VecDeque;

use crate::config::model::{AnalysisSettings, Step};

/// One pool's counts over some time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests answered (or failed).
    pub requests: u64,
    /// Of which errors: 5xx, or no upstream answer.
    pub errors: u64,
    /// Of which slow.
    pub slow: u64,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.slow += other.slow;
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
    /// The baseline is failing too: hold still.
    BaselineDegraded,
    /// The canary is much worse on errors.
    ErrorRegression,
    /// The canary is much worse on latency.
    LatencyRegression,
    /// The canary is broken outright.
    HardFailure,
}

/// The baseline's error rate above which it counts as degraded, whatever its history.
pub const DEGRADED_RATE: f64 = 0.05;
/// How many times its recent level the baseline's error rate must reach to count as degraded.
const DEGRADED_JUMP: f64 = 5.0;
/// The least recent level assumed, so that a spotless baseline's first errors are no jump.
const LEVEL_FLOOR: f64 = 0.002;
/// Fewest baseline errors in the window that can make it degraded.
const DEGRADED_MIN_ERRORS: u64 = 5;
/// Seconds of baseline history (beyond the window) before a jump over its level counts.
const LEVEL_MIN_SECONDS: usize = 60;
/// The baseline's recent level is measured over this many seconds (30 min).
const LEVEL_SECONDS: usize = 30 * 60;
/// Advancing needs both evidences below ln(10).
pub fn advance_limit() -> f64 {
    10f64.ln()
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
    /// The canary's counts since the rollout started.
    pub canary_total: Counts,
    window: VecDeque<Second>,
    window_sum: Second,
    level: VecDeque<Counts>,
    level_sum: Counts,
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
            window: VecDeque::new(),
            window_sum: Second::default(),
            level: VecDeque::new(),
            level_sum: Counts::default(),
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

    /// A new step begins: counts restart and the evidences are floored at 0.
    pub fn new_step(&mut self) {
        self.step = [Counts::default(); 2];
        self.error_evidence = self.error_evidence.max(0.0);
        self.latency_evidence = self.latency_evidence.max(0.0);
    }

    /// Forgets the evidence of `verdict` (after a dry run reported it), so that the next report
    /// needs fresh evidence.
    pub fn forget(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::ErrorRegression => self.error_evidence = 0.0,
            Verdict::LatencyRegression => self.latency_evidence = 0.0,
            Verdict::HardFailure => {
                self.window.clear();
                self.window_sum = Second::default();
            }
            Verdict::Clear | Verdict::BaselineDegraded => {}
        }
    }

    /// `[baseline, canary]` counts over the hard-failure window.
    pub fn window(&self) -> [Counts; 2] {
        [self.window_sum.baseline, self.window_sum.canary]
    }

    /// The baseline's error rate over the last 30 minutes (before the window's trouble).
    pub fn baseline_level(&self) -> f64 {
        self.level_sum.error_rate()
    }

    /// Takes in one second and says what it shows.
    pub fn observe(&mut self, second: Second) -> Verdict {
        let window_len = self.settings.hard_failure.window.as_secs().max(1) as usize;
        self.window.push_back(second);
        self.window_sum.baseline.add(second.baseline);
        self.window_sum.canary.add(second.canary);
        while self.window.len() > window_len {
            let old = self.window.pop_front().expect("longer than 1");
            self.window_sum.baseline.subtract(old.baseline);
            self.window_sum.canary.subtract(old.canary);
        }
        // A hard failure stands even while the baseline is above its usual level (as long as it
        // is under 5 %): checked first.
        let hard = self.hard_failure();
        let degraded = !hard && self.baseline_degraded();
        // Every second joins the baseline's level, outages included, so a baseline that stays at
        // a new level becomes its level (and stops counting as degraded, unless over 5 %).
        self.level.push_back(second.baseline);
        self.level_sum.add(second.baseline);
        if self.level.len() > LEVEL_SECONDS {
            let old = self.level.pop_front().expect("longer than 1");
            self.level_sum.subtract(old);
        }
        if degraded {
            return Verdict::BaselineDegraded;
        }
        self.step[0].add(second.baseline);
        self.step[1].add(second.canary);
        self.canary_total.add(second.canary);
        if hard {
            return Verdict::HardFailure;
        }
        let (b, c) = (second.baseline, second.canary);
        if let Some(s) = share(c.requests, b.requests) {
            let settings = &self.settings;
            let (per_canary, per_baseline) =
                weights(s, settings.tolerated_ratio, settings.detect_ratio);
            self.error_evidence += c.errors as f64 * per_canary + b.errors as f64 * per_baseline;
            self.latency_evidence += c.slow as f64 * per_canary + b.slow as f64 * per_baseline;
        }
        let threshold = self.threshold();
        if self.error_evidence >= threshold {
            Verdict::ErrorRegression
        } else if self.latency_evidence >= threshold {
            Verdict::LatencyRegression
        } else {
            Verdict::Clear
        }
    }

    fn baseline_degraded(&self) -> bool {
        let b = self.window_sum.baseline;
        let rate = b.error_rate();
        let level = self.baseline_level().max(LEVEL_FLOOR);
        // The jump rule needs a level to jump from: a minute of history beyond the window.
        let known = self.level.len() >= self.window.len() + LEVEL_MIN_SECONDS;
        b.errors >= DEGRADED_MIN_ERRORS
            && (rate > DEGRADED_RATE || (known && rate > DEGRADED_JUMP * level))
    }

    fn hard_failure(&self) -> bool {
        let hard = self.settings.hard_failure;
        let (b, c) = (self.window_sum.baseline, self.window_sum.canary);
        c.requests >= hard.min_requests
            && c.error_rate() >= hard.error_rate
            && b.error_rate() < DEGRADED_RATE
    }

    /// Why the current step may not advance yet (`None`: it may), given the time spent in it.
    pub fn not_ready(&self, step: &Step, held: std::time::Duration) -> Option<String> {
        let canary = self.step[1];
        let bound = wilson_upper(self.canary_total.errors, self.canary_total.requests);
        let limit = advance_limit();
        if held < step.hold {
            Some(format!(
                "holding ({} s of {} s)",
                held.as_secs(),
                step.hold.as_secs()
            ))
        } else if canary.requests < step.min_requests {
            Some(format!(
                "{} of {} target requests seen",
                canary.requests, step.min_requests
            ))
        } else if self.error_evidence >= limit || self.latency_evidence >= limit {
            Some(format!(
                "evidence of a regression (errors {:.1}, latency {:.1}) is not below {limit:.1}",
                self.error_evidence, self.latency_evidence
            ))
        } else if bound >= self.settings.max_error_rate {
            Some(format!(
                "the target's error rate could still be up to {:.2} % ({} errors in {} requests); \
                 advancing needs it below {:.2} %",
                bound * 100.0,
                self.canary_total.errors,
                self.canary_total.requests,
                self.settings.max_error_rate * 100.0
            ))
        } else {
            None
        }
    }
}

/// The canary's share of a second's requests, when both pools had some.
fn share(canary: u64, baseline: u64) -> Option<f64> {
    (canary > 0 && baseline > 0).then(|| canary as f64 / (canary + baseline) as f64)
}

/// The evidence per canary event and per baseline event at canary share `s`.
pub fn weights(s: f64, tolerated: f64, detect: f64) -> (f64, f64) {
    let q = |theta: f64| theta * s / (theta * s + 1.0 - s);
    let (q0, q1) = (q(tolerated), q(detect));
    ((q1 / q0).ln(), ((1.0 - q1) / (1.0 - q0)).ln())
}

/// The upper end of the 95 % Wilson score interval of `errors` in `n`; 1 with no requests.
pub fn wilson_upper(errors: u64, n: u64) -> f64 {
    if n == 0 {
        return 1.0;
    }
    let (n, p, z) = (n as f64, errors as f64 / n as f64, 1.96f64);
    let z2 = z * z;
    let centre = p + z2 / (2.0 * n);
    let spread = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre + spread) / (1.0 + z2 / n)).min(1.0)
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
