//! Zero-downtime binary upgrade: a new process started with `--upgrade` takes the listeners
//! of the running one (Pingora's hand-over on SIGQUIT) while clients keep sending requests.

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use common::{binary, blue_green, poll_until, DEADLINE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One request on a fresh connection; `true` when it was answered 200.
async fn one_request(addr: std::net::SocketAddr) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await.ok()?;
        Some(reply.starts_with(b"HTTP/1.1 200"))
    };
    matches!(
        tokio::time::timeout(DEADLINE, attempt).await,
        Ok(Some(true))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_upgrade_under_steady_load_fails_no_request() {
    let mut bg = blue_green("blue = 50\ngreen = 50", "").await;
    let addr = bg.proxy.addr;
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (ok, failed, stop) = (ok.clone(), failed.clone(), stop.clone());
            tokio::spawn(async move {
                // Bounded: at most 100,000 requests per client.
                for _ in 0..100_000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let counter = if one_request(addr).await {
                        &ok
                    } else {
                        &failed
                    };
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    poll_until("load to flow", DEADLINE, || async {
        ok.load(Ordering::SeqCst) > 50
    })
    .await;

    let new_log = bg.proxy.dir.path().join("new.log");
    let mut new = Command::new(binary())
        .args(["serve", "--upgrade", "--config"])
        .arg(&bg.proxy.config_path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&new_log).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&new_log).unwrap_or_default();
    poll_until(
        "the new process to wait for the listeners",
        DEADLINE,
        || async { log().contains("waiting for the running switchback") },
    )
    .await;
    bg.proxy.signal(libc::SIGQUIT);
    poll_until("the hand-over", DEADLINE, || async {
        log().contains("listeners received")
    })
    .await;
    // The old process, still finishing its requests, takes no change any more.
    let refused = bg
        .proxy
        .admin("POST", "/switch", r#"{"to": "green"}"#)
        .await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(refused.text().contains("handed over"), "{}", refused.text());
    let code = bg.proxy.wait_exit(DEADLINE).await;
    assert_eq!(code, Some(0), "old process:\n{}", bg.proxy.stderr());
    let at_exit = ok.load(Ordering::SeqCst);
    poll_until("the new process to serve alone", DEADLINE, || async {
        ok.load(Ordering::SeqCst) > at_exit + 200
    })
    .await;
    poll_until("the new admin API", DEADLINE, || async {
        log().contains("admin API listening on")
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }
    let _ = new.kill();
    let _ = new.wait();
    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    eprintln!("binary upgrade under load: {ok} requests answered, {failed} failed");
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed; new process:\n{}",
        ok + failed,
        log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_listeners_are_handed_over_too() {
    use common::tls::{client_config, connect, front, get1, Pki};
    let pki = Pki::new("test CA");
    let a = pki.issue(&["a.test"], 30);
    let f = front("blue = 100\ngreen = 0", &[("a", &a)], "", "").await;
    let tls = f.tls;
    let one = move || async move {
        let attempt = async {
            let stream = connect(tls, Some("a.test"), client_config(None, &["http/1.1"]))
                .await
                .ok()?;
            let mut sender = common::tls::http1(stream).await;
            Some(get1(&mut sender, "/").await.0 == 200)
        };
        matches!(
            tokio::time::timeout(DEADLINE, attempt).await,
            Ok(Some(true))
        )
    };
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (ok, failed, stop) = (ok.clone(), failed.clone(), stop.clone());
        tokio::spawn(async move {
            // Bounded: at most 100,000 requests.
            for _ in 0..100_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let counter = if one().await { &ok } else { &failed };
                counter.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    poll_until("TLS load to flow", DEADLINE, || async {
        ok.load(Ordering::SeqCst) > 20
    })
    .await;
    let mut proxy = f.proxy;
    let new_log = proxy.dir.path().join("new.log");
    let mut new = Command::new(binary())
        .args(["serve", "--upgrade", "--config"])
        .arg(&proxy.config_path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&new_log).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&new_log).unwrap_or_default();
    poll_until("the new process to wait", DEADLINE, || async {
        log().contains("waiting for the running switchback")
    })
    .await;
    proxy.signal(libc::SIGQUIT);
    assert_eq!(
        proxy.wait_exit(DEADLINE).await,
        Some(0),
        "{}",
        proxy.stderr()
    );
    let at_exit = ok.load(Ordering::SeqCst);
    poll_until("the new process to serve TLS alone", DEADLINE, || async {
        ok.load(Ordering::SeqCst) > at_exit + 50
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    client.await.unwrap();
    let _ = new.kill();
    let _ = new.wait();
    let failed = failed.load(Ordering::SeqCst);
    assert_eq!(
        failed,
        0,
        "{failed} TLS requests failed; new process:\n{}",
        log()
    );
}
