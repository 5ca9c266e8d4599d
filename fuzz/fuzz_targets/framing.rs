//! Any client byte stream, fed whole and split at a fuzzer-chosen point: the framing check
//! never panics, and its verdict does not depend on how the bytes were split into reads. After
//! a request asking to upgrade, the bytes held are checked again as a declined upgrade's.
#![no_main]
use libfuzzer_sys::fuzz_target;
use switchback::framing::Framing;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, bytes)) = data.split_first() else {
        return;
    };
    let mut whole = Framing::default();
    let whole_ok = whole.feed(bytes).is_ok();
    let cut = usize::from(cut).min(bytes.len());
    let mut split = Framing::default();
    let split_ok = split.feed(&bytes[..cut]).and_then(|()| split.feed(&bytes[cut..])).is_ok();
    assert_eq!(whole_ok, split_ok, "verdict depends on the split at {cut}");
    if whole_ok {
        assert_eq!(whole.heads(), split.heads());
        assert_eq!(whole.awaits_upgrade(), split.awaits_upgrade());
    }
    if whole_ok && whole.awaits_upgrade() {
        let held = whole.partial_head();
        whole.upgrade_declined();
        let _ = whole.feed(&bytes[bytes.len() - held..]);
    }
});
