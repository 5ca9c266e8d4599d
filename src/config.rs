//! Configuration: parse, then validate, then build.
//!
//! ```text
//! switchback.toml ──load::read_text──▶ text ──serde──▶ raw::RawConfig ──validate──▶ model::Config
//!                  (size, UTF-8)            (+ unknown keys)           (every problem, key paths)
//! ```
//! Defaults live in [`defaults`]; the annotated reference file is `config/switchback.toml`.

mod backends;
pub mod defaults;
pub mod duration;
pub mod exclusive;
mod files;
pub mod key_hash;
mod listeners;
pub mod load;
pub mod model;
pub mod percent;
pub mod persist;
mod plans;
mod pool_policy;
pub mod problem;
pub mod raw;
mod rules;
mod shared;
mod size;
mod sticky;
pub mod tls;
pub mod validate;

pub use backends::{resolve_host_names, with_known_addresses};
pub use load::{load, parse, resolve_beside, ConfigError};
pub use model::{Backend, Config, Pool, Split};
pub use problem::{Problem, ProblemKind};
