//! The listeners together, through the real binary: a TLS-only front door (`[proxy] listen =
//! []`), an admin address that clashes with a proxy or TLS listener, and `[admin] token-file`
//! resolved beside the config file whatever the working directory.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use common::tls::{self, Pki};
use common::{binary, free_port, poll_until, write_file, Client, Upstream, DEADLINE};

/// `switchback check --config <path>` run in `cwd`, to completion.
fn check_in(path: &Path, cwd: &Path) -> Output {
    Command::new(binary())
        .args(["check", "--config"])
        .arg(path)
        .current_dir(cwd)
        .output()
        .unwrap()
}

/// `switchback serve` as a child process, killed on drop.
struct Serving {
    child: Child,
    log: PathBuf,
}

impl Serving {
    fn start(config: &Path, cwd: &Path) -> Serving {
        let log = config.with_extension(format!("{}.log", free_port()));
        let child = Command::new(binary())
            .args(["serve", "--config"])
            .arg(config)
            .current_dir(cwd)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Serving { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The admin API's address, once the log names it (panics when the process exits first).
    async fn admin(&mut self) -> SocketAddr {
        let start = std::time::Instant::now();
        loop {
            let log = self.log();
            if let Some(rest) = log.split("admin API listening on ").nth(1) {
                return rest.split_whitespace().next().unwrap().parse().unwrap();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("serve exited ({status}) before serving the admin API:\n{log}");
            }
            assert!(start.elapsed() < DEADLINE, "no admin address:\n{log}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const POOLS: &str = "[pools.blue]\nbackends = [\"127.0.0.1:1\"]\n[split]\nblue = 100\n";

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn a_tls_only_front_door_passes_check_and_serves_over_tls() {
    let pki = Pki::new("test CA");
    let cert = pki.issue(&["a.test"], 30);
    let blue = Upstream::start("blue").await;
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "a.pem", cert.cert.as_bytes());
    write_file(dir.path(), "a.key", cert.key.as_bytes());
    let tls_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let text = format!(
        "[proxy]\nlisten = []\n[admin]\nlisten = \"127.0.0.1:0\"\n\
         [tls]\nlisten = [\"{tls_addr}\"]\ncertificates = [{{ cert = \"a.pem\", key = \"a.key\" }}]\n\
         [pools.blue]\nbackends = [\"{}\"]\n[split]\nblue = 100\n",
        blue.addr
    );
    let config = write_file(dir.path(), "switchback.toml", text.as_bytes());
    let out = check_in(&config, dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains(&format!("listen {tls_addr} (tls)")),
        "{summary}"
    );

    let mut serving = Serving::start(&config, dir.path());
    serving.admin().await;
    let client = tls::client_config(Some(&pki.ca_pem), &["http/1.1"]);
    poll_until("the TLS listener answers", DEADLINE, || async {
        tls::connect(tls_addr, Some("a.test"), client.clone())
            .await
            .is_ok()
    })
    .await;
    let stream = tls::connect(tls_addr, Some("a.test"), client)
        .await
        .unwrap();
    let mut sender = tls::http1(stream).await;
    assert_eq!(
        tls::get1(&mut sender, "/").await,
        (200, Some("blue".into()))
    );
}

#[test]
fn no_listener_at_all_is_a_config_error_that_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("[proxy]\nlisten = []\n{POOLS}");
    let config = write_file(dir.path(), "switchback.toml", text.as_bytes());
    let out = check_in(&config, dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("proxy.listen: empty and there is no [tls] listen"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn an_admin_address_on_a_proxy_or_tls_port_is_refused_by_check_and_serve() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = |admin: &str, proxy: &str, tls: &str| {
        let tls = match tls {
            "" => String::new(),
            addr => format!(
                "[tls]\nlisten = [\"{addr}\"]\ncertificates = [{{ cert = \"a.pem\", key = \"a.key\" }}]\n"
            ),
        };
        let text =
            format!("[proxy]\nlisten = [\"{proxy}\"]\n[admin]\nlisten = \"{admin}\"\n{tls}{POOLS}");
        write_file(dir.path(), "switchback.toml", text.as_bytes())
    };
    let other = free_port();
    let path = config(&format!("127.0.0.1:{port}"), &format!("0.0.0.0:{port}"), "");
    let out = check_in(&path, dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let expected =
        format!("admin.listen: 127.0.0.1:{port} takes the port of proxy.listen 0.0.0.0:{port}");
    assert!(stderr(&out).contains(&expected), "{}", stderr(&out));
    let mut serving = Serving::start(&path, dir.path());
    let exited = poll_until("serve refuses it", DEADLINE, || {
        let exited = serving.child.try_wait().unwrap().is_some();
        async move { exited }
    })
    .await;
    assert!(
        serving.log().contains(&expected),
        "{:?}: {}",
        exited,
        serving.log()
    );
    assert_eq!(serving.child.wait().unwrap().code(), Some(1));

    // An IPv6 wildcard on the TLS listener and the IPv6 loopback for admin: a clash too.
    let path = config(
        &format!("[::1]:{port}"),
        &format!("127.0.0.1:{other}"),
        &format!("[::]:{port}"),
    );
    let out = check_in(&path, dir.path());
    assert!(
        stderr(&out).contains(&format!(
            "admin.listen: [::1]:{port} takes the port of tls.listen [::]:{port}"
        )),
        "{}",
        stderr(&out)
    );
    // Different families do not clash (the certificate files are missing: a later problem)...
    let path = config(&format!("127.0.0.1:{port}"), &format!("[::1]:{port}"), "");
    let out = check_in(&path, dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    // ... but the IPv6 wildcard is dual-stack: it takes the IPv4 port too.
    let path = config(&format!("127.0.0.1:{port}"), &format!("[::]:{port}"), "");
    let out = check_in(&path, dir.path());
    assert!(
        stderr(&out).contains(&format!(
            "admin.listen: 127.0.0.1:{port} takes the port of proxy.listen [::]:{port}"
        )),
        "{}",
        stderr(&out)
    );
}

/// `POST /switch` to blue on `admin` with `token`: the status.
async fn switch_with(admin: SocketAddr, token: &str) -> u16 {
    let body = Full::new(Bytes::from(r#"{"to": "blue"}"#)).boxed();
    let mut req = common::request("POST", "/switch", body);
    let headers = req.headers_mut();
    headers.insert("host", admin.to_string().parse().unwrap());
    headers.insert("content-type", "application/json".parse().unwrap());
    let bearer = format!("Bearer {token}");
    headers.insert("authorization", bearer.parse().unwrap());
    Client::connect(admin).await.send(req).await.status
}

/// A config in `dir` naming `token-file = "<name>"`, listening on a free port.
fn token_config(dir: &Path, name: &str) -> PathBuf {
    let text = format!(
        "[proxy]\nlisten = [\"127.0.0.1:{}\"]\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken-file = \"{name}\"\n{POOLS}",
        free_port()
    );
    write_file(dir, "switchback.toml", text.as_bytes())
}

#[tokio::test]
async fn the_admin_token_file_is_read_beside_the_config_file_whatever_the_working_directory() {
    let (config_dir, cwd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_file(config_dir.path(), "admin.tokens", b"alice:s3cret\n");
    let config = token_config(config_dir.path(), "admin.tokens");
    let out = check_in(&config, cwd.path());
    assert!(out.status.success(), "{}", stderr(&out));

    let mut serving = Serving::start(&config, cwd.path());
    let admin = serving.admin().await;
    assert_eq!(switch_with(admin, "s3cret").await, 200);
    assert_eq!(switch_with(admin, "wrong").await, 401);
    assert!(!serving.log().contains("move it to"), "{}", serving.log());
}

#[tokio::test]
async fn a_token_file_found_only_from_the_working_directory_works_with_a_warning() {
    let (config_dir, cwd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_file(cwd.path(), "legacy.tokens", b"alice:s3cret\n");
    let config = token_config(config_dir.path(), "legacy.tokens");
    let resolved = config_dir.path().join("legacy.tokens");
    let warning = format!(
        "admin.token-file: legacy.tokens was found in the working directory, not beside the config file; move it to {}",
        resolved.display()
    );
    let out = check_in(&config, cwd.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains(&warning), "{}", stderr(&out));

    let mut serving = Serving::start(&config, cwd.path());
    let admin = serving.admin().await;
    assert!(serving.log().contains(&warning), "{}", serving.log());
    assert_eq!(switch_with(admin, "s3cret").await, 200);

    // Where neither exists, the error names the path beside the config file.
    std::fs::remove_file(cwd.path().join("legacy.tokens")).unwrap();
    let out = check_in(&config, cwd.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&resolved.display().to_string()),
        "{}",
        stderr(&out)
    );
}
