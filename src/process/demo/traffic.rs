//! The demo's own steady traffic: two connections sending `GET /` to the proxy about 50 times a
//! second each, so that a rollout started from the tour has requests to judge. Every request
//! is a new user (no cookie), so the split decides where it goes.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

/// Requests per second per connection.
const PER_CONNECTION: u64 = 50;

/// Runs until the runtime stops.
pub(super) async fn steady(proxy: SocketAddr) {
    for _ in 0..2 {
        tokio::spawn(connection(proxy));
    }
}

async fn connection(proxy: SocketAddr) {
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / PER_CONNECTION));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let Some(mut sender) = connect(proxy).await else {
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        };
        loop {
            tick.tick().await;
            if sender.ready().await.is_err() {
                break;
            }
            let request = hyper::Request::get("/")
                .header("host", "demo.local")
                .body(Empty::<Bytes>::new())
                .expect("static request is valid");
            let Ok(response) = sender.send_request(request).await else {
                break;
            };
            if response.into_body().collect().await.is_err() {
                break;
            }
        }
    }
}

async fn connect(
    proxy: SocketAddr,
) -> Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(proxy).await.ok()?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Some(sender)
}
