//! TLS families: the expiry of each certificate served (per listener: `proxy` for `[tls]`,
//! `admin` for `[admin] tls`), and failed handshakes by reason.

use std::collections::BTreeMap;
use std::sync::Mutex;

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
    /// The names each listener's expiry series show now, to remove when it changes.
    shown: Mutex<BTreeMap<&'static str, Vec<String>>>,
    handshake_errors: IntCounterVec,
}

impl Families {
    /// Registers both families in `registry`.
    pub(super) fn register(registry: &Registry) -> Families {
        let families = Families {
            expiry: must(IntGaugeVec::new(
                Opts::new(
                    "switchback_tls_certificate_expiry_timestamp_seconds",
                    "When each certificate served expires (notAfter), seconds since the Unix epoch, by listener (proxy: [tls], admin: [admin] tls)",
                ),
                &["listener", "name"],
            )),
            shown: Mutex::default(),
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
    /// Sets `listener`'s expiry series (`"proxy"` or `"admin"`) to exactly the certificates it
    /// serves, given in the order SNI picks them as `(names to show, notAfter)`, one series per
    /// name. A name on two certificates of one listener shows the first; the other listener's
    /// series are untouched.
    pub fn certificates_served(
        &self,
        listener: &'static str,
        served: impl IntoIterator<Item = (Vec<String>, i64)>,
    ) {
        let mut shown = self.tls.shown.lock().unwrap_or_else(|p| p.into_inner());
        let names = shown.entry(listener).or_default();
        for name in names.drain(..) {
            let _ = self.tls.expiry.remove_label_values(&[listener, &name]);
        }
        for (cert_names, not_after) in served {
            for name in cert_names {
                if !names.contains(&name) {
                    self.tls
                        .expiry
                        .with_label_values(&[listener, &name])
                        .set(not_after);
                    names.push(name);
                }
            }
        }
    }

    /// Counts a failed handshake.
    pub fn handshake_failed(&self, reason: &str) {
        self.tls.handshake_errors.with_label_values(&[reason]).inc();
    }
}

#[cfg(test)]
mod tests {
    use crate::metrics::Metrics;

    fn series(metrics: &Metrics) -> Vec<String> {
        let text = metrics.render();
        text.lines()
            .filter(|l| l.starts_with("switchback_tls_certificate_expiry"))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn each_listener_keeps_its_own_series_for_a_shared_name() {
        let metrics = Metrics::new();
        metrics.certificates_served("proxy", [(vec!["a.test".into(), "b.test".into()], 10)]);
        metrics.certificates_served("admin", [(vec!["a.test".into()], 20)]);
        metrics.certificates_served("admin", [(vec!["a.test".into(), "c.test".into()], 30)]);
        assert_eq!(
            series(&metrics),
            [
                r#"switchback_tls_certificate_expiry_timestamp_seconds{listener="admin",name="a.test"} 30"#,
                r#"switchback_tls_certificate_expiry_timestamp_seconds{listener="admin",name="c.test"} 30"#,
                r#"switchback_tls_certificate_expiry_timestamp_seconds{listener="proxy",name="a.test"} 10"#,
                r#"switchback_tls_certificate_expiry_timestamp_seconds{listener="proxy",name="b.test"} 10"#,
            ]
        );
        metrics.certificates_served("proxy", []);
        assert_eq!(series(&metrics).len(), 2, "the admin series stay");
    }
}
