//! switchback: a blue/green and canary front-door HTTP proxy on Pingora.
//!
//! ```text
//! config file ──config::load──▶ Config ──Snapshot::build──▶ ArcSwap<Snapshot>
//!                                                               │ load once per request
//!                                  client ──▶ proxy (Pingora) ──┴─▶ routing ──▶ backend
//! ```
//! See `../shared/DESIGN.md` for the product contract.

pub mod access_log;
pub mod admin;
pub mod affinity;
pub mod audit;
pub mod check;
pub mod config;
pub mod control;
pub mod ctl;
pub mod demo;
pub mod framing;
pub mod health;
pub mod keys;
pub mod metrics;
pub mod proxy;
pub mod routing;
pub mod serve;
pub mod shutdown;
pub mod snapshot;
