//! `switchback check`: everything `serve` needs short of binding, and the one-line summary
//! of a valid configuration.

use std::path::Path;
use std::sync::Arc;

use crate::admin::auth::Tokens;
use crate::config::Config;
use crate::control::state::Store;

/// What `serve` needs beyond a valid file, checked without binding anything (`serve` runs it
/// too, so both refuse the same): the override token file, and with `[state] dir` a writable
/// state directory and a usable state file. Returns the override tokens.
///
/// # Errors
/// The problem, naming the file or directory.
pub fn preflight(path: &Path, config: &Config) -> Result<Option<Arc<Tokens>>, String> {
    let tokens = crate::control::load_override_tokens(path, config).map_err(|e| e.to_string())?;
    let store = Store::of(path, config);
    if let Store::Dir(file) = &store {
        let dir = file.parent().unwrap_or(Path::new("."));
        let probe = dir.join(format!(".switchback-check-{}", std::process::id()));
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&probe, b""))
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|e| format!("state.dir: cannot write in {}: {e}", dir.display()))?;
        store.load_checked()?;
    }
    Ok(tokens)
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
    let listen: Vec<String> = config.proxy.listen.iter().map(|a| a.to_string()).collect();
    let state = match Store::of(path, config) {
        Store::Dir(file) => format!("; state {}", file.display()),
        Store::ConfigFile(_) => String::new(),
    };
    format!(
        "ok: {} pool{}, {backends} backend{} ({}); split {}; listen {}{state}",
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
