//! Control state shared by several replicas on an etcd cluster (`[state] etcd`).
//!
//! Keys under the prefix (README "Several replicas"):
//!
//! | key | holds |
//! |---|---|
//! | `control` | the shared state (`state::Saved`: version, split, previous, file split, affinity table) |
//! | `seq` | the deployment log's sequence counter: its etcd version is the last `seq` used |
//! | `log/<seq>` | one deployment-log entry (20 digits, so keys sort by number) |
//! | `drains/<pool>/<backend>` | a drained backend (present: drained on every replica) |
//! | `replicas/<id>` | a replica's heartbeat, under its lease |
//! | `leader` | the replica that runs the rollout engine, under its lease |
//! | `rollouts/<id>` | each rollout's newest record |
//! | `tally/<id>` | a replica's analysis counters for the rollout's pools, under its lease |
//!
//! Every accepted change is one transaction: compare `control`'s revision (and `seq`'s), write
//! the new `control`, the next `seq` and its `log/<seq>` entry. A replica never waits on the
//! store for a request: the watch ([`watch`]) applies what others wrote to the live snapshot.
//!
//! The etcd client runs on its own small runtime, so a slow or unreachable cluster never
//! holds the control runtime's worker: control's calls wait on it with a bound
//! ([`CALL_TIMEOUT`]).

mod kv;
mod probe;
mod replicas;
mod tally;
pub(crate) mod watch;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use etcd_client::{Client, ConnectOptions, TlsOptions};

use crate::config::model::SharedState;

pub(crate) use kv::{Fetched, Outcome};
pub(crate) use replicas::Heartbeat;
pub(crate) use tally::Aggregate;

/// The longest a control call waits on the cluster before it counts as unreachable.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a connection attempt to one member may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The replica lease's time to live.
pub(crate) const LEASE_TTL: i64 = 10;

/// The connection to the cluster and what this replica knows about it.
pub(crate) struct Shared {
    settings: SharedState,
    runtime: &'static tokio::runtime::Runtime,
    client: std::sync::OnceLock<Client>,
    connect: ConnectOptions,
    up: AtomicBool,
    since: Mutex<SystemTime>,
    /// The replica's lease, once granted.
    lease: std::sync::atomic::AtomicI64,
    /// When the lease was last renewed.
    renewed: Mutex<Option<std::time::Instant>>,
    /// The create revision of the leader key this replica holds (0: it does not lead).
    leader: std::sync::atomic::AtomicI64,
    /// Woken when the leader key goes (its holder's lease lapsed): campaign at once.
    vacant: tokio::sync::Notify,
    /// Set once this replica leaves (shutdown, or handed over to a new process): no heartbeat,
    /// campaign or count is written any more.
    gone: AtomicBool,
    /// Cleared while this replica cannot serve the shared split (its config lacks a pool):
    /// it does not lead the rollout engine then.
    eligible: AtomicBool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("prefix", &self.settings.prefix)
            .field("replica", &self.settings.replica)
            .finish()
    }
}

impl Shared {
    /// A handle for `settings` (file paths already resolved). Nothing is contacted yet.
    ///
    /// # Errors
    /// The message when a TLS file or the password file cannot be read, or the runtime not built.
    pub(crate) fn new(settings: SharedState) -> Result<Shared, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("switchback-etcd")
            .enable_all()
            .build()
            .map_err(|e| format!("etcd client runtime: {e}"))?;
        let connect = connect_options(&settings)?;
        Ok(Shared {
            settings,
            // Lives as long as the process: dropping a runtime inside another one panics.
            runtime: Box::leak(Box::new(runtime)),
            client: std::sync::OnceLock::new(),
            connect,
            up: AtomicBool::new(false),
            since: Mutex::new(SystemTime::now()),
            lease: std::sync::atomic::AtomicI64::new(0),
            renewed: Mutex::new(None),
            leader: std::sync::atomic::AtomicI64::new(0),
            vacant: tokio::sync::Notify::new(),
            gone: AtomicBool::new(false),
            eligible: AtomicBool::new(true),
        })
    }

    /// The key prefix, as configured.
    pub(crate) fn prefix(&self) -> &str {
        &self.settings.prefix
    }

    /// This replica's name.
    pub(crate) fn replica(&self) -> &str {
        &self.settings.replica
    }

    /// The deployment-log entries kept in the store.
    pub(crate) fn keep(&self) -> usize {
        self.settings.keep
    }

    /// `<prefix>/<name>`.
    pub(crate) fn key(&self, name: &str) -> String {
        format!("{}/{name}", self.settings.prefix)
    }

    /// Whether the last call reached the cluster, and since when that holds.
    pub(crate) fn connected(&self) -> (bool, SystemTime) {
        let since = *self.since.lock().unwrap_or_else(|e| e.into_inner());
        (self.up.load(Ordering::SeqCst), since)
    }

    fn mark(&self, up: bool) {
        if self.up.swap(up, Ordering::SeqCst) != up {
            *self.since.lock().unwrap_or_else(|e| e.into_inner()) = SystemTime::now();
            match up {
                true => tracing::info!(prefix = %self.settings.prefix, "shared state reachable"),
                false => tracing::warn!(prefix = %self.settings.prefix, "shared state unreachable"),
            }
        }
    }

    /// Runs `call` with the client on the etcd runtime and waits for it, at most
    /// [`CALL_TIMEOUT`]. Blocks the calling thread (off a control worker's queue when called
    /// from one), so it may be called under control's lock.
    ///
    /// # Errors
    /// "shared state unreachable: …" when the cluster cannot be reached in time.
    pub(crate) fn block<T, F, Fut>(&self, call: F) -> Result<T, String>
    where
        T: Send + 'static,
        F: FnOnce(Client) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    {
        let client = self.client_blocking()?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime.spawn(async move {
            let result = tokio::time::timeout(CALL_TIMEOUT, call(client)).await;
            let _ = tx.send(result);
        });
        let wait = || rx.recv_timeout(CALL_TIMEOUT + Duration::from_millis(500));
        let on_multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let received = match on_multi_thread {
            true => tokio::task::block_in_place(wait),
            false => wait(),
        };
        self.settle(match received {
            Ok(Ok(result)) => result.map_err(|e| e.to_string()),
            Ok(Err(_)) | Err(_) => Err(format!("no answer within {CALL_TIMEOUT:?}")),
        })
    }

    /// [`Self::block`] for async callers: waits without blocking their thread.
    ///
    /// # Errors
    /// As [`Self::block`].
    pub(crate) async fn run<T, F, Fut>(&self, call: F) -> Result<T, String>
    where
        T: Send + 'static,
        F: FnOnce(Client) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    {
        let client = self.client().await?;
        let task = self
            .runtime
            .spawn(async move { tokio::time::timeout(CALL_TIMEOUT, call(client)).await });
        self.settle(match task.await {
            Ok(Ok(result)) => result.map_err(|e| e.to_string()),
            Ok(Err(_)) | Err(_) => Err(format!("no answer within {CALL_TIMEOUT:?}")),
        })
    }

    fn settle<T>(&self, result: Result<T, String>) -> Result<T, String> {
        self.mark(result.is_ok());
        result.map_err(|e| format!("shared state unreachable: {e}"))
    }

    fn client_blocking(&self) -> Result<Client, String> {
        if let Some(client) = self.client.get() {
            return Ok(client.clone());
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let endpoints = self.settings.endpoints.clone();
        let options = self.connect.clone();
        self.runtime.spawn(async move {
            let _ = tx.send(Client::connect(endpoints, Some(options)).await);
        });
        let wait = || rx.recv_timeout(CALL_TIMEOUT);
        let on_multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let connected = match on_multi_thread {
            true => tokio::task::block_in_place(wait),
            false => wait(),
        };
        match connected {
            Ok(Ok(client)) => Ok(self.client.get_or_init(|| client).clone()),
            Ok(Err(e)) => self.settle(Err(e.to_string())),
            Err(_) => self.settle(Err(format!("no connection within {CALL_TIMEOUT:?}"))),
        }
    }

    async fn client(&self) -> Result<Client, String> {
        if let Some(client) = self.client.get() {
            return Ok(client.clone());
        }
        let endpoints = self.settings.endpoints.clone();
        let options = self.connect.clone();
        let task = self
            .runtime
            .spawn(async move { Client::connect(endpoints, Some(options)).await });
        match task.await {
            Ok(Ok(client)) => Ok(self.client.get_or_init(|| client).clone()),
            Ok(Err(e)) => self.settle(Err(e.to_string())),
            Err(e) => self.settle(Err(e.to_string())),
        }
    }

    /// Whether this replica may lead the rollout engine (it serves the shared split).
    pub(crate) fn set_eligible(&self, eligible: bool) {
        self.eligible.store(eligible, Ordering::SeqCst);
    }

    /// Whether this replica has left (see `leave`).
    pub(crate) fn gone(&self) -> bool {
        self.gone.load(Ordering::SeqCst)
    }

    /// The runtime the client lives on (the watch and the heartbeat run there).
    pub(crate) fn runtime(&self) -> &'static tokio::runtime::Runtime {
        self.runtime
    }
}

fn connect_options(settings: &SharedState) -> Result<ConnectOptions, String> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_timeout(CALL_TIMEOUT)
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
        .with_keep_alive_while_idle(true);
    if let Some((user, password_file)) = &settings.auth {
        let password = std::fs::read_to_string(password_file).map_err(|e| {
            format!(
                "state.etcd-password-file: cannot read {}: {e}",
                password_file.display()
            )
        })?;
        options = options.with_user(user.clone(), password.trim_end().to_string());
    }
    let https = settings.endpoints.iter().any(|e| e.starts_with("https://"));
    if https {
        let mut tls = TlsOptions::new();
        if let Some(ca) = &settings.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| format!("state.etcd-ca-file: cannot read {}: {e}", ca.display()))?;
            tls = tls.ca_certificate(etcd_client::Certificate::from_pem(pem));
        }
        if let Some((cert, key)) = &settings.client_cert {
            let read = |p: &std::path::Path, key: &str| {
                std::fs::read(p).map_err(|e| format!("{key}: cannot read {}: {e}", p.display()))
            };
            let identity = etcd_client::Identity::from_pem(
                read(cert, "state.etcd-cert")?,
                read(key, "state.etcd-key")?,
            );
            tls = tls.identity(identity);
        }
        options = options.with_tls(tls);
    }
    Ok(options)
}
