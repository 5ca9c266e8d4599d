//! The operational metrics: split ratio, last reload, health-check results, ejections,
//! retries and the process metrics, through the real proxy.

mod common;

use std::time::Duration;

use common::metrics::{scrape, value};
use common::{get, poll_until, TestProxy, Upstream};

#[tokio::test]
async fn checks_ejections_retries_reloads_and_the_process_are_counted() {
    let live = Upstream::start("live").await;
    let (_reserved, dead) = common::dead_backend();
    let dead = dead.to_string();
    let check = "[pools.POOL.health-check]\ntype = \"tcp\"\ninterval = \"100ms\"\n";
    let rest = format!(
        "[pools.blue]\nbackends = [\"{dead}\", \"{live}\"]\n[pools.blue.outlier]\nconsecutive-failures = 1\n\
         [pools.green]\nbackends = [\"{live}\"]\n{}\
         [pools.grey]\nbackends = [\"{dead}\"]\n{}\
         [split]\nblue = 75\ngreen = 25\n",
        check.replace("POOL", "green"),
        check.replace("POOL", "grey"),
        live = live.addr,
    );
    let proxy = TestProxy::start("", &rest).await;
    let m = scrape(&proxy).await;
    assert_eq!(
        value(&m, "switchback_split_ratio", &[("pool", "blue")]),
        0.75
    );
    assert_eq!(
        value(&m, "switchback_split_ratio", &[("pool", "grey")]),
        0.0
    );
    assert_eq!(
        value(&m, "switchback_config_last_reload_successful", &[]),
        1.0
    );
    assert!(
        value(
            &m,
            "switchback_config_last_reload_success_timestamp_seconds",
            &[]
        ) > 1.7e9
    );
    assert!(value(&m, "process_resident_memory_bytes", &[]) > 0.0);
    assert!(value(&m, "process_open_fds", &[]) > 0.0);

    poll_until("a pass and a fail", Duration::from_secs(5), || async {
        let m = scrape(&proxy).await;
        let checks = |pool, result| {
            value(
                &m,
                "switchback_health_checks_total",
                &[("pool", pool), ("result", result)],
            )
        };
        checks("grey", "fail") >= 1.0
            && checks("green", "pass") >= 1.0
            && checks("green", "fail") == 0.0
    })
    .await;

    // Blue's dead backend: the first request to it is retried on the live one and ejects it.
    // Requests go on until that has happened (75 % go to blue, every other one to the dead).
    poll_until(
        "one ejection and its retry",
        Duration::from_secs(10),
        || async {
            assert_eq!(
                get(proxy.addr, "/").await.status,
                200,
                "a retry hides the dead backend"
            );
            let m = scrape(&proxy).await;
            value(
                &m,
                "switchback_ejections_total",
                &[("pool", "blue"), ("backend", &dead)],
            ) == 1.0
                && value(&m, "switchback_retries_total", &[("pool", "blue")]) >= 1.0
        },
    )
    .await;

    // A rejected reload turns the gauge to 0; the next good one back to 1.
    let text = std::fs::read_to_string(&proxy.config_path).unwrap();
    std::fs::write(&proxy.config_path, text.replace("blue = 75", "blue = 80")).unwrap();
    poll_until("the rejected reload", Duration::from_secs(5), || async {
        value(
            &scrape(&proxy).await,
            "switchback_config_last_reload_successful",
            &[],
        ) == 0.0
    })
    .await;
    std::fs::write(
        &proxy.config_path,
        text.replace("blue = 75\ngreen = 25", "blue = 80\ngreen = 20"),
    )
    .unwrap();
    poll_until("the good reload", Duration::from_secs(5), || async {
        let m = scrape(&proxy).await;
        value(&m, "switchback_config_last_reload_successful", &[]) == 1.0
            && value(&m, "switchback_split_ratio", &[("pool", "green")]) == 0.2
    })
    .await;
}
