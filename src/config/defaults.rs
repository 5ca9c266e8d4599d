//! Every configuration default, in one place. README and `config/switchback.toml` quote these.

use std::time::Duration;

/// `[proxy] listen` when absent.
pub const PROXY_LISTEN: &str = "127.0.0.1:8080";
/// `[admin] listen` when absent.
pub const ADMIN_LISTEN: &str = "127.0.0.1:9900";
/// `[proxy] connect-timeout` when absent: 3 s.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// `[proxy] read-timeout` when absent: 60 s.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// `[proxy] write-timeout` when absent: 60 s.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// `[proxy] idle-timeout` when absent: 60 s.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// `[proxy] header-timeout` when absent: 10 s.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// `[proxy] client-idle-timeout` when absent: 60 s.
pub const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// `[proxy] client-write-timeout` when absent: 60 s.
pub const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// `[proxy] dns-refresh` when absent: 30 s.
pub const DNS_REFRESH: Duration = Duration::from_secs(30);
/// `[log] deployments` when absent: this file beside the config file.
pub const DEPLOYMENT_LOG: &str = "deployments.jsonl";
/// `[log] deployments-max-size` when absent: 64 MiB.
pub const DEPLOYMENT_LOG_MAX_SIZE: u64 = 64 * 1024 * 1024;
/// `[log] deployments-keep` when absent.
pub const DEPLOYMENT_LOG_KEEP: usize = 5;
/// Largest `?limit=` of `GET /history`.
pub const HISTORY_MAX_LIMIT: usize = 1000;
/// Newest deployment-log entries read at start-up to recover the version and splits.
pub const RECOVERY_ENTRIES: usize = 10_000;
/// `[log] shared-keep` when absent: deployment-log entries kept in etcd.
pub const SHARED_KEEP: usize = 10_000;
/// `[state] etcd-prefix` when absent.
pub const ETCD_PREFIX: &str = "/switchback";
/// `[state] replica` when the host name cannot be read.
pub const REPLICA: &str = "switchback";
/// `[reload] debounce` when absent: 100 ms.
pub const RELOAD_DEBOUNCE: Duration = Duration::from_millis(100);
/// `[metrics] enabled` when absent.
pub const METRICS_ENABLED: bool = true;
/// Access-log lines buffered before new ones are dropped (and counted).
pub const ACCESS_LOG_BUFFER: usize = 8192;
/// Largest admin request body, in bytes (64 KiB).
pub const MAX_ADMIN_BODY: usize = 64 * 1024;
/// `GET /history` entries when no `?limit=` is given.
pub const HISTORY_LIMIT: usize = 100;
/// Backend weight when a backend is given as a plain `"host:port"` string.
pub const BACKEND_WEIGHT: u32 = 1;
/// `[proxy] upgrade-sock` when absent: this file beside the config file.
pub const UPGRADE_SOCK: &str = "switchback.upgrade.sock";
/// `[shutdown] grace` when absent: 30 s.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// `[shutdown] drain-timeout` when absent: 30 s.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// `[pools.<name>] slow-start` when absent: off.
pub const SLOW_START: Duration = Duration::ZERO;
/// `[pools.<name>.health-check] type` when absent.
pub const HEALTH_TYPE: &str = "http";
/// `[pools.<name>.health-check] path` when absent.
pub const HEALTH_PATH: &str = "/";
/// `[pools.<name>.health-check] expect` when absent: any 2xx or 3xx.
pub const HEALTH_EXPECT: (u16, u16) = (200, 399);
/// `[pools.<name>.health-check] interval` when absent: 2 s.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(2);
/// `[pools.<name>.health-check] timeout` when absent: 1 s.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
/// `[pools.<name>.health-check] healthy-threshold` when absent.
pub const HEALTHY_THRESHOLD: u32 = 2;
/// `[pools.<name>.health-check] unhealthy-threshold` when absent.
pub const UNHEALTHY_THRESHOLD: u32 = 3;
/// `[pools.<name>.outlier] consecutive-failures` when absent.
pub const OUTLIER_FAILURES: u32 = 5;
/// `[pools.<name>.outlier] base-ejection` when absent: 10 s.
pub const OUTLIER_BASE_EJECTION: Duration = Duration::from_secs(10);
/// `[pools.<name>.outlier] max-ejection` when absent: 5 min.
pub const OUTLIER_MAX_EJECTION: Duration = Duration::from_secs(300);
/// `[pools.<name>.outlier] max-ejected-percent` when absent.
pub const OUTLIER_MAX_EJECTED_PERCENT: u32 = 50;

/// Largest accepted backend weight.
pub const MAX_BACKEND_WEIGHT: u32 = 100;
/// Most pools one configuration may hold.
pub const MAX_POOLS: usize = 32;
/// Most backends one pool may hold.
pub const MAX_BACKENDS_PER_POOL: usize = 256;
/// Most worker threads.
pub const MAX_THREADS: i64 = 1_024;
/// Largest config file read, in bytes (1 MiB).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// `[proxy] threads` when absent: one per CPU core.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
/// `[state] replica` when absent: this host's name (`/proc/sys/kernel/hostname`, trimmed), or
/// [`REPLICA`] when it cannot be read or is empty.
pub fn replica() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    match name.trim() {
        "" => REPLICA.to_string(),
        name => name.to_string(),
    }
}
/// `[affinity] key` when absent.
pub const AFFINITY_KEY: &str = "cookie:switchback-user";
/// `[affinity] mint-cookie` when absent.
pub const MINT_COOKIE: &str = "switchback-user";
/// `[affinity] seed` when absent.
pub const AFFINITY_SEED: &str = "switchback";
/// Attributes of a minted affinity cookie (30 days).
pub const MINT_COOKIE_ATTRIBUTES: &str = "Path=/; HttpOnly; SameSite=Lax; Max-Age=2592000";
/// The bucket table of `[affinity]`, beside the config file.
pub const AFFINITY_TABLE: &str = "affinity-table.json";
/// `[override] header` when absent.
pub const OVERRIDE_HEADER: &str = "x-switchback-pool";
/// The header carrying a tester's override token.
pub const OVERRIDE_TOKEN_HEADER: &str = "x-switchback-override-token";
/// The browser form of an override: a cookie `<pool>:<token>`.
pub const OVERRIDE_COOKIE: &str = "switchback-override";

/// `[plans.*] steps[].min-requests` when absent: target-pool requests a step needs.
pub const STEP_MIN_REQUESTS: u64 = 100;
/// `[plans.*] max-step-time` when absent: 30 min.
pub const MAX_STEP_TIME: Duration = Duration::from_secs(30 * 60);
/// `[plans.*.smoke] path` when absent.
pub const SMOKE_PATH: &str = "/healthz";
/// `[plans.*.smoke] expect-status` when absent.
pub const SMOKE_EXPECT: (u16, u16) = (200, 299);
/// `[plans.*.smoke] timeout` when absent: 2 s.
pub const SMOKE_TIMEOUT: Duration = Duration::from_secs(2);
/// `[plans.*.smoke] repeat` when absent.
pub const SMOKE_REPEAT: u32 = 3;
/// `[plans.*.analysis] tolerated-ratio` when absent.
pub const TOLERATED_RATIO: f64 = 1.2;
/// `[plans.*.analysis] detect-ratio` when absent.
pub const DETECT_RATIO: f64 = 3.0;
/// `[plans.*.analysis] alpha` when absent.
pub const ALPHA: f64 = 0.001;
/// `[plans.*.analysis] latency-margin` when absent: 10 %.
pub const LATENCY_MARGIN: f64 = 0.10;
/// `[plans.*.analysis] hard-failure.error-rate` when absent.
pub const HARD_FAILURE_RATE: f64 = 0.5;
/// `[plans.*.analysis] hard-failure.min-requests` when absent.
pub const HARD_FAILURE_MIN_REQUESTS: u64 = 10;
/// `[plans.*.analysis] hard-failure.window` when absent: 10 s.
pub const HARD_FAILURE_WINDOW: Duration = Duration::from_secs(10);
