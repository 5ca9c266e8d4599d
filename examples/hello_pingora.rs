//! The load benchmark's "hello" contender: Pingora as a plain HTTP server (`ServeHttp`, no
//! upstream) answering every request `200 ok`, against nginx's `return 200`. Nothing built
//! on Pingora can be cheaper per request than this: it is the floor under any Pingora proxy.
//!
//! `hello_pingora <listen> [threads]`

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora::server::Server;
use pingora::services::listening::Service;

struct Hello;

#[async_trait]
impl ServeHttp for Hello {
    async fn response(&self, _session: &mut ServerSession) -> Response<Vec<u8>> {
        Response::builder()
            .status(200)
            .header("content-type", "text/plain")
            .header("content-length", "3")
            .body(b"ok\n".to_vec())
            .expect("a static response")
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, rest @ ..] = args.as_slice() else {
        eprintln!("usage: hello_pingora <listen> [threads]");
        std::process::exit(2);
    };
    let threads = rest.first().and_then(|t| t.parse().ok()).unwrap_or(1);
    let conf = pingora::server::configuration::ServerConf {
        threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut service = Service::new(
        "hello".to_string(),
        pingora::apps::http_app::HttpServer::new_app(Hello),
    );
    service.add_tcp(listen);
    server.add_service(service);
    server.run_forever();
}
