use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::config::model::{AnalysisSettings, OnInconclusive, Plan, Step};
use crate::control::rollout::analysis::{Counts, Second};
use crate::control::rollout::Launch;

fn active(dry_run: bool, gate_first: bool) -> (Active, Instant) {
    let t0 = Instant::now();
    let step = |weight, gate| Step {
        weight,
        hold: Duration::from_secs(1),
        min_requests: 10,
        gate,
    };
    let plan = Arc::new(Plan {
        steps: vec![step(1000, gate_first), step(10_000, false)],
        max_step_time: Duration::from_secs(60),
        on_inconclusive: OnInconclusive::Rollback,
        smoke: None,
        analysis: AnalysisSettings::default(),
    });
    let start = crate::config::percent::checked_split(
        [("blue".to_string(), 10_000), ("green".to_string(), 0)].into(),
    )
    .unwrap();
    let launch = Launch {
        id: 1,
        plan_name: "p".into(),
        plan,
        from: "blue".into(),
        to: "green".into(),
        start,
        dry_run,
        release: None,
        before: None,
    };
    (Active::launch(launch, t0, ""), t0)
}

fn obs(t0: Instant, s: u64, baseline: (u64, u64), canary: (u64, u64), up: bool) -> Observation {
    let c = |(requests, errors)| Counts {
        requests,
        errors,
        slow: 0,
    };
    Observation {
        counted: Counted {
            second: Second {
                baseline: c(baseline),
                canary: c(canary),
            },
            p99_ms: [None, None],
            slow_above_ms: None,
        },
        target_up: up,
        now: t0 + Duration::from_secs(s),
    }
}

fn step(a: &mut Active, o: &Observation) -> Option<Move> {
    let d = a.tick(o)?;
    a.apply(&d, o.now, "");
    Some(d.kind)
}

#[test]
fn a_target_without_backends_is_rolled_back_but_a_dry_run_only_reports_it_once_per_step() {
    let (mut a, t0) = active(false, false);
    let first = a.first_step();
    a.apply(&first, t0, "");
    assert_eq!(
        step(&mut a, &obs(t0, 1, (90, 0), (10, 0), false)),
        Some(Move::RollBack(Reason::NoHealthyBackend))
    );
    let (mut a, t0) = active(true, false);
    let first = a.first_step();
    a.apply(&first, t0, "");
    assert_eq!(
        step(&mut a, &obs(t0, 1, (90, 0), (10, 0), false)),
        Some(Move::WouldRollBack(Reason::NoHealthyBackend))
    );
    assert_eq!(step(&mut a, &obs(t0, 2, (90, 0), (10, 0), false)), None);
    assert_eq!(a.record.state, Phase::Running);
    assert!(
        a.record.message.starts_with("would roll back: "),
        "{}",
        a.record.message
    );
}

#[test]
fn a_gate_on_the_first_step_waits_at_zero_and_abort_there_is_an_abort() {
    let (mut a, t0) = active(false, true);
    let first = a.first_step();
    assert_eq!(first.kind, Move::Wait(0));
    a.apply(&first, t0, "");
    assert_eq!(a.weight, 0);
    let abort = a.operator(Operator::Abort).unwrap();
    assert_eq!(abort.kind, Move::Abort(Reason::Manual));
}

#[test]
fn operators_get_a_sentence_when_an_action_does_not_apply() {
    let (mut a, t0) = active(false, false);
    let first = a.first_step();
    a.apply(&first, t0, "");
    let refused = a.operator(Operator::Approve).unwrap_err();
    assert_eq!(
        refused,
        "rollout 1 is running; no gate is waiting for approval"
    );
    assert!(a.operator(Operator::Resume).is_err());
    let pause = a.operator(Operator::Pause).unwrap();
    a.apply(&pause, t0, "");
    assert!(a.operator(Operator::Pause).is_err());
    let promote = a.operator(Operator::Promote { full: true }).unwrap();
    assert_eq!(promote.kind, Move::Promote);
}

#[test]
fn a_clean_step_advances_once_held_and_the_bake_promotes() {
    let (mut a, t0) = active(false, false);
    let first = a.first_step();
    a.apply(&first, t0, "");
    let mut settings = a.analysis.settings().to_owned();
    settings.detect_ratio = 1000.0; // a gate wide enough for 10 clean requests
    a.analysis = crate::control::rollout::analysis::Analysis::new(settings);
    assert_eq!(
        step(&mut a, &obs(t0, 1, (90, 0), (10, 0), true)),
        Some(Move::Enter(1))
    );
    assert_eq!(a.weight, 10_000);
    assert_eq!(
        step(&mut a, &obs(t0, 2, (0, 0), (100, 0), true)),
        Some(Move::Promote)
    );
    assert_eq!(a.record.state, Phase::Promoted);
}

#[test]
fn an_inconclusive_bake_steps_back_to_the_previous_weight_and_pauses_never_holding_at_100() {
    let (mut a, t0) = active(false, false);
    let mut plan = (*a.plan).clone();
    plan.on_inconclusive = OnInconclusive::Pause;
    plan.analysis.detect_ratio = 1000.0; // a gate wide enough for 10 clean requests
    a.plan = Arc::new(plan.clone());
    a.analysis = crate::control::rollout::analysis::Analysis::new(plan.analysis);
    let first = a.first_step();
    a.apply(&first, t0, "");
    assert_eq!(
        step(&mut a, &obs(t0, 1, (90, 0), (10, 0), true)),
        Some(Move::Enter(1))
    );
    assert_eq!(a.weight, 10_000);
    // The bake sees too few target requests to decide within max-step-time (60 s).
    for s in 2..61 {
        assert_eq!(step(&mut a, &obs(t0, s, (0, 0), (0, 0), true)), None);
    }
    assert_eq!(
        step(&mut a, &obs(t0, 61, (0, 0), (1, 0), true)),
        Some(Move::StepBack {
            step: 0,
            weight: 1000
        })
    );
    assert_eq!(
        (a.record.state, a.record.reason, a.weight),
        (Phase::Paused, Some(Reason::Inconclusive), 1000)
    );
    assert!(
        a.record.message.contains("stepped back to 10 %"),
        "{}",
        a.record.message
    );
    let resume = a.operator(Operator::Resume).unwrap();
    a.apply(&resume, t0 + Duration::from_secs(62), "");
    assert_eq!((a.record.state, a.record.step), (Phase::Running, 0));
}

#[test]
fn the_bake_records_its_reference_for_a_restart() {
    let (mut a, t0) = active(false, false);
    let mut settings = a.analysis.settings().to_owned();
    settings.detect_ratio = 1000.0;
    a.analysis = crate::control::rollout::analysis::Analysis::new(settings);
    let first = a.first_step();
    a.apply(&first, t0, "");
    assert_eq!(a.record.reference, None);
    step(&mut a, &obs(t0, 1, (90, 1), (10, 0), true));
    let reference = a.record.reference.expect("kept once the bake begins");
    assert_eq!((reference.0.requests, reference.0.errors), (90, 1));
    let json = serde_json::to_value(&a.record).unwrap();
    assert_eq!(
        json["reference"],
        serde_json::json!({"requests": 90, "errors": 1, "slow": 0})
    );
}
