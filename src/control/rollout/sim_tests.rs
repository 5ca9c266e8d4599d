//! The seeded simulation (issue 23's proof): 1,000 runs per case through the real state
//! machine, with bands that cannot flake (the seeds are fixed). Plan: 10/50/100 %, 5-minute
//! holds, `max-step-time` 30 minutes, which `check` accepts down to 6.5 req/s (`pace`). `cargo test --release --lib simulation_table -- --nocapture` prints the table
//! in the README.

use super::pace;
use super::sim::{self, Outcome, Rates, Scenario, HEALTHY};
use super::Reason;
use crate::config::model::FULL;

const RUNS: u64 = 1_000;

fn scenario<'a>(rate: f64, rates: &'a dyn Fn(u64, u32, Option<u64>) -> Rates) -> Scenario<'a> {
    let max_step = 1_800;
    Scenario {
        rate,
        plan: sim::plan(&[10, 50, 100], 300, max_step),
        rates,
        budget: 4 * 3_600,
        pause_at_weight: None,
        before: None,
    }
}

fn count(outcomes: &[Outcome], pick: impl Fn(&Outcome) -> bool) -> usize {
    outcomes.iter().filter(|o| pick(o)).count()
}

fn steady(r: Rates) -> impl Fn(u64, u32, Option<u64>) -> Rates {
    move |_, _, _| r
}

const TWO_PERCENT: Rates = Rates {
    base_errors: 0.02,
    canary_errors: 0.02,
    slow: 0.005,
};

#[test]
fn the_plans_simulated_at_ten_requests_a_second_are_ones_check_accepts_for_that_rate() {
    let plan = scenario(10.0, &steady(HEALTHY)).plan;
    let least = pace::least_rate(&plan, pace::ASSUMED_ERROR_RATE).unwrap();
    assert!(least <= 10.0, "{least}");
}

#[test]
fn healthy_services_at_half_a_percent_and_at_two_percent_are_promoted_in_99_percent_of_runs() {
    for (salt, rates) in [(1, HEALTHY), (2, TWO_PERCENT)] {
        for rate in [10.0, 100.0, 1000.0] {
            let healthy = steady(rates);
            let outcomes = sim::runs(RUNS, salt, &scenario(rate, &healthy));
            let promoted = count(&outcomes, Outcome::promoted);
            assert!(
                promoted >= 990,
                "{rates:?} at {rate} req/s: promoted {promoted}/1000; others: {:?}",
                outcomes
                    .iter()
                    .filter(|o| !o.promoted())
                    .take(5)
                    .collect::<Vec<_>>()
            );
        }
    }
}

#[test]
fn a_canary_ten_times_worse_is_never_promoted_and_three_times_worse_than_two_percent_rarely() {
    let ten = Rates {
        canary_errors: 0.05,
        ..HEALTHY
    };
    let three = Rates {
        canary_errors: 0.06,
        ..TWO_PERCENT
    };
    // At exactly detect-ratio the advance gate's 95 % bound, looked at every second, lets a
    // lucky few through; the sequential test rolls back the rest.
    for (salt, rates, most) in [(3, ten, 0), (4, three, 10)] {
        for rate in [10.0, 100.0, 1000.0] {
            let worse = steady(rates);
            let outcomes = sim::runs(RUNS, salt, &scenario(rate, &worse));
            let promoted = count(&outcomes, Outcome::promoted);
            assert!(
                promoted <= most,
                "{rates:?} at {rate} req/s: {:?}",
                outcomes
                    .iter()
                    .filter(|o| o.promoted())
                    .take(5)
                    .collect::<Vec<_>>()
            );
            let rolled_back = count(&outcomes, |o| {
                o.rolled_back() && o.reason == Some(Reason::ErrorRegression)
            });
            assert!(
                rolled_back >= 950,
                "{rates:?} at {rate} req/s: {rolled_back}"
            );
        }
    }
}

#[test]
fn a_broken_canary_is_rolled_back_within_a_second_at_1000_and_ten_at_100_requests_a_second() {
    let broken = steady(Rates {
        canary_errors: 1.0,
        ..HEALTHY
    });
    for (rate, within) in [(1000.0, 1), (100.0, 10)] {
        let outcomes = sim::runs(RUNS, 5, &scenario(rate, &broken));
        let slowest = outcomes.iter().map(|o| o.at).max().unwrap();
        assert!(outcomes.iter().all(Outcome::rolled_back), "{rate} req/s");
        assert!(slowest <= within, "{rate} req/s: slowest {slowest} s");
    }
}

#[test]
fn a_shared_outage_of_both_pools_at_30_percent_for_a_minute_never_rolls_back() {
    let outage = |t: u64, _: u32, _: Option<u64>| match t {
        120..=179 => Rates {
            base_errors: 0.3,
            canary_errors: 0.3,
            slow: 0.005,
        },
        _ => HEALTHY,
    };
    for rate in [10.0, 100.0, 1000.0] {
        let outcomes = sim::runs(RUNS, 6, &scenario(rate, &outage));
        assert_eq!(
            count(&outcomes, Outcome::rolled_back),
            0,
            "{rate} req/s: {:?}",
            outcomes
                .iter()
                .filter(|o| o.rolled_back())
                .take(5)
                .collect::<Vec<_>>()
        );
        assert!(count(&outcomes, Outcome::promoted) >= 990, "{rate} req/s");
    }
}

#[test]
fn a_canary_failing_during_a_baseline_outage_is_rolled_back() {
    let both = |t: u64, _: u32, _: Option<u64>| match t {
        0..=59 => HEALTHY,
        _ => Rates {
            base_errors: 0.33,
            canary_errors: 1.0,
            slow: 0.005,
        },
    };
    for rate in [100.0, 1000.0] {
        let outcomes = sim::runs(RUNS, 7, &scenario(rate, &both));
        assert!(
            outcomes.iter().all(|o| o.rolled_back() && o.at <= 90),
            "{rate} req/s"
        );
    }
}

#[test]
fn a_bake_regression_from_half_a_percent_to_five_is_rolled_back() {
    let bake = |_: u64, weight: u32, _: Option<u64>| match weight {
        FULL => Rates {
            canary_errors: 0.05,
            ..HEALTHY
        },
        _ => HEALTHY,
    };
    for rate in [100.0, 1000.0] {
        let outcomes = sim::runs(RUNS, 8, &scenario(rate, &bake));
        let caught = count(&outcomes, |o| {
            o.rolled_back() && o.reason == Some(Reason::ErrorRegression)
        });
        assert!(caught >= 990, "{rate} req/s: {caught}");
    }
}

#[test]
fn a_three_times_regression_an_hour_into_a_paused_step_is_rolled_back_within_a_minute() {
    let late = |t: u64, _: u32, paused: Option<u64>| match paused {
        Some(p) if t >= p + 3_600 => Rates {
            canary_errors: 0.015,
            ..HEALTHY
        },
        _ => HEALTHY,
    };
    let mut s = scenario(1000.0, &late);
    s.pause_at_weight = Some(5_000);
    s.budget = 2 * 3_600;
    let outcomes = sim::runs(RUNS, 9, &s);
    for o in &outcomes {
        let onset = o.paused_at.expect("paused at 50 %") + 3_600;
        assert!(o.rolled_back(), "{o:?}");
        assert!(
            o.at <= onset + 60,
            "rolled back {} s after the onset",
            o.at - onset
        );
    }
}

#[test]
fn errors_in_bursts_on_both_pools_alike_rarely_roll_back_a_healthy_canary() {
    // One second in 100 both pools err at 20 %.
    let bursty = |t: u64, _: u32, _: Option<u64>| match (t * 2_654_435_761) % 100 {
        0 => Rates {
            base_errors: 0.2,
            canary_errors: 0.2,
            slow: 0.005,
        },
        _ => HEALTHY,
    };
    let outcomes = sim::runs(RUNS, 10, &scenario(1000.0, &bursty));
    let false_alarms = count(&outcomes, Outcome::rolled_back);
    assert!(false_alarms <= 5, "{false_alarms}/1000");
}

/// Straight to 100 %: the only reference is the baseline's traffic before the rollout.
fn one_step<'a>(rates: &'a dyn Fn(u64, u32, Option<u64>) -> Rates) -> Scenario<'a> {
    Scenario {
        plan: sim::plan(&[100], 300, 1_800),
        before: Some((180_000, 900)), // 100 req/s at 0.5 % for 30 minutes
        ..scenario(100.0, rates)
    }
}

#[test]
fn a_one_step_plan_is_judged_against_the_baselines_30_minutes_before_it() {
    let healthy = steady(HEALTHY);
    let promoted = sim::runs(RUNS, 12, &one_step(&healthy));
    assert!(count(&promoted, Outcome::promoted) >= 990);
    let broken = steady(Rates {
        canary_errors: 1.0,
        ..HEALTHY
    });
    let dead = sim::runs(RUNS, 13, &one_step(&broken));
    assert!(
        dead.iter().all(|o| o.rolled_back() && o.at <= 10),
        "hard failure against the reference"
    );
    let ten = steady(Rates {
        canary_errors: 0.05,
        ..HEALTHY
    });
    let worse = sim::runs(RUNS, 14, &one_step(&ten));
    let caught = count(&worse, |o| {
        o.rolled_back() && o.reason == Some(Reason::ErrorRegression)
    });
    assert!(caught >= 990, "{caught}");
}

/// False rollbacks of a healthy canary held at 50 % for `hours`, over `runs` runs: each run
/// that rolls back counts once (and stops).
fn false_alarms(rate: f64, runs: u64, hours: u64) -> (usize, f64) {
    let healthy = steady(HEALTHY);
    let mut s = scenario(rate, &healthy);
    s.pause_at_weight = Some(5_000);
    s.budget = hours * 3_600;
    let outcomes = sim::runs(runs, 11, &s);
    let alarms = count(&outcomes, Outcome::rolled_back);
    let held: u64 = outcomes
        .iter()
        .map(|o| o.at - o.paused_at.unwrap_or(o.at))
        .sum();
    (alarms, held as f64 / 3_600.0)
}

#[test]
fn a_healthy_canary_held_for_hours_is_rarely_rolled_back() {
    let (alarms, hours) = false_alarms(1000.0, 50, 4);
    assert!(alarms <= 1, "{alarms} false rollbacks in {hours:.0} h");
}

#[test]
fn simulation_table() {
    println!("| req/s | healthy 0.5 % promoted | healthy 2 % promoted | 10× rolled back | median s to roll back 10× | broken: slowest s | false rollbacks per held hour |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let hours = std::env::var("SIM_HOURS")
        .ok()
        .and_then(|h| h.parse().ok())
        .unwrap_or(1);
    for rate in [10.0, 100.0, 1000.0] {
        let (h, t) = (steady(HEALTHY), steady(TWO_PERCENT));
        let ten = steady(Rates {
            canary_errors: 0.05,
            ..HEALTHY
        });
        let broken = steady(Rates {
            canary_errors: 1.0,
            ..HEALTHY
        });
        let healthy = sim::runs(RUNS, 1, &scenario(rate, &h));
        let two = sim::runs(RUNS, 2, &scenario(rate, &t));
        let worse = sim::runs(RUNS, 3, &scenario(rate, &ten));
        let dead = sim::runs(RUNS, 5, &scenario(rate, &broken));
        let mut times: Vec<u64> = worse
            .iter()
            .filter(|o| o.rolled_back())
            .map(|o| o.at)
            .collect();
        times.sort_unstable();
        let (alarms, held) = false_alarms(rate, 20, hours);
        println!(
            "| {rate} | {}/1000 | {}/1000 | {}/1000 | {} | {} | {alarms} in {held:.0} h |",
            count(&healthy, Outcome::promoted),
            count(&two, Outcome::promoted),
            times.len(),
            times.get(times.len() / 2).copied().unwrap_or(0),
            dead.iter().map(|o| o.at).max().unwrap_or(0),
        );
    }
}
