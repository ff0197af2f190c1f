//! Bitcoin amounts: exact decimals with at most 8 places (satoshis), never negative.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Btc(Decimal);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BtcError {
    #[error("\"{0}\" is not an amount of bitcoin; write a decimal such as 0.00494")]
    NotANumber(String),
    #[error("{0} BTC is negative; an amount of bitcoin is 0 or more")]
    Negative(String),
    #[error("{0} BTC has more than 8 decimals; a satoshi (0.00000001) is the smallest unit")]
    TooPrecise(String),
}

impl Btc {
    pub fn new(value: Decimal) -> Result<Self, BtcError> {
        if value.is_sign_negative() && !value.is_zero() {
            return Err(BtcError::Negative(value.to_string()));
        }
        if value.normalize().scale() > 8 {
            return Err(BtcError::TooPrecise(value.to_string()));
        }
        Ok(Btc(value))
    }

    pub fn value(self) -> Decimal {
        self.0
    }

    /// In satoshis (exact: at most 8 decimals).
    pub fn sats(self) -> u64 {
        (self.0 * Decimal::new(100_000_000, 0))
            .trunc()
            .try_into()
            .unwrap_or(u64::MAX)
    }

    /// In millisatoshis, as Lightning invoices count.
    pub fn msat(self) -> u64 {
        self.sats().saturating_mul(1000)
    }
}

impl FromStr for Btc {
    type Err = BtcError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let d =
            Decimal::from_str_exact(s.trim()).map_err(|_| BtcError::NotANumber(s.to_string()))?;
        Btc::new(d)
    }
}

impl fmt::Display for Btc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_exactly_to_satoshis_and_millisatoshis() {
        let amount: Btc = "0.00494000".parse().unwrap();
        assert_eq!(amount.sats(), 494_000);
        assert_eq!(amount.msat(), 494_000_000);
        assert_eq!(amount.to_string(), "0.00494000");
        assert_eq!("21".parse::<Btc>().unwrap().sats(), 2_100_000_000);
    }

    #[test]
    fn refuses_negative_too_precise_and_garbage() {
        assert!(matches!("-0.1".parse::<Btc>(), Err(BtcError::Negative(_))));
        assert!(matches!(
            "0.000000001".parse::<Btc>(),
            Err(BtcError::TooPrecise(_))
        ));
        assert!(
            "0.1000000000".parse::<Btc>().is_ok(),
            "trailing zeros are not precision"
        );
        assert!(matches!("abc".parse::<Btc>(), Err(BtcError::NotANumber(_))));
    }
}
