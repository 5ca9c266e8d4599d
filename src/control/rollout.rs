//! Automated rollouts: a `to` pool grows from 0 % to 100 % in planned steps, smoke-checked
//! before any user reaches it, compared with the live baseline every second, promoted or rolled
//! back by itself with its reason and numbers; the 100 % bake compared with the baseline's level
//! before it.
//!
//! ```text
//!            ┌──────── smoke failed / abort ──────────────────────────▶ aborted
//! start ─▶ smoke ─▶ running ⇄ paused (manual, restart, inconclusive, baseline-degraded;
//!                     │                 an inconclusive bake steps back, then pauses)
//!                     │   ⇅ waiting (a manual gate; approve)
//!                     ├── last step held ─────────────────────────────▶ promoted
//!                     └── regression, hard failure, no backend, abort ▶ rolled-back
//! ```
//!
//! - [`analysis`]: the pure sequential test over per-second counts.
//! - [`machine`]: the pure state machine — a second's counts in, a [`Move`] out.
//! - [`latency`]: turns the data path's latency buckets into slow counts.
//! - [`engine`]: the task that reads the counters once a second and hands moves to control;
//!   [`smoke`] runs the probes. Control (`ops`) is the only writer: it logs each move, then
//!   moves the weight.

mod active;
pub mod analysis;
mod book;
mod claims;
pub mod engine;
mod explain;
mod feed;
pub mod latency;
mod launch;
pub mod machine;
mod ops;
pub mod pace;
pub(super) mod recover;
mod shared;
pub mod smoke;
mod start;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use active::{Active, Move};
pub use book::Book;
pub use feed::EngineView;
pub use launch::Launch;
pub use machine::{Observation, Operator};
pub use ops::{split_at, RolloutError};
pub use start::StartRequest;

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Probing the target's backends; no user request reaches it.
    Smoke,
    /// Holding a step, analysing.
    Running,
    /// Holding still until resumed (or, for `baseline-degraded`, until the baseline recovers).
    Paused,
    /// Waiting for `approve` before the next step.
    Waiting,
    /// Ended: the target has 100 %.
    Promoted,
    /// Ended: traffic went back to `from`.
    RolledBack,
    /// Ended before any user request reached the target.
    Aborted,
}

impl Phase {
    /// Whether the rollout is still going.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            Phase::Smoke | Phase::Running | Phase::Paused | Phase::Waiting
        )
    }

    /// The name used in JSON and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Smoke => "smoke",
            Phase::Running => "running",
            Phase::Paused => "paused",
            Phase::Waiting => "waiting",
            Phase::Promoted => "promoted",
            Phase::RolledBack => "rolled-back",
            Phase::Aborted => "aborted",
        }
    }
}

/// Every phase, for the state gauge.
pub const PHASES: [Phase; 7] = [
    Phase::Smoke,
    Phase::Running,
    Phase::Paused,
    Phase::Waiting,
    Phase::Promoted,
    Phase::RolledBack,
    Phase::Aborted,
];

/// Why a rollout paused or ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// A smoke probe failed.
    SmokeFailed,
    /// The error test reached its threshold.
    ErrorRegression,
    /// The latency test reached its threshold.
    LatencyRegression,
    /// The canary failed outright within the hard-failure window.
    HardFailure,
    /// The target pool has no backend up.
    NoHealthyBackend,
    /// The baseline is failing too.
    BaselineDegraded,
    /// A step could not decide within `max-step-time`.
    Inconclusive,
    /// An operator acted.
    Manual,
    /// The process restarted mid-rollout.
    Restart,
    /// A config-file edit changed `[split]`.
    Superseded,
}

/// One step as shown in the rollout JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepView {
    /// The target's share, percent.
    pub weight: serde_json::Number,
    /// Least time in the step, seconds.
    pub hold_s: f64,
    /// Least target requests in the step.
    pub min_requests: u64,
    /// Whether the step waits for `approve`.
    pub gate: bool,
}

/// One pool's numbers in the current step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolEvidence {
    /// Requests.
    pub requests: u64,
    /// Errors (5xx, or no upstream answer for an upstream reason).
    pub errors: u64,
    /// Slow requests.
    pub slow: u64,
    /// The 99th percentile upstream response time over the last 30 s, milliseconds.
    pub p99_ms: Option<f64>,
}

/// The numbers behind the last decision.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Per pool (`from` and `to`), in the current step.
    pub pools: BTreeMap<String, PoolEvidence>,
    /// The error test's log-likelihood ratio.
    pub error_ratio: f64,
    /// The latency test's log-likelihood ratio.
    pub latency_ratio: f64,
    /// ln(1/α): where a ratio rolls back.
    pub threshold: f64,
    /// A request slower than this (ms) is slow; `None` before the baseline had enough traffic.
    pub slow_above_ms: Option<f64>,
    /// What the canary was compared with in the last second: `baseline` (the live baseline)
    /// or `reference` (the baseline's level before: the bake).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compared_with: Option<String>,
}

/// A rollout as the API, the CLI and the deployment log show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// Increases by one per rollout.
    pub id: u64,
    /// The plan's name.
    pub plan: String,
    /// The baseline pool.
    pub from: String,
    /// The target pool.
    pub to: String,
    /// Where it is.
    pub state: Phase,
    /// The index of the step in force.
    pub step: usize,
    /// The plan's steps.
    pub steps: Vec<StepView>,
    /// The target's share now, percent.
    pub weight: serde_json::Number,
    /// RFC 3339.
    pub started: String,
    /// RFC 3339, the last transition.
    pub updated: String,
    /// Bumped by one on every transition: `If-Match: <id>.<revision>` on an action refuses
    /// it (412) when the rollout moved on since the caller looked.
    #[serde(default)]
    pub revision: u64,
    /// Why it paused or ended.
    pub reason: Option<Reason>,
    /// The last decision as a sentence with its numbers.
    pub message: String,
    /// The numbers behind it.
    pub evidence: Option<Evidence>,
    /// Whether rollbacks are only reported.
    pub dry_run: bool,
    /// Free-form metadata given at start.
    pub release: Option<serde_json::Value>,
    /// The split when it started (pool → percent): `POST /rollback` restores it.
    pub start_split: BTreeMap<String, serde_json::Number>,
    /// RFC 3339: when the step in force began (or its clock restarted).
    #[serde(default)]
    pub step_started: Option<String>,
    /// The baseline's counts before the bake (its last 30 minutes of traffic), which the bake
    /// is compared with; set when the rollout enters its 100 % step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<analysis::Reference>,
    /// What was said up front at the start: steps that cannot decide within `max-step-time`
    /// at the recent request rate, with their expected time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Rollout {
    /// What the rollout gauges show of it.
    pub fn gauge(&self) -> crate::metrics::RolloutGauge<'_> {
        crate::metrics::RolloutGauge {
            state: self.state.name(),
            active: self.state.is_active(),
            step: self.step,
            weight: self.weight.as_f64().unwrap_or(0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_gauges_know_every_phase_by_its_name() {
        let names = super::PHASES.map(super::Phase::name);
        assert_eq!(names, crate::metrics::ROLLOUT_STATES);
    }
}

#[cfg(test)]
mod sim;
#[cfg(test)]
mod sim_tests;
