//! The admin API over real sockets: switch, split, rollback, bad input, auth, persistence
//! failure, and the `ctl` client.

mod common;

use std::process::Command;

use common::{binary, tally, BlueGreen, TestProxy, Upstream};
use serde_json::{json, Value};

async fn blue_green(extra: &str) -> (Upstream, Upstream, TestProxy) {
    let BlueGreen { blue, green, proxy } = common::blue_green("blue = 90\ngreen = 10", extra).await;
    (blue, green, proxy)
}

/// method, path, body, headers, expected status, expected words in the error.
type BadCase = (
    &'static str,
    &'static str,
    String,
    &'static [(&'static str, &'static str)],
    u16,
    &'static str,
);

fn json_of(reply: &common::Reply) -> Value {
    serde_json::from_slice(&reply.body).unwrap_or_else(|_| panic!("not JSON: {}", reply.text()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_then_rollback_twice_returns_to_where_you_were() {
    let (_blue, _green, proxy) = blue_green("").await;

    let switched = proxy.admin("POST", "/switch", r#"{"to": "green"}"#).await;
    assert_eq!(switched.status, 200, "{}", switched.text());
    assert_eq!(tally(proxy.addr, 50).await.get("green"), Some(&50));
    let back = json_of(&proxy.admin("POST", "/rollback", "").await);
    let again = json_of(&proxy.admin("POST", "/rollback", "").await);

    assert_eq!(back["split"], json!({"blue": 90, "green": 10}));
    assert_eq!(
        again["split"],
        json!({"blue": 0, "green": 100}),
        "rollback of a rollback"
    );
    assert_eq!(
        again["version"],
        json!(back["version"].as_u64().unwrap() + 1)
    );
    let status = proxy.status().await;
    assert_eq!(status["previous_split"], json!({"blue": 90, "green": 10}));
    let history = proxy.history().await;
    let actions: Vec<&str> = history
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(&actions[..4], ["rollback", "rollback", "switch", "start"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_with_decimals_is_live_and_version_header_is_on_every_response() {
    let (_blue, _green, proxy) = blue_green("").await;

    let reply = proxy
        .admin("PUT", "/split", r#"{"blue": 99.99, "green": 0.01}"#)
        .await;

    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        json_of(&reply)["split"],
        json!({"blue": 99.99, "green": 0.01})
    );
    assert_eq!(reply.header("x-switchback-version").as_deref(), Some("2"));
    for path in ["/status", "/history", "/healthz", "/nope"] {
        let r = proxy.admin("GET", path, "").await;
        assert_eq!(
            r.header("x-switchback-version").as_deref(),
            Some("2"),
            "{path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_clear_4xx_and_change_nothing() {
    let (_blue, _green, proxy) = blue_green("").await;
    let file_before = std::fs::read_to_string(&proxy.config_path).unwrap();
    let big = format!("{{\"blue\": 100, \"pad\": \"{}\"}}", "x".repeat(70_000));
    let cases: Vec<BadCase> = vec![
        (
            "PUT",
            "/split",
            "not json".into(),
            &[],
            400,
            "not valid JSON",
        ),
        (
            "PUT",
            "/split",
            "[1, 2]".into(),
            &[],
            400,
            "expected an object",
        ),
        (
            "PUT",
            "/split",
            r#"{"blue": 50, "red": 50}"#.into(),
            &[],
            400,
            "no pool named \"red\"",
        ),
        (
            "PUT",
            "/split",
            r#"{"blue": 50, "green": 40}"#.into(),
            &[],
            400,
            "sum to 90",
        ),
        (
            "PUT",
            "/split",
            r#"{"blue": 99.995, "green": 0.005}"#.into(),
            &[],
            400,
            "more than two decimals",
        ),
        (
            "PUT",
            "/split",
            r#"{"blue": 110, "green": -10}"#.into(),
            &[],
            400,
            "not a percentage",
        ),
        (
            "PUT",
            "/split",
            r#"{"blue": "all"}"#.into(),
            &[],
            400,
            "expected a number",
        ),
        (
            "PUT",
            "/split",
            r#"{"blue": 0, "green": 0}"#.into(),
            &[],
            400,
            "no pool has a positive share",
        ),
        (
            "PUT",
            "/split",
            r#"{"blue": 0, "green": 100}"#.into(),
            &[("if-match", "7")],
            412,
            "stale",
        ),
        (
            "PUT",
            "/split",
            r#"{"blue": 0, "green": 100}"#.into(),
            &[("if-match", "one")],
            400,
            "If-Match",
        ),
        ("PUT", "/split", big, &[], 413, "over 65536 bytes"),
        (
            "POST",
            "/switch",
            r#"{"to": "purple"}"#.into(),
            &[],
            400,
            "no pool named \"purple\"",
        ),
        (
            "POST",
            "/switch",
            r#"{"pool": "green"}"#.into(),
            &[],
            400,
            "expected {\"to\"",
        ),
        (
            "POST",
            "/rollback",
            "".into(),
            &[],
            409,
            "no previous split",
        ),
        ("DELETE", "/split", "".into(), &[], 405, "not allowed"),
        ("GET", "/nowhere", "".into(), &[], 404, "no such endpoint"),
        ("GET", "/history?limit=lots", "".into(), &[], 400, "limit"),
    ];

    for (method, path, body, headers, code, message) in cases {
        let reply = proxy.admin_call(method, path, &body, headers).await;
        assert_eq!(
            reply.status,
            code,
            "{method} {path} {body:.60}: {}",
            reply.text()
        );
        let error = json_of(&reply)["error"].as_str().unwrap().to_string();
        assert!(
            error.contains(message),
            "{method} {path}: wanted {message:?} in {error:?}"
        );
    }

    let status = proxy.status().await;
    assert_eq!(status["version"], 1, "nothing was applied");
    assert_eq!(status["split"], json!({"blue": 90, "green": 10}));
    assert_eq!(
        std::fs::read_to_string(&proxy.config_path).unwrap(),
        file_before,
        "file untouched"
    );
    let rejected = proxy
        .history()
        .await
        .iter()
        .filter(|e| e["action"] == "rejected")
        .count();
    assert!(
        rejected >= 10,
        "refused writes are in the deployment log ({rejected})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_need_a_valid_named_token_and_the_name_is_the_actor() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("tokens");
    std::fs::write(
        &token_file,
        "alice:correct-horse-battery\nbob:staple-staple-staple\n",
    )
    .unwrap();
    let admin = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken-file = \"{}\"\n",
        token_file.display()
    );
    let (_blue, _green, proxy) = blue_green(&admin).await;
    let body = r#"{"to": "green"}"#;

    let none = proxy.admin("POST", "/switch", body).await;
    let wrong = proxy
        .admin_call("POST", "/switch", body, &[("authorization", "Bearer nope")])
        .await;
    let read = proxy.admin("GET", "/status", "").await;
    let right = proxy
        .admin_call(
            "POST",
            "/switch",
            body,
            &[("authorization", "Bearer staple-staple-staple")],
        )
        .await;

    assert_eq!(
        (none.status, wrong.status, read.status, right.status),
        (401, 401, 200, 200)
    );
    let history = proxy.history().await;
    assert_eq!(history[0]["actor"], "bob");
    assert_eq!(
        history.len(),
        2,
        "401s change nothing and are not changes: {history:?}"
    );
    let ctl = |args: &[&str]| {
        Command::new(binary())
            .arg("ctl")
            .arg("--admin")
            .arg(format!("http://{}", proxy.admin))
            .args(args)
            .output()
            .unwrap()
    };
    let refused = ctl(&["rollback"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401"));
    let alice = ctl(&["--token-file", token_file.to_str().unwrap(), "rollback"]);
    assert!(
        alice.status.success(),
        "{}",
        String::from_utf8_lossy(&alice.stderr)
    );
    assert_eq!(
        proxy.history().await[0]["actor"],
        "alice",
        "ctl uses the file's first token"
    );
    assert!(
        proxy.stderr().contains("readable by group or others"),
        "a 0644 token file is warned about"
    );
    assert!(
        !proxy.stderr().contains("staple-staple"),
        "tokens never reach the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_cannot_be_persisted_is_not_applied() {
    // A config file whose name leaves no room for the temp file's (`.<name>.<16 hex>.tmp`, 22
    // bytes longer, over the 255-byte limit): the atomic write fails, even for root. (The temp
    // name is random and created exclusively, so it cannot be occupied in advance.)
    let (blue, green) = (
        Upstream::start("blue").await,
        Upstream::start("green").await,
    );
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join(format!("{}.toml", "s".repeat(240)));
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .unwrap();
    let pools = common::pools_toml(
        &[("blue", &[blue.addr]), ("green", &[green.addr])],
        "blue = 90\ngreen = 10",
    );
    let text =
        format!("[proxy]\nlisten = [\"{addr}\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n{pools}");
    std::fs::write(&config_path, text).unwrap();
    let proxy = TestProxy::start_at(dir, config_path, addr).await;

    let reply = proxy.admin("POST", "/switch", r#"{"to": "green"}"#).await;

    assert_eq!(reply.status, 500);
    assert!(json_of(&reply)["error"]
        .as_str()
        .unwrap()
        .contains("not applied"));
    assert_eq!(proxy.status().await["version"], 1);
    let green_share = tally(proxy.addr, 40)
        .await
        .get("green")
        .copied()
        .unwrap_or(0);
    assert!(
        green_share < 20,
        "still routed by 90/10: green got {green_share} of 40"
    );
    assert_eq!(proxy.history().await[0]["action"], "rejected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_drives_the_admin_api_and_reports_errors() {
    let (blue, _green, proxy) = blue_green("").await;
    let admin = format!("http://{}", proxy.admin);
    let ctl = |args: &[&str]| {
        let out = Command::new(binary())
            .arg("ctl")
            .arg("--admin")
            .arg(&admin)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, out, _) = ctl(&["switch", "green"]);
    assert_eq!(code, Some(0));
    assert_eq!(
        out.trim(),
        "version 2: blue=0 green=100 (was blue=90 green=10)"
    );
    let (code, out, _) = ctl(&["split", "blue=75.5", "green=24.5"]);
    assert_eq!(
        (code, out.trim()),
        (
            Some(0),
            "version 3: blue=75.5 green=24.5 (was blue=0 green=100)"
        )
    );
    let (code, out, _) = ctl(&["rollback"]);
    assert_eq!(
        (code, out.trim()),
        (
            Some(0),
            "version 4: blue=0 green=100 (was blue=75.5 green=24.5)"
        )
    );
    let (_, status, _) = ctl(&["status"]);
    assert!(
        status.starts_with("version 4\nsplit: blue=0 green=100\nprevious: blue=75.5 green=24.5"),
        "{status}"
    );
    let (_, json_out, _) = ctl(&["--json", "history", "--limit", "2"]);
    let entries: Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(entries.as_array().unwrap().len(), 2);
    let (_, history, _) = ctl(&["history"]);
    assert!(
        history.lines().next().unwrap().contains("rollback"),
        "{history}"
    );

    let blue_backend = blue.addr.to_string();
    let (code, out, _) = ctl(&["drain", "blue", &blue_backend]);
    assert_eq!(
        (code, out.trim().to_string()),
        (
            Some(0),
            format!("{blue_backend} of pool blue: drained, 0 in flight")
        )
    );
    let (_, status, _) = ctl(&["status"]);
    assert!(
        status.contains(&format!("{blue_backend} weight 1 drained (0 in flight)")),
        "{status}"
    );
    let (code, out, _) = ctl(&["undrain", "blue", &blue_backend]);
    assert_eq!((code, out.contains("undrained")), (Some(0), true), "{out}");
    let (code, _, err) = ctl(&["drain", "blue", "127.0.0.1:1"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("404") && err.contains("has no backend"),
        "{err}"
    );

    let (code, _, err) = ctl(&["split", "blue=50"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("400") && err.contains("sum to 50"), "{err}");
    let (code, _, err) = ctl(&["split", "blue"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("expected pool=percent"), "{err}");
    let out = Command::new(binary())
        .args(["ctl", "--admin", "http://127.0.0.1:1", "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the admin API"));
}
