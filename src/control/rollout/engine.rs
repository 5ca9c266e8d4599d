//! The rollout engine: a task that, while a rollout is active, reads both pools' analysis
//! counters once a second and hands the second to control, which decides (the pure machine)
//! and moves. During the smoke phase it runs the probes instead. Ticks restart after every
//! move, so a step's hold ends on a tick.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::latency::Latency;
use super::machine::Observation;
use super::Phase;
use crate::control::Control;
use crate::metrics::tally::Reading;

/// How often the counters are read.
pub const TICK: Duration = Duration::from_secs(1);

/// What the engine remembers about the rollout it follows.
struct Following {
    id: u64,
    last: [Reading; 2],
    latency: Latency,
}

/// Runs until the runtime stops. A panic in the engine (a bug) is logged and the engine starts
/// again a second later, following the rollout afresh: automation never stops silently.
pub async fn run(control: Arc<Control>) {
    loop {
        let task = tokio::spawn(follow(control.clone()));
        match task.await {
            Err(e) if e.is_panic() => {
                tracing::error!("the rollout engine panicked (a bug); restarting it in 1 s");
                tokio::time::sleep(TICK).await;
            }
            _ => return,
        }
    }
}

async fn follow(control: Arc<Control>) {
    let mut following: Option<Following> = None;
    let mut smoked: Option<(u64, Result<String, String>)> = None;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        control.metrics().tallies.sample(Instant::now());
        let Some(view) = control.rollout_engine_view().await else {
            following = None;
            continue;
        };
        let snapshot = control.live().load_full();
        let readings = control
            .rollout_readings(view.id, [&view.from, &view.to])
            .await;
        if view.phase == Phase::Smoke {
            // The result is kept: if control could not take it in (say, the log was not
            // writable), it is handed over again next second rather than probing again.
            let result = match smoked.take() {
                Some((id, result)) if id == view.id => result,
                _ => match &view.smoke {
                    Some(smoke) => super::smoke::run(&snapshot, &view.to, smoke).await,
                    None => Ok("no smoke checks in the plan".into()),
                },
            };
            control.rollout_smoke_done(view.id, result.clone()).await;
            smoked = Some((view.id, result));
            tick.reset();
            continue;
        }
        let state = match following.take() {
            Some(f) if f.id == view.id => f,
            _ => {
                let mut latency = Latency::new(view.latency_margin, view.slow_above_ms);
                if let Some(before) = control.metrics().tallies.last_seconds(&view.from) {
                    latency.seed(before);
                }
                following = Some(Following {
                    id: view.id,
                    last: readings,
                    latency,
                });
                continue;
            }
        };
        let mut state = state;
        let counted = state.latency.count(
            readings[0].since(&state.last[0]),
            readings[1].since(&state.last[1]),
        );
        state.last = readings;
        let target_up = snapshot
            .pools
            .iter()
            .position(|p| p.name == view.to)
            .is_some_and(|i| snapshot.pool_up(i));
        let obs = Observation {
            counted,
            target_up,
            now: Instant::now(),
        };
        if control.rollout_tick(view.id, obs).await {
            tick.reset();
        }
        following = Some(state);
    }
}
