//! Durations as people write them in satflow.yaml: `500ms`, `2s`, `5m`, `1h30m`, `1d`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

/// The longest duration parsed: 100 years. Anything added to a date stays far inside what
/// dates can hold (chrono panics on overflow), whatever a field's own bound is.
pub const MAX: Duration = Duration::from_secs(100 * 365 * 86_400);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error(
        "\"{0}\" is not a duration; write a number with a unit (ms, s, m, h, d), e.g. 2s, 5m, 1h30m"
    )]
    Invalid(String),
    #[error("\"{0}\" is longer than any satflow duration can be (at most 36500d, 100 years)")]
    TooLong(String),
}

impl FromStr for HumanDuration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || DurationError::Invalid(s.to_string());
        let too_long = || DurationError::TooLong(s.to_string());
        let mut rest = s.trim();
        if rest.is_empty() {
            return Err(err());
        }
        let mut total = Duration::ZERO;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
            if digits == 0 {
                return Err(err());
            }
            // Only digits here: a failed parse means too many of them.
            let n: u64 = rest[..digits].parse().map_err(|_| too_long())?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit_ms: u64 = match &rest[..unit_len] {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => return Err(err()),
            };
            rest = &rest[unit_len..];
            let ms = n.checked_mul(unit_ms).ok_or_else(too_long)?;
            total = total
                .checked_add(Duration::from_millis(ms))
                .ok_or_else(too_long)?;
            if total > MAX {
                return Err(too_long());
            }
        }
        Ok(HumanDuration(total))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        match ms {
            0 => f.write_str("0s"),
            _ if ms.is_multiple_of(3_600_000) => write!(f, "{}h", ms / 3_600_000),
            _ if ms.is_multiple_of(60_000) => write!(f, "{}m", ms / 60_000),
            _ if ms.is_multiple_of(1_000) => write!(f, "{}s", ms / 1_000),
            _ => write!(f, "{ms}ms"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Duration {
        s.parse::<HumanDuration>().unwrap().0
    }

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(d("500ms"), Duration::from_millis(500));
        assert_eq!(d("2s"), Duration::from_secs(2));
        assert_eq!(d("1h30m"), Duration::from_secs(5400));
        assert_eq!(d("1d"), Duration::from_secs(86_400));
        assert_eq!(HumanDuration(Duration::from_secs(3600)).to_string(), "1h");
    }

    #[test]
    fn refuses_missing_or_unknown_units() {
        for bad in [
            "",
            "5",
            "s",
            "5 minutes",
            "1.5h",
            "-1s",
            "3w",
            // Huge numbers are refused, never overflow.
            "9999999999999s",
            "99999999999999999999999999s",
            "18446744073709551615d",
            "36501d",
        ] {
            assert!(bad.parse::<HumanDuration>().is_err(), "{bad}");
        }
    }
}
