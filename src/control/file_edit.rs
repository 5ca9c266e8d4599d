//! A config-file edit that moves `[split]`, with shared state: written to the cluster once, as
//! a change by `file`. Every replica sees the same GitOps edit; the first writes it (recording
//! the file's split as the shared `file_split`), the others find it already applied.

use std::sync::Arc;

use super::{Control, ControlError, ReloadOutcome, State};
use crate::config::model::Split;
use crate::config::Config;
use crate::data::tokens::Tokens;

/// What a reload had decided: the new config, its override tokens, the keys that need a restart.
pub(super) type Decided<'a> = (Config, Option<Arc<Tokens>>, &'a [&'a str]);

impl Control {
    /// Writes the file's new split to the shared state, then applies the whole edit here. When
    /// another replica wrote first, decides again on the fresh state; when the cluster does not
    /// answer, the edit waits (the live config stays) and is tried again when it does.
    pub(super) fn reload_shared(
        &self,
        state: &mut State,
        actor: &str,
        (config, tokens, needs_restart): Decided<'_>,
        (old_text, old_file_split): (String, Split),
    ) -> ReloadOutcome {
        let before = state.config.split.clone();
        if let Err(e) = self.every_replica_has(&config.split) {
            state.file_text = old_text;
            state.file_split = old_file_split;
            tracing::warn!(error = %e, "the config file's new [split] is not written to the shared state");
            if let ControlError::Conflict(_) = e {
                let message = format!("reload rejected: {e}");
                self.record_rejection(state, actor, &message);
                return ReloadOutcome::Rejected;
            }
            return ReloadOutcome::Unchanged; // tried again once the cluster answers
        }
        let mut entry = super::reload::reload_entry(state, actor, &config.split, needs_restart);
        let affinity = self.shared_table(state, &config.split);
        let mut next = super::state::current(state);
        next.version += 1;
        next.split = &config.split;
        next.previous = Some(&before);
        next.affinity = affinity;
        match self.commit_shared(state, super::state::Saved::of(&next), Some(&mut entry)) {
            Ok(()) => {}
            Err(ControlError::Moved) => {
                // Undone, then decided again on what the other replica wrote.
                state.file_text = old_text;
                state.file_split = old_file_split;
                if self.sync_locked(state).is_err() {
                    return ReloadOutcome::Unchanged;
                }
                return self.reload_locked(state, actor);
            }
            Err(e) => {
                state.file_text = old_text;
                state.file_split = old_file_split;
                tracing::warn!(error = %e, "the config file's new [split] waits for the shared state; the live configuration stays");
                return ReloadOutcome::Unchanged;
            }
        }
        state.override_tokens = tokens;
        self.publish(state, config);
        super::reload::warn_restart(needs_restart);
        self.metrics.reload("applied");
        if let Err(e) = self.audit.append_local(&entry) {
            tracing::warn!(error = %e, "this replica's log misses a reload (the shared log has it)");
        }
        // The edit moved the split: a rollout in progress ends superseded, as with one replica
        // (a pool at 0 % added or removed moves nothing).
        if super::state::positive(&state.config.split) != super::state::positive(&before) {
            self.supersede_rollout(state, actor, "a config-file edit");
        }
        tracing::info!(
            actor,
            version = state.version,
            "config reloaded; its [split] written to the shared state"
        );
        ReloadOutcome::Applied {
            version: state.version,
        }
    }
}
