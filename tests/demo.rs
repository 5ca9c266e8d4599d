//! `switchback demo`: both colours at 50/50 out of the box, and clear errors on taken ports.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{binary, free_port, Client, DEADLINE};

struct Demo(std::process::Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_blue_and_green_about_half_each() {
    let port = free_port();
    let mut demo = Demo(
        Command::new(binary())
            .args([
                "demo",
                "--proxy-port",
                &port.to_string(),
                "--admin-port",
                &free_port().to_string(),
                "--blue-port",
                "0",
                "--green-port",
                "0",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let started = Instant::now();
    while !common::answers_http(addr).await {
        assert!(demo.0.try_wait().unwrap().is_none(), "demo exited early");
        assert!(started.elapsed() < DEADLINE, "demo not ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut client = Client::connect(addr).await;
    let (mut blue, mut green) = (0, 0);
    for _ in 0..400 {
        let reply = client.get("/hello").await;
        match reply.text().as_str() {
            "blue /hello\n" => blue += 1,
            "green /hello\n" => green += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }

    // sd of a fair coin over 400 is 10; ±60 never flakes and still catches a 65/35 bug.
    assert!((140..=260).contains(&blue), "blue {blue}, green {green}");
    assert_eq!(blue + green, 400);
    drop(demo.0.stdout.take());
}

#[test]
fn demo_on_a_taken_port_names_it() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();

    let out = Command::new(binary())
        .args([
            "demo",
            "--proxy-port",
            &free_port().to_string(),
            "--admin-port",
            &free_port().to_string(),
            "--blue-port",
            &port,
        ])
        .output()
        .unwrap();

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}")) && stderr.contains("--blue-port"),
        "{stderr}"
    );
}

/// Reads the demo's stdout until the line naming the dashboard; that URL.
fn dashboard_url(stdout: std::process::ChildStdout) -> String {
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(stdout).lines();
    let line = lines
        .find(|l| l.as_ref().is_ok_and(|l| l.contains("dashboard:")))
        .expect("the demo names its dashboard")
        .unwrap();
    let url = line.split_whitespace().nth(1).unwrap().to_string();
    // Keep draining so the demo never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_prints_its_dashboard_which_shows_its_traffic_and_the_tours_two_rollouts() {
    let (port, admin_port) = (free_port(), free_port());
    let mut demo = Demo(
        Command::new(binary())
            .args([
                "demo",
                "--proxy-port",
                &port.to_string(),
                "--admin-port",
                &admin_port.to_string(),
            ])
            .args(["--blue-port", "0", "--green-port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = dashboard_url(demo.0.stdout.take().unwrap());
    assert_eq!(url, format!("http://127.0.0.1:{admin_port}/ui"));
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let call = |method: &'static str, path: &'static str, body: &'static str| async move {
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", admin.to_string())
            .header("content-type", "application/json")
            .body(http_body_util::BodyExt::boxed(http_body_util::Full::new(
                bytes::Bytes::from(body),
            )))
            .unwrap();
        let reply = Client::connect(admin).await.send(request).await;
        assert!(reply.status < 300, "{method} {path}: {}", reply.text());
        serde_json::from_slice::<serde_json::Value>(&reply.body).unwrap_or_default()
    };
    let until_ended = |expected: &'static str| async move {
        let began = Instant::now();
        loop {
            let now = call("GET", "/rollouts/current", "").await;
            if now["state"] == expected {
                return;
            }
            assert!(
                began.elapsed() < Duration::from_secs(60),
                "never {expected}: {now}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let browser = common::browser::Browser::start(1280, 1400).await;
    browser.goto(&url).await;
    // The demo's own traffic moves both pools' sparklines.
    browser
        .until(
            "both pools' requests per second and sparklines",
            "return ['blue', 'green'].every(p => \
               parseFloat(document.querySelector(`#pools [data-pool=${p}] .rps`).textContent) > 0 \
               && document.querySelector(`#pools [data-pool=${p}] svg.spark`) !== null)",
        )
        .await;

    // The tour's two rollouts: promoted, then rolled back by itself.
    call("POST", "/switch", r#"{"to": "blue"}"#).await;
    call("POST", "/rollouts", r#"{"to": "green"}"#).await;
    until_ended("promoted").await;
    call("POST", "/switch", r#"{"to": "blue"}"#).await;
    let green = call("GET", "/status", "").await["pools"]["green"]["backends"][0]["resolved"]
        .as_str()
        .unwrap()
        .to_string();
    let green: SocketAddr = green.parse().unwrap();
    let mut client = Client::connect(green).await;
    assert_eq!(client.get("/_demo/fail?percent=20").await.status, 200);
    call("POST", "/rollouts", r#"{"to": "green"}"#).await;
    until_ended("rolled-back").await;
    browser
        .until(
            "both rollouts on the page",
            "const log = [...document.querySelectorAll('#history [data-action]')].map(e => e.dataset.action); \
             return log.includes('rollout-promoted') && log.includes('rollout-rollback') \
               && document.querySelector('#rollout-state').textContent.includes('rolled-back')",
        )
        .await;
    let shot =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/dashboard-demo.png");
    browser.screenshot(&shot).await;
    let errors = common::browser::severe(&browser.logs().await);
    assert!(errors.is_empty(), "{errors:?}");
}
