//! The split and in-pool weights, observed through the real proxy and real upstreams.

mod common;

use common::{blue_green, tally, BlueGreen, TestProxy, Upstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ninety_ten_split_sends_about_a_tenth_to_green() {
    let BlueGreen { blue, green, proxy } = blue_green("blue = 90\ngreen = 10", "").await;

    let counts = tally(proxy.addr, 2_000).await;

    // Binomial sd at n=2000, p=0.1 is 0.67 points; ±3 points never flakes and catches a bug.
    let green_share = 100.0 * counts.get("green").copied().unwrap_or(0) as f64 / 2_000.0;
    assert!(
        (7.0..=13.0).contains(&green_share),
        "green got {green_share}% ({counts:?})"
    );
    assert_eq!(
        blue.requests() + green.requests(),
        2_000,
        "every request reached an upstream once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_left_out_of_the_split_never_gets_a_request() {
    let BlueGreen {
        green,
        proxy,
        blue: _blue,
    } = blue_green("blue = 100", "").await;

    let counts = tally(proxy.addr, 500).await;

    assert_eq!(counts.get("blue"), Some(&500));
    assert_eq!(green.requests(), 0, "green at 0 % must receive nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_inside_a_pool_share_by_weight() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let config = format!(
        "[pools.blue]\nbackends = [\"{}\", {{ addr = \"{}\", weight = 3 }}]\n\n[split]\nblue = 100\n",
        a.addr, b.addr
    );
    let proxy = TestProxy::start("", &config).await;

    let counts = tally(proxy.addr, 400).await;

    // Smooth weighted round-robin is exact over whole periods (period 4 here).
    assert_eq!(counts.get("a"), Some(&100), "{counts:?}");
    assert_eq!(counts.get("b"), Some(&300), "{counts:?}");
}
