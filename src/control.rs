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
mod health;
mod journal;
mod recover;
mod reload;
pub mod rollout;
pub mod state;
mod sticky;
pub mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::config::model::Split;
use crate::config::persist::PersistError;
use crate::config::Config;
use crate::control::audit::{Action, AuditError, AuditLog, Entry, Outcome};
use crate::data::health::HealthRegistry;
use crate::data::snapshot::{self, Live, Snapshot};
use crate::data::tokens::Tokens;
use crate::metrics::Metrics;

pub use certs::{load_all as load_certificates, watch as watch_certificates, EXPIRY_WARNING};
pub use change::{Applied, Request};
pub use reload::ReloadOutcome;
pub use sticky::{load_override_tokens, override_token_path, table_path};

/// Why control could not start. Nothing was started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The deployment log cannot be read or written.
    #[error("{0}")]
    Audit(#[from] AuditError),
    /// The state file cannot be read, or the state directory written.
    #[error("{0}")]
    State(String),
    /// A `[tls]` or `[admin] tls` certificate or key does not read.
    #[error("{0}")]
    Certificates(String),
}

/// Why a change was refused. Nothing changed in any case.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// `If-Match` named a version that is no longer live.
    #[error("version {expected} is stale; the live version is {current}")]
    Stale {
        /// What the caller expected.
        expected: u64,
        /// What is live.
        current: u64,
    },
    /// The request asks for something invalid.
    #[error("{0}")]
    Invalid(String),
    /// `rollback` with no earlier split to return to.
    #[error("there is no previous split to roll back to")]
    NoPrevious,
    /// The config file could not be updated.
    #[error("the change was not applied: {0}")]
    Persist(#[from] PersistError),
    /// The deployment log could not be written.
    #[error("the change was not applied: {0}")]
    Audit(#[from] AuditError),
    /// The config file holds an edit that was rejected; writing now would bury it.
    #[error(
        "the config file has a pending edit that was rejected ({0}); fix or revert it, then retry"
    )]
    PendingEdit(String),
    /// The change is live and in the file, but the deployment log could not record it (and
    /// the file could not be put back).
    #[error("the change was applied but could not be recorded: {0}")]
    AppliedUnrecorded(AuditError),
    /// The change conflicts with a rollout in progress.
    #[error("{0}")]
    Conflict(String),
    /// This process handed its listeners to a new one (binary upgrade) and only finishes the
    /// requests in flight: changes go to the new process.
    #[error("this switchback handed over to a new process (binary upgrade); send changes to the new one")]
    Retired,
}

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
}

/// A consistent view for `GET /status`.
#[derive(Debug, Clone)]
pub struct Status {
    /// The live snapshot.
    pub snapshot: Arc<Snapshot>,
    /// The split `rollback` would restore.
    pub previous: Option<Split>,
    /// Where accepted changes are kept.
    pub store: state::Store,
    /// The rollout in progress.
    pub rollout: Option<rollout::Rollout>,
    /// The certificates served on the TLS listeners.
    pub certificates: Arc<Vec<Arc<crate::data::tls::certs::Certificate>>>,
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
        let saved = store.load().map_err(StartError::State)?;
        let certs = certs::Certs::start(config_path, &config, &metrics)
            .map_err(StartError::Certificates)?;
        let file_split = config.split.clone();
        let resumed = saved.as_ref().map(|s| state::resume(s, &config));
        if let Some(resumed) = &resumed {
            config.split = resumed.split.clone();
        }
        let audit_path = resolve_beside(config_path, &config.deployment_log);
        let audit = AuditLog::new(audit_path.clone(), config.deployment_rotation);
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
        let version = recovered.last_version + 1;
        let buckets = sticky::initial_table(config_path, &config, saved.as_ref());
        let memo = match store.writes_config() {
            true => journal.rollouts.clone(),
            false => saved.as_ref().and_then(|s| s.rollouts.clone()),
        };
        let (rollouts, rollout_note) =
            rollout::recover::recover(&history, &config, memo.as_ref(), at_start.rolled_back);
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
        }))
    }

    /// After a binary upgrade's hand-over: the new process owns changes from now on (it has
    /// read the file and the state already), so this one takes none, from the admin API, the
    /// file or a signal, and never writes its state again.
    pub fn retire(&self) {
        self.retired
            .store(true, std::sync::atomic::Ordering::SeqCst);
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

    /// Publishes `config` as the next version. Caller holds the lock.
    fn publish(&self, state: &mut State, config: Config) {
        if config.split != state.config.split {
            state.previous = Some(state.config.split.clone());
        }
        state.version += 1;
        sticky::advance_table(
            &self.config_path,
            &mut state.buckets,
            &state.config,
            &config,
        );
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
        self.save_state(state);
    }

    /// Saves the live state (a state directory only). A failure is logged: what is live stays.
    fn save_state(&self, state: &State) {
        if let Err(e) = self.store.save(&state::current(state)) {
            tracing::error!(error = %e, "could not save the state; what is live stays");
        }
    }
}

pub use crate::config::resolve_beside;
