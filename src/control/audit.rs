//! The deployment log: an append-only JSON-lines file with one entry per accepted or rejected
//! change. Each append is flushed to disk before the caller answers anyone. The file rotates
//! by size (`[log] deployments-max-size`, keeping `deployments-keep` old files as `.1`, `.2`,
//! …); readers go through every file, newest first. See [`file`].
//!
//! ```json
//! {"time":"2026-11-22T21:00:00.000Z","version":4,"actor":"alice","action":"switch",
//!  "before":{"blue":90,"green":10},"after":{"blue":0,"green":100},"outcome":"applied","message":""}
//! ```

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::config::model::{format_percent, Split};

mod file;

pub use file::{AuditError, AuditLog, Forward, Rotation, MAX_MESSAGE};

/// What kind of change an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// The proxy started with the file's configuration.
    Start,
    /// `PUT /split`.
    Split,
    /// `POST /switch`.
    Switch,
    /// `POST /rollback`.
    Rollback,
    /// The config file changed (or SIGHUP) and was applied.
    Reload,
    /// A change was refused; the live configuration stayed.
    Rejected,
    /// Every backend of a pool stopped taking requests; its share fails over or fails.
    PoolDown,
    /// A pool that was down has a backend taking requests again.
    PoolUp,
    /// `POST /backends/{pool}/{addr}/drain`.
    Drain,
    /// `POST /backends/{pool}/{addr}/undrain`.
    Undrain,
    /// A rollout started (the target goes to 0 % for its smoke checks).
    RolloutStart,
    /// A rollout entered its next step.
    RolloutStep,
    /// A rollout paused.
    RolloutPause,
    /// A rollout resumed.
    RolloutResume,
    /// A rollout waits at a manual gate.
    RolloutWait,
    /// A gate was approved and its step entered.
    RolloutApprove,
    /// A rollout ended with the target at 100 %.
    RolloutPromoted,
    /// A rollout rolled back (or, in a dry run, would have: then nothing moved).
    RolloutRollback,
    /// A rollout ended before any user request reached the target.
    RolloutAbort,
    /// Another replica runs the rollout's engine from here (shared state).
    RolloutHandover,
}

impl Action {
    /// The name used in the log.
    pub fn name(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Split => "split",
            Action::Switch => "switch",
            Action::Rollback => "rollback",
            Action::Reload => "reload",
            Action::Rejected => "rejected",
            Action::PoolDown => "pool-down",
            Action::PoolUp => "pool-up",
            Action::Drain => "drain",
            Action::Undrain => "undrain",
            Action::RolloutStart => "rollout-start",
            Action::RolloutStep => "rollout-step",
            Action::RolloutPause => "rollout-pause",
            Action::RolloutResume => "rollout-resume",
            Action::RolloutWait => "rollout-wait",
            Action::RolloutApprove => "rollout-approve",
            Action::RolloutPromoted => "rollout-promoted",
            Action::RolloutRollback => "rollout-rollback",
            Action::RolloutAbort => "rollout-abort",
            Action::RolloutHandover => "rollout-handover",
        }
    }
}

/// How a change ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Live and on disk.
    Applied,
    /// Refused (invalid, stale, or could not be persisted); nothing changed.
    Rejected,
}

/// One line of the deployment log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    /// The live version after this entry (unchanged for a rejection).
    pub version: u64,
    /// Who: a token name, `file`, `signal`, `serve`.
    pub actor: String,
    /// What kind of change.
    pub action: Action,
    /// Split before, pool → percent.
    pub before: BTreeMap<String, serde_json::Number>,
    /// Split after (equal to `before` for a rejection).
    pub after: BTreeMap<String, serde_json::Number>,
    /// Applied or rejected.
    pub outcome: Outcome,
    /// Why it was rejected, or notes such as "needs restart".
    pub message: String,
    /// The rollout as this entry left it (rollout actions only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Box<crate::control::rollout::Rollout>>,
    /// The entry's place in the log, unique per entry (the versions of entries that change
    /// nothing repeat, so they cannot order the log): in the shared log with shared state, else
    /// in this replica's file (1, 2, …; entries written before it existed have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// With shared state: the replica that wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
}

impl Entry {
    /// An entry stamped now.
    pub fn now(version: u64, actor: &str, action: Action, before: &Split, after: &Split) -> Entry {
        Entry {
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            version,
            actor: actor.to_string(),
            action,
            before: split_json(before),
            after: split_json(after),
            outcome: Outcome::Applied,
            message: String::new(),
            rollout: None,
            seq: None,
            replica: None,
        }
    }
}

/// A split as pool → percent, whole numbers without a decimal point.
pub fn split_json(split: &Split) -> BTreeMap<String, serde_json::Number> {
    split
        .shares()
        .iter()
        .map(|(name, bp)| (name.clone(), percent_number(*bp)))
        .collect()
}

/// Basis points as a JSON percent number: 1000 → `10`, 5 → `0.05`.
pub fn percent_number(bp: u32) -> serde_json::Number {
    format_percent(bp)
        .parse()
        .expect("a formatted percentage is a JSON number")
}
