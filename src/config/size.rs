//! Byte sizes: a whole number of bytes, or a string with a binary unit (`"512KiB"`, `"64MiB"`,
//! `"1GiB"`, `"100B"`).

/// Parses a size key's value.
///
/// # Errors
/// A sentence saying what is wrong, for the problem report.
pub(super) fn parse(value: &toml::Value) -> Result<u64, String> {
    let bytes = match value {
        toml::Value::Integer(n) => u64::try_from(*n).map_err(|_| format!("{n} is negative"))?,
        toml::Value::String(text) => {
            let text = text.trim();
            let split = text
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(text.len());
            let (digits, unit) = text.split_at(split);
            let n: u64 = digits
                .parse()
                .map_err(|_| format!("{text:?} is not a size like \"64MiB\""))?;
            let scale: u64 = match unit.trim() {
                "" | "B" => 1,
                "KiB" => 1 << 10,
                "MiB" => 1 << 20,
                "GiB" => 1 << 30,
                other => return Err(format!("unknown unit {other:?}; use B, KiB, MiB or GiB")),
            };
            n.checked_mul(scale)
                .ok_or_else(|| format!("{text:?} is too large"))?
        }
        other => {
            return Err(format!(
                "expected bytes or a size string, found {}",
                other.type_str()
            ))
        }
    };
    if bytes < 1024 {
        return Err(format!("{bytes} bytes is under the 1 KiB minimum"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn sizes_parse_with_binary_units_and_bad_ones_say_why() {
        let s = |t: &str| parse(&toml::Value::String(t.into()));
        assert_eq!(s("64MiB"), Ok(64 << 20));
        assert_eq!(s("2048"), Ok(2048));
        assert_eq!(s("1 GiB"), Ok(1 << 30));
        assert_eq!(parse(&toml::Value::Integer(4096)), Ok(4096));
        assert!(s("12MB").unwrap_err().contains("unknown unit"));
        assert!(s("big").is_err());
        assert!(s("10B").unwrap_err().contains("minimum"));
        assert!(parse(&toml::Value::Integer(-1)).is_err());
        assert!(parse(&toml::Value::Boolean(true)).is_err());
    }
}
