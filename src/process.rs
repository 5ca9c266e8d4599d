//! The process: the commands (`serve`, `check`, `ctl`, `demo`) and the life cycle of a
//! running proxy (signals, graceful shutdown, binary upgrade).

pub mod check;
pub mod ctl;
pub mod demo;
pub mod notify;
pub mod preflight;
pub mod probe;
pub mod serve;
pub mod shutdown;
