//! `[proxy] health-path` and `[shutdown] lb-drain-delay`: a load balancer sees the proxy go
//! unhealthy at the first SIGTERM, while it still serves, before its listeners close.

mod common;

use std::time::{Duration, Instant};

use common::{blue_green, get, poll_until};

#[tokio::test]
async fn the_health_path_turns_503_at_sigterm_while_serving_then_the_listeners_close() {
    let mut bg = blue_green("blue = 100", "[shutdown]\nlb-drain-delay = \"2s\"\n").await;
    // The harness writes [proxy] itself: add the health path there and reload.
    let text = std::fs::read_to_string(&bg.proxy.config_path).unwrap();
    let text = text.replace(
        "threads = 2\n",
        "threads = 2\nhealth-path = \"/switchback/health\"\n",
    );
    std::fs::write(&bg.proxy.config_path, text).unwrap();
    let addr = bg.proxy.addr;
    poll_until(
        "the health path answered",
        Duration::from_secs(5),
        || async { get(addr, "/switchback/health").await.text() == "ok\n" },
    )
    .await;
    let health = get(addr, "/switchback/health").await;
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));
    let before = bg.blue.requests();
    get(addr, "/switchback/health").await;
    assert_eq!(bg.blue.requests(), before, "the proxy answers it itself");

    let probe = |addr: std::net::SocketAddr| {
        std::process::Command::new(common::binary())
            .args(["probe", &format!("http://{addr}/switchback/health")])
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(probe(addr), Some(0), "switchback probe: a 2xx");

    bg.proxy.signal(libc::SIGTERM);
    let signalled = Instant::now();
    poll_until("503 on the health path", Duration::from_secs(1), || async {
        get(addr, "/switchback/health").await.status == 503
    })
    .await;
    assert_eq!(probe(addr), Some(1), "switchback probe: a 503 fails");
    let served = get(addr, "/").await;
    assert_eq!(
        served.status, 200,
        "requests are still served during the delay"
    );
    assert_eq!(served.header("connection").as_deref(), Some("close"));
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "all within the delay"
    );

    assert!(
        bg.proxy.wait_exit(Duration::from_secs(10)).await.is_some(),
        "exits after the delay"
    );
    assert!(
        signalled.elapsed() >= Duration::from_secs(2),
        "not before the delay ran out"
    );
    assert!(
        !common::answers_http(addr).await,
        "the listeners are closed"
    );
}
