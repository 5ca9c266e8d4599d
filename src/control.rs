//! `control`: the single writer of live configuration.
//!
//! ```text
//! admin API ──┐                       ┌─▶ config file (toml_edit, atomic rename)
//! file watch ─┼─▶ Control (one lock) ─┼─▶ deployment log (synced)
//! SIGHUP ─────┘   validate → persist  └─▶ ArcSwap<Snapshot> (one store)
//! ```
//! Every path in goes through one `tokio::sync::Mutex`, so changes are serialised and each
//! accepted one bumps the version by exactly one. A 200 from the admin API means the change
//! is live, on disk and in the deployment log.

pub mod admin;
pub mod audit;
mod certs;
mod change;
pub mod dns;
mod errors;
mod file_edit;
mod follow;
mod health;
mod journal;
mod outage;
mod recover;
mod reload;
pub mod rollout;
pub(crate) mod shared;
pub mod state;
mod status;
mod sticky;
pub mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::config::model::Split;
use crate::config::Config;
use crate::control::audit::{Action, AuditLog, Entry, Outcome};
use crate::data::health::HealthRegistry;
use crate::data::snapshot::{self, Live, Snapshot};
use crate::data::tokens::Tokens;
use crate::metrics::Metrics;

pub use certs::{load_all as load_certificates, watch as watch_certificates, EXPIRY_WARNING};
pub use change::{Applied, Request};
pub use errors::{ControlError, StartError};
pub use follow::describe_shared;
pub use reload::ReloadOutcome;
pub use status::{SharedStatus, Status};
pub use sticky::{load_override_tokens, override_token_path, table_path};

/// What `control` holds behind its lock.
struct State {
    /// The configuration in force (listen addresses are the ones actually bound).
    config: Arc<Config>,
    /// The live version.
    version: u64,
    /// The split before the last change that moved the split.
    previous: Option<Split>,
    /// The file's text as last applied or written by us; equal text on disk is no change.
    file_text: String,
    /// The last file text that was rejected, so one bad save is logged once.
    rejected_text: Option<String>,
    /// Why the file on disk was rejected, while it still is.
    rejected_reason: Option<String>,
    /// The override token file that made `rejected_text` fail: once it reads, the edit is
    /// tried again.
    rejected_tokens: Option<PathBuf>,
    /// Which pool owns each user bucket; always fits `config.split`.
    buckets: sticky::TableState,
    /// The `[override]` tokens in force.
    override_tokens: Option<Arc<Tokens>>,
    /// The config file's own `[split]` as last applied from it (with a state directory the
    /// live split may differ: it comes from the state).
    file_split: Split,
    /// The active rollout and the recent ended ones.
    rollouts: rollout::Book,
    /// The restart journal's content, as last written.
    journal: journal::Journal,
    /// With shared state: what this replica applied of it.
    follow: follow::Follow,
}

/// The control plane's single writer.
pub struct Control {
    live: Live,
    state: Mutex<State>,
    config_path: PathBuf,
    store: state::Store,
    audit: AuditLog,
    metrics: Arc<Metrics>,
    health: Arc<HealthRegistry>,
    /// Set once the listeners were handed to a new process: no change is taken any more.
    retired: std::sync::atomic::AtomicBool,
    /// The certificates served on the TLS listeners and the admin listener.
    certs: certs::Certs,
    /// The restart journal, beside the deployment log.
    journal_path: PathBuf,
    /// The shared state (`[state] etcd`).
    shared: Option<Arc<shared::Shared>>,
    /// What this replica reports under `replicas/<id>` (with shared state).
    beats: Option<tokio::sync::watch::Sender<shared::Heartbeat>>,
    /// The sum of every replica's rollout counts (with shared state, on the leader).
    aggregate: std::sync::Mutex<shared::Aggregate>,
}

impl Control {
    /// Starts control for the file at `config_path`, already loaded as `config` from `text`,
    /// with its override tokens already read ([`load_override_tokens`]). With `[state] dir`
    /// the saved split wins over the file's unless the file's `[split]` changed since it was
    /// saved. Recovers the version and the previous split from the deployment log (and the
    /// state) and records the start there; reads the affinity table.
    ///
    /// # Errors
    /// [`StartError`] when the deployment log or the state is unusable.
    pub fn start(
        config_path: &Path,
        mut config: Config,
        text: String,
        override_tokens: Option<Arc<Tokens>>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Control>, StartError> {
        let store = state::Store::of(config_path, &config);
        let shared = follow::shared_for(config_path, &config)?;
        let (saved, mut follow) = match &shared {
            Some(shared) => follow::at_start(shared, &store).map_err(StartError::State)?,
            None => (
                store.load().map_err(StartError::State)?,
                follow::Follow::default(),
            ),
        };
        let certs = certs::Certs::start(config_path, &config, &metrics)
            .map_err(StartError::Certificates)?;
        let file_split = config.split.clone();
        let resumed = saved
            .as_ref()
            .map(|s| state::resume(s, &config, shared.is_some()));
        follow.file_edit = resumed.as_ref().is_some_and(|r| r.file_edit);
        if let Some(saved) = saved
            .as_ref()
            .filter(|s| shared.is_some() && s.split(&config).is_none())
        {
            follow.mismatch = Some(follow::mismatch(saved));
        }
        if let Some(resumed) = &resumed {
            config.split = resumed.split.clone();
        }
        let audit_path = resolve_beside(config_path, &config.deployment_log);
        let audit = AuditLog::new(audit_path.clone(), config.deployment_rotation);
        if shared.is_some() {
            audit.numbered_by_the_shared_log();
        }
        let journal_path = journal::path_for(&audit_path);
        let journal = journal::Journal::load(&journal_path).map_err(StartError::State)?;
        let saved_version = saved.as_ref().map(|s| s.version);
        let at_start = journal.at_start(&config, &file_split, saved_version);
        let stored = config.split.clone();
        if let Some(split) = &at_start.split {
            config.split = split.clone();
        }
        let mut history = audit.newest(crate::config::defaults::RECOVERY_ENTRIES)?;
        history.reverse();
        let mut recovered = recover::recover(&history, &config.split);
        let mut message = format!("switchback {} started", env!("CARGO_PKG_VERSION"));
        if let Some(resumed) = resumed {
            recovered.last_version = recovered.last_version.max(resumed.version);
            recovered.previous = resumed.previous;
            if let Some(note) = resumed.note {
                message = format!("{message}; {note}");
            }
        }
        if let Some(rollback) = &journal.rollback {
            recovered.last_version = recovered.last_version.max(rollback.version);
        }
        if let Some(split) = &at_start.split {
            // A rollout's rollback leaves `rollback` restoring the rollout's start, as before
            // the restart; an operator's, the split it replaced.
            recovered.previous = Some(match at_start.rolled_back {
                Some(_) => split.clone(),
                None => stored,
            });
        }
        if let Some(note) = &at_start.note {
            message = format!("{message}; {note}");
        }
        let version = match (&shared, &saved) {
            // With shared state the version is the cluster's: a start is no change.
            (Some(_), Some(saved)) => saved.version,
            _ => recovered.last_version + 1,
        };
        let buckets = sticky::initial_table(config_path, &config, saved.as_ref());
        let memo = match store.writes_config() {
            true => journal.rollouts.clone(),
            false => saved.as_ref().and_then(|s| s.rollouts.clone()),
        };
        // With shared state the rollouts are the cluster's (taken in by `follow_shared`): a
        // replica's restart neither pauses nor ends them.
        let (rollouts, rollout_note) = match shared {
            Some(_) => Default::default(),
            None => {
                rollout::recover::recover(&history, &config, memo.as_ref(), at_start.rolled_back)
            }
        };
        let mut entry = Entry::now(
            version,
            "serve",
            Action::Start,
            &recovered.last_split.unwrap_or_else(|| config.split.clone()),
            &config.split,
        );
        entry.message = message;
        let mut state = State {
            config: Arc::new(config),
            version,
            previous: recovered.previous,
            file_text: text,
            rejected_text: None,
            rejected_reason: None,
            rejected_tokens: None,
            buckets,
            override_tokens,
            file_split,
            rollouts,
            journal,
            follow,
        };
        // Saved before the start is logged: a log never shows a start that did not serve.
        store
            .save(&state::current(&state))
            .map_err(|e| StartError::State(e.to_string()))?;
        audit.append(&entry)?;
        if let Some((action, record)) = rollout_note {
            let split = &state.config.split;
            let mut note = Entry::now(version, "serve", action, split, split);
            note.message = record.message.clone();
            note.rollout = Some(Box::new(record));
            audit.append(&note)?;
        }
        journal::settle_at_start(config_path, &store, &journal_path, &mut state);
        let health = Arc::new(HealthRegistry::default());
        let live = snapshot::live(Snapshot::build_with(
            state.config.clone(),
            version,
            &metrics,
            &health,
            &state.buckets.table,
            state.override_tokens.clone(),
        ));
        metrics.set_live(version, &state.config.split);
        let record = state.rollouts.newest(1).pop();
        metrics.set_rollout(record.as_ref().map(rollout::Rollout::gauge));
        Ok(Arc::new(Control {
            live,
            state: Mutex::new(state),
            config_path: config_path.to_path_buf(),
            store,
            audit,
            metrics,
            health,
            retired: std::sync::atomic::AtomicBool::new(false),
            certs,
            journal_path,
            beats: shared
                .as_ref()
                .map(|s| tokio::sync::watch::channel(follow::first_beat(s)).0),
            shared,
            aggregate: Default::default(),
        }))
    }

    /// After a binary upgrade's hand-over: the new process owns changes from now on (it has
    /// read the file and the state already), so this one takes none, from the admin API, the
    /// file or a signal, and never writes its state again.
    pub fn retire(&self) {
        self.retired
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // The new process is this replica from now on: lead, heartbeat and counts go.
        self.leave_shared();
    }

    fn is_retired(&self) -> bool {
        self.retired.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The store the TLS listeners choose their certificate from.
    pub fn certificate_store(&self) -> Arc<crate::data::tls::store::CertStore> {
        self.certs.store()
    }

    /// The store the admin listener serves its certificate from (`[admin] tls`; empty without).
    pub fn admin_certificate_store(&self) -> Arc<crate::data::tls::store::CertStore> {
        self.certs.admin_store()
    }

    /// The live cell the data plane reads.
    pub fn live(&self) -> Live {
        self.live.clone()
    }

    /// The config file this control persists to and reloads from.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The deployment log.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// The metric registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Every backend's live health.
    pub fn health(&self) -> &HealthRegistry {
        &self.health
    }

    /// The live snapshot and previous split, read under the lock so they match.
    pub async fn status(&self) -> Status {
        let state = self.state.lock().await;
        Status {
            snapshot: self.live.load_full(),
            previous: state.previous.clone(),
            store: self.store.clone(),
            rollout: state.rollouts.active.as_ref().map(|a| a.record.clone()),
            certificates: self.certificates(),
            shared: self.shared.as_ref().map(|shared| {
                let (connected, since) = shared.connected();
                SharedStatus {
                    connected,
                    since,
                    replica: shared.replica().to_string(),
                    mismatch: state.follow.mismatch.clone(),
                }
            }),
        }
    }

    /// Records a refused change by `actor`; the live state is untouched.
    pub async fn reject(&self, actor: &str, message: &str) {
        let state = self.state.lock().await;
        self.record_rejection(&state, actor, message);
    }

    fn record_rejection(&self, state: &State, actor: &str, message: &str) {
        let split = &state.config.split;
        let mut entry = Entry::now(state.version, actor, Action::Rejected, split, split);
        entry.outcome = Outcome::Rejected;
        entry.message = message.to_string();
        tracing::warn!(actor, reason = message, "change rejected");
        if let Err(e) = self.audit.append(&entry) {
            tracing::error!(error = %e, "could not record a rejected change");
        }
    }

    /// Publishes `config` as the next version. Caller holds the lock. With shared state the
    /// version counts shared changes only: a local edit that leaves the split alone (a
    /// reload, re-resolved backends) keeps it.
    fn publish(&self, state: &mut State, config: Config) {
        let moved = config.split != state.config.split;
        if moved {
            state.previous = Some(state.config.split.clone());
        }
        if moved || self.shared.is_none() {
            state.version += 1;
        }
        sticky::advance_table(
            &self.config_path,
            &mut state.buckets,
            &state.config,
            &config,
        );
        self.install(state, config);
        self.save_state(state);
    }

    /// Makes `config` live at `state.version` with the live bucket table. Caller holds the lock.
    fn install(&self, state: &mut State, config: Config) {
        let config = Arc::new(config);
        self.live.store(Arc::new(Snapshot::build_with(
            config.clone(),
            state.version,
            &self.metrics,
            &self.health,
            &state.buckets.table,
            state.override_tokens.clone(),
        )));
        self.metrics.set_live(state.version, &config.split);
        if self.store.writes_config() {
            state.file_split = config.split.clone();
        }
        state.config = config;
        self.beat(state);
    }

    /// Saves the live state (a state directory only). A failure is logged: what is live stays.
    fn save_state(&self, state: &State) {
        if let Err(e) = self.store.save(&state::current(state)) {
            tracing::error!(error = %e, "could not save the state; what is live stays");
        }
    }
}

pub use crate::config::resolve_beside;
