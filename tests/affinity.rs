//! Sticky users through the real binary: each `x-user-id` stays on one pool, a canary that
//! grows moves users onto it only, a rollback puts every user back, and the assignment
//! survives a restart and agrees between processes.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{poll_until, pools_toml, request, Client, TestProxy, Upstream};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const IDS: usize = 10_000;
/// Keep-alive connections the ids are spread over.
const CLIENTS: usize = 8;

const HEADER_KEY: &str = "[affinity]\nkey = [\"header:x-user-id\"]\nmint-cookie = \"\"\n";

/// The pool (`x-upstream`) serving each of `IDS` user ids, asked `rounds` times each; panics
/// when one id is served by two pools. Requests are pipelined, a batch at a time, over
/// `CLIENTS` connections (the proxy answers pipelined requests in order).
async fn assignment(addr: SocketAddr, rounds: usize) -> Vec<String> {
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            tokio::spawn(async move {
                let mut conn = TcpStream::connect(addr).await.unwrap();
                let ids: Vec<usize> = (c..IDS).step_by(CLIENTS).collect();
                let mut out = Vec::new();
                for batch in ids.chunks(50) {
                    let mut wire = Vec::new();
                    for id in batch {
                        for _ in 0..rounds {
                            wire.extend_from_slice(
                                format!(
                                    "GET / HTTP/1.1\r\nHost: t\r\nx-user-id: user-{id}\r\n\r\n"
                                )
                                .as_bytes(),
                            );
                        }
                    }
                    conn.write_all(&wire).await.unwrap();
                    let served = read_upstreams(&mut conn, batch.len() * rounds).await;
                    for (i, id) in batch.iter().enumerate() {
                        let mine = &served[i * rounds..(i + 1) * rounds];
                        assert!(
                            mine.iter().all(|p| *p == mine[0]),
                            "user-{id} was served by more than one pool: {mine:?}"
                        );
                        out.push((*id, mine[0].clone()));
                    }
                }
                out
            })
        })
        .collect();
    let mut pools = vec![String::new(); IDS];
    for task in tasks {
        for (id, pool) in task.await.unwrap() {
            pools[id] = pool;
        }
    }
    pools
}

/// Reads `n` responses (each 200 with a `Content-Length` body) and returns their
/// `x-upstream` values in order.
async fn read_upstreams(conn: &mut TcpStream, n: usize) -> Vec<String> {
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::with_capacity(n);
    let mut chunk = vec![0u8; 64 * 1024];
    while out.len() < n {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut response = httparse::Response::new(&mut headers);
        if let Ok(httparse::Status::Complete(head)) = response.parse(&buf) {
            assert_eq!(response.code, Some(200));
            let value = |name: &str| {
                response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned())
            };
            let length: usize = value("content-length").unwrap().parse().unwrap();
            if buf.len() >= head + length {
                out.push(value("x-upstream").unwrap());
                buf.drain(..head + length);
                continue;
            }
        }
        let read = tokio::time::timeout(common::DEADLINE, conn.read(&mut chunk))
            .await
            .expect("responses within the deadline")
            .unwrap();
        assert!(read > 0, "the proxy closed the connection");
        buf.extend_from_slice(&chunk[..read]);
    }
    out
}

/// Blue and green upstreams and the `[pools]` and `[split]` TOML for them.
async fn blue_green_pools(split: &str) -> (Upstream, Upstream, String) {
    let (blue, green) = (
        Upstream::start("blue").await,
        Upstream::start("green").await,
    );
    let pools = pools_toml(&[("blue", &[blue.addr]), ("green", &[green.addr])], split);
    (blue, green, pools)
}

fn share(pools: &[String], name: &str) -> f64 {
    100.0 * pools.iter().filter(|p| *p == name).count() as f64 / pools.len() as f64
}

async fn set_split(proxy: &TestProxy, body: &str) {
    let reply = proxy.admin("PUT", "/split", body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn users_stay_on_one_pool_move_only_onto_a_growing_canary_and_come_back_on_rollback() {
    let (blue, green) = (
        Upstream::start("blue").await,
        Upstream::start("green").await,
    );
    let rest = format!(
        "{HEADER_KEY}\n{}",
        pools_toml(
            &[("blue", &[blue.addr]), ("green", &[green.addr])],
            "blue = 90\ngreen = 10"
        )
    );
    let proxy = TestProxy::start("", &rest).await;

    let start = assignment(proxy.addr, 5).await;
    let on_green = share(&start, "green");
    assert!(
        (on_green - 10.0).abs() <= 1.5,
        "{on_green} % of ids on green at 10 %"
    );

    // A second process with the same config and seed (a fresh table) agrees on every id.
    let twin = TestProxy::start("", &rest).await;
    assert_eq!(assignment(twin.addr, 1).await, start, "two processes agree");
    drop(twin);

    set_split(&proxy, r#"{"blue": 80, "green": 20}"#).await;
    let raised = assignment(proxy.addr, 1).await;
    let mut moved = 0;
    for (id, (before, after)) in start.iter().zip(&raised).enumerate() {
        assert!(
            !(before == "green" && after == "blue"),
            "user-{id} moved green -> blue when green grew"
        );
        moved += usize::from(before != after);
    }
    let moved = 100.0 * moved as f64 / IDS as f64;
    assert!(
        (moved - 10.0).abs() <= 1.5,
        "{moved} % of ids moved blue -> green"
    );

    let reply = proxy.admin("POST", "/rollback", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        assignment(proxy.addr, 1).await,
        start,
        "rollback restores every id"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shift_between_two_pools_moves_nobody_of_the_third_and_a_restart_keeps_everyone() {
    let (a, b, c) = (
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    );
    let rest = format!(
        "{HEADER_KEY}\n{}",
        pools_toml(
            &[("a", &[a.addr]), ("b", &[b.addr]), ("c", &[c.addr])],
            "a = 70\nb = 20\nc = 10"
        )
    );
    let mut proxy = TestProxy::start("", &rest).await;
    let before = assignment(proxy.addr, 1).await;
    set_split(&proxy, r#"{"a": 60, "b": 20, "c": 20}"#).await;
    let after = assignment(proxy.addr, 1).await;
    for (id, (x, y)) in before.iter().zip(&after).enumerate() {
        assert_eq!(x == "b", y == "b", "user-{id} of b moved: {x} -> {y}");
        assert!(!(x == "c" && y != "c"), "user-{id} left c as c grew");
    }
    let table = proxy.dir.path().join("affinity-table.json");
    assert!(table.exists(), "the table is written beside the config");

    proxy.restart().await;
    assert_eq!(
        assignment(proxy.addr, 1).await,
        after,
        "a restart keeps every id's pool"
    );
}

#[tokio::test]
async fn a_keyless_client_gets_a_cookie_and_sticks_and_no_cookie_is_minted_when_off() {
    let (_blue, _green, pools) = blue_green_pools("blue = 50\ngreen = 50").await;
    let proxy = TestProxy::start("", &format!("[affinity]\n\n{pools}")).await;
    let mut seen_pools = std::collections::BTreeSet::new();
    // 24 minted users all on one pool at 50/50: 2 × 2⁻²⁴, never.
    for _ in 0..24 {
        let mut client = Client::connect(proxy.addr).await;
        let first = client.get("/").await;
        let set_cookie = first.header("set-cookie").expect("a minted cookie");
        let (pair, attributes) = set_cookie.split_once("; ").unwrap();
        assert_eq!(
            attributes,
            "Path=/; HttpOnly; SameSite=Lax; Max-Age=2592000"
        );
        let id = pair.strip_prefix("switchback-user=").unwrap();
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
        let pool = first.header("x-upstream").unwrap();
        seen_pools.insert(pool.clone());
        for _ in 0..8 {
            let mut req = request("GET", "/", Full::new(Bytes::new()).boxed());
            req.headers_mut()
                .insert("cookie", format!("theme=dark; {pair}").parse().unwrap());
            let reply = client.send(req).await;
            assert_eq!(
                reply.header("x-upstream").unwrap(),
                pool,
                "sticks to {pool}"
            );
            assert_eq!(reply.header("set-cookie"), None, "minted once");
        }
    }
    assert_eq!(seen_pools.len(), 2, "minted users land on both pools");

    let off = TestProxy::start(
        "",
        &format!("[affinity]\nkey = [\"header:x-user-id\"]\nmint-cookie = \"\"\n\n{pools}"),
    )
    .await;
    let mut client = Client::connect(off.addr).await;
    for _ in 0..10 {
        assert_eq!(client.get("/").await.header("set-cookie"), None);
    }
    let status = off.status().await;
    assert_eq!(
        status["affinity"]["key"],
        serde_json::json!(["header:x-user-id"])
    );
    assert_eq!(status["affinity"]["mint_cookie"], serde_json::Value::Null);
}

#[tokio::test]
async fn a_sticky_user_fails_over_while_their_pool_is_down_and_comes_back() {
    let (blue, green) = (
        Upstream::start("blue").await,
        Upstream::start("green").await,
    );
    let rest = format!(
        "{HEADER_KEY}\n{}[pools.green.health-check]\npath = \"/healthz\"\ninterval = \"100ms\"\nunhealthy-threshold = 1\nhealthy-threshold = 1\n",
        pools_toml(&[("blue", &[blue.addr]), ("green", &[green.addr])], "blue = 50\ngreen = 50")
    );
    let proxy = TestProxy::start("", &rest).await;
    let served = |user: String| {
        let addr = proxy.addr;
        async move {
            let mut client = Client::connect(addr).await;
            let mut req = request("GET", "/", Full::new(Bytes::new()).boxed());
            req.headers_mut().insert("x-user-id", user.parse().unwrap());
            client.send(req).await.header("x-upstream").unwrap()
        }
    };
    let mut on_green = Vec::new();
    for id in 0..40 {
        if served(format!("user-{id}")).await == "green" {
            on_green.push(format!("user-{id}"));
        }
    }
    assert!(
        on_green.len() >= 5,
        "{} of 40 users on green at 50 %",
        on_green.len()
    );
    green.set_healthy(false);
    poll_until(
        "green's users fail over to blue",
        Duration::from_secs(5),
        || async { served(on_green[0].clone()).await == "blue" },
    )
    .await;
    for user in &on_green {
        assert_eq!(
            served(user.clone()).await,
            "blue",
            "{user} while green is down"
        );
    }
    green.set_healthy(true);
    poll_until(
        "green's users come back",
        Duration::from_secs(5),
        || async { served(on_green[0].clone()).await == "green" },
    )
    .await;
    for user in &on_green {
        assert_eq!(served(user.clone()).await, "green", "{user} back on green");
    }
}

#[tokio::test]
async fn a_corrupt_table_is_set_aside_and_replaced_and_tokens_never_leak_without_overrides() {
    let (blue, green, pools) = blue_green_pools("blue = 50\ngreen = 50").await;
    let proxy = TestProxy::start_with_files(
        "",
        &format!("{HEADER_KEY}\n{pools}"),
        &[("affinity-table.json", "{\"format\": 1, \"pools\": [\"bl")],
    )
    .await;
    let dir = proxy.dir.path();
    let aside = std::fs::read_to_string(dir.join("affinity-table.json.corrupt")).unwrap();
    assert!(
        aside.starts_with("{\"format\": 1"),
        "the corrupt file is kept for a look"
    );
    let table: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("affinity-table.json")).unwrap()).unwrap();
    assert_eq!(table["pools"], serde_json::json!(["blue", "green"]));

    // Without [override], a tester's token and cookie are still never forwarded.
    let mut client = Client::connect(proxy.addr).await;
    let mut req = request("GET", "/", Full::new(Bytes::new()).boxed());
    req.headers_mut()
        .insert("x-switchback-override-token", "t".parse().unwrap());
    req.headers_mut().insert(
        "cookie",
        "switchback-override=green:t; a=1".parse().unwrap(),
    );
    assert_eq!(client.send(req).await.status, 200);
    let seen: Vec<_> = blue.seen().into_iter().chain(green.seen()).collect();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].headers.get("x-switchback-override-token").is_none());
    assert_eq!(seen[0].headers.get("cookie").unwrap(), "a=1");
}

#[tokio::test]
async fn a_table_path_naming_another_file_never_touches_it() {
    let (_blue, _green, pools) = blue_green_pools("blue = 50\ngreen = 50").await;
    let rest =
        format!("[affinity]\nkey = [\"header:x-user-id\"]\ntable = \"switchback.toml\"\n\n{pools}");
    let proxy = TestProxy::start("", &rest).await;
    set_split(&proxy, r#"{"blue": 80, "green": 20}"#).await;
    let text = std::fs::read_to_string(&proxy.config_path).unwrap();
    assert!(
        text.starts_with("# test config"),
        "the config file is not overwritten"
    );
    assert!(text.contains("green = 20"), "the write-back still works");
    assert!(!proxy.dir.path().join("switchback.toml.corrupt").exists());
    assert!(proxy.stderr().contains("not an affinity table file"));
}
