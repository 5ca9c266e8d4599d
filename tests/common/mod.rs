//! Test harness: real upstream HTTP servers on port 0, the real `switchback` binary as a child
//! process, and a small HTTP/1.1 client. Nothing on the data path is mocked.
//!
//! Pingora binds its listeners itself and does not report the port it got, so the proxy's
//! port is picked free here and the start is retried on a new port if it was taken meanwhile.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Write;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod browser;
pub mod clients;
pub mod etcd;
pub mod events;
pub mod gateway;
pub mod load;
pub mod metrics;
pub mod raw;
pub mod replicas;
pub mod rollout;
pub mod tls;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// How long any wait in the harness may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// What an upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A real HTTP/1.1 upstream on `127.0.0.1:0`.
///
/// Paths: `/echo` answers with the request body; `/slow/<ms>` waits then answers;
/// `/stream/<bytes>` streams a chunked body of that size; `/bulk/<bytes>` streams that many
/// `x` bytes made as they are sent (the head goes out at once, whatever the size);
/// `/status/<code>` answers that code;
/// `/healthz` answers 200 or 503 as [`Upstream::set_healthy`] says (health checks are not
/// counted as requests); `/ws` accepts an `Upgrade: websocket` and echoes every byte after
/// the 101; anything else answers the upstream's name. Every answer carries
/// `x-upstream: <name>`.
pub struct Upstream {
    pub name: String,
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    healthy: Arc<std::sync::atomic::AtomicBool>,
    faults: Arc<Faults>,
    task: tokio::task::JoinHandle<()>,
}

/// Misbehaviour for every request but `/healthz`: every `fail_every`-th answers 500 (0: none);
/// each waits `delay_ms` first.
#[derive(Debug, Default)]
pub struct Faults {
    pub fail_every: AtomicUsize,
    pub delay_ms: AtomicUsize,
    count: AtomicUsize,
}

impl Upstream {
    pub async fn start(name: &str) -> Upstream {
        Self::start_on(name, "127.0.0.1:0".parse().unwrap()).await
    }

    /// An upstream on `addr` (any loopback address and port).
    pub async fn start_on(name: &str, addr: SocketAddr) -> Upstream {
        Self::start_speaking(name, addr, tls::Speaks::Http1).await
    }

    /// An upstream on `addr` speaking `speaks` (HTTP/1.1, h2c, or TLS with ALPN).
    pub async fn start_speaking(name: &str, addr: SocketAddr, speaks: tls::Speaks) -> Upstream {
        let listener = TcpListener::bind(addr).await.expect("bind upstream");
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let healthy = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let faults = Arc::new(Faults::default());
        let state = UpstreamState {
            faults: faults.clone(),
            name: name.to_string(),
            connections: connections.clone(),
            requests: requests.clone(),
            seen: seen.clone(),
            healthy: healthy.clone(),
        };
        let task = tokio::spawn(accept_loop(listener, state, speaks));
        Upstream {
            name: name.into(),
            addr,
            connections,
            requests,
            seen,
            healthy,
            faults,
            task,
        }
    }

    /// From now on, every `n`-th request answers 500 (0: none).
    pub fn fail_every(&self, n: usize) {
        self.faults.fail_every.store(n, Ordering::SeqCst);
    }

    /// From now on, every request waits `ms` before its answer.
    pub fn delay(&self, ms: usize) {
        self.faults.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// What `/healthz` answers from now on: 200 when `true`, 503 when `false`.
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::SeqCst);
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct UpstreamState {
    name: String,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    healthy: Arc<std::sync::atomic::AtomicBool>,
    faults: Arc<Faults>,
}

async fn accept_loop(listener: TcpListener, state: UpstreamState, speaks: tls::Speaks) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        state.connections.fetch_add(1, Ordering::SeqCst);
        let state = state.clone();
        let speaks = speaks.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, state.clone()));
            tls::serve_connection(stream, speaks, service).await;
        });
    }
}

pub type BoxBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn handle(
    mut req: Request<Incoming>,
    state: UpstreamState,
) -> Result<Response<BoxBody>, Infallible> {
    let UpstreamState {
        name,
        requests,
        seen,
        healthy,
        faults,
        ..
    } = state;
    if req.uri().path() == "/healthz" {
        let code = if healthy.load(Ordering::SeqCst) {
            200
        } else {
            503
        };
        let response = Response::builder()
            .status(code)
            .header("x-upstream", name.as_str());
        return Ok(response.body(Full::new(Bytes::from(name)).boxed()).unwrap());
    }
    if req.uri().path().starts_with("/grpc.") {
        requests.fetch_add(1, Ordering::SeqCst);
        return Ok(tls::grpc_echo(req, &name));
    }
    if req.uri().path() == "/ws" {
        requests.fetch_add(1, Ordering::SeqCst);
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let (mut read, mut write) = tokio::io::split(TokioIo::new(upgraded));
                let _ = tokio::io::copy(&mut read, &mut write).await;
            }
        });
        let response = Response::builder()
            .status(101)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("x-upstream", name.as_str());
        return Ok(response.body(Full::new(Bytes::new()).boxed()).unwrap());
    }
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    requests.fetch_add(1, Ordering::SeqCst);
    seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    let path = parts.uri.path().to_string();
    let mut response = Response::builder().header("x-upstream", name.as_str());
    let delay = faults.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay as u64)).await;
    }
    let every = faults.fail_every.load(Ordering::SeqCst);
    if every > 0 && (faults.count.fetch_add(1, Ordering::SeqCst) + 1) % every == 0 {
        response = response.status(500);
        return Ok(response
            .body(Full::new(Bytes::from("injected failure")).boxed())
            .unwrap());
    }
    let body: BoxBody = if path == "/echo" {
        Full::new(body).boxed()
    } else if let Some(ms) = path.strip_prefix("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
        Full::new(Bytes::from(name.clone())).boxed()
    } else if let Some(n) = path.strip_prefix("/stream/") {
        streamed(n.parse().unwrap())
    } else if let Some(n) = path.strip_prefix("/bulk/") {
        bulk(n.parse().unwrap())
    } else if let Some(code) = path.strip_prefix("/status/") {
        response = response.status(code.parse::<u16>().unwrap());
        Full::new(Bytes::from(name.clone())).boxed()
    } else if path == "/hop-by-hop" {
        response = response
            .header("connection", "x-private")
            .header("x-private", "secret")
            .header("keep-alive", "timeout=5")
            .header("x-kept", "yes");
        Full::new(Bytes::from(name.clone())).boxed()
    } else {
        Full::new(Bytes::from(name.clone())).boxed()
    };
    Ok(response.body(body).unwrap())
}

/// A chunked body of `len` bytes of the repeating [`pattern`], in 16 KiB frames.
fn streamed(len: usize) -> BoxBody {
    let data = pattern(len);
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = data
        .chunks(16 * 1024)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    StreamBody::new(futures_util::stream::iter(frames)).boxed()
}

/// A chunked body of `len` bytes of `x` in 64 KiB frames of one static buffer, made lazily.
fn bulk(len: usize) -> BoxBody {
    static CHUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];
    let frames = (0..len.div_ceil(CHUNK.len())).map(move |i| {
        let n = (len - i * CHUNK.len()).min(CHUNK.len());
        Ok::<_, Infallible>(Frame::data(Bytes::from_static(&CHUNK[..n])))
    });
    StreamBody::new(futures_util::stream::iter(frames)).boxed()
}

/// Deterministic bytes for body-integrity checks.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// A port that was free a moment ago (for Pingora, which binds by itself).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An address nothing answers on, reserved while the returned socket lives: bound but not
/// listening, so connecting is refused and no other test (or proxy) can take the port meanwhile
/// (`free_port` for a dead backend once met another test's admin listener there).
pub fn dead_backend() -> (tokio::net::TcpSocket, SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

/// The `switchback` binary built by cargo for these tests.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_switchback"))
}

/// TOML for `pools` (name, upstream addresses) and a split like `"blue = 90\ngreen = 10"`.
pub fn pools_toml(pools: &[(&str, &[SocketAddr])], split: &str) -> String {
    let mut out = String::new();
    for (name, addrs) in pools {
        let list: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
        out.push_str(&format!(
            "[pools.{name}]\nbackends = [{}]\n\n",
            list.join(", ")
        ));
    }
    out.push_str(&format!("[split]\n{split}\n"));
    out
}

/// The real proxy, `switchback serve`, as a child process with its config in a temp dir.
/// The admin API binds port 0 unless the config names one; its address is read from the log.
pub struct TestProxy {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    child: Child,
    stderr_path: PathBuf,
}

impl TestProxy {
    /// Starts the proxy with `proxy_keys` (extra `[proxy]` lines) and `rest` (pools, split,
    /// and optionally other tables).
    pub async fn start(proxy_keys: &str, rest: &str) -> TestProxy {
        Self::start_with_files(proxy_keys, rest, &[]).await
    }

    /// [`TestProxy::start`] with `files` (name, content) written beside the config first.
    pub async fn start_with_files(
        proxy_keys: &str,
        rest: &str,
        files: &[(&str, &str)],
    ) -> TestProxy {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            write_file(dir.path(), name, text.as_bytes());
        }
        let config_path = dir.path().join("switchback.toml");
        let admin = if rest.contains("[admin]") {
            ""
        } else {
            "[admin]\nlisten = \"127.0.0.1:0\"\n"
        };
        for _attempt in 0..5 {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let text = format!("# test config\n[proxy]\nlisten = [\"{addr}\"]\nthreads = 2\n{proxy_keys}\n\n{admin}\n{rest}");
            std::fs::write(&config_path, text).unwrap();
            match launch(&config_path, addr, dir.path()).await {
                Ok((child, admin, stderr_path)) => {
                    return TestProxy {
                        addr,
                        admin,
                        dir,
                        config_path,
                        child,
                        stderr_path,
                    };
                }
                Err(log) => assert!(
                    log.contains("cannot listen"),
                    "proxy failed to start:\n{log}"
                ),
            }
        }
        panic!("no free port found for the proxy in 5 attempts");
    }

    /// The proxy on a config file written by the caller (listening on `addr`), its log in
    /// `dir`: for a config directory the proxy may not write to.
    pub async fn start_at(
        dir: tempfile::TempDir,
        config_path: PathBuf,
        addr: SocketAddr,
    ) -> TestProxy {
        let (child, admin, stderr_path) = launch(&config_path, addr, dir.path())
            .await
            .unwrap_or_else(|log| panic!("proxy failed to start:\n{log}"));
        TestProxy {
            addr,
            admin,
            dir,
            config_path,
            child,
            stderr_path,
        }
    }

    /// Kills the proxy and starts it again on the same (possibly rewritten) config file.
    pub async fn restart(&mut self) {
        self.kill();
        self.relaunch().await;
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the proxy again (after [`TestProxy::kill`]) on the same config file.
    pub async fn relaunch(&mut self) {
        let (child, admin, stderr_path) = launch(&self.config_path, self.addr, self.dir.path())
            .await
            .expect("restart");
        self.child = child;
        self.admin = admin;
        self.stderr_path = stderr_path;
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the proxy process.
    pub fn signal(&self, signal: i32) {
        let rc = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(rc.success(), "kill -{signal} failed");
    }

    /// Polls until the proxy process exits (its exit code) or `within` passes (`None`).
    pub async fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < within {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        None
    }

    /// One admin API call on a fresh connection, with optional extra headers. It carries
    /// `Host: <admin address>` and, with a body, `Content-Type: application/json`, as `ctl`
    /// does; `headers` override both.
    pub async fn admin_call(
        &self,
        method: &str,
        path: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = request(
            method,
            path,
            Full::new(Bytes::from(body.to_string())).boxed(),
        );
        req.headers_mut()
            .insert("host", self.admin.to_string().parse().unwrap());
        if !body.is_empty() {
            req.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
        }
        for (k, v) in headers {
            let name = hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap();
            req.headers_mut().insert(name, v.parse().unwrap());
        }
        Client::connect(self.admin).await.send(req).await
    }

    pub async fn admin(&self, method: &str, path: &str, body: &str) -> Reply {
        self.admin_call(method, path, body, &[]).await
    }

    /// `POST /switch` to `pool`, asserting it was accepted.
    pub async fn switch(&self, pool: &str) {
        let reply = self
            .admin("POST", "/switch", &format!(r#"{{"to": "{pool}"}}"#))
            .await;
        assert_eq!(reply.status, 200, "switch to {pool}: {}", reply.text());
    }

    /// `GET /status` as JSON.
    pub async fn status(&self) -> serde_json::Value {
        let reply = self.admin("GET", "/status", "").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        serde_json::from_slice(&reply.body).unwrap()
    }

    /// `GET /history` as JSON entries, newest first.
    pub async fn history(&self) -> Vec<serde_json::Value> {
        let reply = self.admin("GET", "/history?limit=1000", "").await;
        serde_json::from_slice(&reply.body).unwrap()
    }
}

/// Spawns `serve`, waits for the proxy port and the admin log line. `Err(log)` when it exited.
async fn launch(
    config_path: &Path,
    addr: SocketAddr,
    log_dir: &Path,
) -> Result<(Child, SocketAddr, PathBuf), String> {
    let stderr_path = log_dir.join(format!("stderr-{}.log", free_port()));
    let mut child = spawn_serve(config_path, &stderr_path);
    if !wait_ready(&mut child, addr, &stderr_path).await {
        return Err(std::fs::read_to_string(&stderr_path).unwrap_or_default());
    }
    let start = Instant::now();
    // Pingora binds each service's listeners on a thread of its own, in no fixed order.
    for tls_addr in tls_listeners(config_path) {
        while TcpStream::connect(tls_addr).await.is_err() {
            let log = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "proxy exited ({status}) before its TLS listener {tls_addr} accepted:\n{}",
                    log()
                );
            }
            assert!(
                start.elapsed() < DEADLINE,
                "TLS listener {tls_addr} not accepting:\n{}",
                log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    loop {
        let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        if let Some(rest) = log.split("admin API listening on ").nth(1) {
            let admin = rest.split_whitespace().next().unwrap().parse().unwrap();
            return Ok((child, admin, stderr_path));
        }
        assert!(
            start.elapsed() < DEADLINE,
            "no admin address in the log:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The `[tls] listen` addresses of the config at `path` (none if it has no such table).
fn tls_listeners(path: &Path) -> Vec<SocketAddr> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let Ok(config) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    let listen = config.get("tls").and_then(|t| t.get("listen"));
    let addrs = listen
        .and_then(|l| l.as_array())
        .cloned()
        .unwrap_or_default();
    addrs
        .iter()
        .filter_map(|a| a.as_str()?.parse().ok())
        .collect()
}

fn spawn_serve(config_path: &Path, stderr_path: &Path) -> Child {
    Command::new(binary())
        .args(["serve", "--config"])
        .arg(config_path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(stderr_path).unwrap())
        .spawn()
        .expect("spawn switchback")
}

/// Polls until `addr` answers HTTP (true), the child exits (false), or the deadline passes
/// (panic).
async fn wait_ready(child: &mut Child, addr: SocketAddr, stderr_path: &Path) -> bool {
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if answers_http(addr).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = std::fs::read_to_string(stderr_path).unwrap_or_default();
    panic!("proxy not ready within {DEADLINE:?}:\n{log}");
}

/// Whether `addr` answers HTTP within a second. The probe is malformed on purpose: the proxy
/// answers it 400 itself, so no upstream sees it and no count in a test is disturbed.
pub async fn answers_http(addr: SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        stream.write_all(b"READY?\r\n\r\n").await.ok()?;
        let mut head = [0u8; 8];
        stream.read_exact(&mut head).await.ok()?;
        Some(&head == b"HTTP/1.1")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), attempt).await,
        Ok(Some(true))
    )
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response as the client saw it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }
}

/// One HTTP/1.1 keep-alive client connection.
pub struct Client {
    sender: hyper::client::conn::http1::SendRequest<BoxBody>,
    task: tokio::task::JoinHandle<()>,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect to proxy");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        Client { sender, task }
    }

    pub async fn send(&mut self, request: Request<BoxBody>) -> Reply {
        self.sender.ready().await.expect("connection usable");
        let response = tokio::time::timeout(DEADLINE, self.sender.send_request(request))
            .await
            .expect("response within deadline")
            .expect("response");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        }
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        self.send(request("GET", path, Full::new(Bytes::new()).boxed()))
            .await
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A request with `Host: test.local`.
pub fn request(method: &str, path: &str, body: BoxBody) -> Request<BoxBody> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", "test.local")
        .body(body)
        .unwrap()
}

/// A chunked (length-unknown) request body of `data`, in 8 KiB frames.
pub fn chunked_body(data: Vec<u8>) -> BoxBody {
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = data
        .chunks(8 * 1024)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    StreamBody::new(futures_util::stream::iter(frames)).boxed()
}

/// One GET on a fresh connection.
pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    Client::connect(addr).await.get(path).await
}

/// Counts of `x-upstream` over `n` GETs on one keep-alive connection.
pub async fn tally(addr: SocketAddr, n: usize) -> BTreeMap<String, usize> {
    let mut client = Client::connect(addr).await;
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let reply = client.get("/").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        *counts
            .entry(reply.header("x-upstream").unwrap())
            .or_default() += 1;
    }
    counts
}

/// Writes `text` to a new file in `dir` and returns its path.
pub fn write_file(dir: &Path, name: &str, text: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text)
        .unwrap();
    path
}

/// Blue and green upstreams behind a proxy split by `split` (e.g. `"blue = 90\ngreen = 10"`),
/// with `extra` TOML tables (`[admin]`, `[log]`, …) before the pools.
pub struct BlueGreen {
    pub blue: Upstream,
    pub green: Upstream,
    pub proxy: TestProxy,
}

pub async fn blue_green(split: &str, extra: &str) -> BlueGreen {
    blue_green_with("", split, extra).await
}

/// [`blue_green`] with `proxy_keys` (extra `[proxy]` lines, e.g. `read-timeout = "1s"`).
pub async fn blue_green_with(proxy_keys: &str, split: &str, extra: &str) -> BlueGreen {
    let (blue, green) = (
        Upstream::start("blue").await,
        Upstream::start("green").await,
    );
    let pools = pools_toml(&[("blue", &[blue.addr]), ("green", &[green.addr])], split);
    let proxy = TestProxy::start(proxy_keys, &format!("{extra}\n{pools}")).await;
    BlueGreen { blue, green, proxy }
}

/// Polls `check` every 10 ms until it holds; panics with `what` after `within`.
pub async fn poll_until<F, Fut>(what: &str, within: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < within,
            "{what} did not happen within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}
