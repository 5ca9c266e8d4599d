//! The dashboard at `GET /ui` in a real headless Chromium (WebDriver) against the real binary:
//! a clean load, live updates, acting through it safely (confirmations, the token, `If-Match`),
//! text from operators shown as text, other origins refused, the event-stream cap, and TLS.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::browser::{severe, Browser};
use common::events::open_stream;
use common::load::Load;
use common::rollout::{start, until, QUICK};
use common::tls::Pki;
use common::{blue_green, metrics, poll_until, BlueGreen, TestProxy, Upstream, DEADLINE};
use serde_json::json;
use tokio::io::AsyncReadExt;

/// Where screenshots go: the build's `target/` directory.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// A browser of `width` on the dashboard of `proxy` (scheme `http` or `https`), once its event
/// stream is live.
async fn open(scheme: &str, proxy: &TestProxy, width: u32) -> Browser {
    let browser = Browser::start(width, 900).await;
    browser
        .goto(&format!("{scheme}://{}/ui", proxy.admin))
        .await;
    browser
        .until(
            "the stream to be live",
            "return document.querySelector('#conn').textContent.includes('live')",
        )
        .await;
    browser
}

/// Waits until `#version` shows `version`.
async fn until_version(browser: &Browser, version: u64) {
    let script =
        format!("return document.querySelector('#version').textContent.trim() === '{version}'");
    browser
        .until(&format!("version {version} on the page"), &script)
        .await;
}

/// Clicks `css`, then the confirmation's `answer` button (`#confirm-ok` or `#confirm-cancel`).
async fn confirm(browser: &Browser, css: &str, answer: &str) -> String {
    browser.click(css).await;
    browser
        .until(
            "the confirmation",
            "return document.querySelector('#confirm').open",
        )
        .await;
    let text = browser.text("#confirm-text").await;
    browser.click(answer).await;
    text
}

/// No console error and no CSP violation, besides the browser's note of an `expected` answer
/// (a 401 or 412 the page handles is still logged by Chromium as a failed load).
fn no_errors_but(logs: &[serde_json::Value], expected: &[&str]) {
    let errors: Vec<String> = severe(logs)
        .into_iter()
        .filter(|e| {
            !expected
                .iter()
                .any(|x| e.contains("Failed to load resource") && e.contains(x))
        })
        .collect();
    assert!(
        errors.is_empty(),
        "console errors or CSP violations: {errors:?}"
    );
}

fn no_errors(logs: &[serde_json::Value]) {
    let errors = severe(logs);
    assert!(
        errors.is_empty(),
        "console errors or CSP violations: {errors:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_loads_clean_and_shows_a_split_changed_with_curl_within_2s() {
    let bg = blue_green("blue = 100\ngreen = 0", "").await;
    let ui = bg.proxy.admin("GET", "/ui", "").await;
    assert_eq!(ui.status, 200);
    let csp = ui.header("content-security-policy").unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(
        ui.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert_eq!(ui.header("referrer-policy").as_deref(), Some("no-referrer"));
    let json = bg.proxy.admin("GET", "/status", "").await;
    assert_eq!(
        json.header("content-security-policy"),
        Some(csp),
        "on every answer"
    );
    assert_eq!(
        json.header("cross-origin-resource-policy").as_deref(),
        Some("same-origin")
    );
    let root = bg.proxy.admin("GET", "/", "").await;
    assert_eq!(
        (root.status, root.header("location").as_deref()),
        (302, Some("/ui"))
    );

    let _load = Load::start(bg.proxy.addr, 50);
    let browser = open("http", &bg.proxy, 1280).await;
    let shown = bg.proxy.status().await["version"].as_u64().unwrap();
    until_version(&browser, shown).await;
    let reply = bg
        .proxy
        .admin("PUT", "/split", r#"{"blue": 90, "green": 10}"#)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    browser
        .until_within(
            "the new split on the page",
            Duration::from_secs(2),
            "return document.querySelector('#split-bar [data-pool=green]')?.dataset.share === '10'",
        )
        .await;
    until_version(&browser, shown + 1).await;
    assert!(browser.text("#previous-split").await.contains("100"));
    // The sparklines move with the traffic.
    browser
        .until(
            "blue's requests per second",
            "return parseFloat(document.querySelector('#pools [data-pool=blue] .rps').textContent) > 0",
        )
        .await;
    no_errors(&browser.logs().await);

    let target = target_dir();
    std::fs::create_dir_all(&target).unwrap();
    browser
        .screenshot(&target.join("dashboard-desktop.png"))
        .await;
    let phone = open("http", &bg.proxy, 390).await;
    phone.screenshot(&target.join("dashboard-phone.png")).await;
    no_errors(&phone.logs().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_shows_its_steps_and_progress_and_its_release_note_as_text() {
    let bg = blue_green("blue = 100\ngreen = 0", QUICK).await;
    let browser = open("http", &bg.proxy, 1280).await;
    let _load = Load::start(bg.proxy.addr, 200);
    let note = "<img src=x onerror=\"window.pwned = 1\">";
    let body = json!({"to": "green", "plan": "quick", "release": {"notes": note}});
    // Which step the page marks, every 50 ms, recorded in the page (a step holds only 2 s).
    let record = "window.marked = new Set(); setInterval(() => { \
        const li = document.querySelector('#rollout-steps li[aria-current=step]'); \
        if (li) window.marked.add([...li.parentNode.children].indexOf(li)); }, 50);";
    browser.eval(record, json!([])).await;
    start(&bg, &body.to_string()).await;
    browser
        .until(
            "the rollout's three steps",
            "const s = document.querySelector('#rollout-steps'); \
             return !document.querySelector('#rollout').hidden && s.children.length === 3",
        )
        .await;
    until(&bg, &["running"], DEADLINE).await;
    browser
        .until_within(
            "promoted on the page",
            Duration::from_secs(30),
            "return document.querySelector('#rollout-state').textContent.includes('promoted')",
        )
        .await;
    let marked = browser
        .eval("return [...window.marked].sort()", json!([]))
        .await;
    assert_eq!(marked, json!([0, 1, 2]), "every step was marked in turn");
    let release = browser.text("#rollout-release").await;
    assert!(release.contains(note), "the note as text: {release:?}");
    let ran = browser
        .eval(
            "return [window.pwned === undefined, document.querySelectorAll('#rollout img, #history img').length]",
            json!([]),
        )
        .await;
    assert_eq!(ran, json!([true, 0]), "nothing of the note ran or rendered");
    no_errors(&browser.logs().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_rollback_changes_nothing_and_a_stale_page_gets_412() {
    let bg = blue_green("blue = 100\ngreen = 0", "").await;
    bg.proxy
        .admin("PUT", "/split", r#"{"blue": 80, "green": 20}"#)
        .await;
    let version = bg.proxy.status().await["version"].as_u64().unwrap();
    let browser = open("http", &bg.proxy, 1280).await;
    until_version(&browser, version).await;

    let text = confirm(&browser, "#btn-rollback", "#confirm-cancel").await;
    assert!(
        text.contains("80") && text.contains("100"),
        "before → after: {text}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = bg.proxy.status().await;
    assert_eq!(
        status["version"], version,
        "a cancelled rollback changes nothing"
    );
    assert_eq!(bg.proxy.history().await[0]["action"], "split");

    // The page asks at version v; someone else changes the split; confirming gets 412.
    browser.click("#btn-rollback").await;
    browser
        .until(
            "the confirmation",
            "return document.querySelector('#confirm').open",
        )
        .await;
    bg.proxy
        .admin("PUT", "/split", r#"{"blue": 70, "green": 30}"#)
        .await;
    until_version(&browser, version + 1).await;
    browser.click("#confirm-ok").await;
    browser
        .until(
            "the stale notice",
            "return document.querySelector('#notice').textContent.includes('someone changed it: reload to see')",
        )
        .await;
    let status = bg.proxy.status().await;
    assert_eq!(
        status["split"],
        json!({"blue": 70, "green": 30}),
        "the 412 changed nothing"
    );
    no_errors_but(&browser.logs().await, &["status of 412"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_file_a_confirmed_rollback_asks_for_the_token_and_is_logged_under_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = common::write_file(dir.path(), "tokens", b"carol:correct-horse-battery\n");
    let admin = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken-file = \"{}\"\n",
        tokens.display()
    );
    let BlueGreen { proxy, .. } = blue_green("blue = 100\ngreen = 0", &admin).await;
    let auth = [("authorization", "Bearer correct-horse-battery")];
    let reply = proxy
        .admin_call("PUT", "/split", r#"{"blue": 50, "green": 50}"#, &auth)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let browser = open("http", &proxy, 1280).await;
    until_version(&browser, proxy.status().await["version"].as_u64().unwrap()).await;

    confirm(&browser, "#btn-rollback", "#confirm-ok").await;
    browser
        .until(
            "the token dialog",
            "return document.querySelector('#token-dialog').open",
        )
        .await;
    browser
        .type_into("#token-input", "correct-horse-battery")
        .await;
    browser.click("#token-ok").await;
    poll_until("the rollback is live", DEADLINE, || async {
        proxy.status().await["split"] == json!({"blue": 100, "green": 0})
    })
    .await;
    let newest = &proxy.history().await[0];
    assert_eq!(
        (&newest["action"], &newest["actor"]),
        (&json!("rollback"), &json!("carol"))
    );
    let kept = browser
        .eval(
            "return [sessionStorage.getItem('switchback-token'), localStorage.length]",
            json!([]),
        )
        .await;
    assert_eq!(
        kept,
        json!(["correct-horse-battery", 0]),
        "sessionStorage only"
    );
    no_errors_but(&browser.logs().await, &["status of 401"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_from_another_origin_is_refused() {
    let bg = blue_green("blue = 100\ngreen = 0", "").await;
    bg.proxy
        .admin("PUT", "/split", r#"{"blue": 50, "green": 50}"#)
        .await;
    let version = bg.proxy.status().await["version"].clone();
    // A page of another origin (an upstream's) posts to the admin API as a browser would.
    let browser = Browser::start(1280, 900).await;
    browser.goto(&format!("http://{}/", bg.blue.addr)).await;
    let script = "return fetch(arguments[0], {method: 'POST', mode: 'no-cors', body: '{}'})\
                  .then(() => 'sent', e => String(e))";
    let admin = format!("http://{}/rollback", bg.proxy.admin);
    browser.eval(script, json!([admin])).await;
    poll_until("the refusal counted", DEADLINE, || async {
        let samples = metrics::scrape(&bg.proxy).await;
        let labels = [("endpoint", "/rollback"), ("code", "403")];
        metrics::value(&samples, "switchback_admin_requests_total", &labels) >= 1.0
    })
    .await;
    assert_eq!(
        bg.proxy.status().await["version"],
        version,
        "nothing changed"
    );
    let other = [("origin", "http://evil.example")];
    let events = bg.proxy.admin_call("GET", "/events", "", &other).await;
    assert_eq!(events.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_33rd_event_stream_gets_503_until_one_closes() {
    let blue = Upstream::start("blue").await;
    let rest = common::pools_toml(&[("blue", &[blue.addr])], "blue = 100");
    let proxy = TestProxy::start("", &rest).await;
    let mut open_streams = Vec::new();
    for _ in 0..32 {
        let (status, stream, head) = open_stream(proxy.admin).await;
        assert_eq!(status, 200, "{head}");
        assert!(head.contains("text/event-stream"), "{head}");
        open_streams.push(stream);
    }
    let (status, _, head) = open_stream(proxy.admin).await;
    assert_eq!(status, 503, "{head}");
    // The first stream's first event is the full snapshot.
    let mut first = open_streams.remove(0);
    let mut text = String::new();
    let mut buf = [0u8; 65536];
    while !text.contains("event: snapshot") {
        let read = tokio::time::timeout(DEADLINE, first.read(&mut buf)).await;
        let n = read.expect("the snapshot within the deadline").unwrap();
        assert!(n > 0);
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    drop(first);
    poll_until("a slot frees when a client leaves", DEADLINE, || async {
        open_stream(proxy.admin).await.0 == 200
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_works_over_admin_tls() {
    let pki = Pki::new("admin CA");
    let issued = pki.issue(&["127.0.0.1"], 30);
    let (blue, green) = (
        Upstream::start("blue").await,
        Upstream::start("green").await,
    );
    let pools = common::pools_toml(
        &[("blue", &[blue.addr]), ("green", &[green.addr])],
        "blue = 100\ngreen = 0",
    );
    let rest = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntls = {{ cert = \"admin.pem\", key = \"admin.key\" }}\n{pools}"
    );
    let files = [
        ("admin.pem", issued.cert.as_str()),
        ("admin.key", issued.key.as_str()),
    ];
    let proxy = TestProxy::start_with_files("", &rest, &files).await;
    let browser = open("https", &proxy, 1280).await;
    confirm(&browser, "button[data-switch=green]", "#confirm-ok").await;
    browser
        .until(
            "green live on the page",
            "return document.querySelector('#split-bar [data-pool=green]')?.dataset.share === '100'",
        )
        .await;
    // Drain from the page: the confirmation shows the requests in flight; undrain again.
    let row = format!("#backends tr[data-addr='{}']", green.addr);
    let text = confirm(&browser, &format!("{row} button.drain"), "#confirm-ok").await;
    assert!(text.contains("in flight"), "{text}");
    let state = format!("return document.querySelector(\"{row} .state\").textContent");
    browser
        .until(
            "drained on the page",
            &format!("{state}.includes('drained')"),
        )
        .await;
    browser.click(&format!("{row} button.undrain")).await;
    browser
        .until("up on the page", &format!("{state}.includes('up')"))
        .await;
    no_errors(&browser.logs().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_stream_the_page_polls_says_disconnected_and_goes_live_again() {
    let bg = blue_green("blue = 100\ngreen = 0", "").await;
    // Every stream slot taken: the page's EventSource gets 503.
    let mut held = Vec::new();
    for _ in 0..32 {
        let (status, stream, _) = open_stream(bg.proxy.admin).await;
        assert_eq!(status, 200);
        held.push(stream);
    }
    let browser = Browser::start(1280, 900).await;
    browser.goto(&format!("http://{}/ui", bg.proxy.admin)).await;
    browser
        .until(
            "polling, said as disconnected with the time since the last update",
            "const t = document.querySelector('#conn').textContent; \
             return t.includes('disconnected') && /last update \\d+s ago/.test(t)",
        )
        .await;
    bg.proxy
        .admin("PUT", "/split", r#"{"blue": 60, "green": 40}"#)
        .await;
    browser
        .until(
            "the change, by polling",
            "return document.querySelector('#split-bar [data-pool=green]')?.dataset.share === '40'",
        )
        .await;
    drop(held);
    browser
        .until_within(
            "live again once a slot is free",
            Duration::from_secs(30),
            "return document.querySelector('#conn').textContent === 'live'",
        )
        .await;
    no_errors_but(&browser.logs().await, &["status of 503"]);
}
