//! Pocket's fee rate: a decimal fraction of each purchase, from 0.012 (1.2 %) to 0.045 (4.5 %).

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FeeRate(Decimal);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeeRateError {
    #[error("\"{0}\" is not a decimal number; write a fraction such as 0.015 for 1.5 %")]
    NotANumber(String),
    #[error("{0} is out of range; Pocket accepts 0.012 to 0.045 (a fraction: 0.015 is 1.5 %)")]
    OutOfRange(String),
}

impl FeeRate {
    pub const MIN: Decimal = Decimal::from_parts(12, 0, 0, false, 3);
    pub const MAX: Decimal = Decimal::from_parts(45, 0, 0, false, 3);

    pub fn new(value: Decimal) -> Result<Self, FeeRateError> {
        if (Self::MIN..=Self::MAX).contains(&value) {
            Ok(FeeRate(value.normalize()))
        } else {
            Err(FeeRateError::OutOfRange(value.to_string()))
        }
    }

    pub fn value(self) -> Decimal {
        self.0
    }
}

impl FromStr for FeeRate {
    type Err = FeeRateError;

    /// Parsed from text, never through a float: `0.015` stays exactly 0.015.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let value =
            Decimal::from_str_exact(s).map_err(|_| FeeRateError::NotANumber(s.to_string()))?;
        FeeRate::new(value).map_err(|_| FeeRateError::OutOfRange(s.to_string()))
    }
}

impl fmt::Display for FeeRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_range_inclusive() {
        assert_eq!("0.012".parse::<FeeRate>().unwrap().to_string(), "0.012");
        assert_eq!("0.045".parse::<FeeRate>().unwrap().to_string(), "0.045");
        assert_eq!("0.0150".parse::<FeeRate>().unwrap().to_string(), "0.015");
    }

    #[test]
    fn refuses_out_of_range_and_non_numbers() {
        assert!(matches!(
            "0.0119".parse::<FeeRate>(),
            Err(FeeRateError::OutOfRange(_))
        ));
        assert!(matches!(
            "0.5".parse::<FeeRate>(),
            Err(FeeRateError::OutOfRange(_))
        ));
        assert!(matches!(
            "1.5%".parse::<FeeRate>(),
            Err(FeeRateError::NotANumber(_))
        ));
        let msg = "0.5".parse::<FeeRate>().unwrap_err().to_string();
        assert!(
            msg.contains("0.5") && msg.contains("0.012 to 0.045"),
            "{msg}"
        );
    }
}
