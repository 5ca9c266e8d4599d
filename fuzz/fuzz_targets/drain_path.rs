//! Any text as an admin path: drain-path parsing must return, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(path) = std::str::from_utf8(data) {
        let _ = switchback::admin::fuzzing::parse_drain_path(path);
    }
});
