//! Rollouts with shared state (`[state] etcd`): every replica keeps the rollout book the
//! shared state's memo describes; only the replica leading the engine decides, and its moves
//! are fenced on that leadership (`Control::commit_shared`). An operator's action through any
//! replica is a change like any other: the leader takes in the record it wrote.

use super::book::Book;
use super::recover::adopt;
use super::Rollout;
use crate::control::audit::{Action, Entry};
use crate::control::state::{memo, Memo, Saved};
use crate::control::{Control, ControlError, State};

impl Control {
    /// Takes in the rollouts the shared state's `memo` describes. A record that moved (another
    /// replica's action or decision) is adopted afresh; one that ended is filed as ended.
    pub(in crate::control) fn follow_rollouts(&self, state: &mut State, memo: Option<&Memo>) {
        let Some(memo) = memo else {
            return;
        };
        state.follow.memo = Some(memo.clone());
        let book = &mut state.rollouts;
        book.next_id = book.next_id.max(memo.next_id);
        match &memo.active {
            Some(record) if record.steps.is_empty() || record.step >= record.steps.len() => {
                tracing::error!(
                    id = record.id,
                    "the shared rollout record is not usable (its steps); not taken in"
                );
            }
            Some(record) => {
                let same = (book.active.as_ref()).is_some_and(|a| same_move(&a.record, record));
                if !same {
                    // Active in the shared state: not ended here, whatever this replica thought.
                    book.ended.retain(|r| r.id != record.id);
                    if let Some(old) = book.active.take().filter(|a| a.record.id != record.id) {
                        file_ended(book, memo, old.record);
                    }
                    book.active = Some(adopt(record.clone(), &state.config));
                }
            }
            None => {
                if let Some(active) = book.active.take() {
                    file_ended(book, memo, active.record);
                } else if let Some(last) = &memo.last {
                    if !book.ended.iter().any(|r| r.id == last.id) {
                        book.end(last.clone());
                    }
                }
            }
        }
        self.rollout_gauges(state);
    }

    /// The rollouts' memo once `next` is taken in (`ends`: it ended with this move).
    pub(in crate::control) fn memo_after(state: &State, next: &Rollout, ends: bool) -> Memo {
        let mut memo = memo(state);
        match ends {
            true => {
                memo.active = None;
                memo.last_ended = memo.last_ended.max(next.id);
                memo.last = Some(next.clone());
            }
            false => memo.active = Some(next.clone()),
        }
        memo
    }

    /// Records a rollout `entry` that moves no weight: with shared state in one transaction with
    /// the rollouts' `memo` as it will be (fenced for the engine's moves), then in this
    /// replica's file; otherwise in the deployment log.
    ///
    /// # Errors
    /// The log could not be written; with shared state [`ControlError::Moved`] or
    /// [`ControlError::Unavailable`].
    pub(in crate::control) fn log_rollout(
        &self,
        state: &mut State,
        entry: &mut Entry,
        memo: Memo,
    ) -> Result<(), ControlError> {
        if self.shared().is_none() {
            return self.audit.append(entry).map_err(ControlError::from);
        }
        let mut current = crate::control::state::current(state);
        current.rollouts = memo;
        let saved = Saved::of(&current);
        self.commit_shared(state, saved, Some(entry))?;
        if let Err(e) = self.audit.append_local(entry) {
            tracing::warn!(error = %e, "this replica's log misses a rollout entry (the shared log has it)");
        }
        Ok(())
    }

    /// Writes the rollouts' memo to the shared state when it differs from the one there (the
    /// engine's evidence aside): the moves write it with them, so this catches only what no
    /// move carried. A write that fails is retried by the leader's next second.
    pub(in crate::control) fn share_rollouts(&self, state: &mut State) {
        if state.follow.mismatch.is_some() {
            return; // it would write this replica's split over the shared one
        }
        let now = memo(state);
        if state.follow.memo.as_ref().map(without_evidence) == Some(without_evidence(&now)) {
            return;
        }
        if self.shared().is_some_and(|s| !s.connected().0) && !state.follow.engine {
            return; // tried again by the leader once the cluster answers
        }
        let saved = Saved::of(&crate::control::state::current(state));
        match self.commit_shared(state, saved, None) {
            Ok(()) => self.save_state(state),
            Err(ControlError::Moved) => {
                tracing::info!("the rollout changed on another replica meanwhile; following it");
            }
            Err(e) => tracing::warn!(error = %e, "the rollout's state is not shared yet; retried"),
        }
    }

    /// The leader's second: a memo that could not be written is tried again.
    pub(in crate::control) fn share_rollouts_if_leading(&self, state: &mut State) {
        let leads = self.shared().is_some_and(|s| s.is_leader());
        if leads && state.rollouts.active.is_some() {
            state.follow.engine = true;
            self.share_rollouts(state);
            state.follow.engine = false;
        }
    }

    /// With shared state, whether this replica runs the engine for the active rollout; the
    /// first second it does, the handover is logged (its evidence starts afresh).
    pub(in crate::control) fn leads_rollout(&self, state: &mut State) -> bool {
        let Some(shared) = self.shared() else {
            return true;
        };
        let Some(lead) = shared.fence() else {
            return false;
        };
        let Some(active) = &state.rollouts.active else {
            return true;
        };
        let id = active.record.id;
        if state.follow.led != Some((id, lead)) {
            state.follow.led = Some((id, lead));
            let split = &state.config.split;
            let mut entry = Entry::now(
                state.version,
                "rollout",
                Action::RolloutHandover,
                split,
                split,
            );
            entry.message = format!(
                "replica {} runs rollout {id}'s engine from here ({} at step {} and {} %); its evidence starts afresh",
                shared.replica(),
                active.record.state.name(),
                active.record.step + 1,
                active.record.weight
            );
            entry.rollout = Some(Box::new(active.record.clone()));
            tracing::info!("{}", entry.message);
            if let Err(e) = self.audit.append(&entry) {
                tracing::warn!(error = %e, "the rollout handover is not recorded");
            }
            // The engine follows this rollout afresh from its record.
            let record = active.record.clone();
            state.rollouts.active = Some(adopt(record, &state.config));
        }
        true
    }
}

/// Files `record` as ended, with the memo's account of how it ended when it has one.
fn file_ended(book: &mut Book, memo: &Memo, record: Rollout) {
    let ended = (memo.last.clone())
        .filter(|last| last.id == record.id)
        .unwrap_or(record);
    book.ended.retain(|r| r.id != ended.id); // the shared account wins over this replica's
    book.end(ended);
}

/// Whether two records are the same move (the evidence, refreshed every second, aside).
fn same_move(a: &Rollout, b: &Rollout) -> bool {
    let strip = |r: &Rollout| Rollout {
        evidence: None,
        ..r.clone()
    };
    strip(a) == strip(b)
}

fn without_evidence(memo: &Memo) -> Memo {
    let strip = |r: &Rollout| Rollout {
        evidence: None,
        ..r.clone()
    };
    Memo {
        active: memo.active.as_ref().map(strip),
        last: memo.last.as_ref().map(strip),
        ..memo.clone()
    }
}
