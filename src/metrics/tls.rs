//! TLS families: the expiry of each certificate served, and failed handshakes by reason.

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

use super::{must, Metrics};

/// Reasons a handshake fails, each with a series from the start.
pub const HANDSHAKE_ERRORS: [&str; 8] = [
    "timeout",
    "client-closed",
    "incompatible",
    "alpn",
    "client-alert",
    "malformed",
    "no-certificate",
    "other",
];

/// The families, registered once.
pub(super) struct Families {
    expiry: IntGaugeVec,
    handshake_errors: IntCounterVec,
}

impl Families {
    /// Registers both families in `registry`.
    pub(super) fn register(registry: &Registry) -> Families {
        let families = Families {
            expiry: must(IntGaugeVec::new(
                Opts::new(
                    "switchback_tls_certificate_expiry_timestamp_seconds",
                    "When each certificate served expires (notAfter), seconds since the Unix epoch",
                ),
                &["name"],
            )),
            handshake_errors: must(IntCounterVec::new(
                Opts::new(
                    "switchback_tls_handshake_errors_total",
                    "TLS handshakes on the [tls] listeners that failed, by reason",
                ),
                &["reason"],
            )),
        };
        must(registry.register(Box::new(families.expiry.clone())));
        must(registry.register(Box::new(families.handshake_errors.clone())));
        for reason in HANDSHAKE_ERRORS {
            families.handshake_errors.with_label_values(&[reason]);
        }
        families
    }
}

impl Metrics {
    /// Sets the expiry series to exactly the certificates served, given in the order SNI picks
    /// them as `(names to show, notAfter)`, one series per name. A name on two certificates
    /// shows the first.
    pub fn certificates_served(&self, served: impl IntoIterator<Item = (Vec<String>, i64)>) {
        self.tls.expiry.reset();
        let mut shown = std::collections::HashSet::new();
        for (names, not_after) in served {
            for name in names {
                if shown.insert(name.clone()) {
                    self.tls.expiry.with_label_values(&[&name]).set(not_after);
                }
            }
        }
    }

    /// Counts a failed handshake.
    pub fn handshake_failed(&self, reason: &str) {
        self.tls.handshake_errors.with_label_values(&[reason]).inc();
    }
}
