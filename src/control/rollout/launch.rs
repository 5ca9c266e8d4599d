//! A new rollout: its record, plan and analysis, before its first move.

use std::time::Instant;

use super::active::Active;
use super::analysis::Analysis;
use super::{Phase, Rollout, StepView};

/// What a new rollout is made of.
#[derive(Debug, Clone)]
pub struct Launch {
    /// Its id.
    pub id: u64,
    /// The plan's name.
    pub plan_name: String,
    /// The plan.
    pub plan: std::sync::Arc<crate::config::model::Plan>,
    /// The baseline pool.
    pub from: String,
    /// The target pool.
    pub to: String,
    /// The split when it starts.
    pub start: crate::config::model::Split,
    /// Report rollbacks instead of making them.
    pub dry_run: bool,
    /// Free-form metadata.
    pub release: Option<serde_json::Value>,
    /// The baseline's `(requests, errors)` over its last 30 minutes before the start.
    pub before: Option<(u64, u64)>,
}

impl Active {
    /// A rollout about to start (target at 0 %): in `smoke` when the plan has smoke checks,
    /// else `running` before its first step, stamped `stamp`.
    pub fn launch(launch: Launch, now: Instant, stamp: &str) -> Active {
        let plan = launch.plan;
        let steps = plan
            .steps
            .iter()
            .map(|s| StepView {
                weight: crate::control::audit::percent_number(s.weight),
                hold_s: s.hold.as_secs_f64(),
                min_requests: s.min_requests,
                gate: s.gate,
            })
            .collect();
        let (state, message) = match &plan.smoke {
            Some(smoke) => (
                Phase::Smoke,
                format!(
                    "started: smoke-checking every backend of {} ({} passes of GET {} each) before any user request",
                    launch.to, smoke.repeat, smoke.path
                ),
            ),
            None => (
                Phase::Running,
                format!("started: {} from {} by plan {:?}", launch.to, launch.from, launch.plan_name),
            ),
        };
        Active {
            record: Rollout {
                id: launch.id,
                plan: launch.plan_name,
                from: launch.from,
                to: launch.to,
                state,
                step: 0,
                steps,
                weight: crate::control::audit::percent_number(0),
                started: stamp.to_string(),
                updated: stamp.to_string(),
                revision: 1,
                reason: None,
                message,
                evidence: None,
                dry_run: launch.dry_run,
                release: launch.release,
                start_split: crate::control::audit::split_json(&launch.start),
                step_started: None,
                reference: None,
                warnings: Vec::new(),
            },
            analysis: seeded(Analysis::new(plan.analysis), launch.before),
            plan,
            weight: 0,
            since: now,
            waiting_for: None,
            last: None,
            reported: Vec::new(),
        }
    }
}

/// The analysis starting from the baseline's last 30 minutes before the rollout: its level
/// (the bake's reference) and the advance gate's rate. Its slow requests were not measured
/// (there was no line): 1 % is assumed, what a p99 line means (the margin makes it fewer), so
/// the bake's latency test is never more eager for it.
fn seeded(mut analysis: Analysis, before: Option<(u64, u64)>) -> Analysis {
    if let Some((requests, errors)) = before.filter(|(n, _)| *n > 0) {
        analysis.seed(super::analysis::Counts {
            requests,
            errors: errors.min(requests),
            slow: requests / 100,
        });
    }
    analysis
}
