//! `[plans.<name>]`: rollout plans — the model and its validation.
//!
//! A plan is a list of steps (the target pool's share, how long to hold it, how many target
//! requests to see), what to do when a step cannot decide, optional smoke probes run before any
//! user request reaches the target, and the settings of the canary analysis.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::defaults;
use super::percent::{percent, BasisPoints, FULL};
use super::pool_policy::{probe_path, status_range};
use super::problem::{Problem, ProblemKind};
use super::raw::{RawPlan, RawSmoke, RawStep};
use super::rules::{duration_key, out_of_range};

/// A validated rollout plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The steps, weights strictly increasing, the last at 100 %.
    pub steps: Vec<Step>,
    /// A step that has not met its conditions by then is inconclusive (default 30 min).
    pub max_step_time: Duration,
    /// What an inconclusive step does (default: pause).
    pub on_inconclusive: OnInconclusive,
    /// Probes of every target backend before the weight leaves 0; `None` skips them.
    pub smoke: Option<Smoke>,
    /// The canary analysis.
    pub analysis: AnalysisSettings,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The target pool's share.
    pub weight: BasisPoints,
    /// Least time in the step (default 0).
    pub hold: Duration,
    /// Least target-pool requests seen in the step (default 100).
    pub min_requests: u64,
    /// Whether the step waits for `approve` before it is entered.
    pub gate: bool,
}

/// `on-inconclusive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnInconclusive {
    /// Stay at the current weight, paused, until an operator acts.
    Pause,
    /// Roll back.
    Rollback,
}

/// `[plans.<name>.smoke]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Smoke {
    /// Path probed (default `/healthz`).
    pub path: String,
    /// Passing statuses, inclusive (default 200–299).
    pub expect_status: (u16, u16),
    /// A substring the body must hold.
    pub expect_body: Option<String>,
    /// Time one probe may take (default 2 s).
    pub timeout: Duration,
    /// Consecutive passes per backend (default 3).
    pub repeat: u32,
    /// Host header of the probes (default: the backend's address).
    pub host: Option<String>,
}

/// Most steps in a plan.
const MAX_STEPS: usize = 100;

/// Validates every `[plans.<name>]`.
pub(super) fn plans(
    raw: &BTreeMap<String, RawPlan>,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, Arc<Plan>> {
    raw.iter()
        .filter_map(|(name, plan)| {
            let path = format!("plans.{name}");
            if !super::rules::valid_pool_name(name) {
                problems.push(Problem::at(
                    &path,
                    ProblemKind::Syntax(format!(
                        "invalid plan name {name:?}: use 1 to 64 of a-z, 0-9, '-' and '_'"
                    )),
                ));
                return None;
            }
            let before = problems.len();
            let plan = self::plan(&path, plan, problems);
            (problems.len() == before).then(|| (name.clone(), Arc::new(plan)))
        })
        .collect()
}

fn plan(path: &str, raw: &RawPlan, problems: &mut Vec<Problem>) -> Plan {
    let steps = steps(path, raw.steps.as_deref(), problems);
    let max_step_time = duration_key(
        &format!("{path}.max-step-time"),
        raw.max_step_time.as_deref(),
        defaults::MAX_STEP_TIME,
        false,
        problems,
    );
    for (i, step) in steps.iter().enumerate() {
        if step.hold >= max_step_time {
            problems.push(Problem::at(
                format!("{path}.steps[{i}].hold"),
                ProblemKind::Syntax(format!(
                    "must be shorter than max-step-time ({})",
                    super::duration::format(max_step_time)
                )),
            ));
        }
    }
    let on_inconclusive = match raw.on_inconclusive.as_deref() {
        None | Some("pause") => OnInconclusive::Pause,
        Some("rollback") => OnInconclusive::Rollback,
        Some(other) => {
            problems.push(Problem::at(
                format!("{path}.on-inconclusive"),
                ProblemKind::Syntax(format!("{other:?} is not \"pause\" or \"rollback\"")),
            ));
            OnInconclusive::Pause
        }
    };
    Plan {
        steps,
        max_step_time,
        on_inconclusive,
        smoke: raw
            .smoke
            .as_ref()
            .map(|s| smoke(&format!("{path}.smoke"), s, problems)),
        analysis: analysis::analysis(&format!("{path}.analysis"), &raw.analysis, problems),
    }
}

fn steps(path: &str, raw: Option<&[RawStep]>, problems: &mut Vec<Problem>) -> Vec<Step> {
    let key = format!("{path}.steps");
    let raw = match raw {
        None | Some([]) => {
            problems.push(Problem::at(&key, ProblemKind::Empty));
            return Vec::new();
        }
        Some(list) if list.len() > MAX_STEPS => {
            problems.push(out_of_range(&key, list.len() as i64, 1, MAX_STEPS as i64));
            return Vec::new();
        }
        Some(list) => list,
    };
    let mut steps: Vec<Step> = Vec::new();
    for (i, raw) in raw.iter().enumerate() {
        let at = format!("{key}[{i}]");
        let weight = match raw.weight.as_ref().map(percent) {
            None => {
                problems.push(Problem::at(
                    format!("{at}.weight"),
                    ProblemKind::Syntax("missing; the target pool's share in percent".into()),
                ));
                continue;
            }
            Some(Err(kind)) => {
                problems.push(Problem::at(format!("{at}.weight"), kind));
                continue;
            }
            Some(Ok(0)) => {
                problems.push(Problem::at(
                    format!("{at}.weight"),
                    ProblemKind::Syntax("must be more than 0".into()),
                ));
                continue;
            }
            Some(Ok(bp)) => bp,
        };
        if steps.last().is_some_and(|last| last.weight >= weight) {
            problems.push(Problem::at(
                format!("{at}.weight"),
                ProblemKind::Syntax("weights must increase from step to step".into()),
            ));
        }
        let min_requests = match raw.min_requests {
            None => defaults::STEP_MIN_REQUESTS,
            Some(n) if (0..=1_000_000_000).contains(&n) => n as u64,
            Some(n) => {
                problems.push(out_of_range(
                    &format!("{at}.min-requests"),
                    n,
                    0,
                    1_000_000_000,
                ));
                0
            }
        };
        let gate = match raw.gate.as_deref() {
            None => false,
            Some("manual") => true,
            Some(other) => {
                problems.push(Problem::at(
                    format!("{at}.gate"),
                    ProblemKind::Syntax(format!("{other:?} is not \"manual\"")),
                ));
                false
            }
        };
        let hold = duration_key(
            &format!("{at}.hold"),
            raw.hold.as_deref(),
            Duration::ZERO,
            true,
            problems,
        );
        steps.push(Step {
            weight,
            hold,
            min_requests,
            gate,
        });
    }
    if steps.last().is_some_and(|last| last.weight != FULL) {
        problems.push(Problem::at(
            format!("{key}[{}].weight", raw.len() - 1),
            ProblemKind::Syntax(
                "the last step must be 100 (it is the bake before promotion)".into(),
            ),
        ));
    }
    steps
}

fn smoke(path: &str, raw: &RawSmoke, problems: &mut Vec<Problem>) -> Smoke {
    let repeat = match raw.repeat {
        None => defaults::SMOKE_REPEAT,
        Some(n) if (1..=100).contains(&n) => n as u32,
        Some(n) => {
            problems.push(out_of_range(&format!("{path}.repeat"), n, 1, 100));
            1
        }
    };
    if let Some(host) = &raw.host {
        if host.is_empty() || http::HeaderValue::from_str(host).is_err() {
            problems.push(Problem::at(
                format!("{path}.host"),
                ProblemKind::Syntax(format!("{host:?} is not a usable Host header")),
            ));
        }
    }
    Smoke {
        path: probe_path(
            &format!("{path}.path"),
            raw.path.as_deref().unwrap_or(defaults::SMOKE_PATH),
            problems,
        ),
        expect_status: status_range(
            &format!("{path}.expect-status"),
            raw.expect_status.as_ref(),
            defaults::SMOKE_EXPECT,
            problems,
        ),
        expect_body: raw.expect_body.clone().filter(|b| !b.is_empty()),
        timeout: duration_key(
            &format!("{path}.timeout"),
            raw.timeout.as_deref(),
            defaults::SMOKE_TIMEOUT,
            false,
            problems,
        ),
        repeat,
        host: raw.host.clone(),
    }
}

mod analysis;

pub use analysis::{AnalysisSettings, HardFailure};

#[cfg(test)]
mod tests;
