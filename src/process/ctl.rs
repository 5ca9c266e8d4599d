//! `switchback ctl`: a client of the admin API, human-readable by default, `--json` for
//! scripts. Any error exits non-zero with the server's message.

use std::path::PathBuf;

use serde_json::{json, Map, Value};

use crate::data::tokens::Tokens;

mod client;
mod rollout;
use client::call;
pub use rollout::RolloutCommand;

/// Options shared by every `ctl` command.
#[derive(Debug, clap::Args)]
pub struct CtlArgs {
    /// Admin API base URL.
    #[arg(
        long,
        env = "SWITCHBACK_ADMIN",
        default_value = "http://127.0.0.1:9900"
    )]
    pub admin: String,
    /// Token file (`name:token` lines; the first token is used) for write commands.
    #[arg(long, env = "SWITCHBACK_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Print the server's JSON instead of a summary.
    #[arg(long)]
    pub json: bool,
    /// CA certificates (PEM) to trust for an `https://` admin URL, besides the system's.
    #[arg(long, env = "SWITCHBACK_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// For split, switch and rollback with shared state: answer once every replica has
    /// applied the change (at most 5 s; then the replicas still behind are listed).
    #[arg(long)]
    pub wait: bool,
    /// Give up when the admin API has not answered within this (`"5s"`, `"500ms"`).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
    /// What to do.
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// `ctl` commands.
#[derive(Debug, clap::Subcommand)]
pub enum CtlCommand {
    /// Version, split, previous split, pools and backends.
    Status,
    /// With shared state: every replica, the version it applied, and which one leads.
    Replicas,
    /// Set the whole split, e.g. `split blue=90 green=10` (pools left out get 0).
    Split {
        /// `pool=percent` pairs.
        #[arg(required = true)]
        shares: Vec<String>,
        /// Apply only if this version is still live.
        #[arg(long)]
        if_match: Option<u64>,
    },
    /// Send 100 % of traffic to one pool.
    Switch {
        /// The pool.
        pool: String,
    },
    /// Restore the split that was live before the last split change.
    Rollback,
    /// Stop sending new requests to one backend; those in flight finish.
    Drain {
        /// The pool.
        pool: String,
        /// The backend, as written in the config (`host:port`).
        backend: String,
    },
    /// Let a drained backend take requests again.
    Undrain {
        /// The pool.
        pool: String,
        /// The backend, as written in the config (`host:port`).
        backend: String,
    },
    /// Automated rollouts: start, status (--watch), pause, resume, promote, approve, abort,
    /// history, explain.
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// The deployment log, newest first.
    History {
        /// How many entries.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

/// Why a `ctl` command failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// The admin API could not be reached.
    #[error("cannot reach the admin API at {url}: {reason}")]
    Unreachable {
        /// The base URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The server answered with an error.
    #[error("{status}: {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// The server's `error` message.
        message: String,
    },
}

/// Runs one `ctl` command and returns what to print.
///
/// # Errors
/// [`CtlError`] with the server's message.
pub fn run(args: &CtlArgs) -> Result<String, CtlError> {
    if let CtlCommand::Rollout(RolloutCommand::Status { watch: true }) = &args.command {
        return watch(args);
    }
    once(args)
}

/// `ctl rollout status --watch`: prints the rollout every second until it ends.
fn watch(args: &CtlArgs) -> Result<String, CtlError> {
    loop {
        let value = fetch(args)?;
        let out = render(args, &value);
        if !rollout::is_active(&value) {
            return Ok(out);
        }
        println!("{out}\n");
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

fn once(args: &CtlArgs) -> Result<String, CtlError> {
    let value = fetch(args)?;
    Ok(render(args, &value))
}

fn fetch(args: &CtlArgs) -> Result<Value, CtlError> {
    let (method, path, body) = match &args.command {
        CtlCommand::Rollout(r) => r.request(),
        CtlCommand::Status => ("GET", "/status".to_string(), None),
        CtlCommand::Replicas => ("GET", "/replicas".to_string(), None),
        CtlCommand::History { limit } => ("GET", format!("/history?limit={limit}"), None),
        CtlCommand::Split { shares, .. } => ("PUT", "/split".into(), Some(split_body(shares)?)),
        CtlCommand::Switch { pool } => ("POST", "/switch".into(), Some(json!({ "to": pool }))),
        CtlCommand::Rollback => ("POST", "/rollback".into(), Some(json!({}))),
        CtlCommand::Drain { pool, backend } => (
            "POST",
            format!("/backends/{pool}/{backend}/drain"),
            Some(json!({})),
        ),
        CtlCommand::Undrain { pool, backend } => (
            "POST",
            format!("/backends/{pool}/{backend}/undrain"),
            Some(json!({})),
        ),
    };
    let writes_split = matches!(
        args.command,
        CtlCommand::Split { .. } | CtlCommand::Switch { .. } | CtlCommand::Rollback
    );
    let path = match args.wait && writes_split {
        true => format!("{path}?wait=all"),
        false => path,
    };
    // `--wait` may take the server's whole 5 s: the answer is worth waiting for.
    let timeout = match args.wait {
        true => args.timeout.max(std::time::Duration::from_secs(8)),
        false => args.timeout,
    };
    let mut headers = Vec::new();
    if let CtlCommand::Split {
        if_match: Some(v), ..
    } = &args.command
    {
        headers.push(("if-match", v.to_string()));
    }
    if let (Some(_), Some(file)) = (&body, &args.token_file) {
        let tokens = Tokens::load(file).map_err(|e| CtlError::Usage(e.to_string()))?;
        let token = String::from_utf8_lossy(tokens.first_token()).into_owned();
        headers.push(("authorization", format!("Bearer {token}")));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CtlError::Usage(e.to_string()))?;
    let exchange = call(
        &args.admin,
        args.ca_file.as_deref(),
        method,
        &path,
        body,
        &headers,
    );
    let value = runtime
        .block_on(async { tokio::time::timeout(timeout, exchange).await })
        .map_err(|_| CtlError::Unreachable {
            url: args.admin.clone(),
            reason: format!("no answer within {}", humantime::format_duration(timeout)),
        })??;
    Ok(value)
}

fn render(args: &CtlArgs, value: &Value) -> String {
    if args.json {
        return serde_json::to_string_pretty(value).unwrap_or_default();
    }
    let value = value.clone();
    match &args.command {
        CtlCommand::Status => format_status(&value),
        CtlCommand::History { .. } => format_history(&value),
        CtlCommand::Drain { .. } | CtlCommand::Undrain { .. } => format_drain(&value),
        CtlCommand::Rollout(r) => r.format(&value),
        CtlCommand::Replicas => format_replicas(&value),
        _ => format_applied(&value),
    }
}

fn split_body(shares: &[String]) -> Result<Value, CtlError> {
    let mut map = Map::new();
    for pair in shares {
        let (pool, percent) = pair.split_once('=').ok_or_else(|| {
            CtlError::Usage(format!("{pair:?}: expected pool=percent, e.g. blue=90"))
        })?;
        let number: f64 = percent
            .parse()
            .map_err(|_| CtlError::Usage(format!("{pair:?}: {percent:?} is not a number")))?;
        map.insert(pool.to_string(), json!(number));
    }
    Ok(Value::Object(map))
}

fn split_text(split: &Value) -> String {
    match split.as_object() {
        Some(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
        None => "none".into(),
    }
}

fn format_applied(v: &Value) -> String {
    let mut out = format!(
        "version {}: {} (was {})",
        v["version"],
        split_text(&v["split"]),
        split_text(&v["previous_split"])
    );
    if v["local"] == true {
        out.push_str(
            "\nlocal only: the shared state is unreachable; written there when it answers again",
        );
    }
    if let Some(applied) = v["replicas"].as_array() {
        out.push_str(&format!("\napplied on all {} replicas", applied.len()));
    }
    if let Some(behind) = v["behind"].as_array() {
        let names: Vec<String> = behind
            .iter()
            .map(|r| {
                format!(
                    "{} (at {})",
                    r["replica"].as_str().unwrap_or("?"),
                    r["version"]
                )
            })
            .collect();
        out.push_str(&format!(
            "\nnot applied within 5 s by: {}",
            names.join(", ")
        ));
    }
    out
}

/// `ctl replicas`: one line per replica.
fn format_replicas(v: &Value) -> String {
    let store = &v["store"];
    let mut out = format!(
        "store {}{}, version {}",
        store["kind"].as_str().unwrap_or("?"),
        match store["connected"].as_bool() {
            Some(false) => " (unreachable)",
            _ => "",
        },
        v["version"]
    );
    for r in v["replicas"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "\n{:<16} version {:<6} lag {}{}{}",
            r["replica"].as_str().unwrap_or("?"),
            r["version"],
            r["lag"],
            if r["leader"] == true { "  leader" } else { "" },
            r["mismatch"]
                .as_str()
                .map(|m| format!("  mismatch: {m}"))
                .unwrap_or_default()
        ));
    }
    out
}

fn format_drain(v: &Value) -> String {
    let (state, changed) = match (v["drained"].as_bool(), v["changed"].as_bool()) {
        (Some(true), Some(true)) => ("drained", ""),
        (Some(true), _) => ("drained", " (already)"),
        (_, Some(true)) => ("undrained", ""),
        _ => ("undrained", " (already)"),
    };
    format!(
        "{} of pool {}: {state}{changed}, {} in flight",
        v["backend"].as_str().unwrap_or("?"),
        v["pool"].as_str().unwrap_or("?"),
        v["inflight"]
    )
}

fn format_status(v: &Value) -> String {
    let mut out = format!(
        "version {}\nsplit: {}\nprevious: {}\n",
        v["version"],
        split_text(&v["split"]),
        split_text(&v["previous_split"])
    );
    if let Some(pools) = v["pools"].as_object() {
        for (name, pool) in pools {
            let down = if pool["up"] == false { ", DOWN" } else { "" };
            out.push_str(&format!("pool {name} ({}%{down}):\n", pool["share"]));
            for b in pool["backends"].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "  {} weight {} {} ({} in flight)\n",
                    b["addr"].as_str().unwrap_or("?"),
                    b["weight"],
                    b["state"].as_str().unwrap_or("?"),
                    b["inflight"]
                ));
            }
        }
    }
    out.trim_end().to_string()
}

fn format_history(v: &Value) -> String {
    let rows: Vec<String> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "{}  v{:<4} {:<8} {:<9} {} -> {}  {}{}",
                e["time"].as_str().unwrap_or(""),
                e["version"],
                e["actor"].as_str().unwrap_or(""),
                e["action"].as_str().unwrap_or(""),
                split_text(&e["before"]),
                split_text(&e["after"]),
                e["outcome"].as_str().unwrap_or(""),
                e["message"]
                    .as_str()
                    .filter(|m| !m.is_empty())
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            )
        })
        .collect();
    if rows.is_empty() {
        "no entries".into()
    } else {
        rows.join("\n")
    }
}
