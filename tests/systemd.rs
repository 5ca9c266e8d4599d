//! systemd integration: the readiness protocol over `$NOTIFY_SOCKET`, and the shipped unit.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{binary, free_port, write_file};

/// The next datagram on `socket`, within 15 s.
fn next(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = socket
        .recv(&mut buf)
        .expect("a notification within the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn ready_reloading_and_stopping_arrive_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let (port, tls_port) = (free_port(), free_port());
    let issued = common::tls::Pki::new("test CA").issue(&["a.test"], 30);
    write_file(dir.path(), "a.pem", issued.cert.as_bytes());
    write_file(dir.path(), "a.key", issued.key.as_bytes());
    let text = format!("[proxy]\nlisten = [\"127.0.0.1:{port}\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n\
        [tls]\nlisten = [\"127.0.0.1:{tls_port}\"]\ncertificates = [{{ cert = \"a.pem\", key = \"a.key\" }}]\n\
        [pools.blue]\nbackends = [\"127.0.0.1:1\"]\n[split]\nblue = 100\n");
    let config = write_file(dir.path(), "switchback.toml", text.as_bytes());
    let mut child = Command::new(binary())
        .args(["serve", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let kill = |signal: &str| {
        assert!(Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success());
    };
    assert_eq!(next(&socket), "READY=1");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "ready means accepting"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_ok(),
        "ready means the TLS listener accepts too"
    );
    kill("-HUP");
    assert_eq!(next(&socket), "RELOADING=1");
    assert_eq!(next(&socket), "READY=1");
    kill("-TERM");
    assert_eq!(next(&socket), "STOPPING=1");
    assert!(child.wait().unwrap().success());
}

#[test]
fn the_shipped_unit_verifies() {
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("skipped: systemd-analyze is not installed here");
        return;
    };
    assert!(probe.status.success());
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string("contrib/systemd/switchback.service").unwrap();
    let unit = unit.replace("/usr/local/bin/switchback", binary().to_str().unwrap());
    let path = write_file(dir.path(), "switchback.service", unit.as_bytes());
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
