//! The rollout state machine, pure: a second's counts (or an operator's action) in, a
//! [`Decision`] out; [`Active::apply`] then moves the record. Control logs each decision and
//! moves the weight; the simulation in `sim_tests` drives the same code with seeded traffic.

use std::time::Instant;

use super::active::{Active, Move};
use super::analysis::{Compared, Verdict};
use super::explain;
use super::latency::Counted;
use super::{Evidence, Phase, PoolEvidence, Reason};
use crate::config::model::{OnInconclusive, FULL};

/// One second, as the engine saw it.
#[derive(Debug, Clone, Copy)]
pub struct Observation {
    /// Both pools' counts.
    pub counted: Counted,
    /// Whether the target pool has a backend that can take requests.
    pub target_up: bool,
    /// When.
    pub now: Instant,
}

/// An operator's action on the current rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// Hold still.
    Pause,
    /// Go on from a pause.
    Resume,
    /// Skip to the next step, or (`full`) to 100 % at once.
    Promote {
        /// Straight to 100 %.
        full: bool,
    },
    /// Let a waiting gate through.
    Approve,
    /// Back to `from` (`rolled-back`, or `aborted` during the smoke).
    Abort,
}

/// A move and the sentence that explains it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// What happens.
    pub kind: Move,
    /// Why, with the numbers.
    pub message: String,
}

impl Active {
    /// Takes in one second and says what to do, if anything.
    pub fn tick(&mut self, obs: &Observation) -> Option<Decision> {
        let phase = self.record.state;
        if !matches!(phase, Phase::Running | Phase::Paused | Phase::Waiting) {
            return None;
        }
        self.last = Some(obs.counted);
        if phase == Phase::Running && self.weight == 0 && self.waiting_for.is_none() {
            // The first step could not be entered when the rollout started (or its smoke
            // passed): enter it now.
            return Some(self.first_step());
        }
        if self.weight > 0 && !obs.target_up {
            let message = explain::no_backend(self);
            if !self.record.dry_run {
                return Some(self.decide(Move::RollBack(Reason::NoHealthyBackend), message));
            }
            if !self.reported.contains(&Reason::NoHealthyBackend) {
                self.reported.push(Reason::NoHealthyBackend);
                let message = format!("would roll back: {message} (dry run: nothing moved)");
                return Some(self.decide(Move::WouldRollBack(Reason::NoHealthyBackend), message));
            }
        }
        let verdict = self.analysis.observe(obs.counted.second);
        let degraded_pause =
            phase == Phase::Paused && self.record.reason == Some(Reason::BaselineDegraded);
        match verdict {
            Verdict::BaselineDegraded if phase == Phase::Running => {
                let message = explain::degraded(self);
                return Some(self.decide(Move::Pause(Reason::BaselineDegraded), message));
            }
            // A hold counts against the step's time: one that outlasts it is inconclusive.
            Verdict::BaselineDegraded if degraded_pause => {
                return self.inconclusive_if_late(obs.now)
            }
            Verdict::BaselineDegraded => return None,
            Verdict::Clear if degraded_pause => {
                let message = format!("{} recovered; resuming", self.record.from);
                return Some(self.decide(Move::Resume, message));
            }
            Verdict::Clear => {}
            regression => {
                let reason = match regression {
                    Verdict::ErrorRegression => Reason::ErrorRegression,
                    Verdict::LatencyRegression => Reason::LatencyRegression,
                    _ => Reason::HardFailure,
                };
                let message = explain::regression(self, reason);
                if !self.record.dry_run {
                    return Some(self.decide(Move::RollBack(reason), message));
                }
                // A dry run reports each reason once per step, then carries on.
                self.analysis.forget(regression);
                if !self.reported.contains(&reason) {
                    self.reported.push(reason);
                    return Some(self.decide(Move::WouldRollBack(reason), message));
                }
            }
        }
        if phase != Phase::Running {
            return None;
        }
        self.advance_or_wait(obs.now)
    }

    fn advance_or_wait(&self, now: Instant) -> Option<Decision> {
        let k = self.record.step;
        let held = now.saturating_duration_since(self.since);
        match self.analysis.not_ready(&self.plan.steps[k], held) {
            None => Some(self.next(k, false)),
            Some(why) if held >= self.plan.max_step_time => Some(self.inconclusive(&why)),
            Some(_) => None,
        }
    }

    /// A step held (by a degraded baseline) past `max-step-time` is inconclusive.
    fn inconclusive_if_late(&self, now: Instant) -> Option<Decision> {
        let held = now.saturating_duration_since(self.since);
        (held >= self.plan.max_step_time)
            .then(|| self.inconclusive(&format!("{} was degraded", self.record.from)))
    }

    /// What an inconclusive step does: pause there, or roll back (`on-inconclusive`; a dry run
    /// pauses). The bake is never held: it steps back to the previous weight and pauses there.
    fn inconclusive(&self, why: &str) -> Decision {
        let message = explain::inconclusive(self, why);
        let k = self.record.step;
        let bake = self.plan.steps[k].weight == FULL;
        let (kind, message) = match (self.plan.on_inconclusive, self.record.dry_run) {
            (OnInconclusive::Rollback, false) => (Move::RollBack(Reason::Inconclusive), message),
            _ if bake => {
                let back = k.checked_sub(1);
                let weight = back.map_or(0, |b| self.plan.steps[b].weight);
                let kind = Move::StepBack {
                    step: back.unwrap_or(0),
                    weight,
                };
                (kind, explain::stepped_back(&message, weight))
            }
            (OnInconclusive::Rollback, true) => (
                Move::Pause(Reason::Inconclusive),
                format!("would roll back: {message}; paused instead (dry run)"),
            ),
            (OnInconclusive::Pause, _) => (Move::Pause(Reason::Inconclusive), message),
        };
        self.decide(kind, message)
    }

    /// The move after step `k` is done: promote, wait at a gate, or enter the next step.
    fn next(&self, k: usize, skip_gate: bool) -> Decision {
        let steps = &self.plan.steps;
        let kind = match steps.get(k + 1) {
            None => Move::Promote,
            Some(next) if next.gate && !skip_gate => Move::Wait(k + 1),
            Some(_) => Move::Enter(k + 1),
        };
        let message = explain::moved(self, kind);
        self.decide(kind, message)
    }

    /// The first move after the smoke passed (or at once without a smoke).
    pub fn first_step(&self) -> Decision {
        let kind = match self.plan.steps[0].gate {
            true => Move::Wait(0),
            false => Move::Enter(0),
        };
        let message = explain::moved(self, kind);
        self.decide(kind, message)
    }

    /// What an operator's action does, or why it does not apply (a 409).
    ///
    /// # Errors
    /// A sentence naming the state that refuses it.
    pub fn operator(&self, action: Operator) -> Result<Decision, String> {
        let phase = self.record.state;
        let refuse = |what: &str| {
            Err(format!(
                "rollout {} is {}; {what}",
                self.record.id,
                phase.name()
            ))
        };
        let kind = match (action, phase) {
            (Operator::Pause, Phase::Running | Phase::Waiting) => Move::Pause(Reason::Manual),
            (Operator::Pause, _) => {
                return refuse("only a running or waiting rollout can be paused")
            }
            (Operator::Resume, Phase::Paused) => Move::Resume,
            (Operator::Resume, _) => return refuse("only a paused rollout can be resumed"),
            (Operator::Approve, Phase::Waiting) => {
                Move::Approve(self.waiting_for.unwrap_or(self.record.step))
            }
            (Operator::Approve, _) => return refuse("no gate is waiting for approval"),
            (Operator::Abort, Phase::Smoke) => Move::Abort(Reason::Manual),
            (Operator::Abort, p) if p.is_active() && self.weight == 0 => {
                Move::Abort(Reason::Manual)
            }
            (Operator::Abort, p) if p.is_active() => Move::RollBack(Reason::Manual),
            (Operator::Promote { .. }, Phase::Smoke) => {
                return refuse("it can be promoted once the smoke checks passed")
            }
            (Operator::Promote { full: true }, p) if p.is_active() => Move::Promote,
            (Operator::Promote { .. }, Phase::Waiting) => {
                Move::Enter(self.waiting_for.unwrap_or(self.record.step))
            }
            (Operator::Promote { .. }, p) if p.is_active() => {
                return Ok(self.next(self.record.step, true))
            }
            _ => return refuse("it has ended"),
        };
        let message = explain::operator(self, kind);
        Ok(self.decide(kind, message))
    }

    fn decide(&self, kind: Move, message: String) -> Decision {
        Decision { kind, message }
    }

    /// Moves the record by `decision` at `now` (RFC 3339 `stamp`).
    pub fn apply(&mut self, decision: &Decision, now: Instant, stamp: &str) {
        let record = &mut self.record;
        match decision.kind {
            Move::Enter(k) | Move::Approve(k) => {
                record.step = k;
                self.weight = self.plan.steps[k].weight;
                record.state = Phase::Running;
                record.reason = None;
                record.step_started = Some(stamp.to_string());
                if self.weight == FULL {
                    // What the bake is compared with, kept with the record (a restart keeps it).
                    record.reference = Some(self.analysis.reference());
                }
                self.since = now;
                self.reported.clear();
                self.waiting_for = None;
                self.analysis.new_step();
            }
            Move::StepBack { step, weight } => {
                record.step = step;
                self.weight = weight;
                record.state = Phase::Paused;
                record.reason = Some(Reason::Inconclusive);
                record.step_started = Some(stamp.to_string());
                self.since = now;
                self.reported.clear();
                self.waiting_for = None;
                self.analysis.new_step();
            }
            Move::Wait(k) => {
                record.state = Phase::Waiting;
                record.reason = None;
                self.waiting_for = Some(k);
            }
            Move::Promote => {
                record.step = self.plan.steps.len() - 1;
                self.weight = FULL;
                record.state = Phase::Promoted;
                record.reason = None;
            }
            Move::RollBack(reason) | Move::Abort(reason) => {
                self.weight = 0;
                record.state = match decision.kind {
                    Move::Abort(_) => Phase::Aborted,
                    _ => Phase::RolledBack,
                };
                record.reason = Some(reason);
            }
            Move::Pause(reason) => {
                record.state = Phase::Paused;
                record.reason = Some(reason);
            }
            Move::Resume => {
                // After a wait that was no fault of the canary's, the step's clock starts again;
                // a degraded baseline's hold counts against the step's time instead (a baseline
                // that flaps cannot keep a step from ever ending).
                if matches!(record.reason, Some(Reason::Inconclusive | Reason::Restart)) {
                    self.since = now;
                    record.step_started = Some(stamp.to_string());
                }
                record.state = match self.waiting_for {
                    Some(_) => Phase::Waiting,
                    None => Phase::Running,
                };
                record.reason = None;
            }
            Move::WouldRollBack(reason) => record.reason = Some(reason),
        }
        self.analysis.bake = self.weight == FULL;
        let evidence = self.evidence();
        let record = &mut self.record;
        record.weight = crate::control::audit::percent_number(self.weight);
        record.message = decision.message.clone();
        record.updated = stamp.to_string();
        record.revision += 1;
        record.evidence = Some(evidence);
    }

    /// The numbers of the current step.
    pub fn evidence(&self) -> Evidence {
        let a = &self.analysis;
        let p99 = self.last.map_or([None, None], |c| c.p99_ms);
        let pool = |i: usize| PoolEvidence {
            requests: a.step[i].requests,
            errors: a.step[i].errors,
            slow: a.step[i].slow,
            p99_ms: p99[i].map(|v| (v * 100.0).round() / 100.0),
        };
        let round = |v: f64| (v * 100.0).round() / 100.0;
        Evidence {
            pools: [
                (self.record.from.clone(), pool(0)),
                (self.record.to.clone(), pool(1)),
            ]
            .into_iter()
            .collect(),
            error_ratio: round(a.error_evidence),
            latency_ratio: round(a.latency_evidence),
            threshold: round(a.threshold()),
            slow_above_ms: self.last.and_then(|c| c.slow_above_ms).map(round),
            compared_with: match a.compared {
                Compared::Nothing => None,
                Compared::Baseline => Some("baseline".into()),
                Compared::Reference => Some("reference".into()),
            },
        }
    }
}

/// Whether a move ends the rollout.
pub fn ends(kind: Move) -> bool {
    matches!(kind, Move::Promote | Move::RollBack(_) | Move::Abort(_))
}

#[cfg(test)]
mod tests;
