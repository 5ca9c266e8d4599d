//! What `[affinity]` and `[override]` add to control's state: the bucket table, kept fitting
//! the split and written beside the config file while affinity is on, and the override
//! tokens, read at start, on every applied reload and on SIGHUP.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::admin::auth::{warn_if_exposed, TokenError, Tokens};
use crate::affinity::{load_table, save_table, BucketTable};
use crate::config::defaults::AFFINITY_TABLE;
use crate::config::Config;

use super::{resolve_beside, Control, State};
use crate::snapshot::Snapshot;

/// Where the bucket table lives: `affinity-table.json` beside the config file.
pub fn table_path(config_path: &Path) -> PathBuf {
    resolve_beside(config_path, Path::new(AFFINITY_TABLE))
}

/// The table at start: the one on disk (a corrupt one is reported and replaced by the fresh
/// layout), moved to the file's split if that changed while the proxy was down.
pub(super) fn initial_table(config_path: &Path, config: &Config) -> BucketTable {
    let path = table_path(config_path);
    let split = config.split.shares();
    let stored = load_table(&path).unwrap_or_else(|why| {
        tracing::error!(error = %why, "the affinity table is unusable; users are laid out afresh");
        None
    });
    let table = match &stored {
        Some(table) if table.fits(split) => table.clone(),
        Some(table) => table.next(split),
        None => BucketTable::fresh(split),
    };
    if config.affinity.is_some() && stored.as_ref() != Some(&table) {
        save(&path, &table);
    }
    table
}

/// Moves `table` to `next`'s split when that changed, and writes it when affinity is on and
/// the table changed or affinity was just turned on.
pub(super) fn advance_table(
    config_path: &Path,
    table: &mut BucketTable,
    before: &Config,
    next: &Config,
) {
    let moved = !table.fits(next.split.shares());
    if moved {
        *table = table.next(next.split.shares());
    }
    if next.affinity.is_some() && (moved || before.affinity.is_none()) {
        save(&table_path(config_path), table);
    }
}

/// The table is a deterministic function of the previous table and the split, so a write
/// that fails loses nothing the next start cannot recompute from the last table written and
/// the file's split; it is reported, not fatal.
fn save(path: &Path, table: &BucketTable) {
    if let Err(e) = save_table(path, table) {
        tracing::error!(error = %e, "could not write the affinity table; assignments stay live");
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
    warn_if_exposed(&path);
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
            Ok(tokens) if tokens == state.override_tokens => {}
            Ok(tokens) => {
                state.override_tokens = tokens;
                self.live.store(Arc::new(Snapshot::build_with(
                    state.config.clone(),
                    state.version,
                    &self.metrics,
                    &self.health,
                    &state.table,
                    state.override_tokens.clone(),
                )));
                tracing::info!("override tokens re-read");
            }
            Err(e) => {
                let message = format!("override tokens not re-read, the previous ones stay: {e}");
                self.record_rejection(state, actor, &message);
            }
        }
    }
}
