//! Per-pool policies: active health checks, passive ejection, slow start and what happens to
//! a pool's share when all its backends are down. The types and their validation live together
//! because each key's rules are read once, here.

use std::time::Duration;

use super::defaults;
use super::problem::{Problem, ProblemKind};
use super::raw::{RawHealthCheck, RawOutlier, RawPool};
use super::rules::{duration_key, out_of_range, wrong_type};

/// How a pool behaves when backends fail.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolPolicy {
    /// Active checks; `None` means every backend counts as passing.
    pub health_check: Option<HealthCheck>,
    /// Passive ejection.
    pub outlier: Outlier,
    /// Ramp-up window for a backend that comes back or is added; zero is off.
    pub slow_start: Duration,
    /// What happens to the pool's share when none of its backends can take requests.
    pub on_pool_down: OnPoolDown,
}

impl Default for PoolPolicy {
    fn default() -> Self {
        PoolPolicy {
            health_check: None,
            outlier: Outlier::default(),
            slow_start: defaults::SLOW_START,
            on_pool_down: OnPoolDown::Failover,
        }
    }
}

/// `on-pool-down`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnPoolDown {
    /// The share goes to the other pools that have a share and a backend up.
    Failover,
    /// The share is answered with 503.
    Fail,
}

/// What an active check does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeKind {
    /// `GET path`, healthy when the status is in `expect` (inclusive).
    Http {
        /// Request path.
        path: String,
        /// Healthy status range, inclusive.
        expect: (u16, u16),
    },
    /// A TCP connect.
    Tcp,
}

/// `[pools.<name>.health-check]`.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    /// The probe.
    pub kind: ProbeKind,
    /// Time between checks.
    pub interval: Duration,
    /// Time one check may take.
    pub timeout: Duration,
    /// Consecutive passes that bring a down backend up.
    pub healthy_threshold: u32,
    /// Consecutive failures that take an up backend down.
    pub unhealthy_threshold: u32,
}

/// `[pools.<name>.outlier]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Outlier {
    /// Consecutive connect failures or 5xx answers that eject; 0 is off.
    pub consecutive_failures: u32,
    /// First ejection's length; doubled for each further ejection.
    pub base_ejection: Duration,
    /// Cap on one ejection's length.
    pub max_ejection: Duration,
    /// Largest share of the pool ejected at once, percent.
    pub max_ejected_percent: u32,
}

impl Default for Outlier {
    fn default() -> Self {
        Outlier {
            consecutive_failures: defaults::OUTLIER_FAILURES,
            base_ejection: defaults::OUTLIER_BASE_EJECTION,
            max_ejection: defaults::OUTLIER_MAX_EJECTION,
            max_ejected_percent: defaults::OUTLIER_MAX_EJECTED_PERCENT,
        }
    }
}

/// Validates the policy keys of `[pools.<name>]` (`path` is `pools.<name>`).
pub(super) fn pool_policy(path: &str, raw: &RawPool, problems: &mut Vec<Problem>) -> PoolPolicy {
    let on_pool_down = match raw.on_pool_down.as_deref() {
        None | Some("failover") => OnPoolDown::Failover,
        Some("fail") => OnPoolDown::Fail,
        Some(other) => {
            problems.push(Problem::at(
                format!("{path}.on-pool-down"),
                ProblemKind::Syntax(format!("{other:?} is not \"failover\" or \"fail\"")),
            ));
            OnPoolDown::Failover
        }
    };
    PoolPolicy {
        health_check: raw
            .health_check
            .as_ref()
            .map(|h| health_check(&format!("{path}.health-check"), h, problems)),
        outlier: outlier(&format!("{path}.outlier"), &raw.outlier, problems),
        slow_start: duration_key(
            &format!("{path}.slow-start"),
            raw.slow_start.as_deref(),
            defaults::SLOW_START,
            true,
            problems,
        ),
        on_pool_down,
    }
}

fn health_check(path: &str, raw: &RawHealthCheck, problems: &mut Vec<Problem>) -> HealthCheck {
    let kind = match raw.kind.as_deref().unwrap_or(defaults::HEALTH_TYPE) {
        "http" => ProbeKind::Http {
            path: probe_path(
                &format!("{path}.path"),
                raw.path.as_deref().unwrap_or(defaults::HEALTH_PATH),
                problems,
            ),
            expect: status_range(
                &format!("{path}.expect"),
                raw.expect.as_ref(),
                defaults::HEALTH_EXPECT,
                problems,
            ),
        },
        "tcp" => ProbeKind::Tcp,
        other => {
            problems.push(Problem::at(
                format!("{path}.type"),
                ProblemKind::Syntax(format!("{other:?} is not \"http\" or \"tcp\"")),
            ));
            ProbeKind::Tcp
        }
    };
    let threshold = |key: &str, value: Option<i64>, default: u32, p: &mut Vec<Problem>| match value
    {
        None => default,
        Some(n) if (1..=100).contains(&n) => n as u32,
        Some(n) => {
            p.push(out_of_range(&format!("{path}.{key}"), n, 1, 100));
            default
        }
    };
    let interval = duration_key(
        &format!("{path}.interval"),
        raw.interval.as_deref(),
        defaults::HEALTH_INTERVAL,
        false,
        problems,
    );
    let timeout = duration_key(
        &format!("{path}.timeout"),
        raw.timeout.as_deref(),
        defaults::HEALTH_TIMEOUT.min(interval),
        false,
        problems,
    );
    HealthCheck {
        kind,
        interval,
        timeout,
        healthy_threshold: threshold(
            "healthy-threshold",
            raw.healthy_threshold,
            defaults::HEALTHY_THRESHOLD,
            problems,
        ),
        unhealthy_threshold: threshold(
            "unhealthy-threshold",
            raw.unhealthy_threshold,
            defaults::UNHEALTHY_THRESHOLD,
            problems,
        ),
    }
}

/// A request path for a probe, at config key `key`.
pub(super) fn probe_path(key: &str, text: &str, problems: &mut Vec<Problem>) -> String {
    if !text.starts_with('/') || http::uri::PathAndQuery::try_from(text).is_err() {
        problems.push(Problem::at(
            key,
            ProblemKind::Syntax(format!(
                "{text:?} is not a request path such as \"/healthz\""
            )),
        ));
    }
    text.to_string()
}

/// A status or range at config key `key`: `200` or `"200-399"`.
pub(super) fn status_range(
    key: &str,
    value: Option<&toml::Value>,
    default: (u16, u16),
    problems: &mut Vec<Problem>,
) -> (u16, u16) {
    let bad = |p: &mut Vec<Problem>, text: String| {
        p.push(Problem::at(
            key,
            ProblemKind::Syntax(format!(
                "{text} is not a status code or range such as \"200-399\" (100 to 599)"
            )),
        ));
        default
    };
    let status = |n: i64| u16::try_from(n).ok().filter(|c| (100..=599).contains(c));
    match value {
        None => default,
        Some(toml::Value::Integer(n)) => match status(*n) {
            Some(code) => (code, code),
            None => bad(problems, n.to_string()),
        },
        Some(toml::Value::String(text)) => {
            let range = text.split_once('-').and_then(|(lo, hi)| {
                let (lo, hi) = (
                    status(lo.trim().parse().ok()?)?,
                    status(hi.trim().parse().ok()?)?,
                );
                (lo <= hi).then_some((lo, hi))
            });
            match range {
                Some(range) => range,
                None => bad(problems, format!("{text:?}")),
            }
        }
        Some(other) => {
            problems.push(wrong_type(key, "a status code or a range string", other));
            default
        }
    }
}

fn outlier(path: &str, raw: &RawOutlier, problems: &mut Vec<Problem>) -> Outlier {
    let consecutive_failures = match raw.consecutive_failures {
        None => defaults::OUTLIER_FAILURES,
        Some(n) if (0..=1000).contains(&n) => n as u32,
        Some(n) => {
            problems.push(out_of_range(
                &format!("{path}.consecutive-failures"),
                n,
                0,
                1000,
            ));
            defaults::OUTLIER_FAILURES
        }
    };
    let max_ejected_percent = match raw.max_ejected_percent {
        None => defaults::OUTLIER_MAX_EJECTED_PERCENT,
        Some(n) if (0..=100).contains(&n) => n as u32,
        Some(n) => {
            problems.push(out_of_range(
                &format!("{path}.max-ejected-percent"),
                n,
                0,
                100,
            ));
            defaults::OUTLIER_MAX_EJECTED_PERCENT
        }
    };
    let base_ejection = duration_key(
        &format!("{path}.base-ejection"),
        raw.base_ejection.as_deref(),
        defaults::OUTLIER_BASE_EJECTION,
        false,
        problems,
    );
    let max_ejection = duration_key(
        &format!("{path}.max-ejection"),
        raw.max_ejection.as_deref(),
        defaults::OUTLIER_MAX_EJECTION.max(base_ejection),
        false,
        problems,
    );
    if max_ejection < base_ejection {
        problems.push(Problem::at(
            format!("{path}.max-ejection"),
            ProblemKind::Syntax("must not be shorter than base-ejection".into()),
        ));
    }
    Outlier {
        consecutive_failures,
        base_ejection,
        max_ejection,
        max_ejected_percent,
    }
}
