//! TLS at the front door: the certificates served (read, checked, swapped on reload), the
//! SNI choice among them, and the listener wrapper that terminates TLS.

pub mod accept;
pub mod certs;
pub mod store;
pub mod upstream;
