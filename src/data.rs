//! The request path: everything a client's request touches, from its first byte to the
//! access-log line.
//!
//! ```text
//! client ──tls (SNI, ALPN)──▶ framing (strict HTTP/1; h2 as is)──▶ proxy (Pingora)
//!   ──snapshot (one load)──▶ routing
//!   key: affinity (user bucket) or keys (random) ──▶ bucket table ──▶ pool ──▶ backend (health)
//! ```

pub mod access_log;
pub mod affinity;
pub mod framing;
pub mod health;
pub mod keys;
pub mod proxy;
pub mod routing;
pub mod snapshot;
pub mod tls;
pub mod tokens;
