//! The etcd test harness itself, against real etcd processes: a 3-member cluster keeps
//! serving through a surviving member when its leader is killed, takes the member back,
//! fails fast when every member is down, and keeps its data across a full restart; a paused
//! member hangs nothing, and compaction really removes old revisions.

mod common;

use std::time::{Duration, Instant};

use common::etcd::EtcdCluster;
use common::gateway::base64_encode;
use serde_json::json;

#[test]
fn cluster_survives_leader_loss_and_full_restart_with_its_data() {
    let mut etcd = EtcdCluster::start(3);
    let endpoints = etcd.endpoints();
    assert_eq!(endpoints.len(), 3);
    assert!(endpoints.iter().all(|e| e.starts_with("http://127.0.0.1:")));
    assert_eq!(
        etcd.toml_endpoints(),
        format!("[\"{}\"]", endpoints.join("\", \""))
    );

    etcd.put("switchback/key", "one");
    assert_eq!(etcd.get("switchback/key").as_deref(), Some("one"));
    assert_eq!(etcd.get("switchback/absent"), None);

    let old = etcd.leader();
    etcd.kill(old);
    let new = etcd.leader();
    assert_ne!(new, old, "a killed leader must not be reported as leader");
    etcd.put("switchback/key", "two");
    assert_eq!(etcd.get("switchback/key").as_deref(), Some("two"));

    etcd.restart(old);
    assert_eq!(etcd.get("switchback/key").as_deref(), Some("two"));

    etcd.stop_all();
    let asked = Instant::now();
    let down = etcd.try_get("switchback/key");
    assert!(down.is_err(), "a read with every member down: {down:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "a read with every member down took {:?}",
        asked.elapsed()
    );

    etcd.restart_all();
    assert_eq!(etcd.get("switchback/key").as_deref(), Some("two"));
}

#[test]
fn paused_member_hangs_no_read_and_compaction_removes_old_revisions() {
    let etcd = EtcdCluster::start(3);
    etcd.put("switchback/k", "a");
    etcd.put("switchback/k", "b");

    let follower = (etcd.leader() + 1) % 3;
    etcd.pause(follower);
    let asked = Instant::now();
    assert_eq!(etcd.get("switchback/k").as_deref(), Some("b"));
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );
    etcd.resume(follower);

    let revision = etcd.compact();
    let old = json!({"key": base64_encode("switchback/k"), "revision": revision - 1});
    let reply = etcd.call("/v3/kv/range", &old);
    let error = reply.expect_err("a read below the compacted revision");
    assert!(
        error.contains("required revision has been compacted"),
        "{error}"
    );
    assert_eq!(
        etcd.compact(),
        revision,
        "a second compaction changes nothing"
    );
}
