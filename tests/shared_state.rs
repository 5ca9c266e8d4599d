//! Several replicas on one shared state (`[state] etcd`): a real 3-member etcd cluster on
//! loopback and real switchback replicas (issue 26).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::etcd::EtcdCluster;
use common::replicas::replica;
use common::{poll_until, TestProxy, Upstream, DEADLINE};
use serde_json::Value;

/// The blue and green upstreams every replica fronts.
struct Pools {
    blue: Upstream,
    green: Upstream,
}

impl Pools {
    async fn start() -> Pools {
        Pools {
            blue: Upstream::start("blue").await,
            green: Upstream::start("green").await,
        }
    }

    fn toml(&self, split: &str) -> String {
        common::pools_toml(
            &[("blue", &[self.blue.addr]), ("green", &[self.green.addr])],
            split,
        )
    }
}

async fn version(proxy: &TestProxy) -> u64 {
    proxy.status().await["version"].as_u64().unwrap()
}

async fn split_of(proxy: &TestProxy) -> Value {
    proxy.status().await["split"].clone()
}

/// Polls until `proxy` serves `split` (as `/status` shows it).
async fn until_split(proxy: &TestProxy, split: Value) {
    poll_until("the replica applies the shared split", DEADLINE, || {
        let split = split.clone();
        async move { split_of(proxy).await == split }
    })
    .await;
}

async fn put_split(proxy: &TestProxy, body: &str, if_match: Option<u64>) -> common::Reply {
    let version = if_match.map(|v| v.to_string());
    let headers: Vec<(&str, &str)> = version.iter().map(|v| ("if-match", v.as_str())).collect();
    proxy.admin_call("PUT", "/split", body, &headers).await
}

async fn colour(addr: SocketAddr, user: &str) -> String {
    let mut client = common::Client::connect(addr).await;
    let req = common::request(
        "GET",
        "/",
        http_body_util::BodyExt::boxed(http_body_util::Full::new(bytes::Bytes::new())),
    );
    let mut req = req;
    req.headers_mut().insert("x-user-id", user.parse().unwrap());
    client.send(req).await.text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_written_through_one_replica_is_live_on_every_replica() {
    let cluster = EtcdCluster::start(3);
    let pools = Pools::start().await;
    let text = pools.toml("blue = 100");
    let a = replica(&cluster, "/t1", "a", &text).await;
    let b = replica(&cluster, "/t1", "b", &text).await;
    let c = replica(&cluster, "/t1", "c", &text).await;
    let start = version(&a).await;
    assert_eq!(version(&b).await, start, "replicas share the version");

    let reply = put_split(&a, r#"{"blue": 70, "green": 30}"#, None).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let want = serde_json::json!({"blue": 70, "green": 30});
    until_split(&b, want.clone()).await;
    until_split(&c, want).await;
    assert_eq!(version(&c).await, start + 1, "one change, one version");

    // ?wait=all answers once every replica reports the new version.
    let reply = c
        .admin("PUT", "/split?wait=all", r#"{"blue": 50, "green": 50}"#)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body: Value = serde_json::from_slice(&reply.body).unwrap();
    let applied: Vec<&str> = body["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(applied.len(), 3, "{body}");
    for proxy in [&a, &b] {
        assert_eq!(version(proxy).await, start + 2, "applied before the answer");
    }

    // GET /replicas lists all three at the new version; /status names the store.
    let replicas = common::replicas::replicas(&b).await;
    let rows = replicas["replicas"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{replicas}");
    assert!(rows.iter().all(|r| r["version"] == start + 2), "{replicas}");
    let status = a.status().await;
    assert_eq!(status["state"]["store"], "etcd");
    assert_eq!(status["state"]["path"], "/t1");
    assert_eq!(status["state"]["connected"], true);
    assert_eq!(status["state"]["replica"], "a");

    // The shared log holds each change once, with its seq and replica, newest first.
    let history = b.history().await;
    let changes: Vec<&Value> = history.iter().filter(|e| e["action"] == "split").collect();
    assert_eq!(changes.len(), 2, "{history:?}");
    assert_eq!(changes[0]["replica"], "c");
    assert_eq!(changes[1]["replica"], "a");
    assert!(changes[0]["seq"].as_u64() > changes[1]["seq"].as_u64());

    // A drain through one replica applies on the others.
    let path = format!("/backends/green/{}/drain", pools.green.addr);
    assert_eq!(a.admin("POST", &path, "").await.status, 200);
    poll_until("the drain reaches replica c", DEADLINE, || async {
        let status = c.status().await;
        status["pools"]["green"]["backends"][0]["drained"] == true
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_with_the_same_if_match_one_wins_one_gets_412() {
    let cluster = EtcdCluster::start(3);
    let pools = Pools::start().await;
    let text = pools.toml("blue = 100");
    let a = replica(&cluster, "/t2", "a", &text).await;
    let b = replica(&cluster, "/t2", "b", &text).await;
    for round in 0..5u32 {
        let seen = version(&a).await;
        let one = format!(r#"{{"blue": {}, "green": {}}}"#, 90 - round, 10 + round);
        let two = format!(r#"{{"blue": {}, "green": {}}}"#, 80 - round, 20 + round);
        let (x, y) = tokio::join!(
            put_split(&a, &one, Some(seen)),
            put_split(&b, &two, Some(seen)),
        );
        let mut codes = [x.status, y.status];
        codes.sort_unstable();
        assert_eq!(
            codes,
            [200, 412],
            "round {round}: {} / {}",
            x.text(),
            y.text()
        );
        poll_until("b applies the winner", DEADLINE, || async {
            version(&b).await == seen + 1
        })
        .await;
    }
    // Without If-Match both apply, one after the other.
    let (x, y) = tokio::join!(
        put_split(&a, r#"{"blue": 10, "green": 90}"#, None),
        put_split(&b, r#"{"blue": 20, "green": 80}"#, None),
    );
    assert_eq!(
        (x.status, y.status),
        (200, 200),
        "{} / {}",
        x.text(),
        y.text()
    );
    // Versions never repeat nor go backwards across the shared log.
    let history = a.history().await;
    let mut versions: Vec<u64> = history
        .iter()
        .filter(|e| e["action"] == "split" && e["outcome"] == "applied")
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    versions.reverse();
    assert_eq!(versions.len(), 7, "{history:?}");
    assert!(
        versions.windows(2).all(|w| w[1] == w[0] + 1),
        "{versions:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_outage_changes_no_traffic_refuses_writes_and_a_local_rollback_is_reconciled() {
    let mut cluster = EtcdCluster::start(3);
    let pools = Pools::start().await;
    let text = pools.toml("blue = 100");
    let a = replica(&cluster, "/t3", "a", &text).await;
    let b = replica(&cluster, "/t3", "b", &text).await;
    a.switch("green").await;
    until_split(&b, serde_json::json!({"blue": 0, "green": 100})).await;
    let version_at_switch = version(&a).await;

    // The raft leader killed: writes resume on the survivors.
    let leader = cluster.leader();
    cluster.kill(leader);
    poll_until("a write after the raft leader died", DEADLINE, || async {
        put_split(&a, r#"{"blue": 0, "green": 100}"#, None)
            .await
            .status
            == 200
    })
    .await;
    cluster.restart(leader);
    let before = version(&a).await;
    assert!(before > version_at_switch, "the write took a version");
    poll_until("b applies", DEADLINE, || async {
        version(&b).await == before
    })
    .await;

    // Every member stopped: traffic unchanged, writes 503, rollback local 202.
    cluster.stop_all();
    let mut failed = 0;
    for _ in 0..50 {
        let reply = common::get(a.addr, "/").await;
        if reply.status != 200 || reply.text() != "green" {
            failed += 1;
        }
    }
    assert_eq!(failed, 0, "the data path serves the last applied state");
    let reply = put_split(&a, r#"{"blue": 50, "green": 50}"#, Some(before)).await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(reply.header("retry-after").as_deref(), Some("1"));
    assert!(
        reply.text().contains("shared state unreachable"),
        "{}",
        reply.text()
    );
    poll_until("the store gauge says down", DEADLINE, || async {
        let status = a.status().await;
        let metrics = a.admin("GET", "/metrics", "").await.text();
        status["state"]["connected"] == false && metrics.contains("switchback_state_store_up 0")
    })
    .await;
    let reply = a
        .admin_call("POST", "/rollback", "", &[("if-match", "12345")])
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    assert!(
        reply.text().contains("this replica only"),
        "{}",
        reply.text()
    );
    assert_eq!(
        split_of(&a).await,
        serde_json::json!({"blue": 100, "green": 0})
    );
    assert_eq!(common::get(a.addr, "/").await.text(), "blue");

    // etcd back: the rollback is written as a normal change and reaches b.
    cluster.restart_all();
    until_split(&b, serde_json::json!({"blue": 100, "green": 0})).await;
    poll_until("a reports the shared version", DEADLINE, || async {
        version(&a).await == before + 1
    })
    .await;
    let history = b.history().await;
    assert!(
        history.iter().any(|e| e["action"] == "rollback"
            && e["version"] == before + 1
            && e["replica"] == "a"),
        "{history:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_get_the_same_pool_through_every_replica() {
    let cluster = EtcdCluster::start(3);
    let pools = Pools::start().await;
    let affinity = "[affinity]\nkey = [\"header:x-user-id\"]\nmint-cookie = \"\"\n";
    let text = format!("{affinity}\n{}", pools.toml("blue = 100"));
    let a = replica(&cluster, "/t4", "a", &text).await;
    let b = replica(&cluster, "/t4", "b", &text).await;
    assert_eq!(
        put_split(&a, r#"{"blue": 90, "green": 10}"#, None)
            .await
            .status,
        200
    );
    until_split(&b, serde_json::json!({"blue": 90, "green": 10})).await;
    let mut green = 0;
    for i in 0..1000 {
        let user = format!("user-{i}");
        let (x, y) = (colour(a.addr, &user).await, colour(b.addr, &user).await);
        assert_eq!(x, y, "{user} gets one pool through every replica");
        green += usize::from(x == "green");
    }
    assert!((50..=150).contains(&green), "about 10 % on green: {green}");
    // A replica started late converges to the current version and table.
    let c = replica(&cluster, "/t4", "c", &text).await;
    assert_eq!(version(&c).await, version(&a).await);
    for i in 0..200 {
        let user = format!("user-{i}");
        assert_eq!(colour(c.addr, &user).await, colour(a.addr, &user).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_gitops_split_edit_on_three_replicas_is_one_change() {
    let cluster = EtcdCluster::start(3);
    let pools = Pools::start().await;
    let text = pools.toml("blue = 100");
    let replicas = [
        replica(&cluster, "/t5", "a", &text).await,
        replica(&cluster, "/t5", "b", &text).await,
        replica(&cluster, "/t5", "c", &text).await,
    ];
    let start = version(&replicas[0]).await;
    for proxy in &replicas {
        let text = std::fs::read_to_string(&proxy.config_path).unwrap();
        std::fs::write(
            &proxy.config_path,
            text.replace("blue = 100", "blue = 60\ngreen = 40"),
        )
        .unwrap();
    }
    for proxy in &replicas {
        until_split(proxy, serde_json::json!({"blue": 60, "green": 40})).await;
    }
    // No replica makes a second change: give a late watcher time to act (an absence cannot be
    // polled for).
    tokio::time::sleep(Duration::from_millis(500)).await;
    for proxy in &replicas {
        assert_eq!(version(proxy).await, start + 1);
    }
    let history = replicas[1].history().await;
    let reloads = history
        .iter()
        .filter(|e| e["action"] == "reload" && e["outcome"] == "applied")
        .count();
    assert_eq!(reloads, 1, "{history:?}");
}
