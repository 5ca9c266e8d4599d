//! The restart journal: what a restart must not undo when the store or the deployment log could
//! not take it (issue 24).
//!
//! A small JSON file of its own beside the deployment log (`<log>.journal`), written like every
//! file of switchback's (a new temp file under a random name, synced, renamed), and tried even
//! when the log is not writable. It holds:
//! - a rollback that went live without being saved ([`Unsaved`]): "a rollback is never
//!   blocked" must not become "a restart brings the canary's split back". At start it wins over
//!   a stored split that is older than it — the config file's `[split]` as it was when the
//!   rollback was journaled (an edit since wins, as any edit), or a state file saved before
//!   it — and its rollout never resumes;
//! - with the config-file store, the rollouts' [`Memo`] (the next id, the active rollout), so
//!   recovery does not depend on the newest log entries nor on `deployments-keep = 0`; a state
//!   directory keeps the memo in `state.json` instead.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::state::{carry, memo, positive, Memo};
use crate::config::model::Split;
use crate::config::persist::{stage_own, PersistError};
use crate::config::Config;
use crate::control::audit::split_json;

const FORMAT: u32 = 1;
/// Largest journal read (a real one holds one rollout record).
const MAX_BYTES: u64 = 4 * 1024 * 1024;
/// Largest version or id believed (2^53: exact in every JSON reader), as for `state.json`.
const MAX_NUMBER: u64 = 1 << 53;

/// The journal's content.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Journal {
    #[serde(default)]
    format: u32,
    /// The rollouts' memo (config-file store).
    #[serde(default)]
    pub(super) rollouts: Option<Memo>,
    /// A rollback live but not saved.
    #[serde(default)]
    pub(super) rollback: Option<Unsaved>,
}

/// A rollback that went live without being saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Unsaved {
    /// When it went live (RFC 3339).
    pub(super) at: String,
    /// Its version.
    pub(super) version: u64,
    /// The split it made live.
    pub(super) split: BTreeMap<String, serde_json::Number>,
    /// The config file's own `[split]` then (pools at 0 % left out): an edit since wins.
    pub(super) file_split: BTreeMap<String, serde_json::Number>,
    /// The rollout it ended, if any: never resumed.
    pub(super) rollout: Option<u64>,
}

/// The journal's path for the deployment log at `log`.
pub(super) fn path_for(log: &Path) -> PathBuf {
    let mut name = log.file_name().unwrap_or_default().to_os_string();
    name.push(".journal");
    log.with_file_name(name)
}

impl Journal {
    /// The journal at `path`; empty when there is none.
    ///
    /// # Errors
    /// A message naming the file, when it cannot be read or is no journal.
    pub(super) fn load(path: &Path) -> Result<Journal, String> {
        let bytes = match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Journal::default()),
            Ok(meta) if !meta.is_file() || meta.len() > MAX_BYTES => {
                return Err(format!(
                    "the restart journal {} is not a regular file of at most {MAX_BYTES} bytes; fix or remove it",
                    path.display()
                ))
            }
            _ => std::fs::read(path).map_err(|e| {
                format!("cannot read the restart journal {}: {e}", path.display())
            })?,
        };
        let journal: Journal = serde_json::from_slice(&bytes).map_err(|e| {
            format!(
                "the restart journal {} is not usable ({e}); fix or remove it",
                path.display()
            )
        })?;
        let numbers = [
            journal.rollback.as_ref().map_or(0, |r| r.version),
            journal.rollouts.as_ref().map_or(0, Memo::largest),
        ];
        if numbers.iter().any(|n| *n > MAX_NUMBER) {
            return Err(format!(
                "the restart journal {} holds a version or rollout id over 2^53; fix or remove it",
                path.display()
            ));
        }
        if journal.format != FORMAT {
            return Err(format!(
                "the restart journal {} has format {}; this switchback reads {FORMAT}",
                path.display(),
                journal.format
            ));
        }
        Ok(journal)
    }

    /// Writes the journal at `path` (removes it when it holds nothing).
    ///
    /// # Errors
    /// [`PersistError::Write`] naming the file; the previous journal is then untouched.
    pub(super) fn save(&self, path: &Path) -> Result<(), PersistError> {
        if self.rollouts.is_none() && self.rollback.is_none() {
            return match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(PersistError::Write {
                    path: path.to_path_buf(),
                    source: e,
                }),
                _ => Ok(()),
            };
        }
        let journal = Journal {
            format: FORMAT,
            ..self.clone()
        };
        let mut bytes = serde_json::to_vec_pretty(&journal).expect("plain data serialises");
        bytes.push(b'\n');
        stage_own(path, &bytes)?.commit(None)
    }
}

impl Unsaved {
    /// A rollback to `split` at `version`, ending `rollout`, while the file's `[split]` is
    /// `file_split`.
    pub(super) fn new(
        version: u64,
        split: &Split,
        file_split: &Split,
        rollout: Option<u64>,
    ) -> Self {
        Unsaved {
            at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            version,
            split: split_json(split),
            file_split: split_json(&positive(file_split)),
            rollout,
        }
    }

    /// The split to serve at start instead of the stored one, when this rollback is newer than
    /// what is stored: the config file's `[split]` (`file_split`) is still the one it was
    /// journaled against, and a state file (`saved_version`) was saved before it.
    ///
    /// # Errors
    /// Why the stored split wins.
    pub(super) fn wins(
        &self,
        config: &Config,
        file_split: &Split,
        saved_version: Option<u64>,
    ) -> Result<Split, &'static str> {
        if !self.same_file_split(file_split) {
            return Err("the config file's [split] was edited since; the file's applies");
        }
        if saved_version.is_some_and(|v| v >= self.version) {
            return Err("the state was saved since; the stored split applies");
        }
        super::recover::to_split(&self.split)
            .and_then(|split| carry(&split, config).ok())
            .ok_or("its split no longer fits the configured pools; the stored split applies")
    }

    /// Whether `file_split` is the config file's `[split]` this rollback was journaled against.
    pub(super) fn same_file_split(&self, file_split: &Split) -> bool {
        self.file_split == split_json(&positive(file_split))
    }
}

/// What the journal decides at start.
#[derive(Debug, Default)]
pub(super) struct AtStart {
    /// The journaled rollback's split, when it wins over the stored one.
    pub(super) split: Option<Split>,
    /// Said in the deployment log's `start` entry.
    pub(super) note: Option<String>,
    /// The rollout the winning rollback ended: it never resumes.
    pub(super) rolled_back: Option<u64>,
}

impl Journal {
    /// Whether a journaled rollback applies at start (see [`Unsaved::wins`]).
    pub(super) fn at_start(
        &self,
        config: &Config,
        file_split: &Split,
        saved_version: Option<u64>,
    ) -> AtStart {
        let Some(unsaved) = &self.rollback else {
            return AtStart::default();
        };
        match unsaved.wins(config, file_split, saved_version) {
            Ok(split) => {
                let note = format!(
                    "the rollback of {} that could not be saved applies (restart journal; newer than the stored split)",
                    unsaved.at
                );
                tracing::warn!("{note}");
                AtStart {
                    split: Some(split),
                    note: Some(note),
                    rolled_back: unsaved.rollout,
                }
            }
            // Its rollout never resumes, whichever split applies.
            Err(why) => AtStart {
                note: Some(format!(
                    "the rollback of {} in the restart journal does not apply: {why}",
                    unsaved.at
                )),
                rolled_back: unsaved.rollout,
                ..AtStart::default()
            },
        }
    }
}

/// After the start was saved and logged: a winning rollback is made durable (a state directory
/// has just saved it; a config file gets it in its `[split]` when it can take it, else it stays
/// journaled), and the journal is written for what is live.
pub(super) fn settle_at_start(
    control_path: &Path,
    store: &super::state::Store,
    path: &Path,
    state: &mut super::State,
) {
    if state.journal.rollback.is_some() {
        let durable = match store.writes_config() {
            false => true,
            true => write_split_into(control_path, state),
        };
        if durable {
            state.journal.rollback = None;
        }
    }
    state.journal.rollouts = store.writes_config().then(|| memo(state));
    if let Err(e) = state.journal.save(path) {
        tracing::error!(error = %e, "could not write the restart journal");
    }
}

/// Writes the live split into the config file's `[split]` (its text as read at start); `true`
/// when it is there.
fn write_split_into(config_path: &Path, state: &mut super::State) -> bool {
    if state.file_split == state.config.split {
        return true;
    }
    let Ok(text) = crate::config::persist::rewrite_split(&state.file_text, &state.config.split)
    else {
        return false;
    };
    let written = crate::config::persist::stage(config_path, text.as_bytes())
        .and_then(|staged| staged.commit(Some(&state.file_text)));
    match written {
        Ok(()) => {
            state.file_text = text;
            state.file_split = state.config.split.clone();
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "the journaled rollback could not be written into the config file; it stays journaled");
            false
        }
    }
}

impl super::Control {
    /// Journals a rollback that went live without being saved (`file_split`: the config file's
    /// `[split]` before it); tried whatever else failed. Caller holds the lock.
    pub(super) fn journal_rollback(
        &self,
        state: &mut super::State,
        file_split: &Split,
        rollout: Option<u64>,
    ) {
        let unsaved = Unsaved::new(state.version, &state.config.split, file_split, rollout);
        state.journal.rollback = Some(unsaved);
        if self.store.writes_config() {
            state.journal.rollouts = Some(memo(state));
        }
        match state.journal.save(&self.journal_path) {
            Ok(()) => {
                tracing::warn!(path = %self.journal_path.display(), "the rollback was journaled: a restart keeps it")
            }
            Err(e) => {
                tracing::error!(error = %e, "the rollback could not be journaled either: a restart may bring the previous split back")
            }
        }
    }

    /// A change was saved and logged: a journaled rollback is older than it now.
    pub(super) fn journal_superseded(&self, state: &mut super::State) {
        let Some(rollback) = state.journal.rollback.take() else {
            return;
        };
        if let Err(e) = state.journal.save(&self.journal_path) {
            tracing::error!(error = %e, "could not update the restart journal");
            state.journal.rollback = Some(rollback); // tried again at the next change
        }
    }

    /// The rollouts changed (started, moved, ended): the memo is kept where the store keeps
    /// it (`state.json`, or the journal beside a config file). Caller holds the lock.
    pub(super) fn remember_rollouts(&self, state: &mut super::State) {
        if self.shared.is_some() {
            self.share_rollouts(state);
            return;
        }
        if !self.store.writes_config() {
            self.save_state(state);
            return;
        }
        let memo = memo(state);
        if state.journal.rollouts.as_ref() == Some(&memo) {
            return;
        }
        let written = state.journal.rollouts.replace(memo);
        if let Err(e) = state.journal.save(&self.journal_path) {
            tracing::error!(error = %e, "could not write the restart journal");
            state.journal.rollouts = written; // tried again at the next change
        }
    }
}

#[cfg(test)]
mod tests;
