//! A real etcd cluster on loopback, owned by the test: `etcd` child processes on ports from
//! [`free_port`], data dirs in a tempdir, every member SIGKILLed and its dir removed on drop.
//!
//! ```text
//! EtcdCluster ── m0: etcd --name m0 --data-dir <tmp>/m0/data   2>> <tmp>/m0/stderr.log
//!             ├─ m1: …                  client http://127.0.0.1:<port>, peer http://127.0.0.1:<port>
//!             └─ m2: …
//! harness ──HTTP/1.1 POST /v3/... (gRPC-JSON gateway, keys and values base64)──> any member
//! ```
//!
//! Everything here blocks (std sockets, short timeouts): call it from a plain `#[test]`, or
//! from async tests between awaits. No request waits more than [`REQUEST_TIMEOUT`], so a
//! paused member never hangs a test; every wait is bounded by [`DEADLINE`] and panics with
//! the tail of each member's stderr.

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::gateway::{base64_decode, base64_encode, request};
use super::{free_port, DEADLINE};

/// The most one HTTP request to one member may take (connect, write and each read).
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(1000);

/// Clusters started by this test binary, for a unique `--initial-cluster-token`.
static CLUSTERS: AtomicUsize = AtomicUsize::new(0);

/// A running etcd cluster. Dropping it SIGKILLs every member and removes the data dirs.
pub struct EtcdCluster {
    members: Vec<Member>,
    token: String,
    /// The member that answered last: requests try it first.
    preferred: AtomicUsize,
    /// Holds every member's dir; removed on drop, after the members are killed.
    _dir: tempfile::TempDir,
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    dir: PathBuf,
    /// etcd's member id (decimal, as the gateway prints it); empty until the first start.
    id: String,
    /// `None` while killed.
    child: Option<Child>,
}

impl EtcdCluster {
    /// Starts `members` etcd processes as one new cluster and blocks until every member is
    /// healthy and they agree on a leader. A start that loses a port race is retried on new
    /// ports (3 attempts). Panics with the members' stderr tails when it fails or exceeds
    /// [`DEADLINE`].
    pub fn start(members: usize) -> EtcdCluster {
        assert!(members > 0, "an etcd cluster needs at least one member");
        for _ in 0..3 {
            let mut cluster = Self::spawn_new(members);
            let all: Vec<usize> = (0..members).collect();
            match cluster.wait_healthy(&all) {
                Ok(()) => {
                    for i in all {
                        let status = cluster.status(i).unwrap_or_else(|e| cluster.fail(&e));
                        cluster.members[i].id = id_of(&status["header"]["member_id"]);
                    }
                    cluster.leader();
                    return cluster;
                }
                // A port from `free_port` was taken meanwhile: new ports, new cluster.
                Err(_) if cluster.tails().contains("address already in use") => continue,
                Err(e) => cluster.fail(&e),
            }
        }
        panic!("etcd: no free ports found in 3 attempts");
    }

    /// `http://127.0.0.1:<client port>` of every member, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        let urls = self.members.iter().map(|m| m.client_url());
        urls.collect()
    }

    /// The endpoints as a TOML array: `["http://127.0.0.1:…", …]`.
    pub fn toml_endpoints(&self) -> String {
        let quoted: Vec<String> = self
            .endpoints()
            .iter()
            .map(|e| format!("\"{e}\""))
            .collect();
        format!("[{}]", quoted.join(", "))
    }

    /// The index of the raft leader, polled until every running member that answers names
    /// the same leader and that leader answers too (so a killed or paused leader is never
    /// returned). Panics after [`DEADLINE`].
    pub fn leader(&self) -> usize {
        self.poll("a leader", || {
            let mut named = Vec::new();
            let running = self
                .members
                .iter()
                .enumerate()
                .filter(|(_, m)| m.child.is_some());
            for (i, m) in running {
                if let Ok(status) = self.status(i) {
                    named.push((m.id.clone(), id_of(&status["leader"])));
                }
            }
            let Some((_, leader)) = named.first() else {
                return Err("no member answers".into());
            };
            let agreed = named.iter().all(|(_, l)| l == leader);
            let alive = named.iter().any(|(own, _)| own == leader);
            match self.members.iter().position(|m| &m.id == leader) {
                Some(i) if agreed && alive => Ok(i),
                _ => Err(format!("members name leaders (own id, leader): {named:?}")),
            }
        })
    }

    /// SIGKILLs member `i` and waits for it to be gone; its data dir is kept.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGKILLs every member.
    pub fn stop_all(&mut self) {
        (0..self.members.len()).for_each(|i| self.kill(i));
    }

    /// Starts killed member `i` again on the same ports and data dir and blocks until it is
    /// healthy (it has rejoined and sees a leader). Panics if it is running.
    pub fn restart(&mut self, i: usize) {
        assert!(
            self.members[i].child.is_none(),
            "etcd member {i} is running"
        );
        self.spawn(i, "existing");
        self.wait_healthy(&[i]).unwrap_or_else(|e| self.fail(&e));
    }

    /// Starts every killed member again and blocks until they are healthy and agree on a
    /// leader.
    pub fn restart_all(&mut self) {
        let killed: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.members[i].child.is_none())
            .collect();
        killed.iter().for_each(|&i| self.spawn(i, "existing"));
        self.wait_healthy(&killed).unwrap_or_else(|e| self.fail(&e));
        self.leader();
    }

    /// SIGSTOPs member `i`: it keeps its sockets but answers nothing.
    pub fn pause(&self, i: usize) {
        self.signal(i, "STOP");
    }

    /// SIGCONTs member `i` after [`EtcdCluster::pause`].
    pub fn resume(&self, i: usize) {
        self.signal(i, "CONT");
    }

    /// Puts `key = value`, retried on every member until one accepts it (a retry after a
    /// timeout may write the same value twice). Panics after [`DEADLINE`].
    pub fn put(&self, key: &str, value: &str) {
        let body = json!({"key": base64_encode(key), "value": base64_encode(value)});
        self.poll(&format!("put {key}"), || self.call("/v3/kv/put", &body));
    }

    /// The value of `key` (`None`: absent) by a linearizable read, retried on every member
    /// until one answers. Panics after [`DEADLINE`].
    pub fn get(&self, key: &str) -> Option<String> {
        self.poll(&format!("get {key}"), || self.try_get(key))
    }

    /// [`EtcdCluster::get`] tried once on each member: `Err` with every member's error when
    /// none answers (fast when they are all down: each refuses the connection).
    pub fn try_get(&self, key: &str) -> Result<Option<String>, String> {
        let reply = self.call("/v3/kv/range", &json!({"key": base64_encode(key)}))?;
        let Some(value) = reply["kvs"][0]["value"].as_str() else {
            return Ok(None);
        };
        let bytes = base64_decode(value)?;
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|e| e.to_string())
    }

    /// Compacts the store to its current revision and returns that revision: watches and
    /// reads from an older revision then fail with "required revision has been compacted".
    /// Idempotent. Panics after [`DEADLINE`].
    pub fn compact(&self) -> u64 {
        self.poll("compaction", || {
            let probe = json!({"key": base64_encode("\0"), "count_only": true});
            let revision = id_of(&self.call("/v3/kv/range", &probe)?["header"]["revision"]);
            let body = json!({"revision": revision, "physical": true});
            match self.call("/v3/kv/compaction", &body) {
                Err(e) if !e.contains("required revision has been compacted") => Err(e),
                _ => revision
                    .parse()
                    .map_err(|_| format!("revision {revision:?}")),
            }
        })
    }

    /// One gateway call (`path` like `/v3/kv/txn`, `body` its JSON request), tried once on each
    /// member, the one that answered last first. The first 200 answer's JSON, or `Err` with
    /// every member's error (an etcd error answers non-200 with `{"error": …}`).
    pub fn call(&self, path: &str, body: &Value) -> Result<Value, String> {
        let n = self.members.len();
        let first = self.preferred.load(Ordering::Relaxed);
        let mut errors = Vec::new();
        for i in (first..first + n).map(|i| i % n) {
            match request(self.members[i].client_port, "POST", path, &body.to_string()) {
                Ok((200, text)) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"));
                }
                Ok((status, text)) => errors.push(format!("m{i}: {status} {text}")),
                Err(e) => errors.push(format!("m{i}: {e}")),
            }
        }
        Err(errors.join("; "))
    }

    /// `/v3/maintenance/status` of member `i` alone.
    fn status(&self, i: usize) -> Result<Value, String> {
        match request(
            self.members[i].client_port,
            "POST",
            "/v3/maintenance/status",
            "{}",
        )? {
            (200, text) => serde_json::from_str(&text).map_err(|e| format!("{e}: {text}")),
            (status, text) => Err(format!("{status} {text}")),
        }
    }

    /// A new cluster's members, all spawned with `--initial-cluster-state new`.
    fn spawn_new(count: usize) -> EtcdCluster {
        let dir = tempfile::tempdir().expect("tempdir for etcd");
        let members = (0..count)
            .map(|i| {
                let member_dir = dir.path().join(format!("m{i}"));
                std::fs::create_dir(&member_dir).expect("etcd member dir");
                Member {
                    name: format!("m{i}"),
                    client_port: free_port(),
                    peer_port: free_port(),
                    dir: member_dir,
                    id: String::new(),
                    child: None,
                }
            })
            .collect();
        let n = CLUSTERS.fetch_add(1, Ordering::Relaxed);
        let token = format!("switchback-test-{}-{n}", std::process::id());
        let mut cluster = EtcdCluster {
            members,
            token,
            preferred: AtomicUsize::new(0),
            _dir: dir,
        };
        (0..count).for_each(|i| cluster.spawn(i, "new"));
        cluster
    }

    /// Spawns member `i` (`state`: `new` or `existing`), its stderr appended to its log.
    fn spawn(&mut self, i: usize, state: &str) {
        let initial: Vec<String> = self.members.iter().map(|m| m.peer_entry()).collect();
        let m = &self.members[i];
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(m.dir.join("stderr.log"))
            .expect("etcd stderr log");
        let mut command = Command::new("etcd");
        // etcd reads ETCD_* variables as flags; none from the environment may leak in.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ETCD_") {
                command.env_remove(name);
            }
        }
        let (client, peer) = (m.client_url(), m.peer_url());
        command
            .arg(format!("--name={}", m.name))
            .arg(format!("--data-dir={}", m.dir.join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster={}", initial.join(",")))
            .arg(format!("--initial-cluster-token={}", self.token))
            .arg(format!("--initial-cluster-state={state}"))
            .args(["--heartbeat-interval=100", "--election-timeout=1000"])
            .args(["--logger=zap", "--log-outputs=stderr", "--log-level=warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = command
            .spawn()
            .expect("spawn etcd (Debian: apt-get install etcd-server)");
        self.members[i].child = Some(child);
    }

    /// Polls until each of `members` answers `/health` with `"true"`; `Err` when one exits or
    /// after [`DEADLINE`].
    fn wait_healthy(&mut self, members: &[usize]) -> Result<(), String> {
        let start = Instant::now();
        let mut pending: Vec<usize> = members.to_vec();
        while !pending.is_empty() {
            for &i in &pending {
                let child = self.members[i].child.as_mut().expect("member running");
                if let Ok(Some(status)) = child.try_wait() {
                    self.members[i].child = None;
                    return Err(format!("etcd member {i} exited ({status})"));
                }
            }
            pending.retain(|&i| !self.healthy(i));
            if start.elapsed() > DEADLINE {
                return Err(format!(
                    "members {pending:?} not healthy within {DEADLINE:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn healthy(&self, i: usize) -> bool {
        let reply = request(self.members[i].client_port, "GET", "/health", "");
        reply.is_ok_and(|(status, text)| status == 200 && text.contains(r#""health":"true""#))
    }

    /// Calls `attempt` every 20 ms until it succeeds; after [`DEADLINE`] panics with its last
    /// error and the members' stderr tails.
    fn poll<T>(&self, what: &str, mut attempt: impl FnMut() -> Result<T, String>) -> T {
        let start = Instant::now();
        loop {
            match attempt() {
                Ok(value) => return value,
                Err(e) if start.elapsed() > DEADLINE => {
                    self.fail(&format!("etcd: {what} not within {DEADLINE:?}: {e}"))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn signal(&self, i: usize, signal: &str) {
        let child = self.members[i].child.as_ref().expect("member running");
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} etcd member {i} failed");
    }

    /// The last 20 lines of every member's stderr.
    fn tails(&self) -> String {
        let tail = |m: &Member| {
            let log = std::fs::read_to_string(m.dir.join("stderr.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let last = lines[lines.len().saturating_sub(20)..].join("\n");
            format!("--- {} stderr (tail) ---\n{last}", m.name)
        };
        let all: Vec<String> = self.members.iter().map(tail).collect();
        all.join("\n")
    }

    fn fail(&self, error: &str) -> ! {
        panic!("{error}\n{}", self.tails());
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}

impl Member {
    fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    fn peer_entry(&self) -> String {
        format!("{}={}", self.name, self.peer_url())
    }
}

/// A uint64 as the gateway prints it (a JSON string), or `""`.
fn id_of(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}
