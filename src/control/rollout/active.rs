//! What a rollout in progress is and the moves it can make: the types the state machine
//! (`machine`) works on and the sentences (`explain`) word, kept apart so that neither of those
//! two imports the other.

use std::sync::Arc;
use std::time::Instant;

use super::analysis::Analysis;
use super::latency::Counted;
use super::{Reason, Rollout};
use crate::config::model::{BasisPoints, Plan};

/// What happens next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    /// Enter step k (the weight moves).
    Enter(usize),
    /// Enter gated step k on approval (the weight moves).
    Approve(usize),
    /// Wait for approval of step k.
    Wait(usize),
    /// 100 % to the target; ended.
    Promote,
    /// Target back to 0 %; ended `rolled-back`.
    RollBack(Reason),
    /// Target back to 0 %; ended `aborted` (no user request reached it).
    Abort(Reason),
    /// Hold still.
    Pause(Reason),
    /// Go on.
    Resume,
    /// A dry run's rollback: reported, nothing moves.
    WouldRollBack(Reason),
    /// An inconclusive bake: back to step `step` at `weight` (0 before the first step), paused.
    StepBack {
        /// The step the rollout pauses in.
        step: usize,
        /// The target's share there.
        weight: BasisPoints,
    },
}

/// A rollout in progress: its record plus what only the running process knows.
#[derive(Debug, Clone)]
pub struct Active {
    /// What the API and the log show.
    pub record: Rollout,
    /// The plan as it was when the rollout started.
    pub plan: Arc<Plan>,
    /// The running analysis.
    pub analysis: Analysis,
    /// The target's share now.
    pub weight: BasisPoints,
    /// When the current step (or the resumed wait) began.
    pub since: Instant,
    /// The step a `waiting` rollout waits to enter.
    pub waiting_for: Option<usize>,
    /// The last second seen, for the evidence's latencies.
    pub last: Option<Counted>,
    /// What a dry run has reported in this step (each reason once).
    pub reported: Vec<Reason>,
}
