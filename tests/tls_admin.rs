//! The admin API over TLS with `ctl` as its client; its certificate renewed without a restart
//! (and its expiry in the gauge under `listener="admin"`); and certificates that are not
//! usable at start-up: a key that is not the certificate's, an expired certificate (refused),
//! and one close to expiry (served, warned about by `check` and `serve`).

mod common;

use std::process::Command;

use common::tls::{self, Issued, Pki};
use common::{binary, free_port, metrics, poll_until, TestProxy, Upstream, DEADLINE};

fn ctl(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(binary())
        .arg("ctl")
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
}

#[tokio::test]
async fn the_admin_api_is_served_over_tls_and_ctl_verifies_it_with_its_ca_file() {
    let pki = Pki::new("admin CA");
    let admin = pki.issue(&["127.0.0.1"], 30);
    let blue = Upstream::start("blue").await;
    let rest = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntls = {{ cert = \"admin.pem\", key = \"admin.key\" }}\n[pools.blue]\nbackends = [\"{}\"]\n[split]\nblue = 100\n",
        blue.addr
    );
    let files = [
        ("admin.pem", admin.cert.as_str()),
        ("admin.key", admin.key.as_str()),
        ("ca.pem", pki.ca_pem.as_str()),
    ];
    let proxy = TestProxy::start_with_files("", &rest, &files).await;
    let url = format!("https://{}", proxy.admin);
    let ca = proxy.dir.path().join("ca.pem");

    let (code, out) = ctl(&["--admin", &url, "--ca-file", ca.to_str().unwrap(), "status"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("blue"), "{out}");

    // Without the CA the certificate is not trusted; plain HTTP gets no admin answer.
    let (code, out) = ctl(&["--admin", &url, "status"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("TLS"), "{out}");
    let (code, _) = ctl(&[
        "--admin",
        &format!("http://{}", proxy.admin),
        "--timeout",
        "2s",
        "status",
    ]);
    assert_eq!(code, Some(1));
}

/// `serve` (or `check`) on a config with `[tls]` serving `cert` with `key`.
fn run_with(command: &str, cert: &str, key: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.pem"), cert).unwrap();
    std::fs::write(dir.path().join("a.key"), key).unwrap();
    let config = dir.path().join("switchback.toml");
    let text = format!(
        "[proxy]\nlisten = [\"127.0.0.1:{}\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n[pools.blue]\nbackends = [\"127.0.0.1:9\"]\n[split]\nblue = 100\n[tls]\nlisten = [\"127.0.0.1:{}\"]\ncertificates = [{{ cert = \"a.pem\", key = \"a.key\" }}]\n",
        free_port(),
        free_port()
    );
    std::fs::write(&config, text).unwrap();
    let mut child = Command::new(binary())
        .args([command, "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // `serve` with a usable certificate keeps running: give it a moment, then stop it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while std::time::Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
}

#[test]
fn unusable_certificates_stop_the_start_and_one_close_to_expiry_is_warned_about() {
    let pki = Pki::new("test CA");
    let good = pki.issue(&["a.test"], 30);
    let other = pki.issue(&["a.test"], 30);
    let now = time::OffsetDateTime::now_utc();
    let expired: Issued = pki.issue_between(
        &["a.test"],
        now - time::Duration::days(60),
        now - time::Duration::days(1),
    );
    let soon = pki.issue(&["soon.test"], 5);

    let (code, out) = run_with("serve", &good.cert, &other.key);
    assert_eq!(code, Some(3), "{out}");
    assert!(
        out.contains("a.key is not the private key of") && out.contains("a.pem"),
        "{out}"
    );

    let (code, out) = run_with("check", &expired.cert, &expired.key);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("tls.certificates[0]") && out.contains("expired at"),
        "{out}"
    );

    let (code, out) = run_with("check", "garbage", &good.key);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("holds no PEM certificate"), "{out}");

    let (code, out) = run_with("check", &soon.cert, &soon.key);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("certificate a.pem: soon.test expires"),
        "{out}"
    );
    assert!(out.contains("expires within 14 days"), "{out}");

    let (code, out) = run_with("serve", &soon.cert, &soon.key);
    assert_eq!(code, None, "serve keeps running until killed: {out}");
    assert!(out.contains("expires within 14 days"), "{out}");
}

/// `GET path` on the admin API over TLS (any certificate accepted): status and body.
async fn admin_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use http_body_util::{BodyExt, Full};
    let stream = tls::connect(addr, None, tls::client_config(None, &["http/1.1"]))
        .await
        .expect("admin TLS handshake");
    let mut sender = tls::http1(stream).await;
    let req = hyper::Request::get(path)
        .header("host", addr.to_string())
        .body(Full::new(bytes::Bytes::new()).boxed())
        .unwrap();
    let resp = sender.send_request(req).await.expect("admin answer");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The expiry gauge's value for `listener` and `name` (0 when there is no such series).
async fn expiry(admin: std::net::SocketAddr, listener: &str, name: &str) -> f64 {
    let (status, text) = admin_get(admin, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    metrics::value(
        &metrics::parse(&text),
        "switchback_tls_certificate_expiry_timestamp_seconds",
        &[("listener", listener), ("name", name)],
    )
}

/// A leaf for `names` expiring `days` from now, with that notAfter in whole seconds.
fn leaf(pki: &Pki, names: &[&str], days: i64) -> (Issued, i64) {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    let until = now + time::Duration::days(days);
    let issued = pki.issue_between(names, now - time::Duration::days(1), until);
    (issued, until.unix_timestamp())
}

#[tokio::test]
async fn the_admin_certificate_reloads_like_the_front_doors_and_its_expiry_is_labelled_admin() {
    let pki = Pki::new("test CA");
    // One name on both listeners: a series each, told apart by `listener`.
    let (front, front_until) = leaf(&pki, &["shared.test"], 30);
    let (first, first_until) = leaf(&pki, &["shared.test"], 20);
    let blue = Upstream::start("blue").await;
    let tls_addr = format!("127.0.0.1:{}", free_port());
    let rest = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntls = {{ cert = \"admin.pem\", key = \"admin.key\" }}\n\
         [tls]\nlisten = [\"{tls_addr}\"]\ncertificates = [{{ cert = \"front.pem\", key = \"front.key\" }}]\n\
         [pools.blue]\nbackends = [\"{}\"]\n[split]\nblue = 100\n",
        blue.addr
    );
    let files = [
        ("admin.pem", first.cert.as_str()),
        ("admin.key", first.key.as_str()),
        ("front.pem", front.cert.as_str()),
        ("front.key", front.key.as_str()),
    ];
    let proxy = TestProxy::start_with_files("", &rest, &files).await;
    assert_eq!(tls::served_names(proxy.admin, None).await, ["shared.test"]);
    assert_eq!(
        expiry(proxy.admin, "admin", "shared.test").await,
        first_until as f64
    );
    assert_eq!(
        expiry(proxy.admin, "proxy", "shared.test").await,
        front_until as f64
    );

    // A renewal by rename reaches new admin handshakes, and the gauge follows.
    let (renewed, renewed_until) = leaf(&pki, &["shared.test", "renewed.test"], 60);
    let dir = proxy.dir.path();
    for (name, text) in [("admin.key", &renewed.key), ("admin.pem", &renewed.cert)] {
        std::fs::write(dir.join(format!(".{name}.new")), text).unwrap();
        std::fs::rename(dir.join(format!(".{name}.new")), dir.join(name)).unwrap();
    }
    let took = poll_until(
        "the renewed admin certificate is served",
        DEADLINE,
        || async { tls::served_names(proxy.admin, None).await.len() == 2 },
    )
    .await;
    eprintln!("renewed admin certificate served after {took:?}");
    assert_eq!(
        expiry(proxy.admin, "admin", "renewed.test").await,
        renewed_until as f64
    );
    assert_eq!(
        expiry(proxy.admin, "admin", "shared.test").await,
        renewed_until as f64
    );
    assert_eq!(
        expiry(proxy.admin, "proxy", "shared.test").await,
        front_until as f64
    );
    assert_eq!(expiry(proxy.admin, "proxy", "renewed.test").await, 0.0);

    // One that does not read is rejected; the renewed certificate keeps serving.
    std::fs::write(dir.join("admin.pem"), "not a certificate").unwrap();
    poll_until(
        "the broken admin certificate is rejected",
        DEADLINE,
        || async {
            let (_, history) = admin_get(proxy.admin, "/history").await;
            history.contains("certificate rejected: admin.tls")
        },
    )
    .await;
    assert_eq!(tls::served_names(proxy.admin, None).await.len(), 2);

    // A reload that points `[admin] tls` at other files serves them without a restart.
    let (moved, _) = leaf(&pki, &["shared.test", "moved.test", "third.test"], 60);
    std::fs::write(dir.join("admin2.pem"), &moved.cert).unwrap();
    std::fs::write(dir.join("admin2.key"), &moved.key).unwrap();
    let text = std::fs::read_to_string(&proxy.config_path).unwrap();
    let text = text.replace(
        "\"admin.pem\", key = \"admin.key\"",
        "\"admin2.pem\", key = \"admin2.key\"",
    );
    std::fs::write(&proxy.config_path, text).unwrap();
    poll_until(
        "the moved admin certificate is served",
        DEADLINE,
        || async { tls::served_names(proxy.admin, None).await.len() == 3 },
    )
    .await;
}
