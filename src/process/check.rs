//! `switchback check`: everything `serve` needs short of binding, and the one-line summary
//! of a valid configuration.

use std::path::Path;

use super::preflight::{certificates, load, preflight};
use crate::config::Config;
use crate::control::state::Store;

/// `switchback check [--json] [--connect]`: what to print and the exit status (0 valid, 1
/// not). With `connect`, the `[state] etcd` cluster must answer too.
pub fn run(path: &Path, json: bool, connect: bool) -> (String, u8) {
    let result = load(path)
        .map_err(|e| {
            let problems = e.problems.iter().map(ToString::to_string).collect();
            (e.to_string(), problems)
        })
        .and_then(|config| match preflight(path, &config) {
            Ok((_, mut warnings)) => {
                let mut summary = summary(path, &config);
                let mut plans = Vec::new();
                for (name, plan) in &config.plans {
                    match crate::control::rollout::pace::summary(name, plan) {
                        Ok(line) => plans.push(line),
                        Err(warning) => warnings.push(warning),
                    }
                }
                if connect {
                    match crate::control::describe_shared(path, &config) {
                        Ok(Some(line)) => plans.push(line),
                        Ok(None) => warnings.push("--connect: no [state] etcd to reach".into()),
                        Err(e) => {
                            let problem = format!("state.etcd: {e}");
                            return Err((problem.clone(), vec![problem]));
                        }
                    }
                }
                let certs = certificates(path, &config).map(|c| c.0).unwrap_or_default();
                for line in plans.into_iter().chain(certs) {
                    summary.push('\n');
                    summary.push_str(&line);
                }
                Ok((summary, warnings))
            }
            Err(problem) => Err((problem.clone(), vec![problem])),
        });
    match (result, json) {
        (Ok((summary, warnings)), false) => {
            for warning in &warnings {
                eprintln!("warning: {warning}");
            }
            (summary, 0)
        }
        (Ok((summary, warnings)), true) => (
            serde_json::json!({"ok": true, "summary": summary, "problems": [], "warnings": warnings})
                .to_string(),
            0,
        ),
        (Err((text, _)), false) => (format!("error: {text}"), 1),
        (Err((_, problems)), true) => (
            serde_json::json!({"ok": false, "problems": problems, "warnings": []}).to_string(),
            1,
        ),
    }
}

/// `ok: 2 pools, 3 backends (blue: 2, green: 1); split blue=90 green=10; listen 127.0.0.1:8080`
/// (and `; state <file>` with a state directory), for the file at `path`.
pub fn summary(path: &Path, config: &Config) -> String {
    let backends: usize = config.pools.values().map(|p| p.backends.len()).sum();
    let per_pool: Vec<String> = config
        .pools
        .iter()
        .map(|(name, pool)| format!("{name}: {}", pool.backends.len()))
        .collect();
    let mut listen: Vec<String> = config.proxy.listen.iter().map(|a| a.to_string()).collect();
    if let Some(tls) = &config.tls {
        listen.extend(tls.listen.iter().map(|a| format!("{a} (tls)")));
    }
    let state = match Store::of(path, config) {
        Store::Dir(file) => format!("; state {}", file.display()),
        Store::ConfigFile(_) => String::new(),
        Store::Etcd { prefix, .. } => format!(
            "; shared state on etcd under {} as replica {}",
            prefix.display(),
            config.shared.as_ref().map_or("", |s| s.replica.as_str())
        ),
    };
    let plans = match config.plans.len() {
        0 => String::new(),
        _ => format!(
            "; rollout plans {}",
            config.plans.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
    };
    format!(
        "ok: {} pool{}, {backends} backend{} ({}); split {}; listen {}{state}{plans}",
        config.pools.len(),
        plural(config.pools.len()),
        plural(backends),
        per_pool.join(", "),
        config.split,
        listen.join(", ")
    )
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
