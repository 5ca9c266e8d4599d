//! `switchback ctl rollout …`: start, watch and steer rollouts.

use std::time::SystemTime;

use serde_json::{json, Value};

/// `ctl rollout` commands.
#[derive(Debug, clap::Subcommand)]
pub enum RolloutCommand {
    /// Start a rollout of a pool (its smoke checks first, when the plan has them).
    Start {
        /// The target pool.
        to: String,
        /// The plan (`[plans.<name>]`).
        #[arg(long, default_value = "default")]
        plan: String,
        /// The baseline pool (default: the one with the largest share).
        #[arg(long)]
        from: Option<String>,
        /// Report rollbacks instead of making them.
        #[arg(long)]
        dry_run: bool,
        /// Release version kept with the rollout.
        #[arg(long)]
        release_version: Option<String>,
        /// Release note kept with the rollout.
        #[arg(long)]
        release_note: Option<String>,
    },
    /// The current (or last) rollout: state, weight, step, time in step, both pools side by side.
    Status {
        /// Refresh every second until the rollout ends.
        #[arg(long)]
        watch: bool,
    },
    /// Hold still (no advance) until resumed.
    Pause,
    /// Go on from a pause.
    Resume,
    /// Skip to the next step.
    Promote {
        /// Straight to 100 %.
        #[arg(long)]
        full: bool,
    },
    /// Let a waiting manual gate through.
    Approve,
    /// End the rollout and send all traffic back to the baseline.
    Abort,
    /// Rollouts, newest first.
    History {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// The last decision as a sentence with its numbers.
    Explain,
}

impl RolloutCommand {
    /// Method, path and body of the admin call.
    pub(super) fn request(&self) -> (&'static str, String, Option<Value>) {
        let act =
            |action: &str, body: Value| ("POST", format!("/rollouts/current/{action}"), Some(body));
        match self {
            RolloutCommand::Start {
                to,
                plan,
                from,
                dry_run,
                release_version,
                release_note,
            } => {
                let mut body = json!({ "to": to, "plan": plan, "dry_run": dry_run });
                if let Some(from) = from {
                    body["from"] = json!(from);
                }
                if release_version.is_some() || release_note.is_some() {
                    body["release"] = json!({ "version": release_version, "note": release_note });
                }
                ("POST", "/rollouts".into(), Some(body))
            }
            RolloutCommand::Status { .. } | RolloutCommand::Explain => {
                ("GET", "/rollouts/current".into(), None)
            }
            RolloutCommand::History { limit } => ("GET", format!("/rollouts?limit={limit}"), None),
            RolloutCommand::Pause => act("pause", json!({})),
            RolloutCommand::Resume => act("resume", json!({})),
            RolloutCommand::Approve => act("approve", json!({})),
            RolloutCommand::Abort => act("abort", json!({})),
            RolloutCommand::Promote { full } => act("promote", json!({ "full": full })),
        }
    }

    /// The human summary of the server's answer.
    pub(super) fn format(&self, v: &Value) -> String {
        match self {
            RolloutCommand::History { .. } => history(v),
            RolloutCommand::Explain => explain(v),
            _ => status(v),
        }
    }
}

/// Whether a rollout JSON is still going.
pub(super) fn is_active(v: &Value) -> bool {
    matches!(
        v["state"].as_str(),
        Some("smoke" | "running" | "paused" | "waiting")
    )
}

fn seconds_since(stamp: &str) -> Option<u64> {
    let at = humantime::parse_rfc3339(stamp).ok()?;
    SystemTime::now()
        .duration_since(at)
        .ok()
        .map(|d| d.as_secs())
}

fn pool_line(name: &str, p: &Value) -> String {
    let (requests, errors) = (
        p["requests"].as_u64().unwrap_or(0),
        p["errors"].as_u64().unwrap_or(0),
    );
    let rate = if requests == 0 {
        0.0
    } else {
        errors as f64 * 100.0 / requests as f64
    };
    let p99 = p["p99_ms"]
        .as_f64()
        .map_or("–".into(), |v| format!("{v:.1} ms"));
    format!(
        "  {name:<10} {requests:>8} requests  {rate:>6.2} % errors ({errors})  {:>6} slow  p99 {p99}",
        p["slow"].as_u64().unwrap_or(0)
    )
}

fn status(v: &Value) -> String {
    let steps = v["steps"].as_array().map_or(0, Vec::len);
    let step = v["step"].as_u64().unwrap_or(0) + 1;
    let since = v["step_started"]
        .as_str()
        .or(v["updated"].as_str())
        .and_then(seconds_since)
        .unwrap_or(0);
    let reason = v["reason"]
        .as_str()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    let dry = if v["dry_run"] == true {
        " [dry run]"
    } else {
        ""
    };
    let mut out = format!(
        "rollout {}: {} → {} by plan {}{dry}\n{}{reason} at {} %, step {step} of {steps}, {since} s in step\n",
        v["id"],
        v["from"].as_str().unwrap_or("?"),
        v["to"].as_str().unwrap_or("?"),
        v["plan"].as_str().unwrap_or("?"),
        v["state"].as_str().unwrap_or("?"),
        v["weight"],
    );
    let e = &v["evidence"];
    for pool in [&v["to"], &v["from"]] {
        let name = pool.as_str().unwrap_or("?");
        if let Some(p) = e["pools"].get(name) {
            out.push_str(&pool_line(name, p));
            out.push('\n');
        }
    }
    if e.is_object() {
        out.push_str(&format!(
            "  evidence: errors {}, latency {} (rolls back at {})\n",
            e["error_ratio"], e["latency_ratio"], e["threshold"]
        ));
    }
    out.push_str(&format!("  {}", v["message"].as_str().unwrap_or("")));
    out
}

fn explain(v: &Value) -> String {
    let reason = v["reason"]
        .as_str()
        .map(|r| format!("[{r}] "))
        .unwrap_or_default();
    format!(
        "rollout {} is {}: {reason}{}",
        v["id"],
        v["state"].as_str().unwrap_or("?"),
        v["message"].as_str().unwrap_or("")
    )
}

fn history(v: &Value) -> String {
    let rows: Vec<String> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            format!(
                "{:>4}  {}  {} → {}  {:<11} {:>5} %  {}",
                r["id"],
                r["started"].as_str().unwrap_or(""),
                r["from"].as_str().unwrap_or("?"),
                r["to"].as_str().unwrap_or("?"),
                r["state"].as_str().unwrap_or("?"),
                r["weight"],
                r["message"].as_str().unwrap_or("")
            )
        })
        .collect();
    if rows.is_empty() {
        "no rollouts".into()
    } else {
        rows.join("\n")
    }
}
