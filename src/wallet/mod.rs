//! The user's own wallets: extended public keys and output descriptors, and the addresses they
//! derive.
//!
//! Only public keys ever enter satflow; this module must never ask for, accept or store a
//! private key or seed.

pub mod chain;
pub mod electrum;
pub mod esplora;
pub mod proof;
pub mod rotation;

// Value types that config parses too, so they live below both.
pub use crate::domain::{
    AccountKey, KeyError, ScriptType, WalletKey, address_at_path, encode_extended, test_seed,
};
