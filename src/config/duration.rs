//! Human duration strings: `"250ms"`, `"2s"`, `"1.5s"`, `"1m"`, `"1h"`.

use std::time::Duration;

/// Parses a human duration. Units: `ms`, `s`, `m`, `h`; the number may have decimals.
///
/// # Errors
/// A message saying what is wrong, for the config problem list.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or("missing unit; use ms, s, m or h, e.g. \"500ms\"")?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{number:?} is not a number"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("unknown unit {unit:?}; use ms, s, m or h")),
    };
    if !(seconds.is_finite() && seconds <= 86_400.0 * 7.0) {
        return Err("longer than a week".into());
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Formats a duration the way [`parse`] reads it.
pub fn format(duration: Duration) -> String {
    let ms = duration.as_millis();
    let s = ms / 1000;
    if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else if s > 0 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s > 0 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit_and_decimals() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn rejects_missing_or_unknown_units_and_garbage() {
        assert!(parse("5").unwrap_err().contains("missing unit"));
        assert!(parse("5d").unwrap_err().contains("unknown unit"));
        assert!(parse("fast").is_err());
        assert!(parse("1.2.3s").is_err());
        assert!(parse("9999h").is_err());
    }

    #[test]
    fn format_round_trips() {
        for d in [250, 3_000, 90_000, 1_800_000, 7_200_000].map(Duration::from_millis) {
            assert_eq!(parse(&format(d)), Ok(d));
        }
        assert_eq!(format(Duration::from_secs(1_800)), "30m");
        assert_eq!(format(Duration::from_secs(7_200)), "2h");
        assert_eq!(format(Duration::from_secs(90)), "90s");
    }
}
