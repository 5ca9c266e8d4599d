//! What `[affinity]` and `[override]` add to control's state: the bucket table, kept fitting
//! the split and written to `[affinity] table` while affinity is on, and the override tokens,
//! read at start, on every applied reload and on SIGHUP.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::Config;
use crate::data::affinity::{load_table, save_table, table_from_value, BucketTable, TableError};
use crate::data::tokens::{warn_if_exposed, TokenError, Tokens};

use super::state::Saved;
use super::{resolve_beside, Control, State};
use crate::data::snapshot::Snapshot;

/// Where `config`'s bucket table lives (`[affinity] table`, beside the config file by
/// default); `None` without `[affinity]`.
pub fn table_path(config_path: &Path, config: &Config) -> Option<PathBuf> {
    let affinity = config.affinity.as_ref()?;
    if config.state_dir.is_some() || config.shared.is_some() {
        return None; // kept in state.json, or in the shared state
    }
    Some(resolve_beside(config_path, &affinity.table))
}

/// The bucket table and whether it still has to be written.
pub(super) struct TableState {
    /// Always fits the live split.
    pub(super) table: BucketTable,
    /// Not yet written since it last changed (a failed write is retried on the next publish).
    pub(super) dirty: bool,
    /// The file at the table's path could not be read, or is not a table file: it is read
    /// again before every write and never written over meanwhile.
    pub(super) blocked: bool,
}

/// The table at start: the one on disk, moved to the file's split if that changed while the
/// proxy was down; the fresh layout without `[affinity]` or a usable file.
pub(super) fn initial_table(
    config_path: &Path,
    config: &Config,
    saved: Option<&Saved>,
) -> TableState {
    let split = config.split.shares();
    let stored = saved.and_then(|s| s.affinity.clone()).and_then(|value| {
        table_from_value(value)
            .map_err(|e| tracing::error!(error = %e, "the affinity table in the state is unusable; users are laid out afresh"))
            .ok()
    });
    // Moving to a state directory: the table file used so far seeds it (read, never written).
    let stored = stored.or_else(|| {
        let affinity = config.affinity.as_ref()?;
        let old = resolve_beside(config_path, &affinity.table);
        load_table(&old).ok().flatten()
    });
    let mut state = match (table_path(config_path, config), stored) {
        (Some(path), _) => adopt(&path, config),
        (None, Some(table)) => TableState {
            table: if table.fits(split) {
                table
            } else {
                table.next(split)
            },
            dirty: false,
            blocked: false,
        },
        (None, None) => TableState {
            table: BucketTable::fresh(split),
            dirty: false,
            blocked: false,
        },
    };
    write_if_dirty(config_path, config, &mut state);
    state
}

/// The table stored at `path`, moved to `config`'s split. Without a file, or with a corrupt
/// table file (renamed `<path>.corrupt`), the fresh layout, to be written. A file that cannot
/// be read, or is not a table file at all, is left alone: the fresh layout serves, `blocked`.
fn adopt(path: &Path, config: &Config) -> TableState {
    let split = config.split.shares();
    let fresh = |dirty, blocked| TableState {
        table: BucketTable::fresh(split),
        dirty,
        blocked,
    };
    match load_table(path) {
        Ok(Some(table)) => {
            let fits = table.fits(split);
            TableState {
                table: if fits { table } else { table.next(split) },
                dirty: !fits,
                blocked: false,
            }
        }
        Ok(None) => fresh(true, false),
        Err(e @ (TableError::Unreadable { .. } | TableError::Foreign { .. })) => {
            tracing::error!(error = %e, "the affinity table cannot be used and is left alone; users are laid out afresh meanwhile");
            fresh(true, true)
        }
        Err(e @ TableError::Corrupt { .. }) => {
            let mut aside = path.as_os_str().to_owned();
            aside.push(".corrupt");
            let moved = std::fs::rename(path, &aside);
            tracing::error!(error = %e, set_aside = %Path::new(&aside).display(), moved = moved.is_ok(), "the affinity table is corrupt; users are laid out afresh");
            fresh(true, moved.is_err())
        }
    }
}

/// Moves the table to `next`'s split when that changed, then writes it if it is due. A
/// table turned on (or moved to another file) by this reload starts from that file.
pub(super) fn advance_table(
    config_path: &Path,
    state: &mut TableState,
    before: &Config,
    next: &Config,
) {
    let new_path = table_path(config_path, next);
    if let Some(path) = new_path.as_ref() {
        if table_path(config_path, before).as_ref() != Some(path) {
            *state = adopt(path, next);
        }
    }
    if let (Some(old), Some(new)) = (&before.affinity, &next.affinity) {
        if old.seed != new.seed || old.keys != new.keys {
            tracing::warn!("[affinity] seed or key sources changed: users are assigned anew");
        }
    }
    if !state.table.fits(next.split.shares()) {
        state.table = state.table.next(next.split.shares());
        state.dirty = true;
    }
    write_if_dirty(config_path, next, state);
}

/// Writes the table while `[affinity]` is on and it changed since the last good write. A
/// failure is reported and retried on the next publish: the live assignment is unaffected,
/// but a restart before a good write would lay out the changes since then in one step. A
/// blocked path is read again first: a table that became readable is adopted (moved to the
/// live split); a file that still cannot be used is not written over.
fn write_if_dirty(config_path: &Path, config: &Config, state: &mut TableState) {
    let Some(path) = table_path(config_path, config).filter(|_| state.dirty) else {
        return;
    };
    if state.blocked {
        match load_table(&path) {
            Err(TableError::Unreadable { .. } | TableError::Foreign { .. }) => return,
            // Readable again: the stored assignment wins over the one laid out meanwhile.
            Ok(Some(_)) => *state = adopt(&path, config),
            // Gone, or a corrupt table (adopt sets it aside): the live table is written.
            Ok(None) => {}
            Err(TableError::Corrupt { .. }) => {
                if adopt(&path, config).blocked {
                    return;
                }
            }
        }
        state.blocked = false;
        state.dirty = true;
    }
    match save_table(&path, &state.table) {
        Ok(()) => state.dirty = false,
        Err(e) => {
            tracing::error!(error = %e, "could not write the affinity table; retried at the next change")
        }
    }
}

/// Where `config`'s override token file lives; `None` without `[override]`.
pub fn override_token_path(config_path: &Path, config: &Config) -> Option<PathBuf> {
    Some(resolve_beside(
        config_path,
        &config.overrides.as_ref()?.token_file,
    ))
}

/// The `[override] token-file` of `config`, read (relative to the config file's directory);
/// `None` when overrides are off. Warns about names that are not pools.
///
/// # Errors
/// [`TokenError`] when the file is unreadable, malformed or empty.
pub fn load_override_tokens(
    config_path: &Path,
    config: &Config,
) -> Result<Option<Arc<Tokens>>, TokenError> {
    let Some(path) = override_token_path(config_path, config) else {
        return Ok(None);
    };
    let tokens = Tokens::load(&path)?;
    warn_if_exposed(&path, "override token file");
    for name in tokens.names() {
        if !config.pools.contains_key(name) {
            tracing::warn!(path = %path.display(), name, "an override token names no configured pool; it grants nothing");
        }
    }
    Ok(Some(Arc::new(tokens)))
}

impl Control {
    /// Reads the override token file again for the live configuration (SIGHUP): new tokens
    /// apply to the next request; an unusable file keeps the previous tokens and is recorded.
    pub(super) fn reread_tokens(&self, state: &mut State, actor: &str) {
        match load_override_tokens(&self.config_path, &state.config) {
            Ok(tokens) => self.install_tokens(state, tokens),
            Err(e) => {
                let message = format!("override tokens not re-read, the previous ones stay: {e}");
                self.record_rejection(state, actor, &message);
            }
        }
    }

    /// Puts `tokens` in force for the live configuration (same version) when they differ.
    pub(super) fn install_tokens(&self, state: &mut State, tokens: Option<Arc<Tokens>>) {
        if tokens == state.override_tokens {
            return;
        }
        state.override_tokens = tokens;
        self.live.store(Arc::new(Snapshot::build_with(
            state.config.clone(),
            state.version,
            &self.metrics,
            &self.health,
            &state.buckets.table,
            state.override_tokens.clone(),
        )));
        tracing::info!("override tokens re-read");
    }
}
