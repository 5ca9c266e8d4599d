//! `[plans.<name>.analysis]`: the canary analysis settings and their validation.

use std::time::Duration;

use crate::config::defaults;
use crate::config::problem::{Problem, ProblemKind};
use crate::config::raw::RawAnalysis;
use crate::config::rules::{duration_key, out_of_range, wrong_type};

/// `[plans.<name>.analysis]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnalysisSettings {
    /// The canary may have up to this many times the baseline's error rate (default 1.2).
    pub tolerated_ratio: f64,
    /// The regression the test is built to detect (default 3.0).
    pub detect_ratio: f64,
    /// Sets the rollback threshold ln(1/α) of both sequential tests (default 0.001).
    pub alpha: f64,
    /// An optional absolute ceiling: to advance, the canary's 95 % upper bound on its error
    /// rate must also be below this (default: none; the gate is relative to the baseline).
    pub max_error_rate: Option<f64>,
    /// A canary request is slow above max(baseline p99 × (1 + margin), baseline p99 + 5 ms)
    /// (default 0.10).
    pub latency_margin: f64,
    /// Immediate rollback of a broken canary.
    pub hard_failure: HardFailure,
}

/// `hard-failure = { error-rate, min-requests, window }`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HardFailure {
    /// Canary error rate that is a hard failure (default 0.5).
    pub error_rate: f64,
    /// Least canary requests in the window (default 10).
    pub min_requests: u64,
    /// The window (default 10 s).
    pub window: Duration,
}

impl Default for AnalysisSettings {
    fn default() -> Self {
        AnalysisSettings {
            tolerated_ratio: defaults::TOLERATED_RATIO,
            detect_ratio: defaults::DETECT_RATIO,
            alpha: defaults::ALPHA,
            max_error_rate: None,
            latency_margin: defaults::LATENCY_MARGIN,
            hard_failure: HardFailure {
                error_rate: defaults::HARD_FAILURE_RATE,
                min_requests: defaults::HARD_FAILURE_MIN_REQUESTS,
                window: defaults::HARD_FAILURE_WINDOW,
            },
        }
    }
}

pub(super) fn analysis(
    path: &str,
    raw: &RawAnalysis,
    problems: &mut Vec<Problem>,
) -> AnalysisSettings {
    let d = AnalysisSettings::default();
    let mut number = |key: &str, value: Option<&toml::Value>, default: f64, lo: f64, hi: f64| {
        number(&format!("{path}.{key}"), value, default, (lo, hi), problems)
    };
    let tolerated_ratio = number(
        "tolerated-ratio",
        raw.tolerated_ratio.as_ref(),
        d.tolerated_ratio,
        1.0,
        100.0,
    );
    let detect_ratio = number(
        "detect-ratio",
        raw.detect_ratio.as_ref(),
        d.detect_ratio,
        1.0,
        1000.0,
    );
    let alpha = number("alpha", raw.alpha.as_ref(), d.alpha, 1e-9, 0.5);
    let max_error_rate = raw
        .max_error_rate
        .as_ref()
        .map(|v| number("max-error-rate", Some(v), 1.0, 1e-6, 1.0));
    let hard = raw.hard_failure.as_ref();
    let error_rate = number(
        "hard-failure.error-rate",
        hard.and_then(|h| h.error_rate.as_ref()),
        d.hard_failure.error_rate,
        1e-6,
        1.0,
    );
    if detect_ratio <= tolerated_ratio {
        problems.push(Problem::at(
            format!("{path}.detect-ratio"),
            ProblemKind::Syntax(format!(
                "must be more than tolerated-ratio ({tolerated_ratio})"
            )),
        ));
    }
    let min_requests = match hard.and_then(|h| h.min_requests) {
        None => d.hard_failure.min_requests,
        Some(n) if (1..=1_000_000).contains(&n) => n as u64,
        Some(n) => {
            let key = format!("{path}.hard-failure.min-requests");
            problems.push(out_of_range(&key, n, 1, 1_000_000));
            1
        }
    };
    let window = duration_key(
        &format!("{path}.hard-failure.window"),
        hard.and_then(|h| h.window.as_deref()),
        d.hard_failure.window,
        false,
        problems,
    );
    if window > Duration::from_secs(3600) || window < Duration::from_secs(1) {
        problems.push(Problem::at(
            format!("{path}.hard-failure.window"),
            ProblemKind::Syntax("must be from 1s to 1h".into()),
        ));
    }
    AnalysisSettings {
        tolerated_ratio,
        detect_ratio,
        alpha,
        max_error_rate,
        latency_margin: margin(
            &format!("{path}.latency-margin"),
            raw.latency_margin.as_deref(),
            problems,
        ),
        hard_failure: HardFailure {
            error_rate,
            min_requests,
            window,
        },
    }
}

/// A number in `range` (inclusive), integer or float.
fn number(
    key: &str,
    value: Option<&toml::Value>,
    default: f64,
    (lo, hi): (f64, f64),
    problems: &mut Vec<Problem>,
) -> f64 {
    let n = match value {
        None => return default,
        Some(toml::Value::Integer(i)) => *i as f64,
        Some(toml::Value::Float(f)) => *f,
        Some(other) => {
            problems.push(wrong_type(key, "a number", other));
            return default;
        }
    };
    if !(n.is_finite() && (lo..=hi).contains(&n)) {
        problems.push(Problem::at(
            key,
            ProblemKind::OutOfRange {
                value: n.to_string(),
                min: lo.to_string(),
                max: hi.to_string(),
            },
        ));
        return default;
    }
    n
}

/// `"10%"` → 0.10; 0 % to 1000 %.
fn margin(key: &str, value: Option<&str>, problems: &mut Vec<Problem>) -> f64 {
    let Some(text) = value else {
        return defaults::LATENCY_MARGIN;
    };
    match text
        .trim()
        .strip_suffix('%')
        .and_then(|n| n.trim().parse::<f64>().ok())
    {
        Some(p) if p.is_finite() && (0.0..=1000.0).contains(&p) => p / 100.0,
        _ => {
            problems.push(Problem::at(
                key,
                ProblemKind::Syntax(format!(
                    "{text:?} is not a percentage such as \"10%\" (0% to 1000%)"
                )),
            ));
            defaults::LATENCY_MARGIN
        }
    }
}
