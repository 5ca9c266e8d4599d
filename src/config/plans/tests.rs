use std::time::Duration;

use super::{OnInconclusive, Plan};
use crate::config::{parse, Problem};

const BASE: &str = r#"
[pools.blue]
backends = ["127.0.0.1:1"]
[pools.green]
backends = ["127.0.0.1:2"]
[split]
blue = 100
"#;

fn plan(text: &str) -> Result<Plan, Vec<Problem>> {
    let config = parse(&format!("{BASE}\n{text}"))?;
    Ok((*config.plans["p"]).clone())
}

fn problems(text: &str) -> Vec<String> {
    plan(text)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn a_plan_with_only_steps_takes_every_default() {
    let plan =
        plan("[plans.p]\nsteps = [{ weight = 10, hold = \"1m\" }, { weight = 100 }]").unwrap();
    assert_eq!(plan.steps.len(), 2);
    assert_eq!(plan.steps[0].weight, 1000);
    assert_eq!(plan.steps[0].hold, Duration::from_secs(60));
    assert_eq!(plan.steps[0].min_requests, 100);
    assert!(!plan.steps[1].gate);
    assert_eq!(plan.max_step_time, Duration::from_secs(1800));
    assert_eq!(plan.on_inconclusive, OnInconclusive::Pause);
    assert!(plan.smoke.is_none());
    assert_eq!(plan.analysis, super::AnalysisSettings::default());
}

#[test]
fn the_issue_example_plan_is_accepted_as_written() {
    let plan = plan(
        r#"
[plans.p]
steps = [
  { weight = 1,   hold = "30s", min-requests = 200 },
  { weight = 10,  hold = "1m" },
  { weight = 50,  hold = "2m", gate = "manual" },
  { weight = 100, hold = "5m" },
]
max-step-time = "30m"
on-inconclusive = "rollback"
[plans.p.smoke]
path = "/healthz"
expect-status = "200-299"
expect-body = "ok"
timeout = "2s"
repeat = 3
host = "app.example.com"
[plans.p.analysis]
tolerated-ratio = 1.2
detect-ratio = 3.0
alpha = 0.001
max-error-rate = 0.01
latency-margin = "10%"
hard-failure = { error-rate = 0.5, min-requests = 10, window = "10s" }
"#,
    )
    .unwrap();
    assert!(plan.steps[2].gate);
    assert_eq!(plan.on_inconclusive, OnInconclusive::Rollback);
    let smoke = plan.smoke.unwrap();
    assert_eq!(smoke.expect_status, (200, 299));
    assert_eq!(smoke.expect_body.as_deref(), Some("ok"));
    assert_eq!(smoke.host.as_deref(), Some("app.example.com"));
}

#[test]
fn every_bad_plan_key_is_reported_with_its_path() {
    let found = problems(
        r#"
[plans.p]
steps = [{ weight = 50, gate = "auto" }, { weight = 10 }, { weight = 0 }]
on-inconclusive = "ignore"
max-step-time = "0s"
[plans.p.smoke]
path = "healthz"
repeat = 0
expect-status = "600"
[plans.p.analysis]
tolerated-ratio = 4
detect-ratio = 3
alpha = 0.9
latency-margin = "ten"
hard-failure = { error-rate = 2, min-requests = 0, window = "0s" }
"#,
    );
    let text = found.join("\n");
    for needle in [
        "plans.p.steps[0].gate",
        "plans.p.steps[1].weight: weights must increase",
        "plans.p.steps[2].weight: must be more than 0",
        "plans.p.on-inconclusive",
        "plans.p.max-step-time",
        "plans.p.smoke.path",
        "plans.p.smoke.repeat",
        "plans.p.smoke.expect-status",
        "plans.p.analysis.detect-ratio",
        "plans.p.analysis.alpha",
        "plans.p.analysis.latency-margin",
        "plans.p.analysis.hard-failure.error-rate",
        "plans.p.analysis.hard-failure.min-requests",
        "plans.p.analysis.hard-failure.window",
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
}

#[test]
fn a_plan_must_end_at_100_and_hold_less_than_its_step_limit() {
    let text =
        problems("[plans.p]\nsteps = [{ weight = 50, hold = \"2h\" }]\nmax-step-time = \"1h\"")
            .join("\n");
    assert!(
        text.contains("plans.p.steps[0].weight: the last step must be 100"),
        "{text}"
    );
    assert!(
        text.contains("plans.p.steps[0].hold: must be shorter than max-step-time"),
        "{text}"
    );
    let text = problems("[plans.p]\nsteps = []").join("\n");
    assert!(
        text.contains("plans.p.steps: must list at least one entry"),
        "{text}"
    );
}

#[test]
fn unknown_plan_keys_are_refused() {
    let text =
        problems("[plans.p]\nsteps = [{ weight = 100, wait = \"1s\" }]\ncolour = 1").join("\n");
    assert!(text.contains("plans.p.steps"), "{text}");
    assert!(text.contains("plans.p.colour"), "{text}");
}
