//! How the other writers meet an active rollout: `PUT /split` and `POST /switch` are refused
//! while it runs (a paused one is superseded by them), `POST /rollback` always works and ends
//! it, and a config-file edit that moves the split supersedes it.

use super::active::{Active, Move};
use super::machine::Decision;
use super::ops::split_at;
use super::{Phase, Reason};
use crate::config::model::Split;
use crate::config::persist::PersistError;
use crate::control::audit::{Action, Entry};
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
                let active_start = active.start_bp();
                let (split, next, message) = Self::manual_rollback(active, actor);
                let decision = Decision {
                    kind: Move::RollBack(Reason::Manual),
                    message,
                };
                let mut entry = Entry::now(
                    state.version + 1,
                    actor,
                    Action::RolloutRollback,
                    &state.config.split,
                    &split,
                );
                entry.message = decision.message.clone();
                entry.rollout = Some(Box::new(next.record.clone()));
                let before = state.config.split.clone();
                let memo = Self::memo_after(state, &next.record, true);
                let committed = self.commit_move(state, actor, entry.clone(), split.clone(), memo);
                match committed {
                    // Shared: decided again on what another replica wrote, or (unreachable)
                    // made live here only (`Control::rollback_locally`).
                    Err(e) if self.shared().is_some() => return Err(e),
                    Err(e) => self.roll_back_live(state, entry, split.clone(), &e),
                    Ok(_) => {}
                }
                let start = crate::config::percent::checked_split(active_start).ok();
                self.end_rollout(state, next.record, start);
                self.rollouts_changed(state);
                Ok(Some(Applied {
                    version: state.version,
                    split: state.config.split.clone(),
                    before,
                    local: false,
                }))
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
        next.record.weight = crate::control::audit::percent_number(next.weight);
        let split = &state.config.split;
        let mut entry = Entry::now(state.version, actor, Action::RolloutAbort, split, split);
        entry.message = decision.message.clone();
        entry.rollout = Some(Box::new(next.record.clone()));
        let memo = Self::memo_after(state, &next.record, true);
        if let Err(e) = self.log_rollout(state, &mut entry, memo) {
            tracing::error!(error = %e, "could not record the superseded rollout");
            if self.shared().is_some() {
                return; // the shared state still has it: it is not ended here alone
            }
        }
        tracing::warn!(id = next.record.id, "{}", decision.message);
        let start = crate::config::percent::checked_split(next.start_bp()).ok();
        self.end_rollout(state, next.record, start);
        self.rollouts_changed(state);
    }

    /// A rollback (automatic, abort or `POST /rollback`) whose split could not be persisted or
    /// recorded (`error`): instant switchback is never blocked, so it goes live anyway, and the
    /// log says what is behind. Caller holds the lock.
    pub(in crate::control) fn roll_back_live(
        &self,
        state: &mut State,
        mut entry: Entry,
        split: Split,
        error: &ControlError,
    ) {
        let file_split = state.file_split.clone();
        let rollout = entry.rollout.as_ref().map(|r| r.id);
        if !matches!(error, ControlError::AppliedUnrecorded(_)) {
            // Only a file holding someone's edit gets the split beside it (after a failed log
            // write the file was put back: it is not touched again).
            let beside_an_edit = matches!(
                error,
                ControlError::PendingEdit(_) | ControlError::Persist(PersistError::Changed { .. })
            );
            let persisted = beside_an_edit && self.rewrite_pending_edit(state, &split);
            let config = state.config.with_split(split);
            self.publish(state, config);
            if persisted {
                // The file holds an operator's rejected edit: the split went into it, the rest of
                // the edit stays as it was; the file is then read again like any edit.
                tracing::warn!(error = %error, "rollback written into the config file beside a rejected edit");
                entry.version = state.version;
                entry.message = format!(
                    "{} (written into the config file beside an edit that was rejected)",
                    entry.message
                );
                if let Err(e) = self.audit.append(&entry) {
                    tracing::error!(error = %e, "a live rollback is missing from the deployment log");
                }
                self.reload_locked(state, "file");
                return;
            }
            // Not saved: journaled, so that neither a reload of the file (which still says the
            // split it replaced) nor a restart brings that split back (`journal`).
            self.journal_rollback(state, &file_split, rollout);
        }
        entry.version = state.version;
        entry.message = match error {
            ControlError::AppliedUnrecorded(_) => {
                tracing::error!(error = %error, "rollback applied; recording it failed once");
                format!("{} (recorded late: {error})", entry.message)
            }
            _ => {
                tracing::error!(error = %error, "rollback not persisted; applied live anyway");
                format!("{} (live, but not persisted: {error})", entry.message)
            }
        };
        if let Err(e) = self.audit.append(&entry) {
            tracing::error!(error = %e, "a live rollback is missing from the deployment log");
        }
    }

    /// `POST /rollback` during rollout `active`: the split it started from (the target at 0 % if
    /// that no longer fits), the rollout as it ends rolled back, and the sentence that says so.
    pub(in crate::control) fn manual_rollback(
        active: &Active,
        actor: &str,
    ) -> (Split, Active, String) {
        let r = &active.record;
        let split = crate::config::percent::checked_split(active.start_bp())
            .unwrap_or_else(|_| split_at(&active.start_bp(), &r.from, &r.to, 0));
        let message = format!(
        "rolled back by {actor} (POST /rollback): the split is back to where rollout {} started ({})",
        r.id, split
    );
        let mut next = active.clone();
        let decision = Decision {
            kind: Move::RollBack(Reason::Manual),
            message: message.clone(),
        };
        next.apply(&decision, std::time::Instant::now(), &super::ops::stamp());
        next.weight = split.share(&r.to);
        next.record.weight = crate::control::audit::percent_number(next.weight);
        (split, next, message)
    }

    /// Writes `split` into the config file as it is on disk (an operator's edit that was
    /// rejected), keeping everything else of that edit; `true` when it worked. A config file
    /// that cannot take it (not TOML, or a state directory) is left alone.
    fn rewrite_pending_edit(&self, state: &mut State, split: &Split) -> bool {
        if !self.store.writes_config() {
            return false;
        }
        let Ok(disk) = std::fs::read_to_string(&self.config_path) else {
            return false;
        };
        let Ok(text) = crate::config::persist::rewrite_split(&disk, split) else {
            return false;
        };
        let written = crate::config::persist::stage(&self.config_path, text.as_bytes())
            .and_then(|staged| staged.commit(Some(&disk)));
        if written.is_err() {
            return false;
        }
        // The file is looked at afresh (the rollback may even have made it valid).
        state.rejected_text = None;
        true
    }
}
