//! Shared state at its edges (issue 26): a replica whose watch fell behind a compaction, a
//! replica lacking a pool, `check --connect`, bad input.

mod common;

use std::process::Command;

use common::etcd::EtcdCluster;
use common::replicas::replica;
use common::{binary, poll_until, TestProxy, Upstream, DEADLINE};
use serde_json::Value;

async fn version(proxy: &TestProxy) -> u64 {
    proxy.status().await["version"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stalled_past_a_compaction_converges() {
    let cluster = EtcdCluster::start(3);
    let (_blue, _green, text) = common::replicas::blue_green_pools().await;
    let a = replica(&cluster, "/e1", "a", &text).await;
    let c = replica(&cluster, "/e1", "c", &text).await;
    c.signal(19); // SIGSTOP: its watch falls behind
    for i in 0..20 {
        let body = format!(r#"{{"blue": {}, "green": {}}}"#, 100 - i, i);
        let reply = a.admin("PUT", "/split", &body).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    cluster.compact();
    c.signal(18); // SIGCONT
    let want = version(&a).await;
    poll_until("the stalled replica converges", DEADLINE, || async {
        version(&c).await == want
    })
    .await;
    assert_eq!(c.status().await["split"], a.status().await["split"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_naming_a_pool_one_replica_lacks_is_refused_but_rollback_is_not() {
    let cluster = EtcdCluster::start(3);
    let (blue, _green, both) = common::replicas::blue_green_pools().await;
    let only_blue = common::pools_toml(&[("blue", &[blue.addr])], "blue = 100");
    let plan = "[plans.quick]\nsteps = [{ weight = 100 }]\n";
    let a = replica(&cluster, "/e2", "a", &format!("{plan}\n{both}")).await;
    let reply = a
        .admin("PUT", "/split", r#"{"blue": 50, "green": 50}"#)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    // A replica without green keeps its last-good split and says why.
    let lean = replica(&cluster, "/e2", "lean", &only_blue).await;
    let status = lean.status().await;
    assert_eq!(
        status["split"],
        serde_json::json!({"blue": 100}),
        "{status}"
    );
    assert!(
        status["state"]["mismatch"]
            .as_str()
            .is_some_and(|m| m.contains("green")),
        "{status}"
    );
    let before = version(&a).await;
    let reply = a
        .admin("PUT", "/split", r#"{"blue": 40, "green": 60}"#)
        .await;
    assert_eq!(reply.status, 409, "{}", reply.text());
    assert!(
        reply.text().contains("replica lean has no pool green"),
        "{}",
        reply.text()
    );
    assert_eq!(version(&a).await, before, "nothing changed");
    // Bad input changes nothing either.
    let reply = a.admin("PUT", "/split?wait=soon", r#"{"blue": 100}"#).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(version(&a).await, before);
    // A rollback is never refused for a missing pool; the lean replica can apply its result.
    let reply = a.admin("POST", "/rollback", "").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    poll_until(
        "the lean replica applies the rollback",
        DEADLINE,
        || async { version(&lean).await == before + 1 },
    )
    .await;
    let status = lean.status().await;
    assert!(status["state"]["mismatch"].is_null(), "{status}");
    // A rollout to a pool that replica lacks could not be served there: refused too.
    let reply = a
        .admin("POST", "/rollouts", r#"{"to": "green", "plan": "quick"}"#)
        .await;
    assert_eq!(reply.status, 409, "{}", reply.text());
    assert!(
        reply.text().contains("replica lean has no pool green"),
        "{}",
        reply.text()
    );
    let replicas = common::replicas::replicas(&a).await;
    assert_eq!(
        replicas["replicas"].as_array().unwrap().len(),
        2,
        "{replicas}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connect_reports_the_cluster_or_fails_when_it_is_down() {
    let mut cluster = EtcdCluster::start(3);
    let (_blue, _green, text) = common::replicas::blue_green_pools().await;
    let a = replica(&cluster, "/e3", "a", &text).await;
    let check = |connect: bool| {
        let mut cmd = Command::new(binary());
        cmd.arg("check").arg("--config").arg(&a.config_path);
        if connect {
            cmd.arg("--connect");
        }
        cmd.output().unwrap()
    };
    let out = check(true);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("etcd: 3 members"), "{stdout}");
    assert!(
        stdout.contains(&format!("/e3 at version {}", version(&a).await)),
        "{stdout}"
    );
    cluster.stop_all();
    let out = check(true);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("state.etcd: shared state unreachable"),
        "{stderr}"
    );
    // Without --connect the file alone is checked.
    assert!(check(false).status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitops_edit_made_while_the_replicas_were_down_is_written_once_when_they_start() {
    let cluster = EtcdCluster::start(3);
    let (_blue, _green, text) = common::replicas::blue_green_pools().await;
    let mut replicas = [
        replica(&cluster, "/e4", "a", &text).await,
        replica(&cluster, "/e4", "b", &text).await,
    ];
    let start = version(&replicas[0]).await;
    for proxy in replicas.iter_mut() {
        proxy.kill();
        let file = std::fs::read_to_string(&proxy.config_path).unwrap();
        std::fs::write(
            &proxy.config_path,
            file.replace("blue = 100", "blue = 70\ngreen = 30"),
        )
        .unwrap();
    }
    for proxy in replicas.iter_mut() {
        proxy.relaunch().await;
    }
    for proxy in &replicas {
        poll_until("the edit is live", DEADLINE, || async {
            proxy.status().await["split"] == serde_json::json!({"blue": 70, "green": 30})
        })
        .await;
        assert_eq!(version(proxy).await, start + 1, "one change for the edit");
    }
    let history: Vec<Value> = replicas[1].history().await;
    let reloads = history
        .iter()
        .filter(|e| e["action"] == "reload" && e["outcome"] == "applied")
        .count();
    assert_eq!(reloads, 1, "{history:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_users_match_across_replicas_without_a_state_dir() {
    let cluster = EtcdCluster::start(3);
    let (_blue, _green, pools) = common::replicas::blue_green_pools().await;
    let text = format!("[affinity]\nkey = [\"header:x-user-id\"]\nmint-cookie = \"\"\n\n{pools}");
    let state = |name: &str| {
        format!(
            "[state]\netcd = {}\netcd-prefix = \"/e5\"\nreplica = \"{name}\"\n",
            cluster.toml_endpoints()
        )
    };
    let a = TestProxy::start("", &format!("{}\n{text}", state("a"))).await;
    for step in [10, 30] {
        let body = format!(r#"{{"blue": {}, "green": {step}}}"#, 100 - step);
        assert_eq!(a.admin("PUT", "/split", &body).await.status, 200);
    }
    // A replica started afterwards, with no table file of its own, routes every user alike.
    let b = TestProxy::start("", &format!("{}\n{text}", state("b"))).await;
    assert_eq!(version(&b).await, version(&a).await);
    let colour = |addr, user: String| async move {
        let mut client = common::Client::connect(addr).await;
        let mut req = common::request(
            "GET",
            "/",
            http_body_util::BodyExt::boxed(http_body_util::Full::new(bytes::Bytes::new())),
        );
        req.headers_mut().insert("x-user-id", user.parse().unwrap());
        client.send(req).await.text()
    };
    for i in 0..300 {
        let user = format!("user-{i}");
        assert_eq!(
            colour(a.addr, user.clone()).await,
            colour(b.addr, user).await
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitops_edit_adding_a_pool_with_a_share_applies() {
    let cluster = EtcdCluster::start(3);
    let (blue, green) = (
        Upstream::start("blue").await,
        Upstream::start("green").await,
    );
    let only_blue = common::pools_toml(&[("blue", &[blue.addr])], "blue = 100");
    let a = replica(&cluster, "/e6", "a", &only_blue).await;
    let before = version(&a).await;
    let both = common::pools_toml(
        &[("blue", &[blue.addr]), ("green", &[green.addr])],
        "blue = 80\ngreen = 20",
    );
    let file = std::fs::read_to_string(&a.config_path).unwrap();
    let head = &file[..file.find("[pools.blue]").unwrap()];
    std::fs::write(&a.config_path, format!("{head}{both}")).unwrap();
    poll_until("the edit with its new pool is live", DEADLINE, || async {
        a.status().await["split"] == serde_json::json!({"blue": 80, "green": 20})
    })
    .await;
    assert_eq!(version(&a).await, before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_while_etcd_is_down_serves_its_cache_then_follows_the_cluster() {
    let mut cluster = EtcdCluster::start(3);
    let (_blue, _green, text) = common::replicas::blue_green_pools().await;
    let mut a = replica(&cluster, "/e7", "a", &text).await;
    let b = replica(&cluster, "/e7", "b", &text).await;
    let reply = a
        .admin("PUT", "/split", r#"{"blue": 40, "green": 60}"#)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    a.kill();
    cluster.stop_all();
    a.relaunch().await;
    let status = a.status().await;
    assert_eq!(
        status["split"],
        serde_json::json!({"blue": 40, "green": 60}),
        "the cache serves: {status}"
    );
    assert_eq!(status["state"]["connected"], false, "{status}");
    assert!(
        a.stderr().contains("serving this replica's cache"),
        "{}",
        a.stderr()
    );
    // Back: a follows what the cluster holds, including a change made while it was away.
    cluster.restart_all();
    poll_until("b writes again", DEADLINE, || async {
        b.admin("PUT", "/split", r#"{"blue": 10, "green": 90}"#)
            .await
            .status
            == 200
    })
    .await;
    poll_until("a follows the cluster", DEADLINE, || async {
        a.status().await["split"] == serde_json::json!({"blue": 10, "green": 90})
    })
    .await;
    assert_eq!(version(&a).await, version(&b).await);
}
