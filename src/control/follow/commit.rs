//! Writing to the shared state, and what a write carries: the bucket table, this replica's
//! heartbeat, the summed rollout counts.

use crate::config::model::Split;
use crate::control::audit::Entry;
use crate::control::shared::Outcome;
use crate::control::state::Saved;
use crate::control::{Control, ControlError, State};
use crate::data::affinity::{table_to_value, BucketTable};
use crate::metrics::tally::Reading;

impl Control {
    /// Writes `saved` with `entry` (its version the next one, if any) to the cluster, compared
    /// on the revision applied here, and, for the rollout engine's moves, fenced on this
    /// replica's leadership; on success the revision is the one applied.
    ///
    /// # Errors
    /// [`ControlError::Moved`] when another replica wrote first (read again and decide again);
    /// [`ControlError::Unavailable`] when the cluster does not answer, or the engine's move
    /// comes from a replica that does not lead (any more).
    pub(in crate::control) fn commit_shared(
        &self,
        state: &mut State,
        saved: Saved,
        entry: Option<&mut Entry>,
    ) -> Result<(), ControlError> {
        let shared = self.shared.as_ref().expect("called with shared state only");
        let fence = match state.follow.engine {
            true => Some(shared.fence().ok_or_else(|| {
                ControlError::Unavailable("this replica does not lead the rollout engine".into())
            })?),
            false => None,
        };
        match shared.commit(state.follow.rev, &saved, entry, fence) {
            Ok(Outcome::Committed(rev)) => {
                state.follow.rev = rev;
                state.follow.memo = saved.rollouts;
                Ok(())
            }
            Ok(Outcome::Conflict) => Err(ControlError::Moved),
            Ok(Outcome::Fenced) => {
                tracing::warn!(
                    "a rollout move was refused: another replica leads the rollout engine now"
                );
                Err(ControlError::Unavailable(
                    "another replica leads the rollout engine now".into(),
                ))
            }
            Err(e) => Err(ControlError::Unavailable(e)),
        }
    }

    /// The bucket table `split` gets from the live one.
    pub(in crate::control) fn table_for(&self, state: &State, split: &Split) -> BucketTable {
        fitted(state.buckets.table.clone(), split)
    }

    /// The bucket table `split` gets from the live one, as the shared state holds it.
    pub(in crate::control) fn shared_table(
        &self,
        state: &State,
        split: &Split,
    ) -> Option<serde_json::Value> {
        (state.config.affinity.as_ref())
            .map(|_| table_to_value(&fitted(state.buckets.table.clone(), split)))
    }

    /// Sets a backend's drain flag here (from the shared drains).
    pub(super) fn set_drained_here(&self, pool: &str, backend: &str, drained: bool) {
        let snapshot = self.live.load();
        let found = (snapshot.pools.iter().filter(|p| p.name == pool))
            .flat_map(|p| p.backends.iter())
            .find(|b| b.name == backend);
        match found {
            Some(b) => {
                if b.health.set_drained(drained) {
                    tracing::info!(pool, backend, drained, "shared drain applied");
                }
            }
            None => tracing::warn!(
                pool,
                backend,
                "a shared drain names a backend this replica does not have"
            ),
        }
    }

    /// Tells the heartbeat what is live here.
    pub(in crate::control) fn beat(&self, state: &State) {
        let (Some(beats), Some(shared)) = (&self.beats, &self.shared) else {
            return;
        };
        beats.send_modify(|beat| {
            beat.replica = shared.replica().to_string();
            beat.version = state.version;
            beat.pools = state.config.pools.keys().cloned().collect();
        });
    }

    /// The rollout `id`'s cumulative counts for its `pools`: this replica's, and with shared
    /// state the sum of every replica's increments (see `shared::Aggregate`).
    pub async fn rollout_readings(&self, id: u64, pools: [&str; 2]) -> [Reading; 2] {
        let local = pools.map(|pool| self.metrics.tallies.get(pool).read());
        let Some(shared) = &self.shared else {
            return local;
        };
        let mut all = vec![(shared.replica().to_string(), local)];
        match shared.tallies(id).await {
            Ok(others) => all.extend(others.into_iter().map(|(replica, counts)| {
                let of = |pool: &str| counts.get(pool).cloned().unwrap_or_default();
                (replica, [of(pools[0]), of(pools[1])])
            })),
            Err(e) => {
                tracing::debug!(error = %e, "other replicas' rollout counts not read this second")
            }
        }
        let mut aggregate = self.aggregate.lock().unwrap_or_else(|e| e.into_inner());
        aggregate.add(id, all)
    }
}

/// `table` moved to `split` when it does not fit it (the same step on every replica).
pub(super) fn fitted(table: BucketTable, split: &Split) -> BucketTable {
    match table.fits(split.shares()) {
        true => table,
        false => table.next(split.shares()),
    }
}
