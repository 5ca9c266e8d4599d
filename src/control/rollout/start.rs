//! Starting a rollout: the request, the checks, the target at 0 %, and (with shared state) the
//! shared state read first and read again when another replica wrote first.

use std::time::Instant;

use super::active::Active;
use super::launch::Launch;
use super::ops::{split_at, stamp, RolloutError};
use super::Rollout;
use crate::config::model::{Split, FULL};
use crate::control::audit::{Action, Entry};
use crate::control::{Control, ControlError, State};

/// `POST /rollouts`.
#[derive(Debug, Clone, PartialEq)]
pub struct StartRequest {
    /// The target pool.
    pub to: String,
    /// The plan's name.
    pub plan: String,
    /// The baseline; default: the pool with the largest share.
    pub from: Option<String>,
    /// Report rollbacks instead of making them.
    pub dry_run: bool,
    /// Free-form metadata.
    pub release: Option<serde_json::Value>,
}

impl Control {
    /// Starts a rollout for `actor`: the target goes to 0 % (logged as `rollout-start`), then
    /// the engine runs the smoke checks (or enters the first step at once without them).
    ///
    /// # Errors
    /// [`RolloutError`]: 409 while one is active, 400 for an unknown pool or plan.
    pub async fn rollout_start(
        &self,
        actor: &str,
        req: StartRequest,
    ) -> Result<Rollout, RolloutError> {
        let mut state = self.state.lock().await;
        if self.is_retired() {
            return Err(ControlError::Retired.into());
        }
        self.on_fresh_state(&mut state, |state| {
            self.rollout_start_locked(state, actor, req.clone())
        })
    }

    /// With shared state, runs `act` on the state read from the cluster just before, and again
    /// when another replica wrote first; 503 when the cluster does not answer.
    pub(super) fn on_fresh_state<T>(
        &self,
        state: &mut State,
        mut act: impl FnMut(&mut State) -> Result<T, RolloutError>,
    ) -> Result<T, RolloutError> {
        if self.shared().is_none() {
            return act(state);
        }
        for _ in 0..crate::control::change::MOVED_RETRIES {
            self.sync_locked(state).map_err(ControlError::Unavailable)?;
            self.refuse_if_mismatched(state)?;
            match act(state) {
                Err(RolloutError::Control(ControlError::Moved)) => continue,
                result => return result,
            }
        }
        Err(ControlError::Unavailable(
            "other replicas kept changing the shared state; retry".into(),
        )
        .into())
    }

    fn rollout_start_locked(
        &self,
        state: &mut State,
        actor: &str,
        req: StartRequest,
    ) -> Result<Rollout, RolloutError> {
        self.reload_locked(state, "file");
        if let Some(active) = &state.rollouts.active {
            return Err(RolloutError::Conflict(format!(
                "rollout {} ({} → {}) is {}; wait for it to end, or abort it first",
                active.record.id,
                active.record.from,
                active.record.to,
                active.record.state.name()
            )));
        }
        let mut active = self.new_rollout(state, req)?;
        // Shared: every live replica must have both pools, or it could not serve the steps.
        let both = [&active.record.from, &active.record.to].map(|p| (p.clone(), FULL / 2));
        self.every_replica_has(&Split::new(both.into_iter().collect()))?;
        let recent = self.metrics.tallies.recent();
        let before = active.analysis.reference().0.requests > 0;
        active.record.warnings = super::pace::at_recent(recent, &active.plan, before);
        for warning in &active.record.warnings {
            tracing::warn!("rollout: {warning}");
        }
        let id = active.record.id;
        let prior_id = std::mem::replace(&mut state.rollouts.next_id, id + 1);
        let split = split_at(
            &active.start_bp(),
            &active.record.from,
            &active.record.to,
            0,
        );
        let mut entry = Entry::now(
            state.version + 1,
            actor,
            Action::RolloutStart,
            &state.config.split,
            &split,
        );
        entry.message = active.record.message.clone();
        entry.rollout = Some(Box::new(active.record.clone()));
        let moved = split != state.config.split;
        let memo = Self::memo_after(state, &active.record, false);
        let committed = if moved {
            self.commit_move(state, actor, entry, split, memo)
                .map(|_| ())
        } else {
            entry.version = state.version;
            self.log_rollout(state, &mut entry, memo)
        };
        if let Err(e) = committed {
            state.rollouts.next_id = prior_id; // not started: its id stays free
            return Err(e.into());
        }
        tracing::info!(actor, id, to = %active.record.to, plan = %active.record.plan, "rollout started");
        let record = active.record.clone();
        state.rollouts.active = Some(active);
        if state
            .rollouts
            .active
            .as_ref()
            .is_some_and(|a| a.plan.smoke.is_none())
            && self.shared().is_none_or(|s| s.is_leader())
        {
            // (With shared state on another replica, the leader's engine enters it.)
            self.rollout_first_step(state);
        }
        self.rollouts_changed(state);
        Ok(state
            .rollouts
            .active
            .as_ref()
            .map_or(record, |a| a.record.clone()))
    }

    fn new_rollout(&self, state: &State, req: StartRequest) -> Result<Active, RolloutError> {
        let config = &state.config;
        let known = || config.pools.keys().cloned().collect::<Vec<_>>().join(", ");
        if !config.pools.contains_key(&req.to) {
            return Err(RolloutError::Invalid(format!(
                "no pool named {:?} (pools: {})",
                req.to,
                known()
            )));
        }
        let Some(plan) = config.plans.get(&req.plan) else {
            let plans: Vec<&str> = config.plans.keys().map(String::as_str).collect();
            return Err(RolloutError::Invalid(match plans.is_empty() {
                true => format!(
                    "no plan named {:?}: the config file defines no [plans.<name>]",
                    req.plan
                ),
                false => format!("no plan named {:?} (plans: {})", req.plan, plans.join(", ")),
            }));
        };
        let shares = config.split.shares();
        let from = match req.from {
            Some(from) if !config.pools.contains_key(&from) => {
                return Err(RolloutError::Invalid(format!(
                    "no pool named {from:?} (pools: {})",
                    known()
                )))
            }
            Some(from) if from == req.to => {
                return Err(RolloutError::Invalid(
                    "from and to must be different pools".into(),
                ))
            }
            Some(from) => from,
            None => shares
                .iter()
                .filter(|(p, _)| **p != req.to)
                .max_by_key(|(_, bp)| **bp)
                .map(|(p, _)| p.clone())
                .ok_or_else(|| RolloutError::Invalid("a rollout needs two pools".into()))?,
        };
        if config.split.share(&req.to) == FULL {
            return Err(RolloutError::Invalid(format!(
                "{} already has 100 % of the traffic",
                req.to
            )));
        }
        let before = self.metrics.tallies.level(&from);
        let launch = Launch {
            id: state.rollouts.next_id.max(1),
            plan_name: req.plan,
            plan: plan.clone(),
            from,
            to: req.to,
            start: config.split.clone(),
            dry_run: req.dry_run,
            release: req.release,
            before,
        };
        Ok(Active::launch(launch, Instant::now(), &stamp()))
    }
}
