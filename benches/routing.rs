//! Routing micro-benchmarks: the sticky routing decision, backend pick, full route, and the snapshot load
//! every request pays. `cargo bench --bench routing`.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use pingora::http::RequestHeader;
use switchback::affinity::request::user_key;
use switchback::config;
use switchback::health::HealthRegistry;
use switchback::metrics::Metrics;
use switchback::routing::Schedule;
use switchback::snapshot::{self, Snapshot};

fn config_with(backends: usize) -> config::Config {
    config::parse(&config_text(backends)).expect("bench config is valid")
}

fn config_text(backends: usize) -> String {
    let list: Vec<String> = (0..backends)
        .map(|i| {
            format!(
                "{{ addr = \"127.0.0.1:{}\", weight = {} }}",
                10_000 + i,
                1 + i % 3
            )
        })
        .collect();
    format!(
        "[pools.blue]\nbackends = [{}]\n[pools.green]\nbackends = [\"127.0.0.1:9999\"]\n[split]\nblue = 90\ngreen = 10\n",
        list.join(", ")
    )
}

/// The routing decision of a sticky request: read the `x-user-id` header, hash it into a
/// bucket, look the bucket up and pick the pool's next backend. Against the same route with a
/// random key (no affinity). Issue 11's budget: under 150 ns.
fn sticky_route(c: &mut Criterion) {
    let mut text = config_text(2);
    text.insert_str(
        0,
        "[affinity]\nkey = [\"header:x-user-id\", \"cookie:sid\"]\n",
    );
    let snap = Snapshot::build(
        Arc::new(config::parse(&text).expect("bench config is valid")),
        1,
        &Metrics::new(),
        &HealthRegistry::default(),
    );
    let affinity = snap.config.affinity.clone().expect("affinity on");
    let requests: Vec<RequestHeader> = (0..64)
        .map(|i| {
            let mut req = RequestHeader::build("GET", b"/", None).unwrap();
            req.insert_header("host", "example.com").unwrap();
            req.insert_header("user-agent", "bench/1.0").unwrap();
            req.insert_header("accept", "*/*").unwrap();
            req.insert_header("x-user-id", format!("user-{i:08}"))
                .unwrap();
            req
        })
        .collect();
    let mut group = c.benchmark_group("sticky_route");
    let mut i = 0usize;
    group.bench_function("header_key", |b| {
        b.iter(|| {
            i = (i + 1) % requests.len();
            let key = user_key(black_box(&requests[i]), None, &affinity).expect("keyed");
            black_box(snap.route(key.bucket).map(|r| r.backend.addr))
        })
    });
    let mut key = 0u32;
    group.bench_function("random_key", |b| {
        b.iter(|| {
            key = (key + 7919) % 10_000;
            black_box(snap.route(black_box(key)).map(|r| r.backend.addr))
        })
    });
    group.finish();
}

fn backend_pick(c: &mut Criterion) {
    let mut group = c.benchmark_group("backend_pick");
    for n in [2usize, 10, 100] {
        let weights: Vec<u32> = (0..n).map(|i| 1 + (i % 3) as u32).collect();
        let schedule = Schedule::smooth_weighted(&weights);
        let mut ticket = 0u64;
        group.bench_with_input(BenchmarkId::from_parameter(n), &schedule, |b, s| {
            b.iter(|| {
                ticket += 1;
                black_box(s.pick(black_box(ticket)))
            })
        });
    }
    group.finish();
}

fn route(c: &mut Criterion) {
    let mut group = c.benchmark_group("route");
    for n in [2usize, 10, 100] {
        let snap = Snapshot::build(
            Arc::new(config_with(n)),
            1,
            &Metrics::new(),
            &HealthRegistry::default(),
        );
        let mut key = 0u32;
        group.bench_with_input(BenchmarkId::from_parameter(n), &snap, |b, s| {
            b.iter(|| {
                key = (key + 7919) % 10_000;
                black_box(s.route(black_box(key)).map(|r| r.backend.addr))
            })
        });
    }
    group.finish();
}

fn snapshot_load(c: &mut Criterion) {
    let live = snapshot::live(Snapshot::build(
        Arc::new(config_with(10)),
        1,
        &Metrics::new(),
        &HealthRegistry::default(),
    ));
    c.bench_function("snapshot_load_full", |b| {
        b.iter(|| black_box(live.load_full()))
    });
    c.bench_function("request_key", |b| {
        b.iter(|| black_box(switchback::keys::next()))
    });
    let snap = Snapshot::build(
        Arc::new(config_with(10)),
        1,
        &Metrics::new(),
        &HealthRegistry::default(),
    );
    c.bench_function("peer_clone_boxed", |b| {
        b.iter(|| black_box(Box::new(snap.pools[0].backends[0].peer.clone())))
    });
}

criterion_group!(benches, sticky_route, backend_pick, route, snapshot_load);
criterion_main!(benches);
