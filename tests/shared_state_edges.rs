//! Shared state at its edges (issue 26): a replica whose watch fell behind a compaction, a
//! replica lacking a pool, `check --connect`, bad input.

mod common;

use std::process::Command;

use common::etcd::EtcdCluster;
use common::{binary, poll_until, TestProxy, Upstream, DEADLINE};
use serde_json::Value;

async fn replica(cluster: &EtcdCluster, prefix: &str, name: &str, pools: &str) -> TestProxy {
    let state = format!(
        "[state]\netcd = {}\netcd-prefix = \"{prefix}\"\nreplica = \"{name}\"\ndir = \"state\"\n",
        cluster.toml_endpoints()
    );
    TestProxy::start("", &format!("{state}\n{pools}")).await
}

async fn version(proxy: &TestProxy) -> u64 {
    proxy.status().await["version"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stalled_past_a_compaction_converges() {
    let cluster = EtcdCluster::start(3);
    let (blue, green) = (
        Upstream::start("blue").await,
        Upstream::start("green").await,
    );
    let text = common::pools_toml(
        &[("blue", &[blue.addr]), ("green", &[green.addr])],
        "blue = 100",
    );
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
    let (blue, green) = (
        Upstream::start("blue").await,
        Upstream::start("green").await,
    );
    let both = common::pools_toml(
        &[("blue", &[blue.addr]), ("green", &[green.addr])],
        "blue = 100",
    );
    let only_blue = common::pools_toml(&[("blue", &[blue.addr])], "blue = 100");
    let a = replica(&cluster, "/e2", "a", &both).await;
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
    let replicas: Value =
        serde_json::from_slice(&a.admin("GET", "/replicas", "").await.body).unwrap();
    assert_eq!(
        replicas["replicas"].as_array().unwrap().len(),
        2,
        "{replicas}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connect_reports_the_cluster_or_fails_when_it_is_down() {
    let mut cluster = EtcdCluster::start(3);
    let (blue, green) = (
        Upstream::start("blue").await,
        Upstream::start("green").await,
    );
    let text = common::pools_toml(
        &[("blue", &[blue.addr]), ("green", &[green.addr])],
        "blue = 100",
    );
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
