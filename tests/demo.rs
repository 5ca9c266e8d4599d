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
