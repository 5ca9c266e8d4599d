//! What the health supervisor (on the data path) needs of control: the live snapshot, the
//! metrics, and the deployment log, where a pool going down or coming back is recorded.

use std::sync::Arc;

use super::Control;
use crate::control::audit::{Action, Entry};
use crate::data::health::probe::Host;
use crate::data::snapshot::Snapshot;
use crate::metrics::Metrics;

impl Host for Control {
    fn snapshot(&self) -> Arc<Snapshot> {
        Control::live(self).load_full()
    }

    fn metrics(&self) -> &Metrics {
        Control::metrics(self)
    }

    fn pool_changed(&self, snapshot: &Snapshot, down: bool, message: String) {
        let action = if down {
            Action::PoolDown
        } else {
            Action::PoolUp
        };
        let split = &snapshot.config.split;
        let mut entry = Entry::now(snapshot.version, "health", action, split, split);
        entry.message = message;
        if let Err(e) = self.audit().append(&entry) {
            tracing::error!(error = %e, "could not record a pool state change");
        }
    }
}
