//! Admin-initiated changes: set a split, switch to one pool, roll back.

use std::collections::BTreeMap;

use crate::config::model::{BasisPoints, Split, FULL};
use crate::config::percent::checked_split;
use crate::config::persist::{rewrite_split, stage, PersistError};
use crate::config::Config;
use crate::control::audit::{Action, Entry};
use crate::control::state::Memo;

use super::{Control, ControlError, State};

/// Attempts at a change while other replicas keep writing first.
pub(super) const MOVED_RETRIES: usize = 8;

/// A change asked for through the admin API.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// The whole split, pool → basis points; pools left out get 0.
    Split(BTreeMap<String, BasisPoints>),
    /// 100 % to this pool.
    Switch(String),
    /// Restore the previous split.
    Rollback,
}

impl Request {
    pub(super) fn action(&self) -> Action {
        match self {
            Request::Split(_) => Action::Split,
            Request::Switch(_) => Action::Switch,
            Request::Rollback => Action::Rollback,
        }
    }
}

/// An accepted change.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The new live version.
    pub version: u64,
    /// The split now live.
    pub split: Split,
    /// The split before.
    pub before: Split,
    /// Live on this replica only: the shared state was unreachable (a rollback, answered 202).
    pub local: bool,
}

impl Control {
    /// Applies `request` for `actor`: validate, persist to the file, record, swap.
    ///
    /// With `if_match`, the change applies only while that version is live.
    ///
    /// # Errors
    /// [`ControlError`]; nothing changed, and the refusal is in the deployment log.
    pub async fn change(
        &self,
        actor: &str,
        request: Request,
        if_match: Option<u64>,
    ) -> Result<Applied, ControlError> {
        let mut state = self.state.lock().await;
        if self.is_retired() {
            return Err(ControlError::Retired);
        }
        // An operator's edit the watcher has not picked up yet is applied (or rejected) first,
        // so this write never buries it; a rejected one blocks writes until it is fixed.
        self.reload_locked(&mut state, "file");
        // A rejected edit blocks writes only where a write could bury it: in the config file.
        // ... except a rollback during a rollout: instant switchback is never blocked.
        let rollout_rollback = request == Request::Rollback && state.rollouts.active.is_some();
        let pending = state
            .rejected_reason
            .as_ref()
            .filter(|_| self.store.writes_config() && !rollout_rollback);
        let result = match pending {
            Some(reason) => Err(ControlError::PendingEdit(reason.clone())),
            None if self.shared.is_some() => {
                self.change_shared(&mut state, actor, &request, if_match)
            }
            None => self.change_locked(&mut state, actor, &request, if_match),
        };
        if let Err(ControlError::AppliedUnrecorded(_)) = &result {
            // Live and in the file: one more try at recording it as applied, never as refused.
            let before = state
                .previous
                .clone()
                .unwrap_or_else(|| state.config.split.clone());
            let entry = Entry::now(
                state.version,
                actor,
                request.action(),
                &before,
                &state.config.split,
            );
            if let Err(e) = self.audit.append(&entry) {
                tracing::error!(error = %e, "an applied change is missing from the deployment log");
            }
        } else if let Err(e) = &result {
            let message = format!("{} refused: {e}", request.action().name());
            self.record_rejection(&state, actor, &message);
        }
        result
    }

    /// [`Self::change_locked`] on the shared state: decided on the state read from the
    /// cluster (so `If-Match` is checked against the shared version), and decided again when
    /// another replica wrote first. A rollback the cluster cannot take goes live here only.
    fn change_shared(
        &self,
        state: &mut State,
        actor: &str,
        request: &Request,
        if_match: Option<u64>,
    ) -> Result<Applied, ControlError> {
        let unreachable = self.shared().is_some_and(|s| !s.connected().0);
        if unreachable && *request == Request::Rollback {
            // Known to be unreachable: instant switchback does not wait for a timeout first.
            return self.rollback_locally(state, actor, "shared state unreachable");
        }
        for _ in 0..MOVED_RETRIES {
            let result = match self.sync_locked(state) {
                Err(why) => Err(ControlError::Unavailable(why)),
                Ok(()) if *request == Request::Rollback => {
                    self.change_locked(state, actor, request, if_match)
                }
                Ok(()) => self
                    .refuse_if_mismatched(state)
                    .and_then(|()| self.change_locked(state, actor, request, if_match)),
            };
            match result {
                Err(ControlError::Moved) => continue,
                Err(ControlError::Unavailable(why)) if *request == Request::Rollback => {
                    return self.rollback_locally(state, actor, &why)
                }
                result => return result,
            }
        }
        Err(ControlError::Unavailable(
            "shared state unreachable: other replicas kept changing it; retry".into(),
        ))
    }

    fn change_locked(
        &self,
        state: &mut State,
        actor: &str,
        request: &Request,
        if_match: Option<u64>,
    ) -> Result<Applied, ControlError> {
        if let Some(expected) = if_match.filter(|v| *v != state.version) {
            return Err(ControlError::Stale {
                expected,
                current: state.version,
            });
        }
        if let Some(answer) = self.rollout_claims(state, actor, request)? {
            return Ok(answer);
        }
        let before = state.config.split.clone();
        let split = target_split(state, request)?;
        if *request != Request::Rollback {
            self.every_replica_has(&split)?;
        }
        let entry = Entry::now(state.version + 1, actor, request.action(), &before, &split);
        let applied = self.commit_split(state, actor, entry, split)?;
        let how = format!("{actor} ({})", request.action().name());
        self.supersede_rollout(state, actor, &how);
        Ok(applied)
    }

    /// Persists, records (`entry`, whose version is the next one) and publishes `split`.
    /// Not recorded means not applied: the file or the state is put back.
    pub(super) fn commit_split(
        &self,
        state: &mut State,
        actor: &str,
        entry: Entry,
        split: Split,
    ) -> Result<Applied, ControlError> {
        self.commit_split_with(state, actor, entry, split, None)
    }

    /// [`Self::commit_split`] for a rollout's move: a state store saves the rollouts' `memo`
    /// (as it will be once the move is taken in) with the split, in the same write.
    pub(super) fn commit_move(
        &self,
        state: &mut State,
        actor: &str,
        entry: Entry,
        split: Split,
        memo: Memo,
    ) -> Result<Applied, ControlError> {
        self.commit_split_with(state, actor, entry, split, Some(memo))
    }

    fn commit_split_with(
        &self,
        state: &mut State,
        actor: &str,
        entry: Entry,
        split: Split,
        memo: Option<Memo>,
    ) -> Result<Applied, ControlError> {
        let before = state.config.split.clone();
        if !self.store.writes_config() {
            return self.change_in_store(state, actor, entry, (before, split), memo);
        }
        let text =
            rewrite_split(&state.file_text, &split).map_err(|reason| PersistError::Edit {
                path: self.config_path.clone(),
                reason,
            })?;
        stage(&self.config_path, text.as_bytes())?.commit(Some(&state.file_text))?;
        let old_text = std::mem::replace(&mut state.file_text, text.clone());
        let config = state.config.with_split(split.clone());
        if let Err(e) = self.audit.append(&entry) {
            // Not logged means not applied: put the file back as it was. Only when that fails
            // too is the change applied after all, so that the answer and the live state agree
            // with the file.
            let restored =
                stage(&self.config_path, old_text.as_bytes()).and_then(|s| s.commit(Some(&text)));
            let ours_on_disk =
                || std::fs::read(&self.config_path).is_ok_and(|t| t == text.as_bytes());
            return match restored {
                Err(restore)
                    if !matches!(restore, PersistError::Changed { .. }) && ours_on_disk() =>
                {
                    tracing::error!(error = %restore, "could not restore the config file; the change stays applied");
                    self.publish(state, config);
                    Err(ControlError::AppliedUnrecorded(e))
                }
                // Restored, or the file holds someone else's text now (the watcher takes it).
                _ => {
                    state.file_text = old_text;
                    Err(e.into())
                }
            };
        }
        Ok(self.apply(state, actor, config, before))
    }
}

impl Control {
    /// Publishes an accepted, persisted and logged change and says what is live now.
    fn apply(&self, state: &mut State, actor: &str, config: Config, before: Split) -> Applied {
        let split = config.split.clone();
        self.publish(state, config);
        self.journal_superseded(state);
        tracing::info!(actor, version = state.version, split = %split, "change applied");
        Applied {
            version: state.version,
            split,
            before,
            local: false,
        }
    }

    /// [`Self::change_locked`] with a state directory: the config file is never written.
    /// Saved, then logged, then live; not logged means the saved state is put back.
    fn change_in_store(
        &self,
        state: &mut State,
        actor: &str,
        entry: Entry,
        (before, split): (Split, Split),
        memo: Option<Memo>,
    ) -> Result<Applied, ControlError> {
        let affinity = self.shared_table(state, &split);
        let mut next = super::state::current(state);
        if let Some(memo) = memo {
            next.rollouts = memo; // a rollout's move: its record goes with the split
        }
        next.version += 1;
        next.split = &split;
        if split != before {
            next.previous = Some(&before);
        }
        if self.shared.is_some() {
            next.affinity = affinity;
            let mut entry = entry;
            self.commit_shared(state, super::state::Saved::of(&next), Some(&mut entry))?;
            if let Err(e) = self.audit.append_local(&entry) {
                tracing::warn!(error = %e, "this replica's log misses a change (the shared log has it)");
            }
            if split == before {
                // `publish` keeps the version when the split stays; this change took one.
                state.version += 1;
            }
            let config = state.config.with_split(split.clone());
            return Ok(self.apply(state, actor, config, before));
        }
        self.store.save(&next)?;
        let config = state.config.with_split(split.clone());
        if let Err(e) = self.audit.append(&entry) {
            if let Err(restore) = self.store.save(&super::state::current(state)) {
                tracing::error!(error = %restore, "could not restore the state; the change stays applied");
                self.publish(state, config);
                return Err(ControlError::AppliedUnrecorded(e));
            }
            return Err(e.into());
        }
        Ok(self.apply(state, actor, config, before))
    }
}

impl Control {
    /// Refuses a write from a replica whose config lacks a pool the shared split names: what
    /// it would write carries its own last-good split, not the shared one. A rollback (its
    /// target comes from the shared state) is the exception.
    ///
    /// # Errors
    /// [`ControlError::Conflict`] saying why.
    pub(super) fn refuse_if_mismatched(&self, state: &State) -> Result<(), ControlError> {
        match &state.follow.mismatch {
            Some(why) => Err(ControlError::Conflict(format!(
                "{why}: send changes through another replica, or add the pool to this one's config"
            ))),
            None => Ok(()),
        }
    }

    /// With shared state: refuses a split that gives a share to a pool some other live replica
    /// does not have (it could not serve it). A rollback is never refused for this.
    ///
    /// # Errors
    /// [`ControlError::Conflict`] naming the replica; unreachable.
    pub(super) fn every_replica_has(&self, split: &Split) -> Result<(), ControlError> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        let replicas = shared.replicas_now().map_err(ControlError::Unavailable)?;
        // This replica is judged by the config it is about to apply, not its heartbeat's.
        for replica in replicas.iter().filter(|r| r.replica != shared.replica()) {
            let missing = (split.shares().iter())
                .find(|(pool, bp)| **bp > 0 && !replica.pools.contains(pool));
            if let Some((pool, _)) = missing {
                return Err(ControlError::Conflict(format!(
                    "replica {} has no pool {pool} in its config; add it there first (a rollback is never refused for this)",
                    replica.replica
                )));
            }
        }
        Ok(())
    }
}

fn target_split(state: &State, request: &Request) -> Result<Split, ControlError> {
    let pools = &state.config.pools;
    let shares = match request {
        Request::Rollback => return state.previous.clone().ok_or(ControlError::NoPrevious),
        Request::Switch(to) => {
            if !pools.contains_key(to) {
                return Err(unknown_pool(to, state));
            }
            pools
                .keys()
                .map(|p| (p.clone(), if p == to { FULL } else { 0 }))
                .collect()
        }
        Request::Split(asked) => {
            if let Some(unknown) = asked.keys().find(|p| !pools.contains_key(*p)) {
                return Err(unknown_pool(unknown, state));
            }
            pools
                .keys()
                .map(|p| (p.clone(), asked.get(p).copied().unwrap_or(0)))
                .collect()
        }
    };
    checked_split(shares).map_err(|kind| ControlError::Invalid(kind.to_string()))
}

fn unknown_pool(name: &str, state: &State) -> ControlError {
    let known: Vec<&str> = state.config.pools.keys().map(String::as_str).collect();
    ControlError::Invalid(format!(
        "no pool named {name:?} (pools: {})",
        known.join(", ")
    ))
}
