//! The validated runtime model. Built only by [`super::validate`], so holding a [`Config`]
//! means every invariant below holds.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use super::percent::{format_percent, BasisPoints, Split, FULL};
pub use super::plans::{AnalysisSettings, HardFailure, OnInconclusive, Plan, Smoke, Step};
pub use super::pool_policy::{HealthCheck, OnPoolDown, Outlier, PoolPolicy, ProbeKind};
pub use super::shared::SharedState;
pub use super::sticky::{Affinity, KeySource, Overrides};
pub use super::tls::{Alpn, CaBundle, CertPair, FrontTls, Protocol, TlsVersion, UpstreamTls};

/// A complete, valid configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Data-plane settings.
    pub proxy: ProxySettings,
    /// Admin API settings.
    pub admin: AdminSettings,
    /// Pools by name (at least one; names are unique and label-safe).
    pub pools: BTreeMap<String, Pool>,
    /// Traffic split over `pools` (every pool has an entry; sums to 100 %).
    pub split: Split,
    /// Deployment log path as written (relative to the config file's directory).
    pub deployment_log: PathBuf,
    /// When the deployment log rotates.
    pub deployment_rotation: Rotation,
    /// Quiet time after the last config-file event before reloading.
    pub reload_debounce: Duration,
    /// Access log destination; `None` is off.
    pub access_log: Option<AccessLogTarget>,
    /// Access-log lines queued before new ones are dropped (and counted).
    pub access_buffer: usize,
    /// Whether the data path records per-request metrics.
    pub metrics_enabled: bool,
    /// Graceful shutdown and drain bounds.
    pub shutdown: ShutdownSettings,
    /// Sticky users; `None` routes every request at random.
    pub affinity: Option<Affinity>,
    /// Tester overrides; `None` is off.
    pub overrides: Option<Overrides>,
    /// `[state] dir` as written (relative to the config file's directory): accepted changes
    /// live there and the config file is only read. `None` writes changes back into the file.
    pub state_dir: Option<PathBuf>,
    /// `[state] etcd…`: control state shared with other replicas on an etcd cluster; `None`
    /// (the default) keeps it local.
    pub shared: Option<SharedState>,
    /// Rollout plans by name.
    pub plans: BTreeMap<String, std::sync::Arc<Plan>>,
    /// TLS listeners; `None`: plain HTTP only.
    pub tls: Option<FrontTls>,
}

/// When the deployment log rotates (`[log] deployments-max-size`, `deployments-keep`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// The current file rotates once it is larger than this many bytes.
    pub max_bytes: u64,
    /// Old files kept (`.1` … `.keep`); older ones are deleted.
    pub keep: usize,
}

/// Where access-log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    /// Standard output.
    Stdout,
    /// A file (relative to the config file's directory), appended to.
    File(PathBuf),
}

impl Config {
    /// This config with `split` in place of its own. `split` must cover exactly these pools.
    pub fn with_split(&self, split: Split) -> Config {
        Config {
            split,
            ..self.clone()
        }
    }
}

/// `[proxy]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxySettings {
    /// Listen addresses (at least one, no duplicates).
    pub listen: Vec<SocketAddr>,
    /// Worker threads (≥ 1).
    pub threads: usize,
    /// Upstream connect timeout.
    pub connect_timeout: Duration,
    /// Upstream read timeout.
    pub read_timeout: Duration,
    /// Upstream write timeout.
    pub write_timeout: Duration,
    /// Idle time after which a pooled upstream connection is closed.
    pub idle_timeout: Duration,
    /// Response header naming the serving pool, lower-case; `None` adds nothing.
    pub pool_header: Option<http::HeaderName>,
    /// Unix socket for the listener hand-over of a binary upgrade, as written (relative to
    /// the config file's directory).
    pub upgrade_sock: PathBuf,
    /// Time a client has to send a complete request head (10 s by default).
    pub header_timeout: Duration,
    /// Idle time after which a keep-alive client connection is closed (60 s by default).
    pub client_idle_timeout: Duration,
    /// Time a write towards a client may make no progress before its connection is closed
    /// (an HTTP/2 stream is reset) (60 s by default).
    pub client_write_timeout: Duration,
    /// What happens to the `X-Forwarded-For` a client sent (append by default).
    pub forwarded_for: ForwardedFor,
    /// How often backend host names are resolved again (30 s by default; zero: never).
    pub dns_refresh: Duration,
    /// The path the proxy answers itself for load balancers (none by default).
    pub health_path: Option<String>,
    /// HTTP/2 with prior knowledge on the plain listeners (off by default; needs a restart).
    pub h2c: bool,
}

/// `[proxy] forwarded-for`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardedFor {
    /// Keep every `X-Forwarded-For` line the client sent, joined, and append its address:
    /// behind another proxy or load balancer that sets the header.
    #[default]
    Append,
    /// Replace whatever the client sent with its address: at an edge that trusts no client.
    Replace,
}

/// `[admin]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminSettings {
    /// Admin API listen address.
    pub listen: SocketAddr,
    /// Token file, when configured.
    pub token_file: Option<PathBuf>,
    /// Extra host names the admin API answers to, lower-case (none by default).
    pub allowed_hosts: Vec<String>,
    /// Extra origins whose pages may call the admin API, lower-case (none by default).
    pub allowed_origins: Vec<String>,
    /// Serve the admin API over TLS with this pair (read at start-up).
    pub tls: Option<CertPair>,
}

/// One pool of backends running one version of the application.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    /// Backends (at least one, no duplicate addresses).
    pub backends: Vec<Backend>,
    /// Health checks, ejection, slow start, and what happens when the pool is down.
    pub policy: PoolPolicy,
    /// TLS to the backends; `None`: plain.
    pub tls: Option<UpstreamTls>,
    /// What the backends speak.
    pub protocol: Protocol,
}

/// `[shutdown]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ShutdownSettings {
    /// Longest wait for in-flight requests after SIGTERM; the process exits as soon as none is.
    pub grace: Duration,
    /// How long an upgraded (WebSocket) connection may outlive a drain of its backend.
    pub drain_timeout: Duration,
    /// After SIGTERM/SIGINT, how long the proxy keeps serving, its health path answering 503,
    /// before the listeners close (0 by default).
    pub lb_drain_delay: Duration,
}

/// One upstream server.
#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    /// The address as written in the file (`host:port`).
    pub name: String,
    /// The resolved socket address.
    pub addr: SocketAddr,
    /// Relative weight inside its pool, 1 to [`super::defaults::MAX_BACKEND_WEIGHT`].
    pub weight: u32,
}
