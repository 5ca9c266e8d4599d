//! Replays the fuzzing corpora (`fuzz/corpus/<target>/`, kept in the repository) through the
//! same entry points as the fuzz targets, so every input the fuzzer found interesting is
//! checked on every `make test`, without libFuzzer.

use std::path::Path;

use switchback::framing::Framing;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "empty corpus {}", dir.display());
    inputs
}

#[test]
fn every_config_corpus_input_is_parsed_without_panicking() {
    // No DNS queries for the fuzzer's made-up host names (this test binary only).
    switchback::config::resolve_host_names(false);
    for input in corpus("config") {
        if let Ok(text) = std::str::from_utf8(&input) {
            let _ = switchback::config::load::parse(text);
        }
    }
}

#[test]
fn every_admin_body_corpus_input_is_parsed_without_panicking() {
    for input in corpus("admin_body") {
        for path in ["/split", "/switch", "/rollback"] {
            let _ = switchback::admin::fuzzing::parse_body(path, &input);
        }
    }
}

#[test]
fn every_drain_path_corpus_input_is_parsed_without_panicking() {
    for input in corpus("drain_path") {
        if let Ok(path) = std::str::from_utf8(&input) {
            let _ = switchback::admin::fuzzing::parse_drain_path(path);
        }
    }
}

#[test]
fn every_framing_corpus_input_gets_the_same_verdict_however_it_is_split() {
    for input in corpus("framing") {
        let Some((_, bytes)) = input.split_first() else {
            continue;
        };
        let mut whole = Framing::default();
        let whole_ok = whole.feed(bytes).is_ok();
        for cut in [
            0,
            1,
            bytes.len() / 3,
            bytes.len() / 2,
            bytes.len().saturating_sub(1),
        ] {
            let cut = cut.min(bytes.len());
            let mut split = Framing::default();
            let ok = split
                .feed(&bytes[..cut])
                .and_then(|()| split.feed(&bytes[cut..]))
                .is_ok();
            assert_eq!(
                ok,
                whole_ok,
                "{:?} split at {cut}",
                String::from_utf8_lossy(bytes)
            );
            if ok {
                assert_eq!(split.heads(), whole.heads());
                assert_eq!(split.awaits_upgrade(), whole.awaits_upgrade());
            }
        }
        if whole_ok && whole.awaits_upgrade() {
            // Declined: the bytes held after the upgrade request are checked as a request.
            let held = whole.partial_head();
            whole.upgrade_declined();
            let _ = whole.feed(&bytes[bytes.len() - held..]);
        }
    }
}

#[test]
fn the_framing_corpus_holds_the_upgrade_and_head_reuse_cases() {
    let inputs = corpus("framing");
    let has = |needle: &[u8]| {
        inputs
            .iter()
            .any(|i| i.windows(needle.len()).any(|w| w == needle))
    };
    assert!(has(
        b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n\x81"
    ));
    assert!(has(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET"));
}
