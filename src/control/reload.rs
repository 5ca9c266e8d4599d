//! Reloading the config file: last known good, restart-only fields, own writes ignored.

use crate::config::load::{parse, read_text};
use crate::config::{Config, ProblemKind};
use crate::control::audit::{Action, Entry};

use super::state::positive;
use super::{Control, State};
use crate::config::Split;

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The file holds what is already live (including the proxy's own writes).
    Unchanged,
    /// A new version is live.
    Applied {
        /// The new version.
        version: u64,
    },
    /// The file is invalid; the live config stays.
    Rejected,
    /// The file is gone; the live config stays.
    Missing,
}

impl Control {
    /// Re-reads the config file for `actor` (`file` or `signal`) and applies it if it changed.
    pub async fn reload(&self, actor: &str) -> ReloadOutcome {
        let mut state = self.state.lock().await;
        let outcome = self.reload_locked(&mut state, actor);
        // Certificates are read again on every reload, whatever became of the file.
        self.reread_certificates(&state, actor);
        outcome
    }

    pub(super) fn reload_locked(&self, state: &mut State, actor: &str) -> ReloadOutcome {
        if self.is_retired() {
            return ReloadOutcome::Unchanged;
        }
        let text = match read_text(&self.config_path) {
            Ok(text) => text,
            Err(problem) if problem.kind == ProblemKind::NotFound => {
                tracing::warn!(path = %self.config_path.display(), "config file is missing; the live configuration stays until it reappears");
                return ReloadOutcome::Missing;
            }
            Err(problem) => return self.reject_text(state, actor, None, &problem.to_string()),
        };
        let forced = std::mem::take(&mut state.follow.reread);
        if text == state.file_text && !forced {
            // Back to what is live (say, a rejected edit was reverted).
            state.rejected_text = None;
            state.rejected_reason = None;
            // SIGHUP with an unchanged file still re-reads the override tokens and re-resolves
            // backend host names.
            return match actor {
                "signal" => {
                    self.reread_tokens(state, actor);
                    self.refresh_locked(state, actor)
                }
                _ => ReloadOutcome::Unchanged,
            };
        }
        if Some(&text) == state.rejected_text.as_ref() {
            // Refused for its token file alone: tried again once that reads.
            let fixed = |p: &std::path::PathBuf| crate::data::tokens::Tokens::load(p).is_ok();
            if !state.rejected_tokens.as_ref().is_some_and(fixed) {
                return ReloadOutcome::Unchanged;
            }
        }
        // Decide on the shared state as it is now: another replica may have written this very
        // edit already. (Known unreachable: decided on what was last read; a [split] edit then
        // waits for the cluster, everything else applies.)
        if self.shared().is_some_and(|s| s.connected().0) {
            let _ = self.sync_locked(state);
        }
        let config = match parse_off_worker(&text, &state.config, &self.config_path) {
            Ok(config) => config,
            Err(problems) => {
                let message: Vec<String> = problems.iter().map(ToString::to_string).collect();
                return self.reject_text(state, actor, Some(text), &message.join("; "));
            }
        };
        let (mut config, needs_restart) = keep_bound_listeners(config, &state.config);
        let file_split = config.split.clone();
        let same_split = |a: &Split, b: &Split| positive(a) == positive(b);
        // A rollback that could not be written into the file is journaled: while the file's
        // [split] is the one it replaced, the rollback's split stays live (as at a restart).
        let journaled = (state.journal.rollback.as_ref())
            .is_some_and(|r| self.store.writes_config() && r.same_file_split(&file_split));
        if journaled || (!self.store.writes_config() && same_split(&file_split, &state.file_split))
        {
            // The file's [split] is the one already applied (a GitOps re-sync, or an edit
            // elsewhere in the file): the live split, which the state holds, stays.
            match super::state::carry(&state.config.split, &config) {
                Ok(live) => config.split = live,
                Err(why) => return self.reject_text(state, actor, Some(text), &why),
            }
        }
        if !config.admin.listen.ip().is_loopback() && config.admin.token_file.is_none() {
            let message = format!(
                "admin.token-file: the admin API is bound to {} (not loopback), so it cannot be removed without a restart",
                config.admin.listen
            );
            return self.reject_text(state, actor, Some(text), &message);
        }
        if config.admin.token_file != state.config.admin.token_file {
            if let Some(warning) = super::admin::legacy_token_warning(&self.config_path, &config) {
                tracing::warn!("{warning}");
            }
        }
        let tokens = match super::load_override_tokens(&self.config_path, &config) {
            Ok(tokens) => tokens,
            Err(e) => {
                let outcome = self.reject_text(state, actor, Some(text), &e.to_string());
                state.rejected_tokens = super::override_token_path(&self.config_path, &config);
                return outcome;
            }
        };
        let old_text = std::mem::replace(&mut state.file_text, text);
        let old_file_split = state.file_split.clone();
        state.rejected_text = None;
        state.rejected_reason = None;
        let file_split_moved = !same_split(&file_split, &state.file_split);
        state.file_split = file_split;
        if config == *state.config {
            self.install_tokens(state, tokens);
            if file_split_moved {
                self.save_state(state);
            }
            return ReloadOutcome::Unchanged;
        }
        if self.shared.is_some() && config.split != state.config.split {
            let undo = (old_text, old_file_split);
            return self.reload_shared(state, actor, (config, tokens, &needs_restart), undo);
        }
        state.override_tokens = tokens;
        let before = state.config.split.clone();
        let mut entry = reload_entry(state, actor, &config.split, &needs_restart);
        warn_restart(&needs_restart);
        self.publish(state, config);
        entry.version = state.version;
        if self.store.writes_config() && !journaled {
            // The file's [split] moved: its edit is newer than the rollback. (With a state
            // directory the journal's rule at start already sees a state saved since.)
            self.journal_superseded(state);
        }
        self.metrics.reload("applied");
        if let Err(e) = self.audit.append(&entry) {
            tracing::error!(error = %e, "reload applied but not recorded");
        }
        if positive(&state.config.split) != positive(&before) {
            self.supersede_rollout(state, actor, "a config-file edit");
        }
        tracing::info!(actor, version = state.version, "config reloaded");
        ReloadOutcome::Applied {
            version: state.version,
        }
    }

    fn reject_text(
        &self,
        state: &mut State,
        actor: &str,
        text: Option<String>,
        message: &str,
    ) -> ReloadOutcome {
        self.record_rejection(state, actor, &format!("reload rejected: {message}"));
        self.metrics.reload("rejected");
        state.rejected_reason = text.is_some().then(|| message.to_string());
        state.rejected_text = text;
        state.rejected_tokens = None;
        ReloadOutcome::Rejected
    }
}

/// The `reload` entry for a reload to `split` (its version the next one), saying which keys
/// need a restart.
pub(super) fn reload_entry(
    state: &State,
    actor: &str,
    split: &Split,
    needs_restart: &[&str],
) -> Entry {
    let mut entry = Entry::now(
        state.version + 1,
        actor,
        Action::Reload,
        &state.config.split,
        split,
    );
    if !needs_restart.is_empty() {
        entry.message = format!("needs restart to take effect: {}", needs_restart.join(", "));
    }
    entry
}

/// Says which changed keys wait for a restart (once the rest of the edit is applied).
pub(super) fn warn_restart(needs_restart: &[&str]) {
    if !needs_restart.is_empty() {
        tracing::warn!(keys = ?needs_restart, "changed keys need a restart; everything else is applied");
    }
}

/// [`parse`], which resolves backend host names, run so that a slow DNS server blocks neither
/// the control runtime's only worker (admin API, watcher, health checks) nor anything else
/// on it: the worker hands its other tasks to another thread meanwhile.
///
/// Backend names keep the addresses `running` uses while those are still valid answers (see
/// [`crate::config::with_known_addresses`]).
pub(super) fn parse_off_worker(
    text: &str,
    running: &Config,
    config_path: &std::path::Path,
) -> Result<Config, Vec<crate::config::Problem>> {
    let known = running
        .pools
        .values()
        .flat_map(|p| &p.backends)
        .map(|b| (b.name.clone(), b.addr))
        .collect();
    let parse = || {
        let mut config = crate::config::with_known_addresses(known, || parse(text))?;
        crate::data::tls::upstream::read_ca_files(config_path, &mut config).map_err(|p| vec![p])?;
        Ok(config)
    };
    let on_multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    match on_multi_thread {
        true => tokio::task::block_in_place(parse),
        false => parse(),
    }
}

/// Listener addresses (plain, TLS, admin), thread counts and the like are fixed once bound: keep the running ones and say
/// which keys changed.
pub(super) fn keep_bound_listeners(
    mut next: Config,
    running: &Config,
) -> (Config, Vec<&'static str>) {
    let mut changed = Vec::new();
    keep(
        &mut next.proxy.listen,
        &running.proxy.listen,
        "proxy.listen",
        &mut changed,
    );
    keep(
        &mut next.proxy.threads,
        &running.proxy.threads,
        "proxy.threads",
        &mut changed,
    );
    keep(
        &mut next.admin.listen,
        &running.admin.listen,
        "admin.listen",
        &mut changed,
    );
    keep(
        &mut next.access_log,
        &running.access_log,
        "log.access",
        &mut changed,
    );
    keep(
        &mut next.proxy.h2c,
        &running.proxy.h2c,
        "proxy.h2c",
        &mut changed,
    );
    // The admin listener speaks TLS or not from its start; its certificate files reload.
    if next.admin.tls.is_some() != running.admin.tls.is_some() {
        keep(
            &mut next.admin.tls,
            &running.admin.tls,
            "admin.tls",
            &mut changed,
        );
    }
    // The TLS listeners are bound once; their certificates and settings reload.
    match (&mut next.tls, &running.tls) {
        (Some(next), Some(running)) => {
            keep(
                &mut next.listen,
                &running.listen,
                "tls.listen",
                &mut changed,
            );
        }
        (next, running) => keep(next, running, "tls", &mut changed),
    }
    keep(
        &mut next.proxy.upgrade_sock,
        &running.proxy.upgrade_sock,
        "proxy.upgrade-sock",
        &mut changed,
    );
    keep(
        &mut next.shutdown.grace,
        &running.shutdown.grace,
        "shutdown.grace",
        &mut changed,
    );
    keep(
        &mut next.deployment_log,
        &running.deployment_log,
        "log.deployments",
        &mut changed,
    );
    keep(
        &mut next.state_dir,
        &running.state_dir,
        "state.dir",
        &mut changed,
    );
    keep(
        &mut next.deployment_rotation,
        &running.deployment_rotation,
        "log.deployments-max-size",
        &mut changed,
    );
    keep(
        &mut next.shared,
        &running.shared,
        "state.etcd",
        &mut changed,
    );
    (next, changed)
}

/// Keeps the running value of a restart-only key, noting `key` when the file changed it.
fn keep<T: PartialEq + Clone>(
    next: &mut T,
    running: &T,
    key: &'static str,
    changed: &mut Vec<&'static str>,
) {
    if next != running {
        *next = running.clone();
        changed.push(key);
    }
}
