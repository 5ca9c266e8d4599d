//! Faithful forwarding through the real proxy: requests, bodies, headers, errors, pooling.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{chunked_body, get, pattern, pools_toml, request, Client, TestProxy, Upstream};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn one_pool(proxy_keys: &str) -> (Upstream, TestProxy) {
    let upstream = Upstream::start("blue").await;
    let proxy = TestProxy::start(
        proxy_keys,
        &pools_toml(&[("blue", &[upstream.addr])], "blue = 100"),
    )
    .await;
    (upstream, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_path_query_and_host_reach_the_upstream_unchanged() {
    let (upstream, proxy) = one_pool("").await;
    let mut client = Client::connect(proxy.addr).await;

    let reply = client
        .send(request(
            "DELETE",
            "/a/b%20c?x=1&y=two",
            Full::new(Bytes::new()).boxed(),
        ))
        .await;

    assert_eq!(reply.status, 200);
    let seen = &upstream.seen()[0];
    assert_eq!(seen.method, "DELETE");
    assert_eq!(seen.uri, "/a/b%20c?x=1&y=two");
    assert_eq!(seen.headers["host"], "test.local");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_are_added_and_appended() {
    let (upstream, proxy) = one_pool("").await;
    let mut client = Client::connect(proxy.addr).await;

    client.get("/first").await;
    let mut req = request("GET", "/second", Full::new(Bytes::new()).boxed());
    req.headers_mut()
        .insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
    client.send(req).await;

    let seen = upstream.seen();
    assert_eq!(seen[0].headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen[0].headers["x-forwarded-proto"], "http");
    assert_eq!(seen[1].headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_removed_both_ways() {
    let (upstream, proxy) = one_pool("").await;
    let mut client = Client::connect(proxy.addr).await;
    let mut req = request("GET", "/hop-by-hop", Full::new(Bytes::new()).boxed());
    let headers = req.headers_mut();
    headers.insert("connection", "keep-alive, x-secret".parse().unwrap());
    headers.insert("x-secret", "1".parse().unwrap());
    headers.insert("keep-alive", "timeout=5".parse().unwrap());
    headers.insert("proxy-connection", "keep-alive".parse().unwrap());
    headers.insert("x-end-to-end", "kept".parse().unwrap());

    let reply = client.send(req).await;
    let direct = get(upstream.addr, "/hop-by-hop").await;

    assert_eq!(
        direct.header("x-private").as_deref(),
        Some("secret"),
        "the upstream does send them"
    );
    assert_eq!(direct.header("keep-alive").as_deref(), Some("timeout=5"));
    let seen = &upstream.seen()[0].headers;
    for gone in ["x-secret", "keep-alive", "proxy-connection"] {
        assert!(
            !seen.contains_key(gone),
            "upstream saw hop-by-hop {gone}: {seen:?}"
        );
    }
    assert_eq!(seen["x-end-to-end"], "kept");
    for gone in ["x-private", "keep-alive"] {
        assert!(
            reply.header(gone).is_none(),
            "client saw hop-by-hop {gone}: {:?}",
            reply.headers
        );
    }
    assert_eq!(reply.header("x-kept").as_deref(), Some("yes"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_pass_intact_with_content_length_and_chunked() {
    let (upstream, proxy) = one_pool("").await;
    let mut client = Client::connect(proxy.addr).await;
    let one_mib = pattern(1024 * 1024);
    let three_mib = pattern(3 * 1024 * 1024 + 7);

    let sized = client
        .send(request(
            "POST",
            "/echo",
            Full::new(Bytes::from(one_mib.clone())).boxed(),
        ))
        .await;
    let chunked = client
        .send(request("PUT", "/echo", chunked_body(three_mib.clone())))
        .await;
    let streamed = client.get(&format!("/stream/{}", three_mib.len())).await;

    assert_eq!(sized.status, 200);
    assert!(
        sized.body == one_mib,
        "1 MiB content-length body changed on the way"
    );
    assert_eq!(upstream.seen()[0].headers["content-length"], "1048576");
    assert!(
        chunked.body == three_mib,
        "3 MiB chunked request body changed on the way"
    );
    assert!(upstream.seen()[1].body == three_mib);
    assert!(
        streamed.body == three_mib,
        "3 MiB chunked response body changed on the way"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upstream_gives_502_with_a_plain_body() {
    let (_reserved, closed) = common::dead_backend();
    let closed = closed.port();
    let config =
        format!("[pools.blue]\nbackends = [\"127.0.0.1:{closed}\"]\n\n[split]\nblue = 100\n");
    let proxy = TestProxy::start("", &config).await;

    let reply = get(proxy.addr, "/").await;

    assert_eq!(reply.status, 502);
    assert!(reply.text().contains("bad gateway"), "{}", reply.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_slower_than_read_timeout_gives_504() {
    let (_upstream, proxy) = one_pool("read-timeout = \"300ms\"").await;

    let started = std::time::Instant::now();
    let reply = get(proxy.addr, "/slow/3000").await;

    assert_eq!(reply.status, 504);
    assert!(reply.text().contains("gateway timeout"), "{}", reply.text());
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "timed out at the configured 300ms, not the upstream's 3s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_request_gets_400_and_reaches_no_upstream() {
    let (upstream, proxy) = one_pool("").await;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();

    stream
        .write_all(b"GARBAGE\x01 not http\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(common::DEADLINE, stream.read_to_end(&mut answer)).await;

    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "got: {answer:?}");
    assert_eq!(upstream.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sequential_requests_reuse_a_handful_of_upstream_connections() {
    let (upstream, proxy) = one_pool("").await;
    let mut client = Client::connect(proxy.addr).await;

    for _ in 0..1_000 {
        assert_eq!(client.get("/").await.status, 200);
    }

    assert_eq!(upstream.requests(), 1_000);
    assert!(
        upstream.connections() <= 4,
        "opened {} upstream connections",
        upstream.connections()
    );
}
