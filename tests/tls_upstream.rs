//! TLS and HTTP/2 to the backends, over real sockets: a pool verified with its own CA (and
//! health-checked over TLS), a wrong CA or name answered 502 with the reason in the log, and a
//! gRPC-shaped exchange streamed both ways through h2 (TLS and h2c) with its trailers.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::tls::{self, Pki, Speaks};
use common::{free_port, poll_until, TestProxy, Upstream, DEADLINE};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A proxy in front of `green` only, with `green_keys` in its pool table.
async fn proxy_for(green: &Upstream, green_keys: &str, files: &[(&str, &str)]) -> TestProxy {
    let blue = Upstream::start("blue").await;
    let rest = format!(
        "[pools.blue]\nbackends = [\"{}\"]\n[pools.green]\nbackends = [\"{}\"]\n{green_keys}\n[split]\nblue = 0\ngreen = 100\n",
        blue.addr, green.addr
    );
    let proxy = TestProxy::start_with_files("", &rest, files).await;
    std::mem::forget(blue);
    proxy
}

#[tokio::test]
async fn a_tls_pool_is_verified_with_its_ca_and_a_wrong_ca_or_name_answers_502_with_the_reason() {
    let (pki, other) = (Pki::new("internal CA"), Pki::new("some other CA"));
    let cert = pki.issue(&["green.internal"], 30);
    let green = Upstream::start_speaking("green", loopback(), Speaks::tls(&cert)).await;
    let files = [
        ("ca.pem", pki.ca_pem.as_str()),
        ("other.pem", other.ca_pem.as_str()),
    ];

    // Verified with the pool's CA, and health-checked over TLS with the same settings.
    let keys = "tls = { sni = \"green.internal\", ca-file = \"ca.pem\" }\nhealth-check = { path = \"/healthz\", interval = \"100ms\" }";
    let proxy = proxy_for(&green, keys, &files).await;
    poll_until("green is checked up over TLS", DEADLINE, || async {
        proxy.status().await["pools"]["green"]["backends"][0]["checks"]
            .as_u64()
            .unwrap_or(0)
            >= 2
            && proxy.status().await["pools"]["green"]["backends"][0]["state"] == "up"
    })
    .await;
    let reply = common::get(proxy.addr, "/").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-upstream").as_deref(), Some("green"));
    drop(proxy);

    // Another CA: 502, and the log names the backend and the reason.
    let keys = "tls = { sni = \"green.internal\", ca-file = \"other.pem\" }";
    let proxy = proxy_for(&green, keys, &files).await;
    assert_eq!(common::get(proxy.addr, "/").await.status, 502);
    poll_until("the reason is logged", DEADLINE, || async {
        let log = proxy.stderr();
        log.contains("certificate signed by an unknown authority")
            && log.contains(&green.addr.to_string())
    })
    .await;
    // The CA file rotated to the right CA: SIGHUP reads it again, no config edit needed.
    std::fs::write(proxy.dir.path().join("other.pem"), &pki.ca_pem).unwrap();
    proxy.signal(libc::SIGHUP);
    poll_until("the rotated CA verifies green", DEADLINE, || async {
        common::get(proxy.addr, "/").await.status == 200
    })
    .await;
    // The snapshot is published before the entry is appended.
    poll_until("the refresh in the deployment log", DEADLINE, || async {
        proxy.history().await.iter().any(|e| {
            e["message"]
                .as_str()
                .unwrap_or("")
                .contains("re-read CA files")
        })
    })
    .await;
    drop(proxy);

    // The right CA but another name: 502, name mismatch.
    let keys = "tls = { sni = \"blue.internal\", ca-file = \"ca.pem\" }";
    let proxy = proxy_for(&green, keys, &files).await;
    assert_eq!(common::get(proxy.addr, "/").await.status, 502);
    poll_until("the reason is logged", DEADLINE, || async {
        proxy.stderr().contains("name mismatch")
    })
    .await;
    drop(proxy);

    // verify = false: proxied whoever signed it, with a warning at start.
    let keys = "tls = { sni = \"green.internal\", verify = false }";
    let proxy = proxy_for(&green, keys, &files).await;
    assert_eq!(common::get(proxy.addr, "/").await.status, 200);
    assert!(
        proxy.stderr().contains("verify = false"),
        "{}",
        proxy.stderr()
    );
}

#[tokio::test]
async fn a_bad_ca_file_stops_the_start_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), "not a certificate\n").unwrap();
    let config = dir.path().join("switchback.toml");
    let text = format!(
        "[proxy]\nlisten = [\"127.0.0.1:{}\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n[pools.green]\nbackends = [\"127.0.0.1:9\"]\ntls = {{ ca-file = \"ca.pem\" }}\n[split]\ngreen = 100\n",
        free_port()
    );
    std::fs::write(&config, text).unwrap();
    let out = std::process::Command::new(common::binary())
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("pools.green.tls.ca-file"), "{stderr}");
    assert!(stderr.contains("holds no PEM certificate"), "{stderr}");
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn next_frame(body: &mut hyper::body::Incoming) -> Frame<Bytes> {
    tokio::time::timeout(DEADLINE, body.frame())
        .await
        .expect("a frame in time")
        .expect("a frame")
        .expect("no error")
}

/// One gRPC-shaped call over `sender`: two messages, each echoed before the next is sent
/// (so both directions stream), then the trailers. Returns the `x-served-by` trailer.
async fn grpc_call(sender: &mut hyper::client::conn::http2::SendRequest<Body>) -> String {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    let body =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
    let req = hyper::Request::post("https://a.test/grpc.Echo/Stream")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(StreamBody::new(body).boxed())
        .unwrap();
    tx.send(Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\x05ping1"))))
        .await
        .unwrap();
    let resp = tokio::time::timeout(DEADLINE, sender.send_request(req))
        .await
        .expect("headers in time")
        .expect("headers");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/grpc");
    let mut body = resp.into_body();
    let mut got = Vec::new();
    while got.len() < 10 {
        got.extend_from_slice(&next_frame(&mut body).await.into_data().expect("data"));
    }
    assert_eq!(
        got, b"\0\0\0\0\x05ping1",
        "the first message came back before the second was sent"
    );
    tx.send(Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\x05ping2"))))
        .await
        .unwrap();
    drop(tx);
    let mut got = Vec::new();
    let trailers = loop {
        let frame = next_frame(&mut body).await;
        match frame.into_data() {
            Ok(data) => got.extend_from_slice(&data),
            Err(frame) => break frame.into_trailers().expect("trailers"),
        }
    };
    assert_eq!(got, b"\0\0\0\0\x05ping2");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "ok");
    trailers["x-served-by"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn grpc_streams_both_ways_through_h2_upstreams_with_its_trailers() {
    let pki = Pki::new("internal CA");
    let front = pki.issue(&["a.test"], 30);
    let green_cert = pki.issue(&["green.internal"], 30);
    // green: h2 over TLS; blue: h2c with prior knowledge.
    let green = Upstream::start_speaking("green", loopback(), Speaks::tls(&green_cert)).await;
    let blue = Upstream::start_speaking("blue", loopback(), Speaks::H2c).await;
    let tls_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let rest = format!(
        "[tls]\nlisten = [\"{tls_addr}\"]\ncertificates = [{{ cert = \"a.pem\", key = \"a.key\" }}]\n\
         [pools.blue]\nbackends = [\"{}\"]\nprotocol = \"h2\"\n\
         [pools.green]\nbackends = [\"{}\"]\nprotocol = \"h2\"\ntls = {{ sni = \"green.internal\", ca-file = \"ca.pem\" }}\n\
         [split]\nblue = 50\ngreen = 50\n",
        blue.addr, green.addr
    );
    let files = [
        ("a.pem", front.cert.as_str()),
        ("a.key", front.key.as_str()),
        ("ca.pem", pki.ca_pem.as_str()),
    ];
    let _proxy = TestProxy::start_with_files("", &rest, &files).await;
    let stream = tls::connect(
        tls_addr,
        Some("a.test"),
        tls::client_config(Some(&pki.ca_pem), &["h2"]),
    )
    .await
    .unwrap();
    let mut sender = tls::http2(stream).await;
    let mut served = std::collections::BTreeSet::new();
    for _ in 0..40 {
        served.insert(grpc_call(&mut sender).await);
        if served.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(served.into_iter().collect::<Vec<_>>(), ["blue", "green"]);
}
