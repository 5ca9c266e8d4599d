//! What a replica starts from with shared state, and what start writes once it follows.

use std::path::Path;
use std::sync::Arc;

use super::Follow;
use crate::config::Config;
use crate::control::audit::{Action, Entry};
use crate::control::shared::{Heartbeat, Shared};
use crate::control::state::Saved;
use crate::control::{resolve_beside, shared, Control, StartError, State};

impl Control {
    /// The first shared state, or the file edit seen at start, written now.
    pub(super) fn write_pending(&self, state: &mut State) {
        let split = state.config.split.clone();
        if std::mem::take(&mut state.follow.create) {
            let mut entry = Entry::now(state.version, "serve", Action::Start, &split, &split);
            entry.message = "shared state created from this replica's".into();
            let saved = Saved::of(&crate::control::state::current(state));
            if let Err(e) = self.commit_shared(state, saved, Some(&mut entry)) {
                tracing::warn!(error = %e, "the shared state was not created; following the cluster's");
            }
        }
        if std::mem::take(&mut state.follow.file_edit) {
            // The file was edited while this replica was down: decided against the split the
            // shared state last recorded from a file, like an edit seen while running.
            if let Some(recorded) = state.follow.file_split.take() {
                state.file_split = recorded;
            }
            state.follow.reread = true;
            self.reload_locked(state, "file");
        }
    }
}

/// Why `saved`'s split is not live on a replica whose config lacks one of its pools.
pub(in crate::control) fn mismatch(saved: &Saved) -> String {
    format!(
        "the shared split ({}) names a pool this replica does not have; its last-good split stays",
        serde_json::json!(saved.split)
    )
}

/// What a replica starts from: the shared state when the cluster answers (with what start
/// must write: the first shared state), else this replica's cache of it (`None` without one:
/// the config file's `[split]` serves).
///
/// # Errors
/// The cache cannot be read, or the shared state is not a state.
pub(in crate::control) fn at_start(
    shared: &Shared,
    store: &crate::control::state::Store,
) -> Result<(Option<Saved>, Follow), String> {
    match shared.fetch() {
        Ok(fetched) => {
            let mut follow = Follow {
                watch_from: fetched.revision,
                drains: fetched.drains,
                ..Follow::default()
            };
            match fetched.control {
                Some((saved, rev)) => {
                    follow.rev = rev;
                    follow.memo = saved.rollouts.clone();
                    follow.file_split = crate::control::recover::to_split(&saved.file_split);
                    Ok((Some(saved.checked()?), follow))
                }
                None => {
                    // The first replica creates the shared state from its own: moving from
                    // `[state] dir`, the state directory's `state.json` seeds it.
                    follow.create = true;
                    let seed = match store {
                        crate::control::state::Store::Etcd {
                            cache: Some(cache), ..
                        } => crate::control::state::Store::Dir(
                            cache.with_file_name(crate::control::state::STATE_FILE),
                        )
                        .load()
                        .unwrap_or_else(|e| {
                            tracing::warn!(error = %e, "state.json does not seed the shared state");
                            None
                        }),
                        _ => None,
                    };
                    follow.memo = seed.as_ref().and_then(|s| s.rollouts.clone());
                    Ok((seed, follow))
                }
            }
        }
        Err(e) if e.starts_with("shared state unreachable") => {
            let saved = store.load()?;
            let serving = match saved {
                Some(_) => "serving this replica's cache of it",
                None => "serving the config file's [split]",
            };
            tracing::warn!(error = %e, "the shared state is unreachable at start; {serving}");
            Ok((saved, Follow::default()))
        }
        Err(e) => Err(e),
    }
}

/// The heartbeat a replica starts with.
pub(in crate::control) fn first_beat(shared: &Shared) -> Heartbeat {
    Heartbeat {
        replica: shared.replica().to_string(),
        version: 0,
        pools: Vec::new(),
        leader: false,
        started: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        binary: env!("CARGO_PKG_VERSION").to_string(),
        heartbeat: String::new(),
        host: crate::config::defaults::replica(),
    }
}

/// `switchback check --connect`: reaches the `[state] etcd` cluster and says what it holds;
/// `Ok(None)` without shared state.
///
/// # Errors
/// The files do not read, or the cluster does not answer.
pub fn describe_shared(config_path: &Path, config: &Config) -> Result<Option<String>, String> {
    match shared_for(config_path, config).map_err(|e| e.to_string())? {
        Some(shared) => shared.describe().map(Some),
        None => Ok(None),
    }
}

/// The shared-state handle `config` asks for, its files read (beside the config file).
pub(in crate::control) fn shared_for(
    config_path: &Path,
    config: &Config,
) -> Result<Option<Arc<shared::Shared>>, StartError> {
    let Some(settings) = &config.shared else {
        return Ok(None);
    };
    let mut settings = settings.clone();
    let beside = |p: &Path| resolve_beside(config_path, p);
    settings.ca_file = settings.ca_file.as_deref().map(beside);
    settings.client_cert = (settings.client_cert.as_ref()).map(|(c, k)| (beside(c), beside(k)));
    settings.auth = (settings.auth.as_ref()).map(|(u, p)| (u.clone(), beside(p)));
    shared::Shared::new(settings)
        .map(|s| Some(Arc::new(s)))
        .map_err(StartError::State)
}
