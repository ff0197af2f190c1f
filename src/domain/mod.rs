//! Small value types for the money side of satflow: each has one constructor that refuses bad
//! values, so that a `FeeRate` or an `Iban` in hand is always a valid one.
//!
//! Nothing in here does I/O or knows where a value came from; error messages say what is wrong
//! with the value and what would be accepted, and callers add which field it was.

mod btc;
mod currency;
mod duration;
mod electrum_url;
mod fee_rate;
mod iban;
mod merchant_key;
mod sats;
mod wallet_key;

pub use btc::{Btc, BtcError};
pub use currency::{Currency, CurrencyError};
pub use duration::{DurationError, HumanDuration};
pub use electrum_url::ElectrumUrl;
pub use fee_rate::{FeeRate, FeeRateError};
pub use iban::{Iban, IbanError};
pub use merchant_key::{MerchantKey, MerchantKeyError};
pub use sats::{Msat, Sat};
pub use wallet_key::{
    AccountKey, KeyError, ScriptType, WalletKey, address_at_path, encode_extended, test_seed,
};
