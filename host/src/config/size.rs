//! Sizes as a person writes them (`2GiB`, `512MiB`, `64KiB`, `10MB`, `2g`) as well as plain
//! numbers of bytes, for the byte-sized limit flags and config keys.

use serde::{Deserialize, Deserializer};

/// Bytes in `text`: a number, optionally followed (with or without a space) by a unit:
/// `B`; `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024, as are the shorthands `K`, `M`, `G`,
/// `T`); `kB`/`KB`, `MB`, `GB`, `TB` (powers of 1000). Units are case-insensitive.
pub fn parse(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '_')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.replace('_', "").parse().map_err(|_| {
        format!("{text:?} is not a size: write bytes (1073741824) or 1GiB, 512MiB, 10MB")
    })?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (use B, KiB, MiB, GiB, TiB, or KB, MB, GB, TB)"
            ));
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// `parse`, for a limit held as `usize`.
pub fn parse_usize(text: &str) -> Result<usize, String> {
    usize::try_from(parse(text)?).map_err(|_| format!("{text:?} is too large"))
}

/// A size in a config file: a number of bytes, or a string such as `"2GiB"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Written {
    Bytes(u64),
    Text(String),
}

/// Deserializes an optional size (`Option<T>` fields with `#[serde(default)]`).
pub fn option<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    let bytes = match Option::<Written>::deserialize(d)? {
        None => return Ok(None),
        Some(Written::Bytes(b)) => b,
        Some(Written::Text(t)) => parse(&t).map_err(serde::de::Error::custom)?,
    };
    T::try_from(bytes)
        .map(Some)
        .map_err(|_| serde::de::Error::custom(format!("{bytes} bytes is too large")))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn sizes_are_read_as_people_write_them() {
        assert_eq!(parse("1234"), Ok(1234));
        assert_eq!(parse("2GiB"), Ok(2 << 30));
        assert_eq!(parse("2 gib"), Ok(2 << 30));
        assert_eq!(parse("512MiB"), Ok(512 << 20));
        assert_eq!(parse("64k"), Ok(64 << 10));
        assert_eq!(parse("2g"), Ok(2 << 30));
        assert_eq!(parse("10MB"), Ok(10_000_000));
        assert_eq!(parse("1_000_000"), Ok(1_000_000));
        assert_eq!(parse("7B"), Ok(7));
        assert!(parse("2 parsecs").unwrap_err().contains("unknown unit"));
        assert!(parse("GiB").is_err());
        assert!(parse("-1").is_err());
        assert!(parse("99999999999TiB").unwrap_err().contains("too large"));
    }
}
