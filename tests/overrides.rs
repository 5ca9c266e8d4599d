//! Tester overrides through the real binary: a valid token reaches its pool whatever the
//! split, anything else is ignored, nothing of the override reaches an upstream, and a pool
//! with no backend up answers 503 naming it.

mod common;

use std::time::Duration;

use common::{poll_until, pools_toml, request, write_file, Client, Reply, TestProxy, Upstream};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;

const TOKENS: &str = "# pool:token\ngreen:green-secret\nblue:blue-secret\n";

async fn get_with(client: &mut Client, headers: &[(&str, &str)]) -> Reply {
    let mut req = request("GET", "/", Full::new(Bytes::new()).boxed());
    for (name, value) in headers {
        req.headers_mut().append(
            hyper::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    client.send(req).await
}

/// Blue at 100 %, green at 0 %, overrides on with [`TOKENS`], access log to a file.
async fn start(green: &str) -> (Upstream, TestProxy) {
    let blue = Upstream::start("blue").await;
    let rest = format!(
        "[override]\ntoken-file = \"override.tokens\"\n\n[log]\naccess = \"access.log\"\n\n[pools.green]\nbackends = [\"{green}\"]\n[pools.green.health-check]\ntype = \"tcp\"\ninterval = \"200ms\"\nunhealthy-threshold = 1\n\n{}",
        pools_toml(&[("blue", &[blue.addr])], "blue = 100\ngreen = 0")
    );
    let proxy = TestProxy::start_with_files("", &rest, &[("override.tokens", TOKENS)]).await;
    (blue, proxy)
}

#[tokio::test]
async fn a_valid_token_reaches_its_pool_at_zero_percent_and_anything_else_is_ignored() {
    let green = Upstream::start("green").await;
    let (blue, proxy) = start(&green.addr.to_string()).await;
    let mut client = Client::connect(proxy.addr).await;
    let pool = "x-switchback-pool";
    let token = "x-switchback-override-token";

    let asked = [
        (vec![(pool, "green"), (token, "green-secret")], "green"),
        (
            vec![("cookie", "a=1; switchback-override=green:green-secret")],
            "green",
        ),
        (vec![(pool, "blue"), (token, "blue-secret")], "blue"),
        (vec![(pool, "green"), (token, "wrong")], "blue"),
        (vec![(pool, "green")], "blue"),
        (vec![(pool, "green"), (token, "blue-secret")], "blue"),
        (vec![(pool, "grey"), (token, "green-secret")], "blue"),
        (
            vec![("cookie", "switchback-override=green:blue-secret")],
            "blue",
        ),
        (vec![("cookie", "switchback-override=green")], "blue"),
    ];
    for (headers, expected) in &asked {
        let reply = get_with(&mut client, headers).await;
        assert_eq!(reply.status, 200, "{headers:?}: {}", reply.text());
        assert_eq!(
            reply.header("x-upstream").as_deref(),
            Some(*expected),
            "{headers:?}"
        );
    }

    for seen in blue.seen().into_iter().chain(green.seen()) {
        assert!(
            seen.headers.get(pool).is_none(),
            "the pool header was forwarded"
        );
        assert!(seen.headers.get(token).is_none(), "the token was forwarded");
        for cookie in seen.headers.get_all("cookie") {
            let cookie = cookie.to_str().unwrap();
            assert!(
                !cookie.contains("switchback-override"),
                "forwarded: {cookie}"
            );
            assert!(cookie == "a=1", "other cookies are kept: {cookie}");
        }
    }

    // Overridden requests are counted apart and logged as such.
    poll_until("override counters", Duration::from_secs(5), || async {
        let metrics = proxy.admin("GET", "/metrics", "").await.text();
        let line = |labels: &str| format!("switchback_override_requests_total{{{labels}}}");
        metrics.contains(&format!("{} 2", line("code_class=\"2xx\",pool=\"green\"")))
            && metrics.contains(&format!("{} 1", line("code_class=\"2xx\",pool=\"blue\"")))
    })
    .await;
    let metrics = proxy.admin("GET", "/metrics", "").await.text();
    let green_2xx = format!(
        "switchback_requests_total{{backend=\"{}\",code_class=\"2xx\",pool=\"green\"}}",
        green.addr
    );
    assert!(
        metrics
            .lines()
            .all(|l| !l.starts_with(&green_2xx) || l.ends_with(" 0")),
        "overridden requests stay out of switchback_requests_total"
    );
    let log_path = proxy.dir.path().join("access.log");
    poll_until("access log lines", Duration::from_secs(5), || async {
        std::fs::read_to_string(&log_path).is_ok_and(|t| t.lines().count() >= asked.len())
    })
    .await;
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let overridden: Vec<bool> = lines
        .iter()
        .map(|l| l["override"].as_bool().unwrap())
        .collect();
    assert_eq!(
        overridden,
        [true, true, true, false, false, false, false, false, false]
    );
    assert!(lines.iter().all(|l| l["key"] == "none"));

    let status = proxy.status().await;
    assert_eq!(status["override"]["enabled"], true);
    assert_eq!(status["override"]["header"], "x-switchback-pool");
    assert_eq!(status["affinity"]["enabled"], false);
}

#[tokio::test]
async fn an_override_to_a_pool_with_no_backend_up_is_a_503_naming_it() {
    let (_reserved, closed) = common::dead_backend();
    let closed = closed.to_string();
    let (_blue, proxy) = start(&closed).await;
    // The active check takes green down.
    poll_until(
        "green down for the tester",
        Duration::from_secs(10),
        || async {
            let mut client = Client::connect(proxy.addr).await;
            let headers = [
                ("x-switchback-pool", "green"),
                ("x-switchback-override-token", "green-secret"),
            ];
            let reply = get_with(&mut client, &headers).await;
            reply.status == 503
                && reply
                    .text()
                    .contains("pool green has no backend up (override)")
        },
    )
    .await;
    let mut client = Client::connect(proxy.addr).await;
    // Nobody else is sent there: the split still has green at 0 %.
    assert_eq!(
        get_with(&mut client, &[])
            .await
            .header("x-upstream")
            .as_deref(),
        Some("blue")
    );
}

#[tokio::test]
async fn a_broken_token_file_is_rejected_on_reload_and_sighup_reads_new_tokens() {
    let green = Upstream::start("green").await;
    let (_blue, proxy) = start(&green.addr.to_string()).await;
    let tokens = proxy.dir.path().join("override.tokens");
    let ask = |token: &'static str| {
        let addr = proxy.addr;
        async move {
            let mut client = Client::connect(addr).await;
            get_with(
                &mut client,
                &[
                    ("x-switchback-pool", "green"),
                    ("x-switchback-override-token", token),
                ],
            )
            .await
            .header("x-upstream")
            .unwrap()
        }
    };
    assert_eq!(ask("green-secret").await, "green");

    // Rotated: SIGHUP reads the new token; the old one stops working.
    write_file(proxy.dir.path(), "override.tokens", b"green:rotated\n");
    proxy.signal(libc::SIGHUP);
    poll_until(
        "the rotated token works",
        Duration::from_secs(5),
        || async { ask("rotated").await == "green" },
    )
    .await;
    assert_eq!(ask("green-secret").await, "blue");

    // A malformed file: the SIGHUP is refused and recorded; the tokens in force stay.
    std::fs::write(&tokens, "no colon here\n").unwrap();
    proxy.signal(libc::SIGHUP);
    poll_until(
        "the refusal in the deployment log",
        Duration::from_secs(5),
        || async {
            proxy.history().await.iter().any(|e| {
                e["action"] == "rejected"
                    && e["message"].as_str().unwrap().contains("override tokens")
            })
        },
    )
    .await;
    assert_eq!(ask("rotated").await, "green");

    // A config edit naming a token file that does not exist is rejected as a whole.
    let text = std::fs::read_to_string(&proxy.config_path).unwrap();
    let edited = text.replace("override.tokens", "missing.tokens");
    std::fs::write(&proxy.config_path, edited).unwrap();
    poll_until("the rejected reload", Duration::from_secs(5), || async {
        proxy.history().await.iter().any(|e| {
            e["action"] == "rejected" && e["message"].as_str().unwrap().contains("missing.tokens")
        })
    })
    .await;
    assert_eq!(ask("rotated").await, "green");
    let reply = proxy
        .admin("PUT", "/split", r#"{"blue": 90, "green": 10}"#)
        .await;
    assert_eq!(
        reply.status,
        409,
        "the rejected edit blocks writes: {}",
        reply.text()
    );
    let rejected_reloads = proxy
        .history()
        .await
        .iter()
        .filter(|e| {
            let message = e["message"].as_str().unwrap();
            message.starts_with("reload rejected") && message.contains("missing.tokens")
        })
        .count();
    assert_eq!(rejected_reloads, 1, "one rejected edit is logged once");

    // Creating the file it names is enough: the next write applies the edit first.
    write_file(proxy.dir.path(), "missing.tokens", b"green:third\n");
    let reply = proxy
        .admin("PUT", "/split", r#"{"blue": 90, "green": 10}"#)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(ask("third").await, "green");
}
