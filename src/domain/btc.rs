//! Bitcoin amounts: exact decimals with at most 8 places (satoshis), never negative, and never
//! above the 21 million bitcoin that can exist. The bound is what makes `sats` and `msat`
//! infallible: 21e6 BTC is 2.1e18 msat, inside a u64 — no amount read from the outside can
//! overflow them.

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
    #[error("{0} BTC is more than the 21,000,000 BTC that can ever exist")]
    TooLarge(String),
}

/// The most bitcoin there can ever be.
const MAX_BTC: Decimal = Decimal::from_parts(21_000_000, 0, 0, false, 0);

/// Satoshis per bitcoin.
const SATS_PER_BTC: u64 = 100_000_000;

impl Btc {
    /// The most bitcoin there can ever be, as a decimal: 21,000,000.
    pub const MAX_BTC: Decimal = MAX_BTC;

    pub fn new(value: Decimal) -> Result<Self, BtcError> {
        if value.is_sign_negative() && !value.is_zero() {
            return Err(BtcError::Negative(value.to_string()));
        }
        if value > MAX_BTC {
            return Err(BtcError::TooLarge(value.to_string()));
        }
        if value.normalize().scale() > 8 {
            return Err(BtcError::TooPrecise(value.to_string()));
        }
        Ok(Btc(value))
    }

    /// `sats` satoshis; refused above 21 million BTC.
    pub fn from_sats(sats: u64) -> Result<Self, BtcError> {
        Btc::new(Decimal::from(sats) / Decimal::from(SATS_PER_BTC))
    }

    pub fn value(self) -> Decimal {
        self.0
    }

    /// In satoshis (exact: at most 8 decimals, at most 2.1e15).
    pub fn sats(self) -> u64 {
        // The constructor's bounds make both steps exact; the checked forms only keep the
        // promise that nothing here can panic.
        let sats = self
            .0
            .checked_mul(Decimal::from(SATS_PER_BTC))
            .unwrap_or(Decimal::ZERO)
            .trunc();
        u64::try_from(sats).unwrap_or(0)
    }

    /// In millisatoshis, as Lightning invoices count (at most 2.1e18, inside a u64).
    pub fn msat(self) -> u64 {
        self.sats().checked_mul(1000).unwrap_or(0)
    }

    /// `self + other`, or `None` above 21 million BTC.
    pub fn checked_add(self, other: Btc) -> Option<Btc> {
        Btc::new(self.0.checked_add(other.0)?).ok()
    }

    /// `self - other`, or `None` below zero.
    pub fn checked_sub(self, other: Btc) -> Option<Btc> {
        Btc::new(self.0.checked_sub(other.0)?).ok()
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

    #[test]
    fn an_amount_above_21_million_is_refused_and_none_can_overflow() {
        // The poison webhook of issue 12: this amount once panicked the runner in `sats`.
        let poison = "10000000000000000000000000000".parse::<Btc>();
        assert!(matches!(poison, Err(BtcError::TooLarge(_))), "{poison:?}");
        assert!(
            poison
                .unwrap_err()
                .to_string()
                .contains("more than the 21,000,000 BTC")
        );
        assert!(matches!(
            "21000000.00000001".parse::<Btc>(),
            Err(BtcError::TooLarge(_))
        ));
        let all = "21000000".parse::<Btc>().unwrap();
        assert_eq!(all.sats(), 2_100_000_000_000_000);
        assert_eq!(all.msat(), 2_100_000_000_000_000_000);
        assert_eq!(Btc::from_sats(494_000).unwrap().to_string(), "0.00494");
        assert!(Btc::from_sats(u64::MAX).is_err());
        assert_eq!(all.checked_add("0.00000001".parse().unwrap()), None);
        let small: Btc = "0.1".parse().unwrap();
        assert_eq!(small.checked_sub(all), None);
        assert_eq!(all.checked_sub(small).unwrap().to_string(), "20999999.9");
    }
}
