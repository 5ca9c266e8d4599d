//! Percentages and splits: the one place that turns numbers into basis points and checks
//! that a split sums to 100 %, for the config file and the admin API alike.

use std::collections::BTreeMap;
use std::fmt;

use super::problem::ProblemKind;

/// A split from per-pool basis points (every pool present), checked to give some pool
/// traffic and to sum to exactly 100 %. Shared by the file and the admin API.
///
/// # Errors
/// [`ProblemKind::NoTraffic`] or [`ProblemKind::SplitSum`].
pub fn checked_split(shares: BTreeMap<String, BasisPoints>) -> Result<Split, ProblemKind> {
    let total: u32 = shares.values().sum();
    if total == 0 {
        return Err(ProblemKind::NoTraffic);
    }
    if total != FULL {
        return Err(ProblemKind::SplitSum(format_percent(total)));
    }
    Ok(Split::new(shares))
}

/// A percentage from 0 to 100 with at most two decimals, as basis points.
pub fn percent(value: &toml::Value) -> Result<BasisPoints, ProblemKind> {
    let (number, text) = match value {
        toml::Value::Integer(i) => (*i as f64, i.to_string()),
        toml::Value::Float(f) => (*f, f.to_string()),
        other => {
            return Err(ProblemKind::WrongType {
                expected: "a percentage (number)",
                found: other.type_str().to_string(),
            })
        }
    };
    percent_from_f64(number).map_err(|kind| match kind {
        PercentError::Invalid => ProblemKind::InvalidPercent(text),
        PercentError::TooPrecise => ProblemKind::TooPrecise(text),
    })
}

/// Why a number is not a percentage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PercentError {
    /// Negative, over 100, NaN or infinite.
    Invalid,
    /// More than two decimals.
    TooPrecise,
}

/// A percentage as basis points, for every source of splits (file, admin API).
///
/// # Errors
/// [`PercentError`] when out of 0–100 or finer than 0.01.
pub fn percent_from_f64(number: f64) -> Result<BasisPoints, PercentError> {
    if !number.is_finite() || !(0.0..=100.0).contains(&number) {
        return Err(PercentError::Invalid);
    }
    let scaled = number * 100.0;
    let bp = scaled.round();
    if (scaled - bp).abs() > 1e-6 {
        return Err(PercentError::TooPrecise);
    }
    Ok(bp as BasisPoints)
}

/// Basis points: hundredths of a percent. 100 % = 10,000.
pub type BasisPoints = u32;

/// 100 % in basis points.
pub const FULL: BasisPoints = 10_000;

/// The share of traffic per pool, in basis points, summing to exactly [`FULL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    shares: BTreeMap<String, BasisPoints>,
}

impl Split {
    /// Builds a split. Callers (validation) guarantee the sum is [`FULL`].
    pub(crate) fn new(shares: BTreeMap<String, BasisPoints>) -> Self {
        debug_assert_eq!(shares.values().sum::<u32>(), FULL);
        Split { shares }
    }

    /// Pool name → basis points, ordered by name.
    pub fn shares(&self) -> &BTreeMap<String, BasisPoints> {
        &self.shares
    }

    /// The share of one pool (0 when unknown).
    pub fn share(&self, pool: &str) -> BasisPoints {
        self.shares.get(pool).copied().unwrap_or(0)
    }
}

impl fmt::Display for Split {
    /// `blue=90 green=10`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .shares
            .iter()
            .map(|(name, bp)| format!("{name}={}", format_percent(*bp)))
            .collect();
        f.write_str(&parts.join(" "))
    }
}

/// Formats basis points as a percentage with no trailing zeros: 9000 → `90`, 1 → `0.01`.
pub fn format_percent(bp: BasisPoints) -> String {
    let (whole, frac) = (bp / 100, bp % 100);
    match frac {
        0 => whole.to_string(),
        f if f.is_multiple_of(10) => format!("{whole}.{}", f / 10),
        f => format!("{whole}.{f:02}"),
    }
}

#[cfg(test)]
mod format_tests {
    use super::*;

    #[test]
    fn percent_formatting_drops_trailing_zeros() {
        assert_eq!(format_percent(9000), "90");
        assert_eq!(format_percent(9050), "90.5");
        assert_eq!(format_percent(1), "0.01");
        assert_eq!(format_percent(10_000), "100");
    }
}
