use std::time::Duration;

use super::*;
use crate::config::model::{AnalysisSettings, Step};

fn counts(requests: u64, errors: u64) -> Counts {
    Counts {
        requests,
        errors,
        slow: 0,
    }
}

fn second(baseline: Counts, canary: Counts) -> Second {
    Second { baseline, canary }
}

#[test]
fn a_canary_error_is_evidence_for_and_a_baseline_error_evidence_against() {
    let (per_canary, per_baseline) = weights(0.1, 1.2, 3.0);
    assert!(per_canary > 0.7 && per_canary < 0.8, "{per_canary}");
    assert!(per_baseline < 0.0, "{per_baseline}");
}

#[test]
fn the_issue_example_rolls_back_on_errors_and_says_so() {
    // green 38/905 vs blue 71/17,300 in one go: far past ln(1000).
    let mut a = Analysis::new(AnalysisSettings::default());
    let verdict = a.observe(second(counts(17_300, 71), counts(905, 38)));
    assert_eq!(verdict, Verdict::ErrorRegression);
    assert!(a.error_evidence >= a.threshold());
    assert!((a.threshold() - 6.907).abs() < 0.01);
}

#[test]
fn equal_error_rates_build_no_evidence() {
    let mut a = Analysis::new(AnalysisSettings::default());
    for _ in 0..100 {
        assert_eq!(
            a.observe(second(counts(900, 5), counts(100, 0))),
            Verdict::Clear
        );
        assert_eq!(
            a.observe(second(counts(900, 4), counts(100, 1))),
            Verdict::Clear
        );
    }
    assert!(a.error_evidence < 0.0, "{}", a.error_evidence);
}

#[test]
fn seconds_without_both_pools_carry_no_evidence() {
    let mut a = Analysis::new(AnalysisSettings::default());
    a.observe(second(counts(0, 0), counts(10, 1)));
    a.observe(second(counts(10, 1), counts(0, 0)));
    assert_eq!(a.error_evidence, 0.0);
}

#[test]
fn a_broken_canary_is_a_hard_failure_at_once() {
    let mut a = Analysis::new(AnalysisSettings::default());
    assert_eq!(
        a.observe(second(counts(90, 0), counts(12, 7))),
        Verdict::HardFailure
    );
}

#[test]
fn a_failing_baseline_holds_everything_and_nothing_counts_against_the_canary() {
    let mut a = Analysis::new(AnalysisSettings::default());
    for _ in 0..30 {
        let v = a.observe(second(counts(800, 160), counts(200, 40)));
        assert_eq!(v, Verdict::BaselineDegraded);
    }
    assert_eq!(a.error_evidence, 0.0);
    assert_eq!(
        a.step[1].requests, 0,
        "a held second is not in the step's counts"
    );
}

#[test]
fn a_baseline_jumping_to_five_times_its_level_is_degraded_even_under_five_percent() {
    let mut a = Analysis::new(AnalysisSettings::default());
    for _ in 0..120 {
        assert_eq!(
            a.observe(second(counts(1000, 2), counts(100, 0))),
            Verdict::Clear
        );
    }
    let mut last = Verdict::Clear;
    for _ in 0..5 {
        last = a.observe(second(counts(1000, 30), counts(100, 3)));
    }
    assert_eq!(last, Verdict::BaselineDegraded);
}

#[test]
fn a_baseline_that_jumps_then_settles_is_held_then_learned() {
    let mut a = Analysis::new(AnalysisSettings::default());
    for _ in 0..120 {
        assert_eq!(
            a.observe(second(counts(1000, 1), counts(100, 0))),
            Verdict::Clear
        );
    }
    let verdicts: Vec<Verdict> = (0..600)
        .map(|_| a.observe(second(counts(1000, 30), counts(100, 3))))
        .collect();
    assert!(
        verdicts[..10].contains(&Verdict::BaselineDegraded),
        "the jump to 3 % holds"
    );
    assert!(
        verdicts[100..].iter().all(|v| *v == Verdict::Clear),
        "3 % for minutes becomes the baseline's level"
    );
}

#[test]
fn a_broken_canary_is_caught_even_while_the_baseline_jumped_under_five_percent() {
    let mut a = Analysis::new(AnalysisSettings::default());
    for _ in 0..120 {
        a.observe(second(counts(1000, 1), counts(100, 0)));
    }
    let verdicts: Vec<Verdict> = (0..10)
        .map(|_| a.observe(second(counts(1000, 30), counts(100, 100))))
        .collect();
    assert!(verdicts.contains(&Verdict::HardFailure), "{verdicts:?}");
}

#[test]
fn the_step_boundary_floors_the_evidence_at_zero() {
    let mut a = Analysis::new(AnalysisSettings::default());
    a.observe(second(counts(900, 9), counts(100, 0)));
    assert!(a.error_evidence < 0.0);
    a.new_step();
    assert_eq!(a.error_evidence, 0.0);
    assert_eq!(a.step, [Counts::default(); 2]);
}

#[test]
fn wilson_bounds_match_known_values() {
    assert!((wilson_upper(0, 100) - 0.0370).abs() < 0.0005);
    assert!((wilson_upper(5, 1000) - 0.0116).abs() < 0.0005);
    assert_eq!(wilson_upper(0, 0), 1.0);
}

#[test]
fn a_step_advances_only_with_hold_requests_and_a_low_error_bound() {
    let step = Step {
        weight: 1000,
        hold: Duration::from_secs(2),
        min_requests: 50,
        gate: false,
    };
    let settings = AnalysisSettings {
        max_error_rate: 0.2,
        ..AnalysisSettings::default()
    };
    let mut a = Analysis::new(settings);
    a.observe(second(counts(180, 0), counts(20, 0)));
    let why = a.not_ready(&step, Duration::from_secs(1)).unwrap();
    assert!(why.starts_with("holding"), "{why}");
    let why = a.not_ready(&step, Duration::from_secs(2)).unwrap();
    assert!(why.contains("20 of 50 target requests"), "{why}");
    a.observe(second(counts(180, 0), counts(40, 0)));
    assert_eq!(a.not_ready(&step, Duration::from_secs(3)), None);
    let strict = Analysis {
        settings: AnalysisSettings::default(),
        ..a.clone()
    };
    let why = strict.not_ready(&step, Duration::from_secs(3)).unwrap();
    assert!(why.contains("could still be up to"), "{why}");
}
