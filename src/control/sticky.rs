//! What `[affinity]` and `[override]` add to control's state: the bucket table, kept fitting
//! the split and written to `[affinity] table` while affinity is on, and the override tokens,
//! read at start, on every applied reload and on SIGHUP.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::admin::auth::{warn_if_exposed, TokenError, Tokens};
use crate::affinity::{load_table, save_table, BucketTable, TableError};
use crate::config::Config;

use super::{resolve_beside, Control, State};
use crate::snapshot::Snapshot;

/// Where `config`'s bucket table lives (`[affinity] table`, beside the config file by
/// default); `None` without `[affinity]`.
pub fn table_path(config_path: &Path, config: &Config) -> Option<PathBuf> {
    let affinity = config.affinity.as_ref()?;
    Some(resolve_beside(config_path, &affinity.table))
}

/// The bucket table and whether it still has to be written.
pub(super) struct TableState {
    /// Always fits the live split.
    pub(super) table: BucketTable,
    /// Not yet written since it last changed (a failed write is retried on the next publish).
    pub(super) dirty: bool,
}

/// The table at start: the one on disk, moved to the file's split if that changed while the
/// proxy was down; the fresh layout without `[affinity]` or a usable file.
pub(super) fn initial_table(config_path: &Path, config: &Config) -> TableState {
    let fresh = || BucketTable::fresh(config.split.shares());
    let mut state = match table_path(config_path, config) {
        None => TableState {
            table: fresh(),
            dirty: false,
        },
        Some(path) => adopt(&path, config).unwrap_or_else(|| TableState {
            table: fresh(),
            dirty: true,
        }),
    };
    write_if_dirty(config_path, config, &mut state);
    state
}

/// The table stored at `path`, moved to `config`'s split; `None` when there is none or it
/// is corrupt (set aside as `<path>.corrupt`). An unreadable file (permissions, I/O) is left
/// alone: the fresh layout serves and nothing is written over it until the next change.
fn adopt(path: &Path, config: &Config) -> Option<TableState> {
    let split = config.split.shares();
    match load_table(path) {
        Ok(Some(table)) if table.fits(split) => Some(TableState {
            table,
            dirty: false,
        }),
        Ok(Some(table)) => Some(TableState {
            table: table.next(split),
            dirty: true,
        }),
        Ok(None) => None,
        Err(e @ TableError::Unreadable { .. }) => {
            tracing::error!(error = %e, "the affinity table cannot be read; users are laid out afresh until it can");
            Some(TableState {
                table: BucketTable::fresh(split),
                dirty: false,
            })
        }
        Err(e @ TableError::Corrupt { .. }) => {
            let aside = path.with_extension("json.corrupt");
            let moved = std::fs::rename(path, &aside);
            tracing::error!(error = %e, set_aside = %aside.display(), moved = moved.is_ok(), "the affinity table is corrupt; users are laid out afresh");
            None
        }
    }
}

/// Moves the table to `next`'s split when that changed, then writes it if it is due. A
/// table turned on by this reload starts from the file at its path, when there is one.
pub(super) fn advance_table(
    config_path: &Path,
    state: &mut TableState,
    before: &Config,
    next: &Config,
) {
    if let (None, Some(path)) = (&before.affinity, table_path(config_path, next)) {
        if let Some(adopted) = adopt(&path, next) {
            state.table = adopted.table;
        }
        state.dirty = true;
    }
    if let (Some(old), Some(new)) = (&before.affinity, &next.affinity) {
        if old.seed != new.seed || old.keys != new.keys {
            tracing::warn!("[affinity] seed or key sources changed: users are assigned anew");
        }
        state.dirty |= old.table != new.table;
    }
    if !state.table.fits(next.split.shares()) {
        state.table = state.table.next(next.split.shares());
        state.dirty = true;
    }
    write_if_dirty(config_path, next, state);
}

/// Writes the table while `[affinity]` is on and it changed since the last good write. A
/// failure is reported and retried on the next publish: the live assignment is unaffected,
/// but a restart before a good write would lay out the changes since then in one step.
fn write_if_dirty(config_path: &Path, config: &Config, state: &mut TableState) {
    let Some(path) = table_path(config_path, config).filter(|_| state.dirty) else {
        return;
    };
    match save_table(&path, &state.table) {
        Ok(()) => state.dirty = false,
        Err(e) => {
            tracing::error!(error = %e, "could not write the affinity table; retried at the next change")
        }
    }
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
    let Some(overrides) = &config.overrides else {
        return Ok(None);
    };
    let path = resolve_beside(config_path, &overrides.token_file);
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
