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
    /// `[shutdown]`: graceful shutdown and drain bounds.
    #[serde(default)]
    pub shutdown: RawShutdown,
    /// `[affinity]`: sticky users; absent means per-request random routing.
    pub affinity: Option<RawAffinity>,
    /// `[override]`: tester overrides; absent means off.
    #[serde(rename = "override")]
    pub overrides: Option<RawOverride>,
    /// `[state]`: where accepted changes are kept.
    #[serde(default)]
    pub state: RawState,
    /// `[plans.<name>]`: rollout plans.
    #[serde(default)]
    pub plans: BTreeMap<String, RawPlan>,
    /// `[tls]`: TLS listeners; absent means plain HTTP only.
    pub tls: Option<super::tls::RawTls>,
}

/// `[plans.<name>]`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawPlan {
    /// The steps, in order.
    pub steps: Option<Vec<RawStep>>,
    /// Longest a step may take to meet its conditions.
    pub max_step_time: Option<String>,
    /// `"pause"` or `"rollback"`.
    pub on_inconclusive: Option<String>,
    /// Probes of the target pool before any user request.
    pub smoke: Option<RawSmoke>,
    /// The canary analysis.
    #[serde(default)]
    pub analysis: RawAnalysis,
}

/// One element of `steps`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawStep {
    /// The target pool's share, percent.
    pub weight: Option<toml::Value>,
    /// Least time in the step.
    pub hold: Option<String>,
    /// Least target-pool requests in the step.
    pub min_requests: Option<i64>,
    /// `"manual"`: wait for approval before entering the step.
    pub gate: Option<String>,
}

/// `[plans.<name>.smoke]`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawSmoke {
    /// Path probed.
    pub path: Option<String>,
    /// Passing statuses: `200` or `"200-299"`.
    pub expect_status: Option<toml::Value>,
    /// A substring the body must hold.
    pub expect_body: Option<String>,
    /// Time one probe may take.
    pub timeout: Option<String>,
    /// Consecutive passes per backend.
    pub repeat: Option<i64>,
    /// Host header of the probes.
    pub host: Option<String>,
}

/// `[plans.<name>.analysis]`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawAnalysis {
    /// Error-rate ratio the canary may have.
    pub tolerated_ratio: Option<toml::Value>,
    /// Error-rate ratio the test is built to detect.
    pub detect_ratio: Option<toml::Value>,
    /// Sets the rollback threshold ln(1/α).
    pub alpha: Option<toml::Value>,
    /// Upper bound on the canary's error rate to advance.
    pub max_error_rate: Option<toml::Value>,
    /// `"10%"`: how much slower than the baseline's p99 is slow.
    pub latency_margin: Option<String>,
    /// Immediate rollback on a broken canary.
    pub hard_failure: Option<RawHardFailure>,
}

/// `hard-failure = { ... }`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawHardFailure {
    /// Canary error rate that is a hard failure.
    pub error_rate: Option<toml::Value>,
    /// Least canary requests in the window.
    pub min_requests: Option<i64>,
    /// The window.
    pub window: Option<String>,
}

/// `[state]`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawState {
    /// Directory for runtime state; unset writes changes back into the config file.
    pub dir: Option<String>,
    /// etcd endpoints (`http://host:port` or `https://host:port`): switches shared state on.
    pub etcd: Option<Vec<String>>,
    /// Key prefix of this deployment's shared state.
    pub etcd_prefix: Option<String>,
    /// This replica's name, unique under the prefix.
    pub replica: Option<String>,
    /// PEM CA bundle for `https` endpoints.
    pub etcd_ca_file: Option<String>,
    /// Client certificate (PEM) for mTLS to etcd.
    pub etcd_cert: Option<String>,
    /// The client certificate's private key.
    pub etcd_key: Option<String>,
    /// etcd user name.
    pub etcd_user: Option<String>,
    /// File holding the etcd user's password.
    pub etcd_password_file: Option<String>,
}

/// `[affinity]`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawAffinity {
    /// Where the user key comes from: `"header:<name>"`, `"cookie:<name>"`, `"ip"`.
    pub key: Option<Vec<String>>,
    /// Cookie minted for keyless requests; `""` mints nothing.
    pub mint_cookie: Option<String>,
    /// Hash seed.
    pub seed: Option<String>,
    /// The bucket table's file, relative to the config file.
    pub table: Option<String>,
}

/// `[override]`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawOverride {
    /// Request header naming the pool a tester wants.
    pub header: Option<String>,
    /// `pool:token` lines.
    pub token_file: Option<String>,
}

/// `[shutdown]`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawShutdown {
    /// Longest wait for in-flight requests after SIGTERM, a duration string.
    pub grace: Option<String>,
    /// How long upgraded (WebSocket) connections may outlive a drain or shutdown.
    pub drain_timeout: Option<String>,
    /// After SIGTERM/SIGINT, how long to keep serving (health path 503) before closing.
    pub lb_drain_delay: Option<String>,
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
    /// Size at which the deployment log rotates: bytes, or a string like `"64MiB"`.
    pub deployments_max_size: Option<toml::Value>,
    /// Rotated deployment-log files kept.
    pub deployments_keep: Option<i64>,
    /// Access log: `"stdout"` or a path; absent means off.
    pub access: Option<String>,
    /// Access-log lines queued for the writer before new ones are dropped.
    pub access_buffer: Option<i64>,
    /// Deployment-log entries kept in etcd (with `[state] etcd`).
    pub shared_keep: Option<i64>,
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
    /// Unix socket for handing the listeners to a new process (`serve --upgrade`).
    pub upgrade_sock: Option<String>,
    /// Time a client has to send a complete request head, a duration string.
    pub header_timeout: Option<String>,
    /// Idle time after which a keep-alive client connection is closed, a duration string.
    pub client_idle_timeout: Option<String>,
    /// Time a write towards a client may make no progress, a duration string.
    pub client_write_timeout: Option<String>,
    /// `"append"` or `"replace"`: what happens to a client's `X-Forwarded-For`.
    pub forwarded_for: Option<String>,
    /// How often backend host names are resolved again, a duration string (`"0s"`: never).
    pub dns_refresh: Option<String>,
    /// A path the proxy answers itself for load balancers: 200 serving, 503 stopping.
    pub health_path: Option<String>,
    /// HTTP/2 with prior knowledge (h2c) on the plain listeners.
    pub h2c: Option<bool>,
}

/// `[admin]`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawAdmin {
    /// Admin API listen address, `"ip:port"`.
    pub listen: Option<String>,
    /// Path of the admin token file.
    pub token_file: Option<String>,
    /// Host names (besides the listener's own address) the admin API answers to.
    pub allowed_hosts: Option<Vec<String>>,
    /// Origins (`scheme://host[:port]`) whose pages may call the admin API.
    pub allowed_origins: Option<Vec<String>>,
    /// `{ cert, key }`: serve the admin API over TLS.
    pub tls: Option<super::tls::RawCertPair>,
}

/// `[pools.<name>]`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawPool {
    /// Each entry is `"host:port"` or `{ addr = "host:port", weight = N }`.
    #[serde(default)]
    pub backends: Vec<toml::Value>,
    /// `"failover"` or `"fail"`: what happens to this pool's share when all its backends are down.
    pub on_pool_down: Option<String>,
    /// Ramp-up window for a backend that comes back or is added, a duration string.
    pub slow_start: Option<String>,
    /// `[pools.<name>.health-check]`: active checks; absent means none.
    pub health_check: Option<RawHealthCheck>,
    /// `[pools.<name>.outlier]`: passive ejection.
    #[serde(default)]
    pub outlier: RawOutlier,
    /// `[pools.<name>.tls]`: reach the backends over TLS; absent means plain.
    pub tls: Option<super::tls::RawUpstreamTls>,
    /// `"h1"` or `"h2"`.
    pub protocol: Option<String>,
}

/// `[pools.<name>.health-check]`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawHealthCheck {
    /// `"http"` or `"tcp"`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// HTTP path to GET.
    pub path: Option<String>,
    /// Healthy status codes: `200` or `"200-399"`.
    pub expect: Option<toml::Value>,
    /// Time between checks.
    pub interval: Option<String>,
    /// Time one check may take.
    pub timeout: Option<String>,
    /// Consecutive passes that bring a backend up.
    pub healthy_threshold: Option<i64>,
    /// Consecutive failures that take a backend down.
    pub unhealthy_threshold: Option<i64>,
}

/// `[pools.<name>.outlier]`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RawOutlier {
    /// Consecutive connect failures or 5xx answers that eject a backend; 0 is off.
    pub consecutive_failures: Option<i64>,
    /// First ejection's length; each further one doubles it.
    pub base_ejection: Option<String>,
    /// Longest ejection.
    pub max_ejection: Option<String>,
    /// Largest share of a pool's backends ejected at once, in percent.
    pub max_ejected_percent: Option<i64>,
}
