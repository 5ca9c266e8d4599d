//! Hot reload of the config file: every way a file gets replaced, last known good, deletion,
//! the proxy's own writes, and SIGHUP.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{tally, BlueGreen, TestProxy, Upstream};
use serde_json::{json, Value};

/// Reloads must take effect within this (the acceptance bound).
const WITHIN: Duration = Duration::from_secs(1);

async fn setup(extra: &str) -> (Upstream, Upstream, TestProxy) {
    let BlueGreen { blue, green, proxy } = common::blue_green("blue = 100\ngreen = 0", extra).await;
    (blue, green, proxy)
}

fn with_split(proxy: &TestProxy, blue: u32, green: u32) -> String {
    let text = std::fs::read_to_string(&proxy.config_path).unwrap();
    let head = text.split("[split]").next().unwrap();
    format!("{head}[split]\nblue = {blue}\ngreen = {green}\n")
}

/// Polls `/status` until its split is `expected`; returns how long that took.
async fn wait_for_split(proxy: &TestProxy, expected: Value, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if proxy.status().await["split"] == expected {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "split not {expected} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_for_entry(proxy: &TestProxy, action: &str) -> Value {
    let start = Instant::now();
    loop {
        if let Some(entry) = proxy
            .history()
            .await
            .into_iter()
            .find(|e| e["action"] == action)
        {
            return entry;
        }
        assert!(
            start.elapsed() < common::DEADLINE,
            "no {action} entry in the deployment log:\n{}",
            proxy.stderr()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn write_by_rename(path: &Path, text: &str) {
    let temp = path.with_extension("new");
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_atomic_rename_takes_effect_within_a_second() {
    let (_b, _g, proxy) = setup("").await;

    write_by_rename(&proxy.config_path, &with_split(&proxy, 0, 100));

    wait_for_split(&proxy, json!({"blue": 0, "green": 100}), WITHIN).await;
    assert_eq!(tally(proxy.addr, 20).await.get("green"), Some(&20));
    let entry = wait_for_entry(&proxy, "reload").await;
    assert_eq!(
        (entry["actor"].as_str(), entry["version"].as_u64()),
        (Some("file"), Some(2))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_place_rewrite_takes_effect_within_a_second() {
    let (_b, _g, proxy) = setup("").await;

    std::fs::write(&proxy.config_path, with_split(&proxy, 0, 100)).unwrap();

    wait_for_split(&proxy, json!({"blue": 0, "green": 100}), WITHIN).await;
    assert_eq!(tally(proxy.addr, 20).await.get("green"), Some(&20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_style_symlink_swap_takes_effect_within_a_second() {
    let (_b, _g, proxy) = setup("").await;
    let dir = proxy.dir.path();
    let original = std::fs::read_to_string(&proxy.config_path).unwrap();
    // Kubernetes layout: switchback.toml -> ..data/switchback.toml, ..data -> ..v1
    let flip = |version: &str, text: &str| {
        std::fs::create_dir(dir.join(version)).unwrap();
        std::fs::write(dir.join(version).join("switchback.toml"), text).unwrap();
        std::os::unix::fs::symlink(version, dir.join("..data_tmp")).unwrap();
        std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    };
    flip("..v1", &original);
    std::os::unix::fs::symlink("..data/switchback.toml", dir.join("link_tmp")).unwrap();
    std::fs::rename(dir.join("link_tmp"), &proxy.config_path).unwrap();

    flip(
        "..v2",
        &original.replace("blue = 100\ngreen = 0", "blue = 0\ngreen = 100"),
    );

    wait_for_split(&proxy, json!({"blue": 0, "green": 100}), WITHIN).await;
    assert_eq!(tally(proxy.addr, 20).await.get("green"), Some(&20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_or_truncated_file_is_rejected_and_routing_stays() {
    let (_b, _g, proxy) = setup("").await;
    let good = std::fs::read_to_string(&proxy.config_path).unwrap();

    std::fs::write(
        &proxy.config_path,
        good.replace("blue = 100", "blue = 100\nred = 5"),
    )
    .unwrap();
    let rejected = wait_for_entry(&proxy, "rejected").await;
    assert!(
        rejected["message"].as_str().unwrap().contains("split.red"),
        "{rejected}"
    );
    assert_eq!(rejected["actor"], "file");
    std::fs::write(&proxy.config_path, &good[..good.len() / 2]).unwrap();
    let start = Instant::now();
    while proxy
        .history()
        .await
        .iter()
        .filter(|e| e["action"] == "rejected")
        .count()
        < 2
    {
        assert!(
            start.elapsed() < common::DEADLINE,
            "truncated file not rejected"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    assert_eq!(proxy.status().await["version"], 1);
    assert_eq!(tally(proxy.addr, 20).await.get("blue"), Some(&20));
    assert!(proxy.stderr().contains("reload rejected"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_file_keeps_the_live_config_and_its_return_is_loaded() {
    let (_b, _g, proxy) = setup("").await;
    let text = with_split(&proxy, 0, 100);

    std::fs::remove_file(&proxy.config_path).unwrap();
    let start = Instant::now();
    while !proxy.stderr().contains("config file is missing") {
        assert!(
            start.elapsed() < common::DEADLINE,
            "no warning about the missing file"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(tally(proxy.addr, 10).await.get("blue"), Some(&10));
    std::fs::write(&proxy.config_path, text).unwrap();

    wait_for_split(&proxy, json!({"blue": 0, "green": 100}), WITHIN).await;
    assert!(proxy
        .history()
        .await
        .iter()
        .all(|e| e["action"] != "rejected"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxys_own_write_is_not_a_new_change() {
    let (_b, _g, proxy) = setup("").await;

    proxy.switch("green").await;
    // Absence of a reaction cannot be awaited: give the watcher several debounce periods.
    tokio::time::sleep(Duration::from_millis(600)).await;

    let history = proxy.history().await;
    assert_eq!(proxy.status().await["version"], 2);
    assert_eq!(history.len(), 2, "only start and switch: {history:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_forces_a_reload() {
    // A debounce far longer than the test: only the signal can trigger the reload.
    let (_b, _g, proxy) = setup("[reload]\ndebounce = \"10m\"\n").await;
    std::fs::write(&proxy.config_path, with_split(&proxy, 0, 100)).unwrap();

    send_sighup(proxy.pid());

    wait_for_split(&proxy, json!({"blue": 0, "green": 100}), common::DEADLINE).await;
    assert_eq!(wait_for_entry(&proxy, "reload").await["actor"], "signal");
}

fn send_sighup(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_change_is_recorded_as_needing_restart_and_the_rest_applies() {
    let (_b, _g, proxy) = setup("").await;
    let moved = with_split(&proxy, 0, 100).replace(&proxy.addr.to_string(), "127.0.0.1:1");

    std::fs::write(&proxy.config_path, moved).unwrap();

    wait_for_split(&proxy, json!({"blue": 0, "green": 100}), WITHIN).await;
    let entry = wait_for_entry(&proxy, "reload").await;
    assert!(
        entry["message"]
            .as_str()
            .unwrap()
            .contains("needs restart to take effect: proxy.listen"),
        "{entry}"
    );
    assert_eq!(
        tally(proxy.addr, 5).await.get("green"),
        Some(&5),
        "still serving on the old address"
    );
}
