//! How long a plan's steps take at a given traffic, pure: what `check` and `POST /rollouts`
//! say up front when a plan's `hold`, `min-requests` and `max-step-time` cannot give a decision
//! at that rate (the step would end inconclusive, honestly, rather than guess).
//!
//! A step lasts its hold, or until its `min-requests` target requests came, or until the
//! rollout's target requests so far pass the advance gate ([`needed_requests`]) — whichever is
//! last. A step is *feasible* when that expected time is at most half of `max-step-time`: the
//! margin covers the chance in when errors arrive.

use std::time::Duration;

use super::analysis::needed_requests;
use crate::config::model::{format_percent, Plan};

/// The error rate assumed where none was measured: a typical healthy service.
pub const ASSUMED_ERROR_RATE: f64 = 0.005;

/// One step's expected time at a rate.
#[derive(Debug, Clone, PartialEq)]
pub struct StepPace {
    /// Index in the plan.
    pub step: usize,
    /// Expected time in the step; `None` when it cannot decide at all at that error rate.
    pub expected: Option<Duration>,
    /// Whether it fits in half of `max-step-time`.
    pub feasible: bool,
}

/// Each step's expected time with `rate` requests per second in total (both pools) erring at
/// `error_rate`.
pub fn steps(plan: &Plan, rate: f64, error_rate: f64) -> Vec<StepPace> {
    let gate = needed_requests(
        error_rate,
        plan.analysis.detect_ratio,
        plan.analysis.max_error_rate,
    );
    let mut seen = 0.0; // target requests expected before this step
    plan.steps
        .iter()
        .enumerate()
        .map(|(k, step)| {
            let per_second = rate * f64::from(step.weight) / 10_000.0;
            let expected = gate.and_then(|gate| {
                let want = (gate as f64 - seen).max(step.min_requests as f64);
                let secs = match per_second > 0.0 {
                    true => (want / per_second).max(step.hold.as_secs_f64()),
                    false => return None,
                };
                seen += secs * per_second;
                Some(Duration::from_secs_f64(secs.min(1e9)))
            });
            let feasible = expected.is_some_and(|t| t * 2 <= plan.max_step_time);
            StepPace {
                step: k,
                expected,
                feasible,
            }
        })
        .collect()
}

/// The least total request rate (req/s, to two significant digits) at which every step of
/// `plan` is feasible at `error_rate`; `None` when none is (an absolute ceiling below it).
pub fn least_rate(plan: &Plan, error_rate: f64) -> Option<f64> {
    let fits = |rate: f64| steps(plan, rate, error_rate).iter().all(|s| s.feasible);
    let (mut lo, mut hi) = (0.001, 1e6);
    if !fits(hi) {
        return None;
    }
    for _ in 0..60 {
        let mid = (lo * hi).sqrt();
        if fits(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    let digits = 10f64.powi(1 - hi.log10().floor() as i32);
    Some((hi * digits).ceil() / digits)
}

/// The warnings for a plan at `rate` (req/s) and `error_rate`: one per step that cannot decide
/// in time, with its expected time.
pub fn warnings(plan: &Plan, rate: f64, error_rate: f64) -> Vec<String> {
    let limit = crate::config::duration::format(plan.max_step_time);
    steps(plan, rate, error_rate)
        .into_iter()
        .filter(|s| !s.feasible)
        .map(|s| {
            let weight = format_percent(plan.steps[s.step].weight);
            let expected = match s.expected {
                Some(t) => format!("expects about {}", crate::config::duration::format(round(t))),
                None => "cannot pass the advance gate at that error rate".into(),
            };
            format!(
                "at {rate:.1} req/s in total ({:.2} % errors), step {} ({weight} %) {expected} to decide, more than half of max-step-time {limit}: it is likely to end inconclusive (raise max-step-time, or lower hold or min-requests)",
                error_rate * 100.0,
                s.step + 1
            )
        })
        .collect()
}

/// What `POST /rollouts` says up front, given the last minute's `(requests per second, error
/// rate)` (`None`: not measured yet) and whether the baseline's traffic before was measured.
pub fn at_recent(recent: Option<(f64, f64)>, plan: &Plan, before: bool) -> Vec<String> {
    let mut said = match recent {
        None => Vec::new(),
        Some((rate, _)) if rate < 0.05 => {
            vec!["no requests in the last minute: no step can decide until traffic arrives".into()]
        }
        Some((rate, errors)) => warnings(plan, rate, errors),
    };
    if !before
        && plan
            .steps
            .first()
            .is_some_and(|s| s.weight == crate::config::model::FULL)
    {
        said.push(
            "the plan goes straight to 100 % and no traffic of the baseline was measured before: \
             the bake has no reference (the hard failure and the advance gate still apply)"
                .into(),
        );
    }
    said
}

/// `check`'s line for a plan: the least rate at which it decides (`Ok`), or why it cannot at
/// any rate (`Err`: a warning).
pub fn summary(name: &str, plan: &Plan) -> Result<String, String> {
    let limit = crate::config::duration::format(plan.max_step_time);
    if let Some(rate) = least_rate(plan, ASSUMED_ERROR_RATE) {
        return Ok(format!(
            "plan {name}: each step decides within half of max-step-time {limit} at {rate} req/s or more in total (at {:.1} % errors); below that, steps are likely to end inconclusive",
            ASSUMED_ERROR_RATE * 100.0
        ));
    }
    let long = plan
        .steps
        .iter()
        .position(|s| s.hold * 2 > plan.max_step_time);
    Err(match long {
        Some(k) => format!(
            "plan {name}: step {}'s hold ({}) is more than half of max-step-time ({limit}): the step is likely to end inconclusive at any rate",
            k + 1,
            crate::config::duration::format(plan.steps[k].hold)
        ),
        None => format!(
            "plan {name}: its steps cannot pass the advance gate at {:.1} % errors (max-error-rate is below what that allows)",
            ASSUMED_ERROR_RATE * 100.0
        ),
    })
}

/// To the second, at least one.
fn round(t: Duration) -> Duration {
    Duration::from_secs(t.as_secs().max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::rollout::sim::plan;

    #[test]
    fn at_three_requests_a_second_thirty_minute_steps_are_too_short_and_it_says_so() {
        let p = plan(&[10, 50, 100], 300, 1800);
        let w = warnings(&p, 3.0, ASSUMED_ERROR_RATE);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("step 1 (10 %) expects about"), "{}", w[0]);
        assert!(warnings(&p, 10.0, ASSUMED_ERROR_RATE).is_empty());
        let least = least_rate(&p, ASSUMED_ERROR_RATE).unwrap();
        assert!((3.0..10.0).contains(&least), "{least}");
        assert!(warnings(&p, least, ASSUMED_ERROR_RATE).is_empty());
    }

    #[test]
    fn a_longer_step_time_makes_three_requests_a_second_feasible() {
        let p = plan(&[10, 50, 100], 300, 7200);
        assert!(least_rate(&p, ASSUMED_ERROR_RATE).unwrap() <= 3.0);
        assert!(summary("slow", &p).unwrap().contains("req/s or more"));
        let long = plan(&[10, 100], 1000, 1800);
        assert!(summary("long", &long)
            .unwrap_err()
            .contains("step 1's hold"));
    }
}
