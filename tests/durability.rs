//! Guarantee 2, durable: admin changes survive a restart, the operator's file keeps its
//! comments, and rollback works after a restart.

mod common;

use common::{TestProxy, Upstream};
use serde_json::json;

async fn commented(blue: &Upstream, green: &Upstream) -> TestProxy {
    let rest = format!(
        "# Pools for the checkout service.\n[pools.blue]   # current release\nbackends = [\"{}\"]  # one box\n\n\
         [pools.green]\n# the canary\nbackends = [\"{}\"]\n\n# Traffic split: edited by humans and by switchback.\n\
         [split]\nblue = 90  # most traffic\ngreen = 10\n\n# trailing comment\n",
        blue.addr, green.addr
    );
    TestProxy::start("", &rest).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_survives_restart_and_the_files_comments_stay_byte_for_byte() {
    let (blue, green) = (
        Upstream::start("blue").await,
        Upstream::start("green").await,
    );
    let mut proxy = commented(&blue, &green).await;
    let before = std::fs::read_to_string(&proxy.config_path).unwrap();

    let reply = proxy
        .admin("PUT", "/split", r#"{"blue": 25.5, "green": 74.5}"#)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    let after = std::fs::read_to_string(&proxy.config_path).unwrap();
    let (head_before, _) = before.split_once("[split]").unwrap();
    let (head_after, split_after) = after.split_once("[split]").unwrap();
    assert_eq!(
        head_before, head_after,
        "everything before [split] is byte-for-byte intact"
    );
    assert_eq!(
        split_after,
        "\nblue = 25.5  # most traffic\ngreen = 74.5\n\n# trailing comment\n"
    );

    proxy.restart().await;
    let status = proxy.status().await;
    assert_eq!(status["split"], json!({"blue": 25.5, "green": 74.5}));
    assert_eq!(
        status["version"], 3,
        "start, split, start again: versions keep rising"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_after_a_restart_restores_the_split_from_before_the_last_change() {
    let (blue, green) = (
        Upstream::start("blue").await,
        Upstream::start("green").await,
    );
    let mut proxy = commented(&blue, &green).await;
    proxy.switch("green").await;

    proxy.restart().await;
    assert_eq!(
        proxy.status().await["previous_split"],
        json!({"blue": 90, "green": 10})
    );
    let reply = proxy.admin("POST", "/rollback", "").await;

    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        proxy.status().await["split"],
        json!({"blue": 90, "green": 10})
    );
    let blue_share = common::tally(proxy.addr, 100)
        .await
        .get("blue")
        .copied()
        .unwrap_or(0);
    assert!(
        blue_share > 70,
        "back at 90/10: blue served {blue_share} of 100"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_log_entry_has_its_own_sequence_number_continued_across_a_restart() {
    let (blue, green) = (
        Upstream::start("blue").await,
        Upstream::start("green").await,
    );
    let mut proxy = commented(&blue, &green).await;
    proxy.admin("POST", "/switch", r#"{"to": "green"}"#).await;
    // A refused change and a drain keep the version: only `seq` tells the entries apart.
    proxy.admin("POST", "/switch", r#"{"to": "nope"}"#).await;
    let drain = format!("/backends/blue/{}/drain", blue.addr);
    assert_eq!(proxy.admin("POST", &drain, "").await.status, 200);
    proxy.restart().await;
    proxy.admin("POST", "/rollback", "").await;
    let seqs: Vec<u64> = proxy
        .history()
        .await
        .iter()
        .map(|e| e["seq"].as_u64().expect("every entry has a seq"))
        .collect();
    let expected: Vec<u64> = (1..=seqs.len() as u64).rev().collect();
    assert_eq!(seqs, expected, "1, 2, … newest first, across the restart");
    assert!(
        seqs.len() >= 6,
        "start, switch, refused, drain, start, rollback: {seqs:?}"
    );
}
