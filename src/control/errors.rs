//! Why control did not start, and why a change was refused.

use crate::config::persist::PersistError;
use crate::control::audit::AuditError;

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
    /// The shared state did not answer (`[state] etcd`): nothing changed anywhere.
    #[error("{0}")]
    Unavailable(String),
    /// Another replica changed the shared state first: read it again and decide again.
    #[error("the shared state changed meanwhile")]
    Moved,
    /// This process handed its listeners to a new one (binary upgrade) and only finishes the
    /// requests in flight: changes go to the new process.
    #[error("this switchback handed over to a new process (binary upgrade); send changes to the new one")]
    Retired,
}
