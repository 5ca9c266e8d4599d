//! Rollouts after a restart, from the deployment log: each entry of a rollout action carries the
//! rollout as it left it, so the newest entry per id is that rollout's last state. An active one
//! comes back `paused` (reason `restart`) at the weight it had: nothing moves until `resume`.
//! Its analysis starts afresh.
//!
//! The store's memo (`state.json`, or the restart journal beside a config file) says the next id
//! and the active rollout besides: a rollout the log lost (rotated away, `deployments-keep = 0`)
//! still resumes, and one the log still shows active although the memo saw it end (its end could
//! not be logged) ends. A rollout whose journaled rollback wins at start never resumes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::active::Active;
use super::analysis::Analysis;
use super::book::Book;
use super::{Phase, Reason, Rollout};
use crate::config::model::{Plan, Step};
use crate::config::percent::percent_from_f64;
use crate::config::Config;
use crate::control::audit::{Action, Entry};
use crate::control::state::Memo;

/// The book the log describes (`history` oldest first) and the store's `memo`, with an active
/// rollout paused, and the entry that says so (to be logged after the start). `rolled_back`: a
/// rollout a journaled rollback ended.
pub(crate) fn recover(
    history: &[Entry],
    config: &Config,
    memo: Option<&Memo>,
    rolled_back: Option<u64>,
) -> (Book, Option<(Action, Rollout)>) {
    let mut last: BTreeMap<u64, Rollout> = BTreeMap::new();
    for entry in history {
        if let Some(rollout) = &entry.rollout {
            last.insert(rollout.id, (**rollout).clone());
        }
    }
    if let Some(record) = memo.and_then(|m| m.active.as_ref()) {
        last.entry(record.id).or_insert_with(|| record.clone());
    }
    for (id, record) in last.iter_mut() {
        let memo_ended = memo
            .is_some_and(|m| *id <= m.last_ended && m.active.as_ref().is_none_or(|a| a.id != *id));
        if record.state.is_active() && Some(*id) == rolled_back {
            record.revision += 1;
            record.state = Phase::RolledBack;
            record.message =
                "rolled back; the rollback could not be saved and was kept in the restart journal"
                    .into();
        } else if record.state.is_active() && memo_ended {
            record.revision += 1;
            record.state = Phase::Aborted;
            record.reason = Some(Reason::Restart);
            record.message =
                "ended before the restart; its end is missing from the deployment log".into();
        }
    }
    let logged_next = last.keys().next_back().map_or(1, |id| id + 1);
    let mut book = Book {
        next_id: logged_next.max(memo.map_or(1, |m| m.next_id)),
        ..Book::default()
    };
    let newest = last.keys().next_back().copied();
    let mut note = None;
    for (id, mut record) in last {
        if !record.state.is_active() {
            book.ended.push_back(record);
            continue;
        }
        // Only the newest rollout can still be going; one caught in its smoke checks never
        // reached a user, so it ends here rather than waiting for a resume; one whose pools,
        // weight or steps no longer match what is live ends too (resuming it would move a split
        // someone else set).
        let ending = if Some(id) != newest {
            Some((
                Reason::Restart,
                "a newer rollout was started after it".to_string(),
            ))
        } else if record.state == Phase::Smoke {
            Some((
                Reason::Restart,
                "switchback restarted during the smoke checks; start the rollout again".into(),
            ))
        } else {
            mismatch(&record, config).map(|why| (Reason::Superseded, why))
        };
        match ending {
            Some((reason, message)) => {
                record.revision += 1;
                record.state = Phase::Aborted;
                record.reason = Some(reason);
                record.message = message;
                note = Some((Action::RolloutAbort, record.clone()));
                book.ended.push_back(record);
            }
            None => {
                let active = resume(record, config);
                note = Some((Action::RolloutPause, active.record.clone()));
                book.active = Some(active);
            }
        }
    }
    (book, note)
}

/// Why a recorded rollout cannot go on with what is live, if it cannot.
fn mismatch(record: &Rollout, config: &Config) -> Option<String> {
    for pool in [&record.from, &record.to] {
        if !config.pools.contains_key(pool) {
            return Some(format!("pool {pool} is no longer configured"));
        }
    }
    let weights: Option<Vec<u32>> = record
        .steps
        .iter()
        .map(|s| s.weight.as_f64().and_then(|w| percent_from_f64(w).ok()))
        .collect();
    match weights {
        Some(w) if !w.is_empty() && record.step < w.len() && w.last() == Some(&10_000) => {}
        _ => return Some("its record in the deployment log is not usable".into()),
    }
    let recorded = record
        .weight
        .as_f64()
        .and_then(|w| percent_from_f64(w).ok());
    let live = config.split.share(&record.to);
    (recorded != Some(live)).then(|| {
        format!(
            "the split changed while switchback was down ({} now has {} %, the rollout left it at {} %)",
            record.to,
            crate::config::model::format_percent(live),
            record.weight
        )
    })
}

fn resume(mut record: Rollout, config: &Config) -> Active {
    let weight = config.split.share(&record.to);
    let plan = plan_for(&record, config);
    let was = record.state;
    record.revision += 1;
    record.state = Phase::Paused;
    record.reason = Some(Reason::Restart);
    record.weight = crate::control::audit::percent_number(weight);
    record.message = format!(
        "switchback restarted during this rollout; paused at {} % with its analysis started afresh{}; resume to go on",
        crate::config::model::format_percent(weight),
        if record.reference.is_some() { " (the bake's reference kept)" } else { "" }
    );
    let mut analysis = Analysis::new(plan.analysis);
    if let Some(reference) = record.reference {
        // The bake's reference was measured before it: it cannot be measured again.
        analysis.seed(reference.0);
    }
    analysis.bake = weight == crate::config::model::FULL;
    // A rollout waiting at a gate waits again after the resume (weight 0: the gate of step 0).
    let waiting_for = (was == Phase::Waiting).then(|| match weight {
        0 => 0,
        _ => (record.step + 1).min(plan.steps.len() - 1),
    });
    Active {
        record,
        plan,
        analysis,
        weight,
        since: Instant::now(),
        waiting_for,
        last: None,
        reported: Vec::new(),
    }
}

/// `record` taken over as it stands (shared state: another replica moved it, or this
/// replica leads the engine from now on): same phase, step and weight, the step's hold counted
/// from the step's start; the analysis starts afresh (the bake's reference kept).
pub(crate) fn adopt(record: Rollout, config: &Config) -> Active {
    let weight = (record.weight.as_f64())
        .and_then(|w| percent_from_f64(w).ok())
        .unwrap_or(0);
    let plan = plan_for(&record, config);
    let mut analysis = Analysis::new(plan.analysis);
    if let Some(reference) = record.reference {
        analysis.seed(reference.0);
    }
    analysis.bake = weight == crate::config::model::FULL;
    let waiting_for = (record.state == Phase::Waiting).then(|| match weight {
        0 => 0,
        _ => (record.step + 1).min(plan.steps.len().saturating_sub(1)),
    });
    // The step's hold goes on from when the step began (its record says when), not afresh.
    // At most half the step's time limit counts as held already, so the fresh evidence has
    // time of its own before the step could be judged inconclusive.
    let began = (record.step_started.as_deref())
        .and_then(|t| humantime::parse_rfc3339(t).ok())
        .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
        .map(|ago| ago.min(plan.max_step_time / 2))
        .and_then(|ago| Instant::now().checked_sub(ago));
    Active {
        record,
        plan,
        analysis,
        weight,
        since: began.unwrap_or_else(Instant::now),
        waiting_for,
        last: None,
        reported: Vec::new(),
    }
}

/// The rollout's plan: the config's plan of that name when its steps are unchanged, else the
/// steps the rollout recorded with that plan's (or the default) other settings.
fn plan_for(record: &Rollout, config: &Config) -> Arc<Plan> {
    let steps: Vec<Step> = record
        .steps
        .iter()
        .map(|s| Step {
            weight: percent_from_f64(s.weight.as_f64().unwrap_or(100.0)).unwrap_or(10_000),
            hold: std::time::Duration::from_secs_f64(s.hold_s.max(0.0)),
            min_requests: s.min_requests,
            gate: s.gate,
        })
        .collect();
    match config.plans.get(&record.plan) {
        Some(plan) if plan.steps == steps => plan.clone(),
        Some(plan) => Arc::new(Plan {
            steps,
            ..(**plan).clone()
        }),
        None => Arc::new(Plan {
            steps,
            max_step_time: crate::config::defaults::MAX_STEP_TIME,
            on_inconclusive: crate::config::model::OnInconclusive::Pause,
            smoke: None,
            analysis: Default::default(),
        }),
    }
}
