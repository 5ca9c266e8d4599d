//! Control with shared state (`[state] etcd`): a change is written to the cluster first (one
//! transaction with its log entry, compared on the shared state's revision), then made live
//! here; what other replicas write reaches every replica through the watch and is applied the
//! same way. See `control::shared` for the keys.

mod commit;
mod start;

use commit::fitted;
pub use start::describe_shared;
pub(super) use start::{at_start, first_beat, mismatch, shared_for};

use std::sync::Arc;

use tokio::sync::mpsc;

use super::audit::{Action, Entry};
use super::shared::watch::{self, Event};
use super::shared::{Fetched, Shared};
use super::state::Saved;
use super::{Control, State};
use crate::config::model::Split;
use crate::data::affinity::table_from_value;

/// What control knows of the shared state besides the live snapshot.
#[derive(Debug, Default)]
pub(super) struct Follow {
    /// The revision of the shared state applied here (0: none yet).
    pub(super) rev: i64,
    /// The revision the watch starts after.
    pub(super) watch_from: i64,
    /// At start the shared state did not exist yet: this replica's is written first.
    pub(super) create: bool,
    /// At start the config file's `[split]` differed from the one last applied from a file:
    /// the edit is written as a change by `file` (once, whichever replica sees it first).
    pub(super) file_edit: bool,
    /// Drained backends as read at start.
    pub(super) drains: Vec<(String, String)>,
    /// A rollback made live here while the cluster was unreachable.
    pub(super) local_rollback: Option<LocalRollback>,
    /// Why the shared split is not live here (it names a pool this replica lacks).
    pub(super) mismatch: Option<String>,
    /// The rollouts' memo in the shared state as applied or written here.
    pub(super) memo: Option<super::state::Memo>,
    /// Set while the rollout engine's move is being written: it is fenced on leadership.
    pub(super) engine: bool,
    /// The next reload decides on the file even if its text is the one applied (an edit made
    /// while this replica was down).
    pub(super) reread: bool,
    /// At start: the config file's `[split]` the shared state last recorded (`file_split`).
    pub(super) file_split: Option<Split>,
    /// The rollout this replica runs the engine for, and the lead (leader key's create
    /// revision) it runs it under: a new lead is a handover.
    pub(super) led: Option<(u64, i64)>,
}

/// A rollback that went live on one replica during an outage, to be written when it ends.
#[derive(Debug, Clone)]
pub(super) struct LocalRollback {
    /// The shared state's revision it rolled back from.
    pub(super) from: i64,
    /// Who asked.
    pub(super) actor: String,
    /// The split before it.
    pub(super) before: Split,
}

impl Control {
    /// With shared state: writes what start could not (the first shared state, or a file edit),
    /// forwards deployment-log entries to the shared log, and starts following the cluster
    /// and reporting this replica's version. Call once, after [`Control::start`], from outside
    /// any runtime.
    ///
    /// # Errors
    /// This replica's name is in use by a replica on another host.
    pub fn follow_shared(self: &Arc<Self>, runtime: &tokio::runtime::Handle) -> Result<(), String> {
        let Some(shared) = self.shared.clone() else {
            return Ok(());
        };
        shared.claim_name(&crate::config::defaults::replica())?;
        let forwarded = shared.clone();
        self.audit.forward_to(Box::new(move |entry| {
            let shared = forwarded.clone();
            forwarded.runtime().spawn(async move {
                if let Err(e) = shared.append(entry, None).await {
                    tracing::warn!(error = %e, "a deployment-log entry stays in this replica's log only");
                }
            });
        }));
        let watch_from = {
            let mut state = self.state.blocking_lock();
            let memo = state.follow.memo.take();
            self.follow_rollouts(&mut state, memo.as_ref());
            self.write_pending(&mut state);
            for (pool, backend) in std::mem::take(&mut state.follow.drains) {
                self.set_drained_here(&pool, &backend, true);
            }
            self.beat(&state);
            // The start, in the shared log too (this replica's file has it already).
            let split = &state.config.split;
            let mut start = Entry::now(state.version, "serve", Action::Start, split, split);
            start.message = format!(
                "replica {} started (switchback {})",
                shared.replica(),
                env!("CARGO_PKG_VERSION")
            );
            let to = shared.clone();
            shared
                .runtime()
                .spawn(async move { to.append(start, None).await });
            state.follow.watch_from
        };
        if let Some(beats) = &self.beats {
            shared.set_eligible(self.state.blocking_lock().follow.mismatch.is_none());
            shared.spawn_heartbeat(beats.subscribe());
        }
        let (tx, rx) = mpsc::unbounded_channel();
        watch::spawn(shared, watch_from, tx);
        runtime.spawn(self.clone().apply_events(rx));
        Ok(())
    }

    /// At shutdown: gives up this replica's lease (heartbeat, counts and lead go at once).
    pub fn leave_shared(&self) {
        if let Some(shared) = &self.shared {
            shared.leave();
        }
    }

    async fn apply_events(self: Arc<Self>, mut events: mpsc::UnboundedReceiver<Event>) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            let event = tokio::select! {
                event = events.recv() => event,
                _ = tick.tick() => {
                    self.store_gauge();
                    self.every_second().await;
                    continue;
                }
            };
            let Some(event) = event else { return };
            if self.is_retired() {
                return;
            }
            let mut state = self.state.lock().await;
            match event {
                Event::Control(saved, rev) => self.apply_shared(&mut state, &saved, rev),
                Event::Drain(pool, backend, drained) => {
                    self.set_drained_here(&pool, &backend, drained)
                }
                Event::Full(fetched) => {
                    self.apply_fetched(&mut state, &fetched);
                    // A file edit that waited for the cluster is tried again.
                    self.reload_locked(&mut state, "file");
                }
            }
            self.store_gauge();
        }
    }

    /// While a rollout runs: this replica's counts for its pools go to the cluster, and the
    /// leader retries a rollout state it could not write.
    async fn every_second(&self) {
        let pools = {
            let mut state = self.state.lock().await;
            if state.follow.local_rollback.is_some() {
                // A rollback made here during an outage is written as soon as the cluster
                // answers, not at the next change someone else makes.
                let _ = self.sync_locked(&mut state);
            }
            self.share_rollouts_if_leading(&mut state);
            (state.rollouts.active.as_ref())
                .filter(|_| !self.is_retired())
                .map(|a| (a.record.id, [a.record.from.clone(), a.record.to.clone()]))
        };
        if let (Some((id, pools)), Some(shared)) = (pools, &self.shared) {
            let readings = pools.map(|pool| {
                let reading = self.metrics.tallies.get(&pool).read();
                (pool, reading)
            });
            if let Err(e) = shared.publish_tally(id, &readings).await {
                tracing::debug!(error = %e, "this replica's rollout counts were not published");
            }
        }
    }

    fn store_gauge(&self) {
        if let Some(shared) = &self.shared {
            self.metrics.set_store_up(shared.connected().0);
        }
    }

    /// Reads the shared state and applies it when it is newer than the live one.
    ///
    /// # Errors
    /// "shared state unreachable: …".
    pub(super) fn sync_locked(&self, state: &mut State) -> Result<(), String> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        let fetched = shared.fetch()?;
        self.apply_fetched(state, &fetched);
        Ok(())
    }

    fn apply_fetched(&self, state: &mut State, fetched: &Fetched) {
        if let Some((saved, rev)) = &fetched.control {
            self.apply_shared(state, saved, *rev);
        }
        let drained: std::collections::BTreeSet<(&str, &str)> = (fetched.drains.iter())
            .map(|(p, b)| (p.as_str(), b.as_str()))
            .collect();
        for pool in &self.live.load().pools {
            for backend in &pool.backends {
                let on = drained.contains(&(pool.name.as_str(), backend.name.as_str()));
                if backend.health.is_drained() != on {
                    backend.health.set_drained(on);
                }
            }
        }
    }

    /// Makes `saved` (at revision `rev`) live here, unless it is not newer than what is.
    pub(super) fn apply_shared(&self, state: &mut State, saved: &Saved, rev: i64) {
        // A rollback made here during an outage is settled first, whatever the revision: the
        // cluster answering again is what it waited for.
        if let Some(local) = state.follow.local_rollback.take() {
            if self.reconcile(state, saved, rev, &local) {
                return;
            }
        }
        if rev <= state.follow.rev {
            return;
        }
        let saved = match saved.clone().checked() {
            Ok(saved) => saved,
            Err(e) => {
                tracing::error!(error = %e, "the shared state is not usable; the live state stays");
                return;
            }
        };
        let saved = &saved;
        // A split naming a pool this replica lacks: its last-good split stays, but it takes in
        // everything else (version, revision, rollouts), so its own writes compare right.
        let split = match saved.split(&state.config) {
            Some(split) => {
                state.follow.mismatch = None;
                split
            }
            None => {
                let why = mismatch(saved);
                if state.follow.mismatch.as_ref() != Some(&why) {
                    tracing::error!("{why}");
                }
                state.follow.mismatch = Some(why);
                state.config.split.clone()
            }
        };
        state.previous = saved.previous(&state.config);
        if let Some(file_split) = super::recover::to_split(&saved.file_split) {
            state.file_split = file_split;
        }
        state.version = saved.version;
        let shared_table = (saved.affinity.clone())
            .filter(|_| state.config.affinity.is_some())
            .and_then(|v| table_from_value(v).ok());
        let table = shared_table.unwrap_or_else(|| state.buckets.table.clone());
        state.buckets.table = fitted(table, &split);
        let config = state.config.with_split(split);
        self.install(state, config);
        state.follow.rev = rev;
        self.follow_rollouts(state, saved.rollouts.as_ref());
        if let Some(shared) = &self.shared {
            shared.set_eligible(state.follow.mismatch.is_none());
        }
        self.save_state(state);
        self.beat(state);
        tracing::info!(version = state.version, split = %state.config.split, "shared change applied");
    }

    /// The shared state handle, when there is one.
    pub(crate) fn shared(&self) -> Option<&Arc<Shared>> {
        self.shared.as_ref()
    }
}
