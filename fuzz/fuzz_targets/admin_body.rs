//! Any bytes as the body of each admin write: parsing must return, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for path in ["/split", "/switch", "/rollback"] {
        let _ = switchback::admin::fuzzing::parse_body(path, data);
    }
});
