//! The advance gate: a step is done when its hold and `min-requests` are met, neither test
//! leans towards a regression, and the data rule out the regression the error test is built to
//! detect — the canary's 95 % upper bound on its error rate since the rollout began is below
//! the baseline's rate over the same time × `detect-ratio`.
//!
//! A baseline without errors yet is taken to err at [`RATE_FLOOR`] (1 in 300): with the default
//! `detect-ratio` of 3 the gate is then 1 %, which a spotless canary passes after 381 clean
//! requests (the Wilson bound's 3.84/n), and a service at 0.5 % errors (gate 1.5 %) after about
//! 580.
//! `max-error-rate`, when set, is an extra absolute ceiling on the same bound.

use std::time::Duration;

use super::{wilson_upper, Analysis, Counts};
use crate::config::model::Step;

/// The error rate assumed for a baseline (or reference) without errors yet.
pub const RATE_FLOOR: f64 = 1.0 / 300.0;
/// Advancing needs both evidences below ln(10).
fn advance_limit() -> f64 {
    10f64.ln()
}

/// The gate on errors: the canary's bound must be below this.
fn limit(baseline: Counts, detect: f64) -> f64 {
    baseline.error_rate().max(RATE_FLOOR) * detect
}

pub(super) fn not_ready(a: &Analysis, step: &Step, held: Duration) -> Option<String> {
    let canary = a.step[1];
    let total = a.canary_total;
    let bound = wilson_upper(total.errors, total.requests);
    let settings = a.settings();
    let relative = limit(a.baseline_total, settings.detect_ratio);
    let evidence = advance_limit();
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
    } else if a.error_evidence >= evidence || a.latency_evidence >= evidence {
        Some(format!(
            "evidence of a regression (errors {:.1}, latency {:.1}) is not below {evidence:.1}",
            a.error_evidence, a.latency_evidence
        ))
    } else if bound >= relative {
        Some(format!(
            "the target's error rate could still be up to {:.2} % ({} errors in {} requests); \
             advancing needs it below {:.2} % ({} × the baseline's {:.2} %{})",
            bound * 100.0,
            total.errors,
            total.requests,
            relative * 100.0,
            settings.detect_ratio,
            a.baseline_total.error_rate().max(RATE_FLOOR) * 100.0,
            if a.baseline_total.error_rate() < RATE_FLOOR {
                ", its floor"
            } else {
                ""
            }
        ))
    } else {
        settings
            .max_error_rate
            .filter(|c| bound >= *c)
            .map(|ceiling| {
                format!(
                "the target's error rate could still be up to {:.2} % ({} errors in {} requests); \
                 max-error-rate is {:.2} %",
                bound * 100.0,
                total.errors,
                total.requests,
                ceiling * 100.0
            )
            })
    }
}

/// About how many target requests the gate needs when both pools err at `rate`: the fewest
/// `n` with the canary's bound on `rate × n` errors below the gate (`None` past 10 million,
/// as with an absolute ceiling below the rate itself).
pub fn needed_requests(rate: f64, detect: f64, ceiling: Option<f64>) -> Option<u64> {
    let gate = limit(
        Counts {
            requests: 1_000_000,
            errors: (rate * 1e6).round() as u64,
            slow: 0,
        },
        detect,
    )
    .min(ceiling.unwrap_or(1.0));
    let passes = |n: u64| wilson_upper((rate * n as f64).round() as u64, n) < gate;
    let (mut lo, mut hi) = (1u64, 10_000_000u64);
    if !passes(hi) {
        return None;
    }
    while lo < hi {
        let mid = (lo + hi) / 2;
        if passes(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Some(lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spotless_service_needs_381_clean_requests_and_one_at_half_a_percent_about_600() {
        assert_eq!(needed_requests(0.0, 3.0, None), Some(381));
        let half = needed_requests(0.005, 3.0, None).unwrap();
        assert!((500..700).contains(&half), "{half}");
        let two = needed_requests(0.02, 3.0, None).unwrap();
        assert!(two < half, "a 2 % service has a wider gate: {two}");
        assert_eq!(needed_requests(0.02, 3.0, Some(0.01)), None);
    }
}
