//! `switchback ctl` as a dependable client: a redirect, a web page or silence from the other
//! end is an error with a clear message and a non-zero exit, never a quiet success.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use common::binary;

/// A one-shot server on 127.0.0.1:0 answering every connection with `answer` (or nothing).
fn fake_admin(answer: Option<&'static str>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        // Bounded: a test sends a handful of requests.
        for stream in listener.incoming().take(8) {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            match answer {
                Some(answer) => {
                    let _ = stream.write_all(answer.as_bytes());
                }
                None => std::thread::sleep(Duration::from_secs(3)),
            }
        }
    });
    url
}

fn ctl(url: &str, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(binary())
        .args(["ctl", "--admin", url])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_redirect_a_web_page_or_silence_is_an_error() {
    let redirect = fake_admin(Some(
        "HTTP/1.1 301 Moved Permanently\r\nLocation: https://login.example/\r\nContent-Length: 0\r\n\r\n",
    ));
    let (code, err) = ctl(&redirect, &["status"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("301") && err.contains("redirect to https://login.example/"),
        "{err}"
    );

    let page = fake_admin(Some(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 15\r\n\r\n<html>hi</html>",
    ));
    let (code, err) = ctl(&page, &["switch", "green"]);
    assert_eq!(code, Some(1), "a 200 that is not JSON is no success");
    assert!(
        err.contains("not the admin API's JSON (content-type text/html)"),
        "{err}"
    );

    let silent = fake_admin(None);
    let started = Instant::now();
    let (code, err) = ctl(&silent, &["--timeout", "300ms", "status"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no answer within 300ms"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the timeout holds"
    );
}

#[test]
fn an_https_admin_url_is_spoken_over_tls_with_the_ca_given() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let (ca, cert, key) = (path("ca.pem"), path("cert.pem"), path("key.pem"));
    std::fs::write(
        path("ext.cnf"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // A CA, and a leaf certificate for localhost signed by it.
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        &path("ca.key"),
        "-out",
        &ca,
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        &key,
        "-out",
        &path("leaf.csr"),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &path("leaf.csr"),
        "-CA",
        &ca,
        "-CAkey",
        &path("ca.key"),
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        &path("ext.cnf"),
        "-out",
        &cert,
    ]);
    let port = common::free_port();
    // `openssl s_server -www` answers any GET with an HTML page over TLS.
    let mut server = Command::new("openssl")
        .args(["s_server", "-quiet", "-www", "-accept", &port.to_string()])
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "s_server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!("https://localhost:{port}");
    let (code, err) = ctl(&url, &["status"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("TLS"),
        "an untrusted certificate is refused: {err}"
    );
    let (code, err) = ctl(&url, &["--ca-file", &ca, "status"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("not the admin API's JSON (content-type text/html)"),
        "the TLS exchange happened and the HTML answer is refused: {err}"
    );
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn a_reader_that_goes_away_is_no_panic() {
    // `ctl status | grep -q …`: the reader may be gone before the answer is printed.
    let ok = fake_admin(Some(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 35\r\n\r\n\
         {\"version\": 1, \"split\": {\"b\": 100}}",
    ));
    let mut child = Command::new(binary())
        .args(["ctl", "--admin", &ok, "--json", "status"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader is gone before anything is written
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(out.status.code(), Some(101), "{stderr}");
}
