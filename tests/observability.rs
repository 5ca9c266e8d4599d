//! Metrics, access log and pool header, observed through the real proxy.

mod common;

use std::time::{Duration, Instant};

use common::metrics::{scrape, value, Sample};
use common::{Client, TestProxy, Upstream, DEADLINE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_and_histograms_match_exactly_what_was_sent() {
    let blue = Upstream::start("blue").await;
    let (_reserved, dead) = common::dead_backend();
    let dead = dead.to_string();
    let rest = format!(
        "[pools.blue]\nbackends = [\"{}\"]\n[pools.green]\nbackends = [\"{dead}\"]\n[split]\nblue = 100\n",
        blue.addr
    );
    let proxy = TestProxy::start("pool-header = \"x-switchback-pool\"", &rest).await;
    let mut client = Client::connect(proxy.addr).await;

    for _ in 0..30 {
        let reply = client.get("/").await;
        assert_eq!(reply.header("x-switchback-pool").as_deref(), Some("blue"));
    }
    for _ in 0..20 {
        assert_eq!(client.get("/status/500").await.status, 500);
    }
    proxy.switch("green").await;
    for _ in 0..10 {
        assert_eq!(common::get(proxy.addr, "/").await.status, 502);
    }

    // A request is counted in its logging phase, just after its response was sent: wait
    // until the last one is in before reading every figure.
    let pool_count = |m: &[Sample], pool| {
        value(
            m,
            "switchback_request_duration_seconds_count",
            &[("pool", pool)],
        )
    };
    common::poll_until("the last request to be counted", DEADLINE, || async {
        let m = scrape(&proxy).await;
        let errors = value(
            &m,
            "switchback_upstream_errors_total",
            &[("pool", "green"), ("kind", "connect")],
        );
        pool_count(&m, "blue") >= 50.0 && pool_count(&m, "green") >= 10.0 && errors >= 10.0
    })
    .await;
    let m = scrape(&proxy).await;
    let b = blue.addr.to_string();
    let requests = |pool, backend: &str, class| {
        value(
            &m,
            "switchback_requests_total",
            &[("pool", pool), ("backend", backend), ("code_class", class)],
        )
    };
    assert_eq!(requests("blue", &b, "2xx"), 30.0);
    assert_eq!(requests("blue", &b, "5xx"), 20.0);
    assert_eq!(requests("blue", &b, "error"), 0.0);
    assert_eq!(requests("green", &dead, "error"), 10.0);
    assert_eq!(
        requests("green", &dead, "5xx"),
        0.0,
        "a proxy-made 502 is not an upstream 5xx"
    );
    let errors = |kind| {
        value(
            &m,
            "switchback_upstream_errors_total",
            &[("pool", "green"), ("backend", &dead), ("kind", kind)],
        )
    };
    assert_eq!(errors("connect"), 10.0);
    assert_eq!(
        value(
            &m,
            "switchback_request_duration_seconds_count",
            &[("pool", "blue")]
        ),
        50.0
    );
    assert_eq!(
        value(
            &m,
            "switchback_request_duration_seconds_count",
            &[("pool", "green")]
        ),
        10.0
    );
    assert_eq!(
        value(&m, "switchback_in_flight_requests", &[("pool", "blue")]),
        0.0
    );
    assert_eq!(
        value(
            &m,
            "switchback_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "switchback_admin_requests_total",
            &[("endpoint", "/switch"), ("code", "200")]
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_and_version_move_in_the_same_scrape_as_status_and_rejected_reloads_count() {
    let common::BlueGreen {
        proxy,
        blue: _blue,
        green: _green,
    } = common::blue_green("blue = 90\ngreen = 10", "").await;

    proxy.switch("green").await;
    let m = scrape(&proxy).await;
    let status = proxy.status().await;

    assert_eq!(
        value(&m, "switchback_config_version", &[]),
        status["version"].as_f64().unwrap()
    );
    assert_eq!(
        value(&m, "switchback_split_ratio", &[("pool", "green")]),
        1.0
    );
    assert_eq!(
        value(&m, "switchback_split_ratio", &[("pool", "blue")]),
        0.0
    );
    assert_eq!(
        value(
            &m,
            "switchback_config_reloads_total",
            &[("result", "rejected")]
        ),
        0.0
    );

    std::fs::write(&proxy.config_path, "[split\nbroken").unwrap();
    let start = Instant::now();
    while value(
        &scrape(&proxy).await,
        "switchback_config_reloads_total",
        &[("result", "rejected")],
    ) < 1.0
    {
        assert!(start.elapsed() < DEADLINE, "rejected reload not counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_writes_one_json_line_per_request() {
    let blue = Upstream::start("blue").await;
    let rest = format!(
        "[log]\naccess = \"access.log\"\n[pools.blue]\nbackends = [\"{}\"]\n[split]\nblue = 100\n",
        blue.addr
    );
    let proxy = TestProxy::start("", &rest).await;
    let mut client = Client::connect(proxy.addr).await;

    for path in ["/a", "/b?x=1", "/status/404"] {
        client.get(path).await;
    }

    let path = proxy.dir.path().join("access.log");
    let start = Instant::now();
    let lines = loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.lines().count() >= 3 {
            break text;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "access log has {} lines",
            text.lines().count()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let entries: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries[1]["path"], "/b?x=1");
    assert_eq!(entries[2]["status"], 404);
    for e in &entries {
        for field in [
            "time",
            "client",
            "method",
            "path",
            "status",
            "pool",
            "backend",
            "upstream_ms",
            "total_ms",
            "bytes",
            "version",
        ] {
            assert!(!e[field].is_null(), "{field} missing in {e}");
        }
        assert_eq!(e["pool"], "blue");
        assert_eq!(e["bytes"], 4, "the body \"blue\"");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_access_log_sink_drops_lines_and_never_holds_requests() {
    let blue = Upstream::start("blue").await;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("stuck.pipe");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    // A reader that opens the pipe and never reads: the writer fills the pipe and blocks.
    let reader_path = fifo.clone();
    let reader = std::thread::spawn(move || {
        let file = std::fs::File::open(reader_path).unwrap();
        std::thread::sleep(Duration::from_secs(30));
        drop(file);
    });
    let rest = format!(
        "[log]\naccess = \"{}\"\naccess-buffer = 16\n[pools.blue]\nbackends = [\"{}\"]\n[split]\nblue = 100\n",
        fifo.display(),
        blue.addr
    );
    let proxy = TestProxy::start("", &rest).await;

    // Far more lines than the pipe, the writer's buffer and the queue hold together. Each
    // request has the client's deadline: a request held by logging would fail here.
    let mut client = Client::connect(proxy.addr).await;
    for _ in 0..1_500 {
        assert_eq!(client.get("/").await.status, 200);
    }

    let dropped = value(
        &scrape(&proxy).await,
        "switchback_access_log_dropped_total",
        &[],
    );
    assert!(
        dropped > 0.0,
        "lines beyond the queue are dropped and counted"
    );
    // Shutdown is bounded too: the final flush gives up on the stuck sink.
    let mut proxy = proxy;
    proxy.signal(libc::SIGTERM);
    assert!(
        proxy.wait_exit(Duration::from_secs(5)).await.is_some(),
        "a stuck access-log sink held the shutdown"
    );
    drop(reader);
}
