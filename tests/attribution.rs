//! Who failed a request decides whom it counts against (issue 23): an upstream that closes while
//! the body arrives is the upstream's error (not a 408 blamed on the client), and a canary that
//! hangs counts against it even when every client gives up before it answers.

mod common;

use std::time::Duration;

use common::clients::{half_upload, read_head, users_on};
use common::load::Load;
use common::metrics::{scrape, value};
use common::rollout::{current, start};
use common::tls::Speaks;
use common::{blue_green_with, poll_until, pools_toml, TestProxy, Upstream};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// `switchback_requests_total{pool="blue"}` by code class, as scraped now.
async fn blue_requests(proxy: &TestProxy) -> impl Fn(&str) -> f64 {
    let samples = scrape(proxy).await;
    move |class| {
        value(
            &samples,
            "switchback_requests_total",
            &[("pool", "blue"), ("code_class", class)],
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_closes_during_an_upload_fails_it_as_its_own_error() {
    // An upstream that reads the request head, then closes without answering.
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = upstream.accept().await {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf).await;
            drop(conn);
        }
    });
    let rest = pools_toml(&[("blue", &[addr])], "blue = 100");
    let proxy = TestProxy::start("read-timeout = \"5s\"\n", &format!("[metrics]\n\n{rest}")).await;
    let mut conn = half_upload(proxy.addr, "someone").await;
    let head = read_head(&mut conn).await;
    assert!(
        head.starts_with("HTTP/1.1 502"),
        "not blamed on the client: {head:?}"
    );
    poll_until(
        "counted as the upstream's error",
        Duration::from_secs(5),
        || async {
            let class = blue_requests(&proxy).await;
            assert_eq!(class("4xx"), 0.0, "blamed on the client");
            class("error") == 1.0
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_that_hangs_counts_against_it_even_when_its_clients_give_up_first() {
    let plan = "[plans.hold]\nsteps = [{ weight = 10, hold = \"1m\" }, { weight = 100 }]\n\
                [affinity]\nkey = [\"header:x-user-id\"]\nmint-cookie = \"\"\n";
    // A client that gives up does not end its request (a half-closed one is answered, issue 24):
    // the upstream's answer or its timeout decides, here within 2 s.
    let bg = blue_green_with("read-timeout = \"2s\"\n", "blue = 100\ngreen = 0", plan).await;
    start(&bg, r#"{"to": "green", "plan": "hold"}"#).await;
    poll_until("green at 10 %", Duration::from_secs(10), || async {
        bg.proxy.status().await["split"]["green"] == 10
    })
    .await;
    let users = users_on(&bg, "green", 4).await;
    let load = Load::start(bg.proxy.addr, 100);
    poll_until(
        "the baseline sets a slow line",
        Duration::from_secs(15),
        || async { !current(&bg).await["evidence"]["slow_above_ms"].is_null() },
    )
    .await;
    drop(load); // its requests to green would hang too
    bg.green.delay(60_000);
    // 40 requests to green whose clients give up after 300 ms each.
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let (addr, user) = (bg.proxy.addr, users[i % 4].clone());
            tokio::spawn(async move {
                let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
                let head = format!("GET / HTTP/1.1\r\nHost: t\r\nx-user-id: {user}\r\n\r\n");
                tokio::io::AsyncWriteExt::write_all(&mut conn, head.as_bytes())
                    .await
                    .unwrap();
                let mut buf = [0u8; 64];
                let answered =
                    tokio::time::timeout(Duration::from_millis(300), conn.read(&mut buf));
                assert!(answered.await.is_err(), "green answered while it hangs");
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    poll_until(
        "the canary's hung requests counted against it",
        Duration::from_secs(10),
        || async {
            let now = current(&bg).await;
            let green = &now["evidence"]["pools"]["green"];
            let count = |what: &str| green[what].as_u64().unwrap_or(0);
            count("slow") + count("errors") >= 30 || now["state"] == "rolled-back"
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_to_a_pool_speaking_h2_counts_against_it_as_documented() {
    // Pingora's h2 client reads the answer under one timeout while it writes the body: a backend
    // that stops taking the body cannot be told from a client that stopped sending it, so the
    // 408 rule is for HTTP/1 backends only (README, "Automated rollouts").
    let any = "127.0.0.1:0".parse().unwrap();
    let blue = Upstream::start_speaking("blue", any, Speaks::H2c).await;
    let rest = format!(
        "[metrics]\n\n[pools.blue]\nbackends = [\"{}\"]\nprotocol = \"h2\"\n\n[split]\nblue = 100\n",
        blue.addr
    );
    let proxy = TestProxy::start("read-timeout = \"1s\"\n", &rest).await;
    let mut conn = half_upload(proxy.addr, "someone").await;
    let head = read_head(&mut conn).await;
    assert!(head.starts_with("HTTP/1.1 504"), "{head:?}");
    poll_until(
        "counted as the pool's error",
        Duration::from_secs(5),
        || async { blue_requests(&proxy).await("error") == 1.0 },
    )
    .await;
}
