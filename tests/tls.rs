//! TLS at the front door, over real sockets: SNI, certificate reload (rename and symlink swap),
//! rejected files, h2 with many streams, `X-Forwarded-Proto`, the http → https redirect, and
//! handshake failures counted by reason. Certificates come from a test CA (rcgen).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use common::tls::{self, Issued, Pki};
use common::{free_port, poll_until, pools_toml, TestProxy, Upstream, DEADLINE};
use http_body_util::{BodyExt, Full};

struct Front {
    blue: Upstream,
    green: Upstream,
    proxy: TestProxy,
    tls: SocketAddr,
}

/// Blue and green split `split` behind a proxy with a TLS listener serving `certs` (name
/// stem → certificate), in that order, plus `tls_keys` in `[tls]`.
async fn front(split: &str, certs: &[(&str, &Issued)], tls_keys: &str, extra: &str) -> Front {
    let (blue, green) = (
        Upstream::start("blue").await,
        Upstream::start("green").await,
    );
    let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut files = Vec::new();
    let mut pairs = Vec::new();
    for (stem, issued) in certs {
        files.push((format!("{stem}.pem"), issued.cert.clone()));
        files.push((format!("{stem}.key"), issued.key.clone()));
        pairs.push(format!("{{ cert = \"{stem}.pem\", key = \"{stem}.key\" }}"));
    }
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let pools = pools_toml(&[("blue", &[blue.addr]), ("green", &[green.addr])], split);
    let rest = format!(
        "[tls]\nlisten = [\"{tls}\"]\ncertificates = [{}]\n{tls_keys}\n{extra}\n{pools}",
        pairs.join(", ")
    );
    let proxy = TestProxy::start_with_files("", &rest, &files).await;
    Front {
        blue,
        green,
        proxy,
        tls,
    }
}

/// The names on the certificate served to a handshake with `sni`.
async fn served_names(addr: SocketAddr, sni: Option<&str>) -> Vec<String> {
    let stream = tls::connect(addr, sni, tls::client_config(None, &["http/1.1"]))
        .await
        .expect("TLS handshake");
    tls::presented_names(&stream)
}

async fn get(
    sender: &mut hyper::client::conn::http1::SendRequest<common::BoxBody>,
    path: &str,
) -> (u16, Option<String>) {
    sender.ready().await.unwrap();
    let req = hyper::Request::get(path)
        .header("host", "a.test")
        .body(Full::new(Bytes::new()).boxed())
        .unwrap();
    let resp = tokio::time::timeout(DEADLINE, sender.send_request(req))
        .await
        .expect("answer in time")
        .expect("answer");
    let status = resp.status().as_u16();
    let upstream = resp
        .headers()
        .get("x-upstream")
        .map(|v| v.to_str().unwrap().to_string());
    let _ = resp.into_body().collect().await;
    (status, upstream)
}

#[tokio::test]
async fn sni_picks_the_certificate_and_tls_requests_are_routed_by_the_split() {
    let pki = Pki::new("test CA");
    let (a, b) = (
        pki.issue(&["a.test"], 30),
        pki.issue(&["b.test", "*.b.test"], 30),
    );
    let f = front("blue = 50\ngreen = 50", &[("a", &a), ("b", &b)], "", "").await;

    assert_eq!(served_names(f.tls, Some("a.test")).await, ["a.test"]);
    assert_eq!(
        served_names(f.tls, Some("b.test")).await,
        ["b.test", "*.b.test"]
    );
    assert_eq!(
        served_names(f.tls, Some("x.b.test")).await,
        ["b.test", "*.b.test"]
    );
    assert_eq!(
        served_names(f.tls, None).await,
        ["a.test"],
        "no SNI: the first"
    );
    assert_eq!(served_names(f.tls, Some("other.test")).await, ["a.test"]);

    // Verified by a client trusting only the test CA, over HTTP/1.1.
    let stream = tls::connect(
        f.tls,
        Some("a.test"),
        tls::client_config(Some(&pki.ca_pem), &["http/1.1"]),
    )
    .await
    .unwrap();
    let mut sender = tls::http1(stream).await;
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..60 {
        let (status, upstream) = get(&mut sender, "/").await;
        assert_eq!(status, 200);
        *seen.entry(upstream.unwrap()).or_insert(0) += 1;
    }
    assert!(seen.get("blue").copied().unwrap_or(0) >= 10, "{seen:?}");
    assert!(seen.get("green").copied().unwrap_or(0) >= 10, "{seen:?}");

    // X-Forwarded-Proto: https from the TLS listener, http from the plain one.
    let protos = |u: &Upstream| -> Vec<String> {
        u.seen()
            .iter()
            .map(|s| s.headers["x-forwarded-proto"].to_str().unwrap().to_string())
            .collect()
    };
    assert!(protos(&f.blue)
        .iter()
        .chain(protos(&f.green).iter())
        .all(|p| p == "https"));
    let before = f.blue.seen().len() + f.green.seen().len();
    assert_eq!(common::get(f.proxy.addr, "/").await.status, 200);
    let all: Vec<String> = protos(&f.blue)
        .into_iter()
        .chain(protos(&f.green))
        .collect();
    assert_eq!(all.len(), before + 1);
    assert_eq!(all.iter().filter(|p| *p == "http").count(), 1);

    // /status lists the certificates served, default first.
    let status = f.proxy.status().await;
    let certs = status["tls"]["certificates"].as_array().unwrap();
    assert_eq!(certs[0]["names"], serde_json::json!(["a.test"]));
    assert_eq!(certs[1]["cert"], "b.pem");
    // And the expiry gauge has a series per name.
    let metrics = f.proxy.admin("GET", "/metrics", "").await.text();
    assert!(
        metrics.contains("switchback_tls_certificate_expiry_timestamp_seconds{name=\"*.b.test\"}"),
        "{metrics}"
    );
}

/// Replaces `name` in `dir` atomically (write beside, then rename).
fn replace(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

#[tokio::test]
async fn a_replaced_certificate_reaches_new_handshakes_and_a_broken_one_is_rejected() {
    let pki = Pki::new("test CA");
    let first = pki.issue(&["a.test"], 30);
    let f = front("blue = 100\ngreen = 0", &[("a", &first)], "", "").await;
    let dir = f.proxy.dir.path().to_path_buf();

    // A connection opened before the change keeps working after it.
    let stream = tls::connect(
        f.tls,
        Some("a.test"),
        tls::client_config(None, &["http/1.1"]),
    )
    .await
    .unwrap();
    let mut before = tls::http1(stream).await;
    assert_eq!(get(&mut before, "/").await.0, 200);

    let renewed = pki.issue(&["a.test", "renewed.a.test"], 60);
    replace(&dir, "a.key", &renewed.key);
    replace(&dir, "a.pem", &renewed.cert);
    let took = poll_until(
        "the renewed certificate is served",
        Duration::from_secs(2),
        || async { served_names(f.tls, Some("a.test")).await.len() == 2 },
    )
    .await;
    eprintln!("renewed certificate served after {took:?}");
    assert_eq!(
        get(&mut before, "/").await.0,
        200,
        "the old connection still works"
    );

    // A file that does not parse: rejected, logged, the renewed certificate still served.
    replace(
        &dir,
        "a.pem",
        "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n",
    );
    poll_until("a rejected entry", DEADLINE, || async {
        f.proxy.history().await.iter().any(|e| {
            e["action"] == "rejected"
                && e["actor"] == "file"
                && e["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("tls.certificates[0]")
        })
    })
    .await;
    assert_eq!(
        served_names(f.tls, Some("a.test")).await,
        ["a.test", "renewed.a.test"]
    );

    // A key that is not the certificate's: rejected the same way.
    let other = pki.issue(&["a.test", "third.a.test"], 60);
    replace(&dir, "a.pem", &other.cert);
    poll_until("a key mismatch is rejected", DEADLINE, || async {
        f.proxy.history().await.iter().any(|e| {
            e["action"] == "rejected"
                && e["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("is not the private key of")
        })
    })
    .await;
    assert_eq!(
        served_names(f.tls, Some("a.test")).await,
        ["a.test", "renewed.a.test"]
    );
    assert!(
        f.proxy.stderr().contains("certificate rejected"),
        "{}",
        f.proxy.stderr()
    );
}

#[tokio::test]
async fn a_symlink_swap_of_the_certificate_directory_is_picked_up() {
    let pki = Pki::new("test CA");
    let (v1, v2) = (
        pki.issue(&["a.test"], 30),
        pki.issue(&["a.test", "v2.a.test"], 30),
    );
    let (blue, green) = (
        Upstream::start("blue").await,
        Upstream::start("green").await,
    );
    let dir = tempfile::tempdir().unwrap();
    // Kubernetes' layout: ..data -> ..v1, and the files are links through ..data.
    for (version, issued) in [("..v1", &v1), ("..v2", &v2)] {
        std::fs::create_dir(dir.path().join(version)).unwrap();
        std::fs::write(dir.path().join(version).join("tls.crt"), &issued.cert).unwrap();
        std::fs::write(dir.path().join(version).join("tls.key"), &issued.key).unwrap();
    }
    std::os::unix::fs::symlink("..v1", dir.path().join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/tls.crt", dir.path().join("tls.crt")).unwrap();
    std::os::unix::fs::symlink("..data/tls.key", dir.path().join("tls.key")).unwrap();
    let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let pools = pools_toml(
        &[("blue", &[blue.addr]), ("green", &[green.addr])],
        "blue = 100\ngreen = 0",
    );
    let certs = dir.path().display();
    let rest = format!(
        "[tls]\nlisten = [\"{tls}\"]\ncertificates = [{{ cert = \"{certs}/tls.crt\", key = \"{certs}/tls.key\" }}]\n{pools}"
    );
    let proxy = TestProxy::start("", &rest).await;
    assert_eq!(served_names(tls, Some("a.test")).await, ["a.test"]);

    std::os::unix::fs::symlink("..v2", dir.path().join("..data_tmp")).unwrap();
    std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
    poll_until(
        "the swapped certificate is served",
        Duration::from_secs(2),
        || async { served_names(tls, Some("a.test")).await.len() == 2 },
    )
    .await;
    drop(proxy);
}

#[tokio::test]
async fn h2_over_tls_answers_100_concurrent_streams_on_one_connection() {
    let pki = Pki::new("test CA");
    let a = pki.issue(&["a.test"], 30);
    let f = front("blue = 50\ngreen = 50", &[("a", &a)], "", "").await;
    let stream = tls::connect(
        f.tls,
        Some("a.test"),
        tls::client_config(Some(&pki.ca_pem), &["h2", "http/1.1"]),
    )
    .await
    .unwrap();
    assert_eq!(tls::alpn(&stream).as_deref(), Some("h2"));
    let sender = tls::http2(stream).await;
    let calls = (0..100).map(|i| {
        let mut sender = sender.clone();
        async move {
            let body = format!("stream {i} ").repeat(100 + i);
            let req = hyper::Request::post("https://a.test/echo")
                .body(Full::new(Bytes::from(body.clone())).boxed())
                .unwrap();
            let resp = sender.send_request(req).await.expect("answer");
            assert_eq!(resp.version(), hyper::Version::HTTP_2);
            let upstream = resp.headers()["x-upstream"].to_str().unwrap().to_string();
            let got = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(got, Bytes::from(body), "body of stream {i} intact");
            upstream
        }
    });
    let upstreams = tokio::time::timeout(DEADLINE, futures_util::future::join_all(calls))
        .await
        .expect("100 streams answered in time");
    let blue = upstreams.iter().filter(|u| *u == "blue").count();
    assert!((20..=80).contains(&blue), "blue served {blue} of 100");
    // The upstreams got HTTP/1.1 with the client's authority as Host.
    let seen = f.blue.seen();
    assert_eq!(seen[0].headers["host"], "a.test");
    assert_eq!(seen[0].headers["x-forwarded-proto"], "https");
    assert!(f.green.requests() > 0);
}

#[tokio::test]
async fn redirect_http_answers_308_to_the_same_host_and_target_over_https() {
    let pki = Pki::new("test CA");
    let a = pki.issue(&["a.test"], 30);
    let f = front(
        "blue = 100\ngreen = 0",
        &[("a", &a)],
        "redirect-http = true",
        "",
    )
    .await;
    let mut client = common::Client::connect(f.proxy.addr).await;
    let req = hyper::Request::get("/a/b?c=1&d=%20")
        .header("host", "shop.example:8080")
        .body(Full::new(Bytes::new()).boxed())
        .unwrap();
    let reply = client.send(req).await;
    assert_eq!(reply.status, 308);
    assert_eq!(
        reply.header("location").as_deref(),
        Some("https://shop.example/a/b?c=1&d=%20")
    );
    assert_eq!(f.blue.requests(), 0, "nothing reached an upstream");
    // The TLS listener serves as usual.
    let stream = tls::connect(
        f.tls,
        Some("a.test"),
        tls::client_config(None, &["http/1.1"]),
    )
    .await
    .unwrap();
    assert_eq!(get(&mut tls::http1(stream).await, "/").await.0, 200);
}

#[tokio::test]
async fn failed_handshakes_are_counted_by_reason() {
    let pki = Pki::new("test CA");
    let a = pki.issue(&["a.test"], 30);
    let f = front(
        "blue = 100\ngreen = 0",
        &[("a", &a)],
        "min-version = \"1.3\"",
        "",
    )
    .await;
    // Not TLS at all.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(f.tls).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(DEADLINE, tcp.read_to_end(&mut buf)).await;
    }
    // TLS 1.2 only, against min-version 1.3.
    let provider = {
        pingora::tls::install_default_crypto_provider();
        pingora::tls::CryptoProvider::get_default().unwrap().clone()
    };
    let mut old = pingora::tls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&pingora::tls::version::TLS12])
        .unwrap()
        .with_root_certificates(pingora::tls::RootCertStore::empty())
        .with_no_client_auth();
    old.alpn_protocols = vec![b"http/1.1".to_vec()];
    assert!(
        tls::connect(f.tls, Some("a.test"), std::sync::Arc::new(old))
            .await
            .is_err()
    );
    poll_until("both failures counted", DEADLINE, || async {
        let samples = common::metrics::scrape(&f.proxy).await;
        let count = |reason| {
            common::metrics::value(
                &samples,
                "switchback_tls_handshake_errors_total",
                &[("reason", reason)],
            )
        };
        count("malformed") >= 1.0 && count("incompatible") >= 1.0
    })
    .await;
    // A TLS 1.3 client is served.
    assert_eq!(served_names(f.tls, Some("a.test")).await, ["a.test"]);
}
