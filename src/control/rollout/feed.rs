//! What the engine hands control: the smoke result, and each second's counts. Control runs the
//! pure machine on them under its lock and takes in (logs, then moves) what it decides.

use super::active::Move;
use super::machine::{Decision, Observation};
use super::{Phase, Reason};
use crate::control::{Control, State};

/// The active rollout as the engine needs it.
#[derive(Debug, Clone)]
pub struct EngineView {
    /// Its id.
    pub id: u64,
    /// Its phase.
    pub phase: Phase,
    /// The baseline pool.
    pub from: String,
    /// The target pool.
    pub to: String,
    /// The plan's smoke checks.
    pub smoke: Option<crate::config::model::Smoke>,
    /// `latency-margin` as a fraction.
    pub latency_margin: f64,
    /// The slow line the rollout's evidence last showed, ms.
    pub slow_above_ms: Option<f64>,
}

impl Control {
    pub(super) fn rollout_first_step(&self, state: &mut State) {
        let Some(active) = &state.rollouts.active else {
            return;
        };
        let decision = active.first_step();
        if let Err(e) = self.engine_move(state, &decision) {
            tracing::error!(error = %e, "could not enter the rollout's first step; will retry");
        }
    }

    /// The engine's report that the smoke checks of rollout `id` passed (`Ok`) or failed.
    pub async fn rollout_smoke_done(&self, id: u64, result: Result<String, String>) {
        let mut state = self.state.lock().await;
        let Some(active) = &state.rollouts.active else {
            return;
        };
        if active.record.id != id || active.record.state != Phase::Smoke || self.is_retired() {
            return;
        }
        match result {
            Ok(summary) => {
                tracing::info!(id, "smoke checks passed: {summary}");
                self.rollout_first_step(&mut state);
            }
            Err(message) => {
                tracing::warn!(id, "smoke checks failed: {message}");
                let decision = Decision {
                    kind: Move::Abort(Reason::SmokeFailed),
                    message,
                };
                if let Err(e) = self.engine_move(&mut state, &decision) {
                    tracing::error!(error = %e, "could not record the failed smoke check");
                }
            }
        }
    }

    /// One second of counts for rollout `id`; returns whether it moved.
    pub async fn rollout_tick(&self, id: u64, obs: Observation) -> bool {
        let mut state = self.state.lock().await;
        if self.is_retired() {
            return false;
        }
        let Some(active) = state.rollouts.active.as_mut().filter(|a| a.record.id == id) else {
            return false;
        };
        if active.record.state == Phase::Smoke {
            return false;
        }
        let decision = active.tick(&obs);
        active.record.evidence = Some(active.evidence());
        let a = &active.analysis;
        self.metrics
            .set_rollout_evidence(a.error_evidence, a.latency_evidence);
        let Some(decision) = decision else {
            return false;
        };
        if self.store.writes_config() {
            // An edit the watcher has not applied yet goes first, so this write never buries
            // it (it may end the rollout, when it moves the split).
            self.reload_locked(&mut state, "file");
        }
        if let Move::WouldRollBack(_) = decision.kind {
            tracing::warn!(id, "{}", decision.message);
        }
        match self.engine_move(&mut state, &decision) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, decision = %decision.message, "could not record the rollout's decision; will retry");
                false
            }
        }
    }

    /// What the engine needs about the active rollout.
    pub async fn rollout_engine_view(&self) -> Option<EngineView> {
        let mut state = self.state.lock().await;
        if !self.leads_rollout(&mut state) {
            return None;
        }
        let a = state.rollouts.active.as_ref()?;
        Some(EngineView {
            id: a.record.id,
            phase: a.record.state,
            from: a.record.from.clone(),
            to: a.record.to.clone(),
            smoke: a.plan.smoke.clone(),
            latency_margin: a.plan.analysis.latency_margin,
            slow_above_ms: a.record.evidence.as_ref().and_then(|e| e.slow_above_ms),
        })
    }
}
