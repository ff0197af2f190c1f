//! Pocket Bitcoin: the API client, its types, webhook signatures, the payment instructions a
//! bank needs, and the sandbox that plays Pocket for tests, the demo and rehearsals.

pub mod client;
pub mod outcomes;
pub mod payment;
pub mod types;
pub mod webhook;

pub use client::{PocketClient, PocketError};
