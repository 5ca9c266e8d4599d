//! The admin API against what a web page, a rebinding DNS name or a crowd of idle
//! connections can do, and a deployment log that survives torn lines, rotation and hostile
//! bodies. Real binary, real sockets, real files.

mod common;

use std::io::Write;
use std::time::Duration;

use tokio::net::TcpStream;

use common::{blue_green, get, poll_until, DEADLINE};

#[tokio::test]
async fn a_cross_site_simple_request_is_refused_and_changes_nothing() {
    let bg = blue_green("blue = 100\ngreen = 0", "").await;
    let proxy = &bg.proxy;
    let version = proxy.status().await["version"].clone();
    let switch = r#"{"to": "green"}"#;
    // fetch(..., {mode: "no-cors", body}) sends text/plain and an Origin.
    let text_plain = proxy
        .admin_call(
            "POST",
            "/switch",
            switch,
            &[("content-type", "text/plain;charset=UTF-8")],
        )
        .await;
    assert_eq!(text_plain.status, 415, "{}", text_plain.text());
    assert!(text_plain.text().contains("application/json"));
    let cross_site = proxy
        .admin_call(
            "POST",
            "/switch",
            switch,
            &[("origin", "http://evil.example")],
        )
        .await;
    assert_eq!(cross_site.status, 403, "{}", cross_site.text());
    let rebound = proxy
        .admin_call("GET", "/status", "", &[("host", "evil.example:9900")])
        .await;
    assert_eq!(rebound.status, 421, "{}", rebound.text());
    let rebound_write = proxy
        .admin_call("POST", "/rollback", "", &[("host", "evil.example")])
        .await;
    assert_eq!(rebound_write.status, 421);
    assert_eq!(proxy.status().await["version"], version, "nothing changed");
    assert_eq!(
        get(proxy.addr, "/").await.header("x-upstream").as_deref(),
        Some("blue")
    );
    // The admin's own origin and a bodyless POST stay usable.
    let own = format!("http://{}", proxy.admin);
    let ok = proxy
        .admin_call("POST", "/switch", switch, &[("origin", own.as_str())])
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(proxy.admin("POST", "/rollback", "").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_idle_admin_connections_stop_neither_the_data_plane_nor_health_checks() {
    let bg = blue_green(
        "blue = 100",
        "[pools.blue.health-check]\npath = \"/healthz\"\ninterval = \"100ms\"\n",
    )
    .await;
    let proxy = &bg.proxy;
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(TcpStream::connect(proxy.admin).await.unwrap());
    }
    let checks = |s: &serde_json::Value| {
        s["pools"]["blue"]["backends"][0]["checks"]
            .as_u64()
            .unwrap_or(0)
    };
    let before = checks(&proxy.status().await);
    for _ in 0..50 {
        assert_eq!(get(proxy.addr, "/").await.status, 200);
    }
    poll_until("health checks to keep running", DEADLINE, || async {
        checks(&proxy.status().await) >= before + 5
    })
    .await;
    drop(idle);
}

#[tokio::test]
async fn history_is_capped_and_a_hostile_rejected_write_logs_a_bounded_entry() {
    let bg = blue_green("blue = 100\ngreen = 0", "").await;
    let proxy = &bg.proxy;
    let huge = format!(r#"{{"to": "{}"}}"#, "x".repeat(60_000));
    assert_eq!(proxy.admin("POST", "/switch", &huge).await.status, 400);
    let log = std::fs::read_to_string(proxy.dir.path().join("deployments.jsonl")).unwrap();
    let longest = log.lines().map(str::len).max().unwrap();
    assert!(longest < 2048, "a {longest}-byte deployment-log line");
    assert_eq!(
        proxy.admin("GET", "/history?limit=1001", "").await.status,
        400
    );
    assert_eq!(
        proxy.admin("GET", "/history?limit=1000", "").await.status,
        200
    );
}

#[tokio::test]
async fn a_torn_log_line_hides_nothing_and_the_version_never_goes_backwards() {
    let mut bg = blue_green("blue = 100\ngreen = 0", "").await;
    bg.proxy.switch("green").await;
    bg.proxy.switch("blue").await;
    let version = bg.proxy.status().await["version"].as_u64().unwrap();
    let log_path = bg.proxy.dir.path().join("deployments.jsonl");
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(&log_path)
        .unwrap();
    log.write_all(b"\xff\xfe\n{\"time\":\"2026-11-23T1")
        .unwrap();
    drop(log);
    bg.proxy.restart().await;
    let after_restart = bg.proxy.status().await["version"].as_u64().unwrap();
    assert!(
        after_restart > version,
        "version went from {version} to {after_restart}"
    );
    bg.proxy.switch("green").await;
    bg.proxy.restart().await;
    let history = bg.proxy.history().await;
    assert_eq!(
        history[1]["action"], "switch",
        "the switch after the torn line is read: {history:?}"
    );
    assert!(bg.proxy.status().await["version"].as_u64().unwrap() > after_restart);
}

#[tokio::test]
async fn the_version_continues_across_log_rotation_and_restart() {
    let mut bg = blue_green(
        "blue = 100\ngreen = 0",
        "[log]\ndeployments = \"deployments.jsonl\"\ndeployments-max-size = 2048\ndeployments-keep = 1\n",
    )
    .await;
    for i in 0..20 {
        bg.proxy
            .switch(if i % 2 == 0 { "green" } else { "blue" })
            .await;
    }
    assert!(
        bg.proxy.dir.path().join("deployments.jsonl.1").exists(),
        "the log rotated"
    );
    let version = bg.proxy.status().await["version"].as_u64().unwrap();
    bg.proxy.restart().await;
    assert_eq!(
        bg.proxy.status().await["version"].as_u64().unwrap(),
        version + 1
    );
    // Rollback still knows the split from before the last change.
    assert_eq!(bg.proxy.admin("POST", "/rollback", "").await.status, 200);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        get(bg.proxy.addr, "/")
            .await
            .header("x-upstream")
            .as_deref(),
        Some("green")
    );
}
