//! Where accepted changes are kept: the one seam between control and storage.
//!
//! - [`Store::ConfigFile`] (the single-host default): `[split]` is written back into the config
//!   file (`config::persist`), the affinity table into its own file.
//! - [`Store::Dir`] (`[state] dir`): everything in `<dir>/state.json`, written atomically (a
//!   link at that name is replaced, never written through); the config file is only ever
//!   read, so it may sit on a read-only mount.
//!
//! - [`Store::Etcd`] (`[state] etcd`): the shared state lives on an etcd cluster
//!   (`control::shared`); `load` and `save` keep this replica's cache of it,
//!   `<dir>/shared-cache.json` (nothing without `[state] dir`), served when the cluster is
//!   unreachable at start. Changes go to the cluster first, in one transaction with their log
//!   entry (`Control::commit_shared`), then to the cache.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::model::Split;
use crate::config::persist::{stage_own, PersistError};
use crate::config::Config;
use crate::control::audit::split_json;
use crate::control::rollout::Rollout;

use super::recover::to_split;
use super::resolve_beside;

/// The state file's name inside `[state] dir`.
pub const STATE_FILE: &str = "state.json";
const FORMAT: u32 = 1;
/// Largest state file read (a real one is a few KiB).
const MAX_BYTES: u64 = 4 * 1024 * 1024;
/// Largest version believed (2^53: exact in every JSON reader).
const MAX_VERSION: u64 = 1 << 53;

/// Where accepted changes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    /// Written back into the config file.
    ConfigFile(PathBuf),
    /// `<dir>/state.json`.
    Dir(PathBuf),
    /// Shared on etcd under `prefix`; `cache` is `<dir>/shared-cache.json`.
    Etcd {
        /// The key prefix.
        prefix: PathBuf,
        /// This replica's copy of the last shared state it applied.
        cache: Option<PathBuf>,
    },
}

/// The shared state's local copy inside `[state] dir`.
pub const CACHE_FILE: &str = "shared-cache.json";

/// What `state.json` holds (percent numbers, like the deployment log).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Saved {
    format: u32,
    /// The version live when it was written.
    pub(super) version: u64,
    /// The live split.
    pub(super) split: BTreeMap<String, serde_json::Number>,
    /// The split `rollback` restores.
    pub(super) previous: Option<BTreeMap<String, serde_json::Number>>,
    /// The config file's own `[split]` when this was written: when the file's differs, the
    /// file was edited since, and its split wins.
    pub(super) file_split: BTreeMap<String, serde_json::Number>,
    /// The affinity bucket table (`affinity::store`'s format), while `[affinity]` is on.
    #[serde(default)]
    pub(super) affinity: Option<serde_json::Value>,
    /// The next rollout id and the active rollout (`None` in a state file written before they
    /// were kept here).
    #[serde(default)]
    pub(super) rollouts: Option<Memo>,
}

/// What rollout recovery needs besides the log: the next id and the active rollout.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Memo {
    /// The id the next rollout gets.
    pub(crate) next_id: u64,
    /// The rollout in progress, as it was last taken in.
    pub(crate) active: Option<Rollout>,
    /// The newest rollout id seen ending (0: none): a rollout up to it that the deployment log
    /// still shows active ended without its end logged.
    #[serde(default)]
    pub(crate) last_ended: u64,
    /// The newest ended rollout's record (with shared state, the replicas that did not end it
    /// learn how it ended from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last: Option<Rollout>,
}

impl Memo {
    /// The largest number it holds (bounded when read: an id must leave room for its next).
    pub(super) fn largest(&self) -> u64 {
        let active = self.active.as_ref().map_or(0, |a| a.id);
        self.next_id.max(self.last_ended).max(active)
    }
}

/// The rollouts' memo for what `state` holds now.
pub(super) fn memo(state: &super::State) -> Memo {
    Memo {
        next_id: state.rollouts.next_id,
        active: state.rollouts.active.as_ref().map(|a| a.record.clone()),
        last_ended: state.rollouts.ended.iter().map(|r| r.id).max().unwrap_or(0),
        last: state.rollouts.ended.back().cloned(),
    }
}

/// The live state `save` writes.
pub(super) struct Current<'a> {
    pub(super) version: u64,
    pub(super) split: &'a Split,
    pub(super) previous: Option<&'a Split>,
    pub(super) file_split: &'a Split,
    pub(super) affinity: Option<serde_json::Value>,
    pub(super) rollouts: Memo,
}

impl Store {
    /// The store `config` (read from `config_path`) asks for.
    pub fn of(config_path: &Path, config: &Config) -> Store {
        if let Some(shared) = &config.shared {
            return Store::Etcd {
                prefix: PathBuf::from(&shared.prefix),
                cache: (config.state_dir.as_ref())
                    .map(|dir| resolve_beside(config_path, dir).join(CACHE_FILE)),
            };
        }
        match &config.state_dir {
            Some(dir) => Store::Dir(resolve_beside(config_path, dir).join(STATE_FILE)),
            None => Store::ConfigFile(config_path.to_path_buf()),
        }
    }

    /// `("config-file" | "dir" | "etcd", path or prefix)`, for `/status` and `check`.
    pub fn location(&self) -> (&'static str, &Path) {
        match self {
            Store::ConfigFile(path) => ("config-file", path),
            Store::Dir(path) => ("dir", path),
            Store::Etcd { prefix, .. } => ("etcd", prefix),
        }
    }

    /// The file `load` and `save` use, if any.
    fn file(&self) -> Option<&Path> {
        match self {
            Store::ConfigFile(_) => None,
            Store::Dir(path) => Some(path),
            Store::Etcd { cache, .. } => cache.as_deref(),
        }
    }

    /// Whether accepted changes are written back into the config file.
    pub fn writes_config(&self) -> bool {
        matches!(self, Store::ConfigFile(_))
    }

    /// The saved state; `Ok(None)` for a config-file store or no state yet.
    ///
    /// # Errors
    /// A message naming the state file, when it cannot be read or is not a state file.
    pub(super) fn load(&self) -> Result<Option<Saved>, String> {
        let Some(path) = self.file() else {
            return Ok(None);
        };
        let bytes = match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Ok(meta) if meta.len() > MAX_BYTES => {
                return Err(format!(
                    "the state file {} is larger than {MAX_BYTES} bytes; fix or remove it",
                    path.display()
                ))
            }
            _ => std::fs::read(path)
                .map_err(|e| format!("cannot read the state file {}: {e}", path.display()))?,
        };
        let saved: Saved = serde_json::from_slice(&bytes).map_err(|e| {
            format!(
                "the state file {} is not usable ({e}); fix or remove it (the config file's [split] then applies)",
                path.display()
            )
        })?;
        if saved.version > MAX_VERSION
            || saved
                .rollouts
                .as_ref()
                .is_some_and(|m| m.largest() > MAX_VERSION)
        {
            return Err(format!(
                "the state file {} holds version {}; fix or remove it",
                path.display(),
                saved.version
            ));
        }
        if saved.format != FORMAT {
            return Err(format!(
                "the state file {} has format {}; this switchback reads {FORMAT}",
                path.display(),
                saved.format
            ));
        }
        Ok(Some(saved))
    }

    /// [`Self::load`], for `check`: whether a state file that exists can be used.
    ///
    /// # Errors
    /// As [`Self::load`].
    pub fn load_checked(&self) -> Result<(), String> {
        self.load().map(|_| ())
    }

    /// Writes `current` (a dir store only; the config-file store persists elsewhere).
    ///
    /// # Errors
    /// [`PersistError::Write`] naming the file; the previous state file is then untouched.
    pub(super) fn save(&self, current: &Current<'_>) -> Result<(), PersistError> {
        let Some(path) = self.file() else {
            return Ok(());
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| PersistError::Write {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let mut bytes =
            serde_json::to_vec_pretty(&Saved::of(current)).expect("plain data serialises");
        bytes.push(b'\n');
        stage_own(path, &bytes)?.commit(None)
    }
}

impl Saved {
    /// `self`, when its numbers and format are ones this switchback reads (the shared state).
    ///
    /// # Errors
    /// What is wrong with it.
    pub(super) fn checked(self) -> Result<Saved, String> {
        let largest = self.rollouts.as_ref().map_or(0, Memo::largest);
        if self.version > MAX_VERSION || largest > MAX_VERSION {
            return Err(format!(
                "the shared state holds version {}; fix or remove it",
                self.version
            ));
        }
        if self.format != FORMAT {
            return Err(format!(
                "the shared state has format {}; this switchback reads {FORMAT}",
                self.format
            ));
        }
        Ok(self)
    }

    /// What `current` is saved as.
    pub(super) fn of(current: &Current<'_>) -> Saved {
        Saved {
            format: FORMAT,
            version: current.version,
            split: split_json(current.split),
            previous: current.previous.map(split_json),
            file_split: split_json(&positive(current.file_split)),
            affinity: current.affinity.clone(),
            rollouts: Some(current.rollouts.clone()),
        }
    }

    /// The saved live split, when it still fits `config`'s pools.
    pub(super) fn split(&self, config: &Config) -> Option<Split> {
        carry(&to_split(&self.split)?, config).ok()
    }

    /// The saved previous split, when it still fits `config`'s pools.
    pub(super) fn previous(&self, config: &Config) -> Option<Split> {
        carry(&to_split(self.previous.as_ref()?)?, config).ok()
    }

    /// Whether the config file's `[split]` is still the one this state was written against
    /// (pools at 0 % aside: adding or removing an idle pool does not touch `[split]`).
    pub(super) fn file_unchanged(&self, file_split: &Split) -> bool {
        self.file_split == split_json(&positive(file_split))
    }
}

/// `split` without its pools at 0 %: what the `[split]` table says, whatever pools exist.
pub(super) fn positive(split: &Split) -> Split {
    Split::new(
        split
            .shares()
            .iter()
            .filter(|(_, bp)| **bp > 0)
            .map(|(p, bp)| (p.clone(), *bp))
            .collect(),
    )
}

/// `split` over `config`'s pools: pools it does not name get 0 %.
///
/// # Errors
/// The message when a pool holding a share is no longer configured.
pub(super) fn carry(split: &Split, config: &Config) -> Result<Split, String> {
    if let Some((gone, _)) = split
        .shares()
        .iter()
        .find(|(p, bp)| **bp > 0 && !config.pools.contains_key(*p))
    {
        return Err(format!(
            "pool {gone} holds {}% of the live split and is no longer configured; move its traffic first",
            crate::config::model::format_percent(split.share(gone))
        ));
    }
    let shares = config
        .pools
        .keys()
        .map(|p| (p.clone(), split.share(p)))
        .collect();
    crate::config::percent::checked_split(shares).map_err(|e| e.to_string())
}

/// What `save` writes for the live `state`.
pub(super) fn current(state: &super::State) -> Current<'_> {
    Current {
        version: state.version,
        split: &state.config.split,
        previous: state.previous.as_ref(),
        file_split: &state.file_split,
        affinity: state
            .config
            .affinity
            .as_ref()
            .map(|_| crate::data::affinity::table_to_value(&state.buckets.table)),
        rollouts: memo(state),
    }
}

/// How a start with a state directory resumes.
pub(super) struct Resumed {
    /// The split to serve.
    pub(super) split: Split,
    /// The split `rollback` restores.
    pub(super) previous: Option<Split>,
    /// The version saved.
    pub(super) version: u64,
    /// Said in the deployment log's `start` entry when the saved split does not apply.
    pub(super) note: Option<String>,
    /// With shared state: the file's `[split]` changed since the shared state recorded it, so
    /// the edit is written as a change (the shared split serves until then).
    pub(super) file_edit: bool,
}

/// The saved split, unless the config file's `[split]` changed since it was saved (the file's
/// edit is newer) or it names a pool no longer configured. With `shared` state the saved split
/// serves even then: the edit is written as a change right after the start (`file_edit`).
pub(super) fn resume(saved: &Saved, config: &Config, shared: bool) -> Resumed {
    let file = &config.split;
    let file_edit = shared && !saved.file_unchanged(file);
    let unchanged = saved.file_unchanged(file) || shared;
    let (split, previous, note) = match (unchanged, saved.split(config)) {
        (true, Some(split)) => (split, saved.previous(config), None),
        (true, None) => (
            file.clone(),
            None,
            Some("the saved split names a pool that is no longer configured; the config file's [split] applies"),
        ),
        (false, saved_split) => (
            file.clone(),
            saved_split.filter(|s| s != file),
            Some("the config file's [split] changed since the state was saved; the file's applies"),
        ),
    };
    if let Some(note) = note {
        tracing::warn!("{note}");
    }
    Resumed {
        split,
        previous,
        version: saved.version,
        note: note.map(str::to_string),
        file_edit,
    }
}
