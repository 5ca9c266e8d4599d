//! The admin API over TLS with `ctl` as its client, and certificates that are not usable at
//! start-up: a key that is not the certificate's, an expired certificate (refused), and one
//! close to expiry (served, warned about by `check` and `serve`).

mod common;

use std::process::Command;

use common::tls::{Issued, Pki};
use common::{binary, free_port, TestProxy, Upstream};

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
