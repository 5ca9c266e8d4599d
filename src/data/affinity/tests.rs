use super::*;

use rand::{Rng, SeedableRng};

fn split(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
    pairs.iter().map(|(p, s)| (p.to_string(), *s)).collect()
}

fn owners(t: &BucketTable) -> Vec<String> {
    (0..BUCKETS as u16).map(|b| t.pool(b).to_string()).collect()
}

/// A random split of 10,000 basis points over `pools`.
fn random_split(rng: &mut impl Rng, pools: &[&str]) -> BTreeMap<String, u32> {
    let mut cuts: Vec<u32> = (0..pools.len() - 1)
        .map(|_| rng.gen_range(0..=10_000))
        .collect();
    cuts.sort_unstable();
    let mut out = BTreeMap::new();
    let mut last = 0;
    for (p, cut) in pools.iter().zip(cuts.iter().chain([&10_000])) {
        out.insert(p.to_string(), cut - last);
        last = *cut;
    }
    out
}

#[test]
fn keys_spread_evenly_and_each_seed_gives_its_own_assignment() {
    let t = BucketTable::fresh(&split(&[("blue", 9000), ("green", 1000)]));
    let hasher = KeyHasher::from_seed("switchback");
    let green = (0..10_000)
        .filter(|i| t.pool(hasher.bucket(format!("user-{i}").as_bytes())) == "green")
        .count();
    assert!(
        (850..=1150).contains(&green),
        "{green} of 10,000 on green at 10 %"
    );
    let other = KeyHasher::from_seed("another seed");
    assert_ne!(hasher, other);
    assert_eq!(
        hasher,
        KeyHasher::from_seed("switchback"),
        "the same seed, the same key"
    );
}

#[test]
fn every_pool_owns_exactly_its_share() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let pools = ["blue", "green", "grey"];
    let mut t = BucketTable::fresh(&random_split(&mut rng, &pools));
    for _ in 0..60 {
        let s = random_split(&mut rng, &pools);
        t = t.next(&s);
        for (pool, count) in t.counts() {
            assert_eq!(count, s[pool], "{pool}");
        }
    }
}

#[test]
fn users_move_only_from_pools_that_lost_share_to_pools_that_gained() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let pools = ["a", "b", "c", "d"];
    let mut s = random_split(&mut rng, &pools);
    let mut t = BucketTable::fresh(&s);
    for _ in 0..80 {
        let next_split = random_split(&mut rng, &pools);
        let next = t.next(&next_split);
        let gained: u32 = pools
            .iter()
            .map(|p| next_split[*p].saturating_sub(s[*p]))
            .sum();
        let mut moved = 0;
        for (b, (before, after)) in owners(&t).iter().zip(owners(&next)).enumerate() {
            if *before != after {
                moved += 1;
                assert!(
                    next_split[before] < s[before],
                    "bucket {b} left {before}, which did not lose share"
                );
                assert!(
                    next_split[&after] > s[&after],
                    "bucket {b} joined {after}, which did not gain share"
                );
            }
        }
        assert_eq!(moved, gained, "exactly the shifted share moves");
        (s, t) = (next_split, next);
    }
}

#[test]
fn undoing_a_change_restores_the_earlier_assignment_exactly() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    let pools = ["a", "b", "c"];
    let mut t = BucketTable::fresh(&random_split(&mut rng, &pools));
    let mut s = random_split(&mut rng, &pools);
    t = t.next(&s);
    for _ in 0..60 {
        let changed = t.next(&random_split(&mut rng, &pools));
        let back = changed.next(&s);
        assert_eq!(owners(&back), owners(&t));
        s = random_split(&mut rng, &pools);
        t = back.next(&s);
    }
}

#[test]
fn raising_the_canary_moves_blue_users_only_and_a_third_pool_keeps_its_users() {
    let t = BucketTable::fresh(&split(&[("blue", 9500), ("green", 500)]));
    let raised = t.next(&split(&[("blue", 9000), ("green", 1000)]));
    let moved: Vec<(String, String)> = owners(&t)
        .into_iter()
        .zip(owners(&raised))
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(moved.len(), 500);
    assert!(moved.iter().all(|(a, b)| a == "blue" && b == "green"));

    let three = BucketTable::fresh(&split(&[("a", 7000), ("b", 2000), ("c", 1000)]));
    let shifted = three.next(&split(&[("a", 6000), ("b", 2000), ("c", 2000)]));
    for (before, after) in owners(&three).iter().zip(owners(&shifted)) {
        assert_eq!(before == "b", after == "b", "no user of b moves");
    }
}

#[test]
fn the_same_changes_give_the_same_table_and_new_pools_start_empty() {
    let s1 = split(&[("blue", 10_000)]);
    let s2 = split(&[("blue", 8000), ("green", 2000)]);
    let one = BucketTable::fresh(&s1).next(&s2);
    let two = BucketTable::fresh(&s1).next(&s2);
    assert_eq!(one, two);
    assert_eq!(one.counts()["green"], 2000);
    let gone = one.next(&split(&[("green", 10_000)]));
    assert_eq!(gone.counts()["green"], 10_000);
}

#[test]
fn growing_the_last_pool_step_by_step_keeps_the_fresh_layout() {
    let mut t = BucketTable::fresh(&split(&[("blue", 9900), ("green", 100)]));
    for green in [500, 1000, 2500, 5000, 10_000] {
        let s = split(&[("blue", 10_000 - green), ("green", green)]);
        t = t.next(&s);
        assert!(t.fits(&s));
        assert_eq!(
            owners(&t),
            owners(&BucketTable::fresh(&s)),
            "green at {green}"
        );
    }
    assert!(!t.fits(&split(&[("blue", 1), ("green", 9999)])));
}
