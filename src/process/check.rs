//! `switchback check`: the one-line summary of a valid configuration.

use crate::config::Config;

/// `ok: 2 pools, 3 backends (blue: 2, green: 1); split blue=90 green=10; listen 127.0.0.1:8080`.
pub fn summary(config: &Config) -> String {
    let backends: usize = config.pools.values().map(|p| p.backends.len()).sum();
    let per_pool: Vec<String> = config
        .pools
        .iter()
        .map(|(name, pool)| format!("{name}: {}", pool.backends.len()))
        .collect();
    let listen: Vec<String> = config.proxy.listen.iter().map(|a| a.to_string()).collect();
    format!(
        "ok: {} pool{}, {backends} backend{} ({}); split {}; listen {}",
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
