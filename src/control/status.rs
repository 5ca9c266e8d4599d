//! What `GET /status` shows, read under control's lock so its parts match.

use std::sync::Arc;

use crate::config::model::Split;
use crate::data::snapshot::Snapshot;

use super::{rollout, state};

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
    /// With shared state: whether the cluster answers, since when, and this replica's name.
    pub shared: Option<SharedStatus>,
}

/// The shared state as `/status` shows it.
#[derive(Debug, Clone)]
pub struct SharedStatus {
    /// Whether the last call reached the cluster.
    pub connected: bool,
    /// Since when that holds.
    pub since: std::time::SystemTime,
    /// This replica's name.
    pub replica: String,
    /// Why the shared split is not live here, when it is not.
    pub mismatch: Option<String>,
}
