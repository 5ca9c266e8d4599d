//! TLS at the front door, over real sockets: SNI, routing and `X-Forwarded-Proto`, h2 with many
//! streams, the http → https redirect, and handshake failures counted by reason.
//! Certificates come from a test CA (rcgen).

mod common;

use bytes::Bytes;
use common::tls::{self, front, get1 as get, served_names, Pki};
use common::{poll_until, Upstream, DEADLINE};
use http_body_util::{BodyExt, Full};

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
        metrics.contains(
            "switchback_tls_certificate_expiry_timestamp_seconds{listener=\"proxy\",name=\"*.b.test\"}"
        ),
        "{metrics}"
    );
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

#[tokio::test]
async fn an_h2_client_that_never_sends_its_preface_is_closed_after_header_timeout() {
    use tokio::io::AsyncReadExt;
    let pki = Pki::new("test CA");
    let a = pki.issue(&["a.test"], 30);
    let f = front(
        "blue = 100\ngreen = 0",
        &[("a", &a)],
        "",
        "header-timeout = \"1s\"",
    )
    .await;
    let config = tls::client_config(Some(&pki.ca_pem), &["h2"]);
    let mut silent = tls::connect(f.tls, Some("a.test"), config.clone())
        .await
        .unwrap();
    assert_eq!(tls::alpn(&silent).as_deref(), Some("h2"));
    // Sends nothing: the proxy must close within header-timeout (1 s), well before DEADLINE.
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(DEADLINE, silent.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "a silent h2 connection is still open");
    // One that speaks h2 at once is served, and stays usable past header-timeout.
    let stream = tls::connect(f.tls, Some("a.test"), config).await.unwrap();
    let client = tls::http2(stream).await;
    let get = || {
        let mut client = client.clone();
        async move {
            let req = hyper::Request::get("https://a.test/")
                .body(Full::new(Bytes::new()).boxed())
                .unwrap();
            client.send_request(req).await.expect("answer").status()
        }
    };
    assert_eq!(get().await, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(get().await, 200, "served past header-timeout");
}

#[tokio::test]
async fn h2c_with_prior_knowledge_is_served_on_plain_listeners_only_when_enabled() {
    let blue = Upstream::start("blue").await;
    let pools = common::pools_toml(&[("blue", &[blue.addr])], "blue = 100");
    let h2c = |addr: std::net::SocketAddr| async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .ok()?;
        tokio::spawn(conn);
        let req = hyper::Request::get("http://app.test/")
            .body(Full::new(Bytes::new()).boxed())
            .unwrap();
        let resp = tokio::time::timeout(DEADLINE, sender.send_request(req))
            .await
            .ok()?
            .ok()?;
        Some((resp.version(), resp.status().as_u16()))
    };
    let on = common::TestProxy::start("h2c = true", &pools).await;
    assert_eq!(h2c(on.addr).await, Some((hyper::Version::HTTP_2, 200)));
    assert_eq!(
        common::get(on.addr, "/").await.status,
        200,
        "HTTP/1.1 still served"
    );
    assert_eq!(blue.seen()[0].headers["host"], "app.test");

    let off = common::TestProxy::start("", &pools).await;
    assert_eq!(h2c(off.addr).await, None, "no h2c unless enabled");
    assert_eq!(common::get(off.addr, "/").await.status, 200);
}
