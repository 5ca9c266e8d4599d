//! switchback: a blue/green and canary front-door HTTP proxy on Pingora.
//!
//! ```text
//! config file ──config (parse → validate → model)──┐
//! admin API, file watch, SIGHUP ──▶ control (the single writer) ──▶ ArcSwap<Snapshot>
//!                                      │ deployment log, write-back      │ load once per request
//!                                      ▼                                 ▼
//!                          process (serve, shutdown, ctl)   data (framing → proxy → routing)
//! ```
//! - [`data`]: the request path (TLS, framing, proxy, snapshot, routing, affinity, health).
//! - [`control`]: the single writer and its clients (admin API, file watch, rollouts, deployment
//!   log).
//! - [`config`]: parse → validate → model; write-back.
//! - [`process`]: the commands and the life cycle (serve, shutdown, upgrade).
//! - [`metrics`]: Prometheus families, label handles resolved per snapshot.
//!
//! See `../shared/DESIGN.md` for the product contract.

// Unsafe code is denied crate-wide (Cargo.toml) and forbidden outright outside tests: the
// one exception is the unit tests' counting allocator (`data/proxy/allocations.rs`).
#![cfg_attr(not(test), forbid(unsafe_code))]

pub mod config;
pub mod control;
pub mod data;
pub mod metrics;
pub mod process;

// The modules by their own names, wherever they live: for benches, tests, fuzz targets and
// examples. Inside `src/` modules are named by their real paths, so that the layering check
// (`tests/layers.py`) sees every arrow.
pub use control::{admin, audit};
pub use data::{access_log, affinity, framing, health, keys, proxy, routing, snapshot, tls};
pub use process::{check, ctl, demo, serve, shutdown};
