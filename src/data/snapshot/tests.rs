use super::*;
use crate::config::parse;

fn snapshot(extra_blue: &str, split: &str) -> Snapshot {
    let text = format!(
        "[pools.blue]\nbackends = [\"127.0.0.1:1001\", \"127.0.0.1:1002\"]\n{extra_blue}\n\
         [pools.green]\nbackends = [\"127.0.0.1:2001\"]\n\
         [pools.grey]\nbackends = [\"127.0.0.1:3001\"]\n[split]\n{split}\n"
    );
    let config = Arc::new(parse(&text).expect("valid test config"));
    Snapshot::build(config, 1, &Metrics::new(), &HealthRegistry::default())
}

fn served(s: &Snapshot, keys: impl Iterator<Item = u32>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for key in keys {
        let name = match s.route(key) {
            Ok(r) => r.backend.name.clone(),
            Err(e) => format!("{e:?}"),
        };
        *out.entry(name).or_default() += 1;
    }
    out
}

use std::collections::BTreeMap;

#[test]
fn unavailable_backends_get_nothing_and_their_pool_mates_take_over() {
    let s = snapshot("", "blue = 100");
    s.pools[0].backends[0].health.set_probe_up(false);
    let counts = served(&s, 0..1000);
    assert_eq!(counts.get("127.0.0.1:1002"), Some(&1000), "{counts:?}");
    s.pools[0].backends[0].health.set_probe_up(true);
    s.pools[0].backends[1].health.set_drained(true);
    assert_eq!(served(&s, 0..10).get("127.0.0.1:1001"), Some(&10));
}

#[test]
fn a_down_pool_fails_over_in_proportion_to_the_other_shares() {
    let s = snapshot("", "blue = 50\ngreen = 30\ngrey = 20");
    for b in &s.pools[0].backends {
        b.health.set_probe_up(false);
    }
    let counts = served(&s, 0..10_000);
    // Green had 30 and grey 20 of the 50 left, so blue's 5000 keys split about 60/40:
    // green 3000 + ~3000, grey 2000 + ~2000.
    let green = counts["127.0.0.1:2001"];
    assert!((5850..=6150).contains(&green), "{counts:?}");
    assert_eq!(green + counts["127.0.0.1:3001"], 10_000, "{counts:?}");
}

#[test]
fn a_down_pool_set_to_fail_refuses_only_its_own_share() {
    let s = snapshot("on-pool-down = \"fail\"", "blue = 90\ngreen = 10");
    for b in &s.pools[0].backends {
        b.health.set_drained(true);
    }
    let counts = served(&s, 0..10_000);
    assert_eq!(counts.get("PoolDown(0)"), Some(&9000), "{counts:?}");
    assert_eq!(counts.get("127.0.0.1:2001"), Some(&1000));
}

#[test]
fn with_no_other_pool_holding_a_share_a_down_pool_is_refused() {
    let s = snapshot("", "blue = 100");
    for b in &s.pools[0].backends {
        b.health.set_probe_up(false);
    }
    assert_eq!(s.route(5).err(), Some(NoRoute::PoolDown(0)));
}

#[test]
fn a_retry_avoids_the_failed_backend_then_leaves_the_pool() {
    let s = snapshot("", "blue = 80\ngreen = 20");
    for _ in 0..10 {
        let r = s.route_retry(3, (0, 0)).unwrap();
        assert_eq!((r.pool_index, r.backend_index), (0, 1));
    }
    s.pools[0].backends[1].health.set_probe_up(false);
    let r = s.route_retry(3, (0, 0)).unwrap();
    assert_eq!(
        r.pool.name, "green",
        "same pool first, then another with a share"
    );
}

#[test]
fn simultaneous_failures_never_eject_past_the_cap() {
    let backends: Vec<String> = (0..10)
        .map(|i| format!("\"127.0.0.1:{}\"", 4000 + i))
        .collect();
    let text = format!(
        "[pools.blue]\nbackends = [{}]\n[pools.blue.outlier]\nconsecutive-failures = 1\n\
         max-ejected-percent = 50\n[split]\nblue = 100\n",
        backends.join(", ")
    );
    let config = Arc::new(parse(&text).unwrap());
    let s = Arc::new(Snapshot::build(
        config,
        1,
        &Metrics::new(),
        &HealthRegistry::default(),
    ));
    for _ in 0..300 {
        let barrier = Arc::new(std::sync::Barrier::new(10));
        let threads: Vec<_> = (0..10)
            .map(|b| {
                let (s, barrier) = (s.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    s.pools[0].record_failure(b)
                })
            })
            .collect();
        let ejected = threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(Option::is_some)
            .count();
        assert!(
            ejected <= 5,
            "{ejected} of 10 backends ejected at a 50 % cap"
        );
        for b in &s.pools[0].backends {
            b.health.end_ejection();
        }
    }
}

#[test]
fn a_retry_never_leaves_a_pool_set_to_fail() {
    let s = snapshot("on-pool-down = \"fail\"", "blue = 80\ngreen = 20");
    s.pools[0].backends[1].health.set_probe_up(false);
    assert!(
        s.route_retry(3, (0, 0)).is_none(),
        "no other pool for blue's requests"
    );
}

#[test]
fn a_backend_in_slow_start_takes_a_small_share_of_its_weight() {
    let s = snapshot("slow-start = \"60s\"", "blue = 100");
    // Both backends are new, so both ramp; let the first one be at full weight.
    s.pools[0].backends[0].health.finish_ramp();
    let counts = served(&s, 0..10_000);
    let (full, ramping) = (counts["127.0.0.1:1001"], counts["127.0.0.1:1002"]);
    assert_eq!(full + ramping, 10_000, "nothing refused: {counts:?}");
    // Its turn comes every other request and is taken about a tenth of the time.
    assert!((200..1500).contains(&ramping), "{counts:?}");
}

#[test]
fn every_bucket_maps_exactly_by_basis_points_and_zero_shares_get_none() {
    let s = snapshot("", "blue = 25\ngreen = 74.99\ngrey = 0.01");
    let counts = served(&s, 0..10_000);
    assert_eq!(counts["127.0.0.1:1001"] + counts["127.0.0.1:1002"], 2500);
    assert_eq!(counts["127.0.0.1:2001"], 7499);
    assert_eq!(
        counts["127.0.0.1:3001"], 1,
        "0.01 % is one bucket in 10,000"
    );
    let none = snapshot("", "blue = 0\ngreen = 100\ngrey = 0");
    assert_eq!(served(&none, 0..10_000)["127.0.0.1:2001"], 10_000);
    assert!(
        matches!(none.route(10_000), Err(NoRoute::NoShare)),
        "out of range"
    );
}
