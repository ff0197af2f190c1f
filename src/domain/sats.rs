//! Whole-unit bitcoin amounts as integers: `Sat` (satoshis) and `Msat` (millisatoshis, as
//! Lightning counts), so that a count of one is never passed where the other is meant.
//!
//! Both are stored as a bare JSON number (`#[serde(transparent)]`): a payload written with a
//! plain `u64` reads back unchanged. Arithmetic is checked and never wraps or panics; a
//! conversion to `Btc` is offered only where it is exact.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Btc;

/// Millisatoshis per satoshi.
const MSAT_PER_SAT: u64 = 1000;

/// An amount in satoshis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sat(u64);

/// An amount in millisatoshis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Msat(u64);

impl Sat {
    pub const ZERO: Sat = Sat(0);

    pub const fn new(sats: u64) -> Self {
        Sat(sats)
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    pub fn checked_add(self, other: Sat) -> Option<Sat> {
        self.0.checked_add(other.0).map(Sat)
    }

    pub fn checked_sub(self, other: Sat) -> Option<Sat> {
        self.0.checked_sub(other.0).map(Sat)
    }

    /// In millisatoshis, or `None` where that does not fit a u64 (never for an amount that
    /// came from a `Btc`).
    pub fn to_msat(self) -> Option<Msat> {
        self.0.checked_mul(MSAT_PER_SAT).map(Msat)
    }

    /// As bitcoin (exact); refused above 21 million BTC.
    pub fn to_btc(self) -> Result<Btc, super::BtcError> {
        Btc::from_sats(self.0)
    }
}

impl Msat {
    pub const ZERO: Msat = Msat(0);

    pub const fn new(msat: u64) -> Self {
        Msat(msat)
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    pub fn checked_add(self, other: Msat) -> Option<Msat> {
        self.0.checked_add(other.0).map(Msat)
    }

    pub fn checked_sub(self, other: Msat) -> Option<Msat> {
        self.0.checked_sub(other.0).map(Msat)
    }

    /// In whole satoshis, or `None` when a fraction of a satoshi would be lost.
    pub fn to_sat(self) -> Option<Sat> {
        self.0
            .is_multiple_of(MSAT_PER_SAT)
            .then_some(Sat(self.0 / MSAT_PER_SAT))
    }

    /// As bitcoin, or `None` when that is not exact (a fraction of a satoshi, which `Btc`
    /// cannot hold) or above 21 million BTC.
    pub fn to_btc(self) -> Option<Btc> {
        self.to_sat()?.to_btc().ok()
    }
}

/// Exact: a `Btc` has at most 8 decimals.
impl From<Btc> for Sat {
    fn from(btc: Btc) -> Self {
        Sat(btc.sats())
    }
}

/// Exact: a `Btc` is at most 2.1e18 msat, inside a u64.
impl From<Btc> for Msat {
    fn from(btc: Btc) -> Self {
        Msat(btc.msat())
    }
}

impl fmt::Display for Sat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for Msat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_are_stored_as_a_bare_number_and_read_back() {
        let m = Msat::new(494_000_000);
        assert_eq!(serde_json::to_string(&m).unwrap(), "494000000");
        assert_eq!(serde_json::from_str::<Msat>("494000000").unwrap(), m);
        let s = Sat::new(494_000);
        assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(494_000));
        assert_eq!(
            serde_json::from_value::<Sat>(serde_json::json!(494_000)).unwrap(),
            s
        );
        assert!(serde_json::from_str::<Msat>("-1").is_err());
        assert!(serde_json::from_str::<Msat>("\"494000000\"").is_err());
        assert_eq!(m.to_string(), "494000000");
    }

    #[test]
    fn conversions_from_and_to_btc_are_exact_or_refused() {
        let btc: Btc = "0.00494000".parse().unwrap();
        assert_eq!(Msat::from(btc), Msat::new(494_000_000));
        assert_eq!(Sat::from(btc), Sat::new(494_000));
        assert_eq!(Msat::from(btc).to_btc(), Some(btc));
        assert_eq!(Sat::from(btc).to_msat(), Some(Msat::from(btc)));
        assert_eq!(
            Msat::new(494_000_001).to_btc(),
            None,
            "a fraction of a satoshi"
        );
        assert_eq!(Msat::new(494_000_001).to_sat(), None);
        let all: Btc = "21000000".parse().unwrap();
        assert_eq!(Msat::from(all).get(), 2_100_000_000_000_000_000);
        assert_eq!(Msat::from(all).to_btc(), Some(all));
        assert_eq!(Msat::new(2_100_000_000_000_001_000).to_btc(), None);
        assert_eq!(Sat::new(u64::MAX).to_msat(), None);
    }

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(Msat::new(1).checked_sub(Msat::new(2)), None);
        assert_eq!(Msat::new(u64::MAX).checked_add(Msat::new(1)), None);
        assert_eq!(Msat::new(3).checked_sub(Msat::new(2)), Some(Msat::new(1)));
        assert_eq!(Sat::new(u64::MAX).checked_add(Sat::new(1)), None);
        assert_eq!(Sat::ZERO.checked_sub(Sat::new(1)), None);
        assert_eq!(Sat::new(2).checked_add(Sat::new(2)), Some(Sat::new(4)));
    }
}
