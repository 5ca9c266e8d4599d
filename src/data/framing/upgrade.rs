//! A request that asked to upgrade, settled once the proxy decided (see `Framing`'s
//! `AwaitUpgrade`): the bytes held since become the tunnel's, or the next request's.

use std::sync::atomic::Ordering;

use super::guard::{Guarded, Refusal};

impl Guarded {
    /// Settles a request that asked to upgrade once the proxy decided: upgraded, the connection
    /// becomes an unchecked tunnel and whatever was held back is tunnel data; answered without
    /// a switch, what was held back is checked as the next request (a refusal is answered after
    /// that answer, as any).
    pub(super) fn follow_upgrade(&mut self) {
        if self.framing.is_tunnel() {
            return;
        }
        if self.upgraded.load(Ordering::Relaxed) {
            self.framing.enter_tunnel();
            self.ready = self.held.len();
            return;
        }
        if !(self.framing.awaits_upgrade() && self.all_answered()) {
            return;
        }
        // Only the bytes held since the request (`[ready..]`) are checked again: those before
        // are the request's own, checked already (its body, maybe not read yet).
        self.framing.upgrade_declined();
        let start = self.ready;
        let after = self.held[start..].to_vec();
        match self.check(&after) {
            Ok(partial) => self.ready = self.held.len() - partial,
            Err((r, prefix)) => {
                self.ready = start + prefix.unwrap_or(0);
                self.refuse(Refusal::Framing(r), true);
            }
        }
    }
}
