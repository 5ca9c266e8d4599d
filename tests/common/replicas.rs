//! Switchback replicas sharing their state on a test etcd cluster ([`super::etcd`]).

use std::time::Duration;

use serde_json::Value;

use super::etcd::EtcdCluster;
use super::DEADLINE;

/// A switchback replica sharing its state on `cluster` under `prefix`, named `name`, with its
/// runtime files in `state/`, and `rest` (pools, split, plans, …) in its config file.
pub async fn replica(
    cluster: &EtcdCluster,
    prefix: &str,
    name: &str,
    rest: &str,
) -> super::TestProxy {
    let state = format!(
        "[state]\netcd = {}\netcd-prefix = \"{prefix}\"\nreplica = \"{name}\"\ndir = \"state\"\n",
        cluster.toml_endpoints()
    );
    super::TestProxy::start("", &format!("{state}\n{rest}")).await
}

/// Blue and green upstreams, and their pools with every request on blue (a replica's config).
pub async fn blue_green_pools() -> (super::Upstream, super::Upstream, String) {
    let (blue, green) = (
        super::Upstream::start("blue").await,
        super::Upstream::start("green").await,
    );
    let text = super::pools_toml(
        &[("blue", &[blue.addr]), ("green", &[green.addr])],
        "blue = 100",
    );
    (blue, green, text)
}

/// `GET /replicas` through `proxy`, asked again while it answers 503 (an etcd call that timed
/// out on a loaded machine) until [`DEADLINE`].
pub async fn replicas(proxy: &super::TestProxy) -> Value {
    let began = std::time::Instant::now();
    loop {
        let reply = proxy.admin("GET", "/replicas", "").await;
        if reply.status == 200 {
            return serde_json::from_slice(&reply.body).unwrap();
        }
        assert!(
            reply.status == 503 && began.elapsed() < DEADLINE,
            "GET /replicas: {} {}",
            reply.status,
            reply.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
