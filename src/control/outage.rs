//! A rollback while the shared state is unreachable: instant switchback is never blocked.
//!
//! It goes live on the replica that received it at once, takes no shared version, and is
//! answered 202 ("local only"). When the cluster answers again it is written as a normal
//! change, unless the shared version moved past the one it rolled back from meanwhile: then it
//! is logged as superseded and the shared state applies.

use super::audit::{Action, Entry, Outcome};
use super::follow::LocalRollback;
use super::state::Saved;
use super::{Applied, Control, ControlError, State};

impl Control {
    /// Restores the previous split here only, because the cluster did not answer (`why`).
    ///
    /// # Errors
    /// [`ControlError::NoPrevious`].
    pub(super) fn rollback_locally(
        &self,
        state: &mut State,
        actor: &str,
        why: &str,
    ) -> Result<Applied, ControlError> {
        // During a rollout: back to where it started, and it ends (as `POST /rollback` always
        // does); otherwise the previous split.
        let ending = (state.rollouts.active.as_ref()).map(|a| Self::manual_rollback(a, actor));
        let split = match &ending {
            Some((split, _, _)) => split.clone(),
            None => state.previous.clone().ok_or(ControlError::NoPrevious)?,
        };
        let before = state.config.split.clone();
        let pending = state.follow.local_rollback.get_or_insert(LocalRollback {
            from: state.follow.rev,
            actor: actor.to_string(),
            before: before.clone(),
        });
        tracing::warn!(
            actor,
            from = pending.from,
            "rollback applied on this replica only: {why}"
        );
        state.buckets.table = self.table_for(state, &split);
        state.previous = Some(before.clone());
        let config = state.config.with_split(split.clone());
        self.install(state, config);
        if let Some((_, next, message)) = ending {
            tracing::warn!(id = next.record.id, "{message} (on this replica only)");
            let start = crate::config::percent::checked_split(next.start_bp()).ok();
            self.end_rollout(state, next.record, start);
            self.rollout_gauges(state);
        }
        self.save_state(state);
        let mut entry = Entry::now(state.version, actor, Action::Rollback, &before, &split);
        entry.message = format!(
            "applied on this replica only ({why}); written to the shared state when it answers again"
        );
        if let Err(e) = self.audit.append_local(&entry) {
            tracing::error!(error = %e, "a local rollback is missing from this replica's log");
        }
        Ok(Applied {
            version: state.version,
            split,
            before,
            local: true,
        })
    }

    /// With the cluster answering again and holding `saved` at `rev`: writes the local
    /// rollback as a change when nothing moved since, else records it as superseded. `true`
    /// when it was written (the shared state is then this replica's).
    pub(super) fn reconcile(
        &self,
        state: &mut State,
        saved: &Saved,
        rev: i64,
        local: &LocalRollback,
    ) -> bool {
        let split = state.config.split.clone();
        // Anything written since (a change, or a rollout's move that took no version) wins.
        if rev != local.from {
            self.superseded(saved, local, "the shared state changed meanwhile");
            return false;
        }
        let mut entry = Entry::now(
            saved.version + 1,
            &local.actor,
            Action::Rollback,
            &local.before,
            &split,
        );
        entry.message = "applied on this replica during a shared-state outage; written now".into();
        let at = std::mem::replace(&mut state.follow.rev, rev);
        let affinity = self.shared_table(state, &split);
        let mut next = super::state::current(state);
        next.version = saved.version + 1;
        next.affinity = affinity;
        match self.commit_shared(state, super::state::Saved::of(&next), Some(&mut entry)) {
            Ok(()) => {
                state.version = saved.version + 1;
                let config = state.config.as_ref().clone();
                self.install(state, config);
                if let Err(e) = self.audit.append_local(&entry) {
                    tracing::warn!(error = %e, "this replica's log misses a reconciled rollback (the shared log has it)");
                }
                self.save_state(state);
                self.beat(state);
                tracing::info!(
                    version = state.version,
                    "local rollback written to the shared state"
                );
                true
            }
            Err(ControlError::Unavailable(e)) => {
                state.follow.rev = at;
                tracing::warn!(error = %e, "the local rollback waits for the shared state");
                state.follow.local_rollback = Some(local.clone());
                true
            }
            Err(e) => {
                // Another replica wrote first: superseded, and the shared state applies.
                state.follow.rev = at;
                self.superseded(saved, local, &e.to_string());
                false
            }
        }
    }

    /// Records that the local rollback `local` was not written (`why`): the shared state
    /// (`saved`) applies instead.
    fn superseded(&self, saved: &Saved, local: &LocalRollback, why: &str) {
        let split = &local.before;
        let mut entry = Entry::now(saved.version, &local.actor, Action::Rollback, split, split);
        entry.outcome = Outcome::Rejected;
        entry.message = format!(
            "the rollback applied on this replica only during the outage is superseded ({why}; now version {}); the shared state applies",
            saved.version
        );
        tracing::warn!("{}", entry.message);
        if let Err(e) = self.audit.append(&entry) {
            tracing::error!(error = %e, "a superseded local rollback is not recorded");
        }
    }
}
