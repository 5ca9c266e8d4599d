//! Rollouts across replicas (`[state] etcd`, issue 26): one fenced leader runs the engine on
//! the sum of every replica's traffic; it hands over when it dies or stalls.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::etcd::EtcdCluster;
use common::rollout::QUICK;
use common::{poll_until, TestProxy, Upstream, DEADLINE};
use serde_json::Value;

/// How long a leader's death may take to hand over: its lease's TTL, plus 2 s.
const HANDOVER: Duration = Duration::from_secs(12);

/// A replica with the quick rollout plan.
async fn replica(cluster: &EtcdCluster, prefix: &str, name: &str, pools: &str) -> TestProxy {
    common::replicas::replica(cluster, prefix, name, &format!("{QUICK}\n{pools}")).await
}

fn pools(blue: &Upstream, green: &Upstream) -> String {
    common::pools_toml(
        &[("blue", &[blue.addr]), ("green", &[green.addr])],
        "blue = 100",
    )
}

async fn json(proxy: &TestProxy, path: &str) -> Value {
    let reply = proxy.admin("GET", path, "").await;
    assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    serde_json::from_slice(&reply.body).unwrap()
}

/// The replica that leads, as `asked` sees it (`None` also while it cannot read the replicas:
/// on a loaded machine an etcd call may time out, and `/replicas` answers 503 then).
async fn leader(asked: &TestProxy) -> Option<String> {
    let reply = asked.admin("GET", "/replicas", "").await;
    if reply.status != 200 {
        return None;
    }
    let replicas: Value = serde_json::from_slice(&reply.body).unwrap();
    replicas["replicas"]
        .as_array()?
        .iter()
        .find(|r| r["leader"] == true)
        .map(|r| r["replica"].as_str().unwrap().to_string())
}

type Targets = Arc<std::sync::Mutex<Vec<std::net::SocketAddr>>>;

/// Requests through every replica in `targets` in turn until `stop` is set.
fn traffic(targets: Targets, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let began = Instant::now();
        let mut i = 0;
        while !stop.load(Ordering::SeqCst) && began.elapsed() < Duration::from_secs(120) {
            let addr = {
                let targets = targets.lock().unwrap();
                targets[i % targets.len()]
            };
            // A replica killed mid-request fails its request: the loop goes on (the harness's
            // client panics on a broken connection, so each request runs on its own task).
            let _ = tokio::spawn(async move { common::get(addr, "/").await }).await;
            i += 1;
        }
    })
}

fn targets(addrs: Vec<std::net::SocketAddr>) -> Targets {
    Arc::new(std::sync::Mutex::new(addrs))
}

/// Polls until `asked` names a leader.
async fn elected(asked: &TestProxy) -> String {
    let began = Instant::now();
    loop {
        if let Some(name) = leader(asked).await {
            return name;
        }
        assert!(began.elapsed() < DEADLINE, "no leader elected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until the rollout has ended, within a minute (the quick plan's steps and a handover).
async fn until_ended(proxy: &TestProxy) -> Value {
    until_state(
        proxy,
        &["promoted", "rolled-back", "aborted"],
        Duration::from_secs(60),
    )
    .await
}

async fn until_state(proxy: &TestProxy, states: &[&str], within: Duration) -> Value {
    let began = Instant::now();
    loop {
        let now = json(proxy, "/rollouts/current").await;
        if states.iter().any(|s| now["state"] == *s) {
            return now;
        }
        assert!(
            began.elapsed() < within,
            "rollout never reached {states:?}: {now}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_started_anywhere_hands_over_when_its_leader_dies_and_completes() {
    let cluster = EtcdCluster::start(3);
    let (_blue, _green, text) = common::replicas::blue_green_pools().await;
    let mut replicas = [
        replica(&cluster, "/r1", "a", &text).await,
        replica(&cluster, "/r1", "b", &text).await,
        replica(&cluster, "/r1", "c", &text).await,
    ];
    let first = elected(&replicas[0]).await;
    let index = |name: &str| ["a", "b", "c"].iter().position(|n| *n == name).unwrap();
    // Started through a replica that does not lead.
    let starter = (index(&first) + 1) % 3;
    let reply = replicas[starter]
        .admin("POST", "/rollouts", r#"{"to": "green", "plan": "quick"}"#)
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let stop = Arc::new(AtomicBool::new(false));
    let sent_to = targets(replicas.iter().map(|r| r.addr).collect());
    let load = traffic(sent_to.clone(), stop.clone());
    until_state(&replicas[starter], &["running"], DEADLINE).await;

    // The leader dies: another takes over within the lease's TTL + 2 s and finishes.
    let dead = replicas[index(&first)].addr;
    sent_to.lock().unwrap().retain(|a| *a != dead);
    replicas[index(&first)].kill();
    let survivor = (index(&first) + 1) % 3;
    let took = poll_until("another replica leads", HANDOVER, || async {
        leader(&replicas[survivor])
            .await
            .is_some_and(|l| l != first)
    })
    .await;
    eprintln!("handover took {took:?}");
    let ended = until_ended(&replicas[survivor]).await;
    stop.store(true, Ordering::SeqCst);
    let _ = load.await;
    assert_eq!(ended["state"], "promoted", "{ended}");
    let history = json(&replicas[survivor], "/history?limit=1000").await;
    let entries = history.as_array().unwrap();
    let handovers: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "rollout-handover")
        .collect();
    assert!(
        handovers.iter().any(|e| e["replica"] != first.as_str()),
        "the handover is logged: {history}"
    );
    // Nothing advanced twice: each step entered once.
    let mut steps: Vec<u64> = entries
        .iter()
        .filter(|e| e["action"] == "rollout-step")
        .map(|e| e["rollout"]["step"].as_u64().unwrap())
        .collect();
    steps.sort_unstable();
    let before = steps.len();
    steps.dedup();
    assert_eq!(steps.len(), before, "a step entered twice: {history}");
    // Every replica serves the promoted split.
    for (i, proxy) in replicas.iter().enumerate() {
        if i != index(&first) {
            poll_until("the promoted split everywhere", DEADLINE, || async {
                json(proxy, "/status").await["split"]["green"] == 100
            })
            .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stopped_past_its_lease_writes_nothing_after_it_resumes() {
    let cluster = EtcdCluster::start(3);
    let (_blue, _green, text) = common::replicas::blue_green_pools().await;
    let replicas = [
        replica(&cluster, "/r2", "a", &text).await,
        replica(&cluster, "/r2", "b", &text).await,
    ];
    let first = elected(&replicas[0]).await;
    let (old, other) = match first.as_str() {
        "a" => (0, 1),
        _ => (1, 0),
    };
    let reply = replicas[other]
        .admin("POST", "/rollouts", r#"{"to": "green", "plan": "quick"}"#)
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic(targets(vec![replicas[other].addr]), stop.clone());
    until_state(&replicas[other], &["running"], DEADLINE).await;

    replicas[old].signal(19); // SIGSTOP
    poll_until(
        "the other replica leads",
        HANDOVER + Duration::from_secs(3),
        || async { leader(&replicas[other]).await.is_some_and(|l| l != first) },
    )
    .await;
    let taken = json(&replicas[other], "/history?limit=1").await[0]["seq"]
        .as_u64()
        .unwrap();
    replicas[old].signal(18); // SIGCONT
    poll_until(
        "the resumed replica knows it no longer leads",
        DEADLINE,
        || async { replicas[old].stderr().contains("no longer leads") },
    )
    .await;
    let ended = until_ended(&replicas[other]).await;
    stop.store(true, Ordering::SeqCst);
    let _ = load.await;
    assert_eq!(ended["state"], "promoted", "{ended}");
    let history = json(&replicas[other], "/history?limit=1000").await;
    let late: Vec<&Value> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["seq"].as_u64() > Some(taken) && e["replica"] == first.as_str())
        .filter(|e| {
            e["action"]
                .as_str()
                .is_some_and(|a| a.starts_with("rollout-"))
        })
        .collect();
    assert!(
        late.is_empty(),
        "the stalled leader wrote after the handover: {late:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_failing_only_behind_one_replica_is_rolled_back() {
    let cluster = EtcdCluster::start(3);
    let blue = Upstream::start("blue").await;
    let (green, broken) = (
        Upstream::start("green").await,
        Upstream::start("green").await,
    );
    broken.fail_every(1);
    let replicas = [
        replica(&cluster, "/r3", "a", &pools(&blue, &green)).await,
        replica(&cluster, "/r3", "b", &pools(&blue, &green)).await,
        replica(&cluster, "/r3", "c", &pools(&blue, &broken)).await,
    ];
    poll_until("a leader is elected", DEADLINE, || async {
        leader(&replicas[0]).await.is_some()
    })
    .await;
    let reply = replicas[0]
        .admin("POST", "/rollouts", r#"{"to": "green", "plan": "quick"}"#)
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic(
        targets(replicas.iter().map(|r| r.addr).collect()),
        stop.clone(),
    );
    let ended = until_ended(&replicas[1]).await;
    stop.store(true, Ordering::SeqCst);
    let _ = load.await;
    assert_eq!(ended["state"], "rolled-back", "{ended}");
    for proxy in &replicas {
        poll_until("green back at 0 % everywhere", DEADLINE, || async {
            json(proxy, "/status").await["split"]["green"] == 0
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_during_a_rollout_and_an_etcd_outage_ends_it_locally_and_everywhere_later() {
    let mut cluster = EtcdCluster::start(3);
    let (_blue, _green, text) = common::replicas::blue_green_pools().await;
    let replicas = [
        replica(&cluster, "/r4", "a", &text).await,
        replica(&cluster, "/r4", "b", &text).await,
    ];
    elected(&replicas[0]).await;
    let reply = replicas[0]
        .admin("POST", "/rollouts", r#"{"to": "green", "plan": "quick"}"#)
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic(
        targets(vec![replicas[0].addr, replicas[1].addr]),
        stop.clone(),
    );
    poll_until("the canary takes traffic", DEADLINE, || async {
        json(&replicas[1], "/status").await["split"]["green"] == 10
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let _ = load.await;

    cluster.stop_all();
    // Pausing fails (nothing changes); the rollback goes live on this replica at once.
    let reply = replicas[0]
        .admin("POST", "/rollouts/current/pause", "")
        .await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    let reply = replicas[0].admin("POST", "/rollback", "").await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    let status = json(&replicas[0], "/status").await;
    assert_eq!(
        status["split"],
        serde_json::json!({"blue": 100, "green": 0}),
        "{status}"
    );
    assert_eq!(
        json(&replicas[0], "/rollouts/current").await["state"],
        "rolled-back"
    );
    assert_eq!(
        json(&replicas[1], "/status").await["split"]["green"],
        10,
        "b keeps its state"
    );

    // etcd back: the rollback is written as a change; the other replica ends the rollout too.
    cluster.restart_all();
    poll_until("b applies the rollback", DEADLINE, || async {
        json(&replicas[1], "/status").await["split"]["green"] == 0
    })
    .await;
    let ended = until_state(&replicas[1], &["rolled-back"], DEADLINE).await;
    assert_eq!(ended["state"], "rolled-back", "{ended}");
    // And it stays ended: the leader does not step the rollout forward again.
    let history = json(&replicas[1], "/history?limit=1000").await;
    let entries = history.as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "rollback" && e["replica"] == "a"),
        "{history}"
    );
    assert_eq!(json(&replicas[0], "/status").await["split"]["green"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_pauses_and_resumes_through_replicas_that_do_not_lead() {
    let cluster = EtcdCluster::start(3);
    let (_blue, _green, text) = common::replicas::blue_green_pools().await;
    let replicas = [
        replica(&cluster, "/r5", "a", &text).await,
        replica(&cluster, "/r5", "b", &text).await,
        replica(&cluster, "/r5", "c", &text).await,
    ];
    let first = elected(&replicas[0]).await;
    let followers: Vec<&TestProxy> = replicas
        .iter()
        .zip(["a", "b", "c"])
        .filter(|(_, name)| *name != first)
        .map(|(proxy, _)| proxy)
        .collect();
    let reply = followers[0]
        .admin("POST", "/rollouts", r#"{"to": "green", "plan": "quick"}"#)
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let stop = Arc::new(AtomicBool::new(false));
    let load = traffic(
        targets(replicas.iter().map(|r| r.addr).collect()),
        stop.clone(),
    );
    until_state(followers[1], &["running"], DEADLINE).await;
    // Paused through a follower: every replica, the leader included, holds still.
    let reply = followers[1]
        .admin("POST", "/rollouts/current/pause", "")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    for proxy in &replicas {
        until_state(proxy, &["paused"], DEADLINE).await;
    }
    let held = json(followers[0], "/rollouts/current").await;
    let split = json(followers[0], "/status").await["split"].clone();
    // A paused rollout does not move however long it is held (the plan's holds are 2 s).
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(json(followers[0], "/status").await["split"], split);
    assert_eq!(
        json(followers[1], "/rollouts/current").await["step"],
        held["step"]
    );
    // Resumed through the other follower: the leader takes it on to the end.
    let reply = followers[0]
        .admin("POST", "/rollouts/current/resume", "")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let ended = until_ended(followers[1]).await;
    stop.store(true, Ordering::SeqCst);
    let _ = load.await;
    assert_eq!(ended["state"], "promoted", "{ended}");
}
