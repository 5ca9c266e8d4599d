//! Recovering control state from the deployment log at start-up.

use crate::config::model::Split;
use crate::config::percent::{checked_split, percent_from_f64};
use crate::control::audit::{split_json, Entry, Outcome};

/// What the log says about the past.
#[derive(Debug, Default)]
pub(super) struct Recovered {
    /// Highest version ever recorded (0 for a new log).
    pub last_version: u64,
    /// The split live when the log was last written.
    pub last_split: Option<Split>,
    /// The split `rollback` should restore now.
    pub previous: Option<Split>,
}

/// Reads the newest applied entry that moved the split: if the file still has its `after`,
/// the previous split is its `before`; if the file was edited since, it is that `after`.
pub(super) fn recover(history: &[Entry], current: &Split) -> Recovered {
    let last_version = history.iter().map(|e| e.version).max().unwrap_or(0);
    let applied = history
        .iter()
        .rev()
        .filter(|e| e.outcome == Outcome::Applied);
    let last_split = applied.clone().next().and_then(|e| to_split(&e.after));
    let previous = applied
        .clone()
        .find(|e| e.before != e.after)
        .and_then(|e| {
            let ended = e.rollout.as_ref().filter(|r| !r.state.is_active());
            match ended {
                // A rollout ended here: rollback returns to the split before it, never a step.
                Some(rollout) if e.after == split_json(current) => to_split(&rollout.start_split),
                _ if e.after == split_json(current) => to_split(&e.before),
                _ => to_split(&e.after),
            }
        })
        .filter(|p| p.shares().keys().eq(current.shares().keys()));
    Recovered {
        last_version,
        last_split,
        previous,
    }
}

pub(super) fn to_split(
    json: &std::collections::BTreeMap<String, serde_json::Number>,
) -> Option<Split> {
    let shares = json
        .iter()
        .map(|(k, v)| Some((k.clone(), percent_from_f64(v.as_f64()?).ok()?)))
        .collect::<Option<_>>()?;
    checked_split(shares).ok()
}
