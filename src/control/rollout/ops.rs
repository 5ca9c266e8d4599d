//! Control's side of rollouts: act on one, take the engine's decisions (starting one is in
//! `start`). Every move is written to the deployment log (and, when the weight moves, persisted
//! like any split change) before it is live; a move that cannot be recorded does not happen.

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

use super::active::{Active, Move};
use super::machine::{ends, Decision, Operator};
use super::Rollout;
use crate::config::model::{format_percent, BasisPoints, Split, FULL};
use crate::control::audit::{Action, Entry, Outcome};
use crate::control::{Control, ControlError, State};

/// Why a rollout request was refused.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// Not applicable now (409).
    #[error("{0}")]
    Conflict(String),
    /// Asks for something that does not exist (400), or no rollout at all (404).
    #[error("{0}")]
    Invalid(String),
    /// There has never been a rollout (404).
    #[error("no rollout has been started")]
    None,
    /// `If-Match: <id>.<revision>` names a rollout or revision that is not the current one
    /// (412).
    #[error("{0}")]
    Stale(String),
    /// Control refused the move.
    #[error(transparent)]
    Control(#[from] ControlError),
}

/// The target at `weight`, the rest shared by the other pools in proportion to their shares
/// when the rollout started (all to `from` when they had none); rounding goes to `from`.
pub fn split_at(
    start: &BTreeMap<String, BasisPoints>,
    from: &str,
    to: &str,
    weight: BasisPoints,
) -> Split {
    let rest = FULL - weight;
    let others: u64 = start
        .iter()
        .filter(|(p, _)| *p != to)
        .map(|(_, bp)| u64::from(*bp))
        .sum();
    let mut shares: BTreeMap<String, BasisPoints> = start
        .iter()
        .map(|(pool, bp)| {
            let share = match (pool == to, others) {
                (true, _) => weight,
                (false, 0) => 0,
                (false, _) => (u64::from(*bp) * u64::from(rest) / others) as BasisPoints,
            };
            (pool.clone(), share)
        })
        .collect();
    let given: BasisPoints = shares.values().sum();
    *shares.entry(from.to_string()).or_default() += FULL - given;
    crate::config::percent::checked_split(shares).expect("shares sum to 100 %")
}

/// Now, RFC 3339 with milliseconds.
pub(super) fn stamp() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

fn action_of(kind: Move) -> Action {
    match kind {
        Move::Enter(_) => Action::RolloutStep,
        Move::Approve(_) => Action::RolloutApprove,
        Move::Wait(_) => Action::RolloutWait,
        Move::Promote => Action::RolloutPromoted,
        Move::RollBack(_) | Move::WouldRollBack(_) => Action::RolloutRollback,
        Move::Abort(_) => Action::RolloutAbort,
        Move::Pause(_) | Move::StepBack { .. } => Action::RolloutPause,
        Move::Resume => Action::RolloutResume,
    }
}

impl Control {
    /// An operator's action on the current rollout.
    ///
    /// # Errors
    /// 409 when it does not apply; 404 with no rollout.
    pub async fn rollout_act(
        &self,
        actor: &str,
        action: Operator,
        expect: Option<(u64, u64)>,
    ) -> Result<Rollout, RolloutError> {
        let mut state = self.state.lock().await;
        if self.is_retired() {
            return Err(ControlError::Retired.into());
        }
        self.on_fresh_state(&mut state, |state| {
            self.rollout_act_locked(state, actor, action, expect)
        })
    }

    fn rollout_act_locked(
        &self,
        state: &mut State,
        actor: &str,
        action: Operator,
        expect: Option<(u64, u64)>,
    ) -> Result<Rollout, RolloutError> {
        self.reload_locked(state, "file");
        let Some(active) = &state.rollouts.active else {
            return Err(match state.rollouts.ended.back() {
                Some(last) if expect.is_some_and(|e| e != (last.id, last.revision)) => {
                    RolloutError::Stale(format!(
                        "rollout {} has ended ({}); someone changed it",
                        last.id,
                        last.state.name()
                    ))
                }
                Some(last) => RolloutError::Conflict(format!(
                    "rollout {} has ended ({}); no rollout is active",
                    last.id,
                    last.state.name()
                )),
                None => RolloutError::None,
            });
        };
        let id = active.record.id;
        if let Some((want_id, want_revision)) = expect {
            let revision = active.record.revision;
            if (want_id, want_revision) != (id, revision) {
                return Err(RolloutError::Stale(format!(
                    "If-Match {want_id}.{want_revision} is stale: rollout {id} is at revision {revision}; someone changed it"
                )));
            }
        }
        let decision = active.operator(action).map_err(RolloutError::Conflict)?;
        self.rollout_move(state, actor, &decision)?;
        let record = match &state.rollouts.active {
            Some(a) => a.record.clone(),
            None => state
                .rollouts
                .ended
                .iter()
                .rev()
                .find(|r| r.id == id)
                .cloned()
                .expect("just ended"),
        };
        Ok(record)
    }

    /// The active rollout, else the most recent one.
    pub async fn rollout_current(&self) -> Option<Rollout> {
        let state = self.state.lock().await;
        state.rollouts.newest(1).pop()
    }

    /// Up to `limit` rollouts, newest first.
    pub async fn rollouts(&self, limit: usize) -> Vec<Rollout> {
        self.state.lock().await.rollouts.newest(limit)
    }
    /// Logs `decision` for `actor`, moving the weight when it moves, and takes it in.
    /// Caller holds the lock.
    pub(in crate::control) fn rollout_move(
        &self,
        state: &mut State,
        actor: &str,
        decision: &Decision,
    ) -> Result<(), ControlError> {
        self.rollout_move_inner(state, actor, decision)
    }

    /// [`Self::rollout_move`] for the engine: with shared state fenced on this replica's lead
    /// (refused when it does not lead any more).
    pub(in crate::control) fn engine_move(
        &self,
        state: &mut State,
        decision: &Decision,
    ) -> Result<(), ControlError> {
        if self.shared().is_some_and(|s| !s.is_leader()) {
            return Err(ControlError::Unavailable(
                "this replica does not lead the rollout engine".into(),
            ));
        }
        state.follow.engine = true;
        let moved = self.rollout_move_inner(state, "rollout", decision);
        state.follow.engine = false;
        moved
    }

    fn rollout_move_inner(
        &self,
        state: &mut State,
        actor: &str,
        decision: &Decision,
    ) -> Result<(), ControlError> {
        let Some(current) = &state.rollouts.active else {
            return Ok(());
        };
        let mut next = current.clone();
        next.apply(decision, Instant::now(), &stamp());
        let split = split_at(
            &next.start_bp(),
            &next.record.from,
            &next.record.to,
            next.weight,
        );
        let mut entry = Entry::now(
            state.version + 1,
            actor,
            action_of(decision.kind),
            &state.config.split,
            &split,
        );
        entry.message = decision.message.clone();
        entry.rollout = Some(Box::new(next.record.clone()));
        let weight_moves = !matches!(
            decision.kind,
            Move::Pause(_) | Move::Resume | Move::WouldRollBack(_) | Move::Wait(_)
        );
        let backwards = matches!(decision.kind, Move::RollBack(_) | Move::Abort(_));
        let memo = Self::memo_after(state, &next.record, ends(decision.kind));
        if weight_moves && split != state.config.split {
            let committed = self.commit_move(state, actor, entry.clone(), split.clone(), memo);
            if let Err(e) = committed {
                // Shared: a move the cluster did not take is not made here either (the leader
                // decides again on what it holds; a replica that lost the lead decides nothing).
                if !backwards || self.shared.is_some() {
                    return Err(e);
                }
                self.roll_back_live(state, entry, split, &e);
            }
        } else {
            entry.version = state.version;
            entry.after = entry.before.clone();
            if let Move::WouldRollBack(_) = decision.kind {
                entry.outcome = Outcome::Rejected; // a dry run: the rollback was not made
            }
            self.log_rollout(state, &mut entry, memo)?;
        }
        tracing::info!(actor, id = next.record.id, state = next.record.state.name(), weight = %format_percent(next.weight), "rollout: {}", decision.message);
        if ends(decision.kind) {
            let start = crate::config::percent::checked_split(next.start_bp()).ok();
            self.end_rollout(state, next.record, start);
        } else {
            state.rollouts.active = Some(next);
        }
        self.rollouts_changed(state);
        Ok(())
    }
    /// Ends the active rollout with `record`; `POST /rollback` then returns to `start` (the
    /// split before the rollout), never to one of its steps. Caller holds the lock.
    pub(in crate::control) fn end_rollout(
        &self,
        state: &mut State,
        record: Rollout,
        start: Option<Split>,
    ) {
        state.rollouts.active = None;
        state.rollouts.end(record);
        let fits = |s: &Split| s.shares().keys().eq(state.config.pools.keys());
        if let Some(start) = start.filter(fits) {
            state.previous = Some(start);
            self.save_state(state);
        }
    }

    /// The rollouts changed: their gauges, and the memo a restart recovers them from.
    pub(in crate::control) fn rollouts_changed(&self, state: &mut State) {
        self.rollout_gauges(state);
        self.remember_rollouts(state);
    }

    /// Publishes the rollout gauges for what `state` holds.
    pub(in crate::control) fn rollout_gauges(&self, state: &State) {
        let b = &state.rollouts;
        let record = b.active.as_ref().map(|a| &a.record).or(b.ended.back());
        self.metrics.set_rollout(record.map(super::Rollout::gauge));
    }
}

impl Active {
    /// The split at the start, in basis points.
    pub fn start_bp(&self) -> BTreeMap<String, BasisPoints> {
        self.record
            .start_split
            .iter()
            .map(|(p, n)| {
                (
                    p.clone(),
                    crate::config::percent::percent_from_f64(n.as_f64().unwrap_or(0.0))
                        .unwrap_or(0),
                )
            })
            .collect()
    }
}
