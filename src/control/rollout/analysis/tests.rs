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
fn the_issue_example_rolls_back_on_errors_within_two_seconds() {
    // green 38/905 vs blue 71/17,300 each second: far past ln(1000), but one second moves the
    // evidence by at most half of it.
    let mut a = Analysis::new(AnalysisSettings::default());
    let first = a.observe(second(counts(17_300, 71), counts(905, 38)));
    assert_eq!(first, Verdict::Clear);
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
fn a_shared_outage_holds_the_step_but_gives_no_evidence_against_the_canary() {
    let mut a = Analysis::new(AnalysisSettings::default());
    for _ in 0..30 {
        let v = a.observe(second(counts(800, 160), counts(200, 40)));
        assert_eq!(v, Verdict::BaselineDegraded);
    }
    assert!(a.error_evidence <= 0.0, "{}", a.error_evidence);
    assert_eq!(a.step[1].requests, 30 * 200, "held seconds still count");
}

#[test]
fn a_canary_worse_than_a_degraded_baseline_is_still_rolled_back() {
    let mut a = Analysis::new(AnalysisSettings::default());
    let verdicts: Vec<Verdict> = (0..20)
        .map(|_| a.observe(second(counts(500, 165), counts(500, 500))))
        .collect();
    assert!(
        verdicts.contains(&Verdict::HardFailure) || verdicts.contains(&Verdict::ErrorRegression),
        "{verdicts:?}"
    );
}

#[test]
fn a_few_unlucky_baseline_errors_at_low_traffic_do_not_hold_the_step() {
    // 10 req/s, a 2 % baseline that errs 5 times in 10 s: its lower bound is under 5 %.
    let mut a = Analysis::new(AnalysisSettings::default());
    for _ in 0..5 {
        a.observe(second(counts(9, 1), counts(1, 0)));
    }
    for _ in 0..5 {
        assert_ne!(
            a.observe(second(counts(9, 0), counts(1, 0))),
            Verdict::BaselineDegraded
        );
    }
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
    for _ in 0..10 {
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
fn the_evidence_never_sinks_below_minus_the_threshold_and_climbs_at_most_half_of_it_a_second() {
    let mut a = Analysis::new(AnalysisSettings::default());
    let t = a.threshold();
    for _ in 0..10_000 {
        a.observe(second(counts(900, 9), counts(100, 0)));
    }
    assert_eq!(a.error_evidence, -t, "a long healthy stretch is bounded");
    a.new_step();
    assert_eq!(
        a.error_evidence, -t,
        "a new step keeps the bounded evidence"
    );
    assert_eq!(a.step, [Counts::default(); 2]);
    // A burst that would be overwhelming in one second moves it by at most t/2.
    a.observe(second(counts(9_000, 0), counts(1_000, 900)));
    assert!(
        (a.error_evidence - (-t / 2.0)).abs() < 1e-9,
        "{}",
        a.error_evidence
    );
}

#[test]
fn the_bake_is_compared_with_the_baselines_level_before_it() {
    let mut a = Analysis::new(AnalysisSettings::default());
    for _ in 0..300 {
        a.observe(second(counts(500, 2), counts(500, 3)));
    }
    let reference = a.reference();
    assert_eq!(reference.0.requests, 150_000);
    let mut verdict = Verdict::Clear;
    for _ in 0..60 {
        // 100 %: no baseline traffic; the canary at 5 % against a 0.5 % level.
        verdict = a.observe(second(counts(0, 0), counts(1000, 50)));
        if verdict != Verdict::Clear {
            break;
        }
    }
    assert_eq!(verdict, Verdict::ErrorRegression);
    assert_eq!(a.compared, Compared::Reference);
    assert_eq!(
        a.reference(),
        reference,
        "the bake does not move its reference"
    );
}

#[test]
fn a_healthy_bake_builds_evidence_against_a_regression() {
    let mut a = Analysis::new(AnalysisSettings::default());
    for _ in 0..300 {
        a.observe(second(counts(500, 2), counts(500, 3)));
    }
    for _ in 0..600 {
        assert_eq!(
            a.observe(second(counts(0, 0), counts(1000, 5))),
            Verdict::Clear
        );
    }
    assert!(a.error_evidence < 0.0);
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
        detect_ratio: 100.0, // a gate of 1/3: a small sample can pass it
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

#[test]
fn the_gate_is_relative_to_the_baseline_and_max_error_rate_is_an_optional_ceiling() {
    let step = Step {
        weight: 1000,
        hold: Duration::ZERO,
        min_requests: 10,
        gate: false,
    };
    let mut a = Analysis::new(AnalysisSettings::default());
    for _ in 0..100 {
        a.observe(second(counts(900, 18), counts(100, 2))); // both pools at 2 %
    }
    assert_eq!(a.not_ready(&step, Duration::from_secs(100)), None);
    let capped = Analysis {
        settings: AnalysisSettings {
            max_error_rate: Some(0.01),
            ..AnalysisSettings::default()
        },
        ..a.clone()
    };
    let why = capped.not_ready(&step, Duration::from_secs(100)).unwrap();
    assert!(why.contains("max-error-rate is 1.00 %"), "{why}");
}
