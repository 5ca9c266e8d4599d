//! Raw serde types: the exact shape of the TOML file, before any validation.
//!
//! Everything an operator can get wrong (numbers, addresses, durations) is kept loose here
//! (`toml::Value`, `String`, `i64`) so that [`super::validate`] can report every problem with
//! its key path instead of stopping at serde's first complaint. Unknown keys are collected
//! by `serde_ignored` in [`super::load`] for the same reason.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawConfig {
    /// `[proxy]`: the data-plane listener and upstream behaviour.
    #[serde(default)]
    pub proxy: RawProxy,
    /// `[admin]`: the admin API listener.
    #[serde(default)]
    pub admin: RawAdmin,
    /// `[pools.<name>]`: the upstream pools.
    #[serde(default)]
    pub pools: BTreeMap<String, RawPool>,
    /// `[split]`: pool name → percent.
    #[serde(default)]
    pub split: BTreeMap<String, toml::Value>,
    /// `[log]`: where records go.
    #[serde(default)]
    pub log: RawLog,
    /// `[reload]`: config-file hot reload.
    #[serde(default)]
    pub reload: RawReload,
    /// `[metrics]`: Prometheus metrics.
    #[serde(default)]
    pub metrics: RawMetrics,
}

/// `[metrics]`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawMetrics {
    /// Whether the data path records per-request metrics.
    pub enabled: Option<bool>,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawLog {
    /// Deployment log path (JSON lines); relative paths are relative to the config file.
    pub deployments: Option<String>,
    /// Access log: `"stdout"` or a path; absent means off.
    pub access: Option<String>,
    /// Access-log lines queued for the writer before new ones are dropped.
    pub access_buffer: Option<i64>,
}

/// `[reload]`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawReload {
    /// Quiet time after the last file event before reloading, a duration string.
    pub debounce: Option<String>,
}

/// `[proxy]`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawProxy {
    /// Listen addresses, `"ip:port"`.
    pub listen: Option<Vec<String>>,
    /// Worker threads.
    pub threads: Option<i64>,
    /// Upstream TCP connect timeout, a duration string.
    pub connect_timeout: Option<String>,
    /// Upstream read timeout (time to first byte and between reads).
    pub read_timeout: Option<String>,
    /// Upstream write timeout.
    pub write_timeout: Option<String>,
    /// How long an idle upstream keep-alive connection stays pooled.
    pub idle_timeout: Option<String>,
    /// Response header naming the pool that served the request; absent means none.
    pub pool_header: Option<String>,
}

/// `[admin]`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawAdmin {
    /// Admin API listen address, `"ip:port"`.
    pub listen: Option<String>,
    /// Path of the admin token file.
    pub token_file: Option<String>,
}

/// `[pools.<name>]`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawPool {
    /// Each entry is `"host:port"` or `{ addr = "host:port", weight = N }`.
    #[serde(default)]
    pub backends: Vec<toml::Value>,
}
