//! Pocket Bitcoin: the API client, its types, the payment instructions a bank needs, and the
//! sandbox that plays Pocket for tests, the demo and rehearsals.

pub mod client;
pub mod payment;
pub mod types;

pub use client::{PocketClient, PocketError};
