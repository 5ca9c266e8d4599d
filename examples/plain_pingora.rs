//! The load benchmark's "plain Pingora" contender: the smallest `ProxyHttp` that does the
//! same job (90/10 over two upstreams, keep-alive pooling) with none of switchback's features,
//! so the difference shows what the features cost.
//!
//! `plain_pingora <listen> <blue addr> <green addr> [threads]`
//!
//! `PLAIN_LEVERS` (comma-separated) turns on, one by one, the settings switchback uses, so the
//! benchmark can show each one's own effect: `l4` (no 64 KiB read buffer per connection),
//! `nosteal` (`work_stealing = false`), `nomodules` (no downstream modules).

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use pingora::prelude::*;

struct Plain {
    nomodules: bool,
    blue: HttpPeer,
    green: HttpPeer,
    counter: AtomicU64,
}

#[async_trait]
impl ProxyHttp for Plain {
    type CTX = ();

    fn new_ctx(&self) {}

    fn init_downstream_modules(&self, modules: &mut pingora::modules::http::HttpModules) {
        if !self.nomodules {
            modules.add_module(
                pingora::modules::http::compression::ResponseCompressionBuilder::enable(0),
            );
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let peer = if n % 10 == 9 { &self.green } else { &self.blue };
        Ok(Box::new(peer.clone()))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, blue, green, rest @ ..] = args.as_slice() else {
        eprintln!("usage: plain_pingora <listen> <blue addr> <green addr> [threads]");
        std::process::exit(2);
    };
    let threads = rest.first().and_then(|t| t.parse().ok()).unwrap_or(1);
    let levers = std::env::var("PLAIN_LEVERS").unwrap_or_default();
    let lever = |name: &str| levers.split(',').any(|l| l == name);
    let conf = pingora::server::configuration::ServerConf {
        threads,
        work_stealing: !lever("nosteal"),
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let plain = Plain {
        nomodules: lever("nomodules"),
        blue: HttpPeer::new(blue.as_str(), false, String::new()),
        green: HttpPeer::new(green.as_str(), false, String::new()),
        counter: AtomicU64::new(0),
    };
    let mut service = http_proxy_service(&server.configuration, plain);
    let mut endpoint = pingora::listeners::ListenerConfig::tcp(listen.as_str());
    if lever("l4") {
        endpoint = endpoint.l4_buffer(pingora::listeners::L4BufferSettings::default().read(0));
    }
    service.add_listener(endpoint);
    server.add_service(service);
    server.run_forever();
}
