//! The bake's reference: the baseline's level measured before the canary took all traffic
//! (its last 30 minutes of traffic, the rollout's earlier steps included), and the one-sample
//! test against it.
//!
//! The reference's own sampling error counts: the rate the test assumes for the baseline is
//! the reference's 95 % upper bound, so a reference measured on few requests makes the test
//! slower, never trigger-happy; and a reference with no errors gets the same floor as the
//! advance gate ([`super::RATE_FLOOR`]).

use serde::{Deserialize, Serialize};

use super::{wilson_upper, Counts, RATE_FLOOR};

/// The baseline's counts the bake is compared with; kept with the rollout's record so that it
/// survives a restart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference(pub Counts);

/// The serialised form: `{"requests": …, "errors": …, "slow": …}`.
#[derive(Serialize, Deserialize)]
struct Shown {
    requests: u64,
    errors: u64,
    slow: u64,
}

impl Serialize for Counts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Shown {
            requests: self.requests,
            errors: self.errors,
            slow: self.slow,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Counts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let shown = Shown::deserialize(d)?;
        // A record edited by hand cannot make sums overflow: 10^13 is ~300 years at 1,000 req/s.
        let requests = shown.requests.min(10_000_000_000_000);
        Ok(Counts {
            requests,
            errors: shown.errors.min(requests),
            slow: shown.slow.min(requests),
        })
    }
}

impl Reference {
    /// The error rate the one-sample test assumes for the baseline: the reference's 95 % upper
    /// bound, at least [`RATE_FLOOR`]; 1 (no test) without a reference.
    pub fn error_rate(&self) -> f64 {
        self.bound(self.0.errors)
    }

    /// The same for slow requests.
    pub fn slow_rate(&self) -> f64 {
        self.bound(self.0.slow)
    }

    fn bound(&self, events: u64) -> f64 {
        wilson_upper(events, self.0.requests).max(RATE_FLOOR)
    }
}

/// The evidence per canary event and per canary request without one, when the baseline's rate
/// is `p`: ln(θ₁/θ₀) and ln((1 − θ₁p)/(1 − θ₀p)). No evidence at all where θ₁p leaves no room
/// for a regression to show (a reference near 100 %, or none).
pub fn weights(p: f64, tolerated: f64, detect: f64) -> (f64, f64) {
    if detect * p >= 0.95 {
        return (0.0, 0.0);
    }
    (
        (detect / tolerated).ln(),
        ((1.0 - detect * p) / (1.0 - tolerated * p)).ln(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(requests: u64, errors: u64) -> Reference {
        Reference(Counts {
            requests,
            errors,
            slow: 0,
        })
    }

    #[test]
    fn a_small_reference_is_assumed_worse_than_it_looks_and_a_spotless_one_gets_the_floor() {
        let small = reference(200, 1).error_rate();
        let large = reference(200_000, 1_000).error_rate();
        assert!(small > 0.02, "200 requests say little: {small}");
        assert!((0.005..0.0055).contains(&large), "{large}");
        assert!(reference(10_000_000, 0).error_rate() >= RATE_FLOOR);
    }

    #[test]
    fn no_reference_gives_no_evidence() {
        let p = Reference::default().error_rate();
        assert_eq!(weights(p, 1.2, 3.0), (0.0, 0.0));
    }

    #[test]
    fn an_event_is_evidence_for_and_a_clean_request_evidence_against() {
        let (event, clean) = weights(0.01, 1.2, 3.0);
        assert!(event > 0.9 && clean < 0.0, "{event} {clean}");
    }

    #[test]
    fn counts_read_back_from_json_never_claim_more_errors_than_requests() {
        let c: Counts = serde_json::from_str(r#"{"requests":5,"errors":9,"slow":7}"#).unwrap();
        assert_eq!((c.requests, c.errors, c.slow), (5, 5, 5));
    }
}
