//! Any text as a config file: parse and validate must return, never panic. Host names are
//! not resolved (no DNS query leaves the machine).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    switchback::config::resolve_host_names(false);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = switchback::config::load::parse(text);
    }
});
