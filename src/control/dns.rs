//! Re-resolving backend host names: on SIGHUP and every `[proxy] dns-refresh` (30 s by
//! default, `"0s"` off). The applied file text is parsed again off the control worker; when a
//! name now resolves to another address, the new address is published as a new version and
//! recorded (actor `dns` or `signal`). Backend state (drain, ejection, checks) is keyed by the
//! name as written, so it survives the move. A name that stops resolving keeps its address.
//! The pools' `tls.ca-file`s are read again on the same occasions, so a rotated internal CA
//! is picked up without a config edit (one that no longer reads keeps the CAs in use).

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::control::audit::{Action, Entry};

use super::reload::{keep_bound_listeners, parse_off_worker};
use super::{Control, ReloadOutcome, State};

impl Control {
    /// Re-resolves the backend host names of the applied configuration.
    pub async fn refresh_dns(&self, actor: &str) -> ReloadOutcome {
        let mut state = self.state.lock().await;
        self.refresh_locked(&mut state, actor)
    }

    pub(super) fn refresh_locked(&self, state: &mut State, actor: &str) -> ReloadOutcome {
        if self.is_retired() || !(has_host_names(&state.config) || has_ca_files(&state.config)) {
            return ReloadOutcome::Unchanged;
        }
        let config = match parse_off_worker(&state.file_text, &state.config, &self.config_path) {
            Ok(config) => config,
            Err(problems) => {
                let why: Vec<String> = problems.iter().map(ToString::to_string).collect();
                tracing::warn!(problems = %why.join("; "), "re-resolving backend names or re-reading CA files failed; the live configuration stays");
                return ReloadOutcome::Unchanged;
            }
        };
        let (mut config, _) = keep_bound_listeners(config, &state.config);
        config.split = state.config.split.clone();
        if config == *state.config {
            return ReloadOutcome::Unchanged;
        }
        let moved = moved_backends(&state.config, &config);
        let new_cas = changed_ca_files(&state.config, &config);
        let mut told = Vec::new();
        if !moved.is_empty() {
            told.push(format!(
                "re-resolved backend addresses: {}",
                moved.join(", ")
            ));
        }
        if !new_cas.is_empty() {
            told.push(format!("re-read CA files: {}", new_cas.join(", ")));
        }
        let split = state.config.split.clone();
        let mut entry = Entry::now(state.version + 1, actor, Action::Reload, &split, &split);
        entry.message = told.join("; ");
        tracing::info!(change = %entry.message, "backend addresses or CA files changed");
        self.publish(state, config);
        if let Err(e) = self.audit.append(&entry) {
            tracing::error!(error = %e, "new backend addresses applied but not recorded");
        }
        ReloadOutcome::Applied {
            version: state.version,
        }
    }
}

/// Whether any backend is given by host name rather than as an address.
fn has_host_names(config: &Config) -> bool {
    config
        .pools
        .values()
        .flat_map(|p| &p.backends)
        .any(|b| b.name.parse::<std::net::SocketAddr>().is_err())
}

/// Whether any pool verifies its backends against its own CA file.
fn has_ca_files(config: &Config) -> bool {
    config
        .pools
        .values()
        .any(|p| p.tls.as_ref().is_some_and(|t| t.ca_file.is_some()))
}

/// `pools.<name>.tls.ca-file` for every pool whose CA certificates changed.
fn changed_ca_files(old: &Config, new: &Config) -> Vec<String> {
    let ca = |c: &Config, pool: &str| c.pools.get(pool)?.tls.as_ref()?.ca.clone();
    new.pools
        .keys()
        .filter(|pool| ca(old, pool) != ca(new, pool))
        .map(|pool| format!("pools.{pool}.tls.ca-file"))
        .collect()
}

/// `pool/name old → new` for every backend whose address changed.
fn moved_backends(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for (pool, p) in &new.pools {
        for b in &p.backends {
            let before = old
                .pools
                .get(pool)
                .and_then(|o| o.backends.iter().find(|o| o.name == b.name));
            if let Some(before) = before.filter(|o| o.addr != b.addr) {
                out.push(format!("{pool}/{} {} → {}", b.name, before.addr, b.addr));
            }
        }
    }
    out
}

/// Re-resolves every `[proxy] dns-refresh` of the live configuration, until the runtime stops.
pub async fn refresh_periodically(control: Arc<Control>) {
    loop {
        let every = control.live().load().config.proxy.dns_refresh;
        if every.is_zero() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        tokio::time::sleep(every).await;
        control.refresh_dns("dns").await;
    }
}
