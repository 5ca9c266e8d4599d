//! How the other writers meet an active rollout: `PUT /split` and `POST /switch` are refused
//! while it runs (a paused one is superseded by them), `POST /rollback` always works and ends
//! it, and a config-file edit that moves the split supersedes it.

use super::machine::{Decision, Move};
use super::ops::split_at;
use super::{Phase, Reason};
use crate::audit::{Action, Entry};
use crate::control::{Applied, Control, ControlError, Request, State};

impl Control {
    /// Handles `request` when a rollout is active: `Ok(Some(..))` when the rollout took it
    /// (a rollback), `Ok(None)` when it may go on as usual. Caller holds the lock.
    ///
    /// # Errors
    /// [`ControlError::Conflict`] for a split or switch while the rollout is not paused.
    pub(in crate::control) fn rollout_claims(
        &self,
        state: &mut State,
        actor: &str,
        request: &Request,
    ) -> Result<Option<Applied>, ControlError> {
        let Some(active) = &state.rollouts.active else {
            return Ok(None);
        };
        let r = &active.record;
        match request {
            Request::Rollback => {
                let start = active.start_bp();
                let split = crate::config::percent::checked_split(start)
                    .unwrap_or_else(|_| split_at(&active.start_bp(), &r.from, &r.to, 0));
                let mut next = active.clone();
                let decision = Decision {
                    kind: Move::RollBack(Reason::Manual),
                    message: format!(
                        "rolled back by {actor} (POST /rollback): the split is back to where rollout {} started ({})",
                        r.id,
                        split
                    ),
                };
                next.apply(&decision, std::time::Instant::now(), &super::ops::stamp());
                next.weight = split.share(&r.to);
                next.record.weight = crate::audit::percent_number(next.weight);
                let mut entry = Entry::now(
                    state.version + 1,
                    actor,
                    Action::RolloutRollback,
                    &state.config.split,
                    &split,
                );
                entry.message = decision.message.clone();
                entry.rollout = Some(Box::new(next.record.clone()));
                let applied = self.commit_split(state, actor, entry, split)?;
                state.rollouts.active = None;
                state.rollouts.end(next.record);
                self.rollout_gauges(state);
                Ok(Some(applied))
            }
            _ if r.state == Phase::Paused => Ok(None),
            _ => Err(ControlError::Conflict(format!(
                "rollout {} ({} → {}, {} at {} %) is active; pause or abort it first (POST /rollouts/current/pause or /abort)",
                r.id,
                r.from,
                r.to,
                r.state.name(),
                r.weight
            ))),
        }
    }

    /// Ends an active rollout `aborted` (reason `superseded`) because `actor` set the split
    /// another way; the split itself is already live. Caller holds the lock.
    pub(in crate::control) fn supersede_rollout(&self, state: &mut State, actor: &str, how: &str) {
        let Some(active) = &state.rollouts.active else {
            return;
        };
        let mut next = active.clone();
        let decision = Decision {
            kind: Move::Abort(Reason::Superseded),
            message: format!(
                "superseded: {how} set the split to {} while rollout {} was {}",
                state.config.split,
                active.record.id,
                active.record.state.name()
            ),
        };
        next.apply(&decision, std::time::Instant::now(), &super::ops::stamp());
        next.weight = state.config.split.share(&next.record.to);
        next.record.weight = crate::audit::percent_number(next.weight);
        let split = &state.config.split;
        let mut entry = Entry::now(state.version, actor, Action::RolloutAbort, split, split);
        entry.message = decision.message.clone();
        entry.rollout = Some(Box::new(next.record.clone()));
        if let Err(e) = self.audit.append(&entry) {
            tracing::error!(error = %e, "could not record the superseded rollout");
        }
        tracing::warn!(id = next.record.id, "{}", decision.message);
        state.rollouts.active = None;
        state.rollouts.end(next.record);
        self.rollout_gauges(state);
    }
}
