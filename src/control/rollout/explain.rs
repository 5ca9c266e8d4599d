//! The sentences a rollout's decisions are explained with: what the log, the API and
//! `ctl rollout explain` show, always with the numbers that drove the decision.

use super::active::{Active, Move};
use super::analysis::{Compared, Counts, RATE_FLOOR};
use super::Reason;
use crate::config::model::format_percent;

/// `17300` → `17,300`.
pub(super) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `4.2 % (38/905)`.
fn rate(c: Counts) -> String {
    let pct = c.error_rate() * 100.0;
    let shown = if pct == 0.0 || pct >= 1.0 {
        format!("{pct:.1}")
    } else {
        format!("{pct:.2}")
    };
    format!(
        "{shown} % ({}/{})",
        thousands(c.errors),
        thousands(c.requests)
    )
}

fn at(active: &Active) -> String {
    format!("{} %", format_percent(active.weight))
}

/// Errors of both pools in the current step: `green 4.2 % (38/905) vs blue 0.41 % (71/17,300)`.
fn errors_side_by_side(active: &Active) -> String {
    let [b, c] = active.analysis.step;
    format!(
        "{} {} vs {} {}",
        active.record.to,
        rate(c),
        active.record.from,
        rate(b)
    )
}

/// The bake's errors against the reference: `bake: green 16.1 % (627/3,901) vs blue's 0.33 %
/// floor before the bake (0/2,410)`.
fn errors_against_reference(active: &Active) -> String {
    let a = &active.analysis;
    let reference = a.reference();
    let tested = reference.error_rate();
    let kind = if tested <= RATE_FLOOR {
        "floor"
    } else {
        "95 % bound"
    };
    let (what, when) = match active.weight {
        crate::config::model::FULL => ("bake", "before the bake"),
        _ => ("no baseline traffic", "before"),
    };
    format!(
        "{what}: {} {} vs {}'s {:.2} % {kind} {when} ({}/{})",
        active.record.to,
        rate(a.step[1]),
        active.record.from,
        tested * 100.0,
        thousands(reference.0.errors),
        thousands(reference.0.requests)
    )
}

/// Why an automatic rollback (or a dry run's report of one).
pub(super) fn regression(active: &Active, reason: Reason) -> String {
    let a = &active.analysis;
    let (from, to) = (&active.record.from, &active.record.to);
    let t = a.threshold();
    let sentence = match reason {
        Reason::ErrorRegression if a.compared == Compared::Reference => format!(
            "error regression at {}: {}, evidence {:.1} ≥ {t:.1}",
            at(active),
            errors_against_reference(active),
            a.error_evidence
        ),
        Reason::ErrorRegression => format!(
            "error regression at {}: {}, evidence {:.1} ≥ {t:.1}",
            at(active),
            errors_side_by_side(active),
            a.error_evidence
        ),
        Reason::LatencyRegression => {
            let [b, c] = a.step;
            let line = active.last.and_then(|l| l.slow_above_ms).unwrap_or(0.0);
            let p99 = active.last.map_or([None, None], |l| l.p99_ms);
            let ms = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.1} ms"));
            format!(
                "latency regression at {}: {to} {}/{} slower than {line:.1} ms (p99 {}) vs {from} {}/{} (p99 {}), evidence {:.1} ≥ {t:.1}",
                at(active),
                thousands(c.slow),
                thousands(c.requests),
                ms(p99[1]),
                thousands(b.slow),
                thousands(b.requests),
                ms(p99[0]),
                a.latency_evidence
            )
        }
        _ => {
            let [b, c] = a.window();
            format!(
                "hard failure at {}: {to} {} over the last {} s, {from} {}",
                at(active),
                rate(c),
                a.settings().hard_failure.window.as_secs(),
                rate(b)
            )
        }
    };
    if active.record.dry_run {
        format!("would roll back: {sentence} (dry run: nothing moved)")
    } else {
        sentence
    }
}

/// The target lost its last backend.
pub(super) fn no_backend(active: &Active) -> String {
    format!(
        "{} has no backend up at {}; rolling back to {}",
        active.record.to,
        at(active),
        active.record.from
    )
}

/// The baseline is failing too.
pub(super) fn degraded(active: &Active) -> String {
    let [b, _] = active.analysis.window();
    format!(
        "holding at {}: {} itself fails {} over the last {} s (its 30-minute level: {:.2} %); no advance until it recovers (the canary is still compared with it, and rolled back if worse)",
        at(active),
        active.record.from,
        rate(b),
        active.analysis.settings().hard_failure.window.as_secs(),
        active.analysis.baseline_level() * 100.0
    )
}

/// A step that could not decide in time.
pub(super) fn inconclusive(active: &Active, why: &str) -> String {
    format!(
        "step {} of {} at {} inconclusive after {}: {why}",
        active.record.step + 1,
        active.plan.steps.len(),
        at(active),
        crate::config::duration::format(active.plan.max_step_time)
    )
}

/// An inconclusive bake that stepped back to `weight`.
pub(super) fn stepped_back(inconclusive: &str, weight: u32) -> String {
    format!(
        "{inconclusive}; the bake is never held: stepped back to {} % and paused (resume to try the bake again, or roll back)",
        format_percent(weight)
    )
}

/// A planned move: the next step, a gate, promotion.
pub(super) fn moved(active: &Active, kind: Move) -> String {
    let steps = &active.plan.steps;
    let seen = if active.analysis.canary_total.requests > 0 {
        format!("; {}", errors_side_by_side(active))
    } else {
        String::new()
    };
    match kind {
        Move::Enter(k) | Move::Approve(k) => format!(
            "step {} of {}: {} at {} %{seen}",
            k + 1,
            steps.len(),
            active.record.to,
            format_percent(steps[k].weight)
        ),
        Move::Wait(k) => format!(
            "waiting for approval to enter step {} of {} ({} %){seen}",
            k + 1,
            steps.len(),
            format_percent(steps[k].weight)
        ),
        Move::Promote => format!(
            "promoted: {} at 100 % after {} steps{seen}",
            active.record.to,
            steps.len()
        ),
        _ => String::new(),
    }
}

/// An operator's action.
pub(super) fn operator(active: &Active, kind: Move) -> String {
    let (from, to) = (&active.record.from, &active.record.to);
    match kind {
        Move::Pause(_) => format!("paused by an operator at {}", at(active)),
        Move::Resume => format!("resumed by an operator at {}", at(active)),
        Move::Abort(_) => format!("aborted by an operator before any user request reached {to}"),
        Move::RollBack(_) => format!("rolled back by an operator: all traffic back to {from}"),
        Move::Promote => format!("promoted by an operator: {to} at 100 %"),
        other => format!("{} (by an operator)", moved(active, other)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_are_grouped() {
        assert_eq!(super::thousands(0), "0");
        assert_eq!(super::thousands(905), "905");
        assert_eq!(super::thousands(17_300), "17,300");
        assert_eq!(super::thousands(1_234_567), "1,234,567");
    }
}
