//! satflow: a self-hosted workflow engine for recurring bitcoin purchases.
//!
//! The library holds everything; the `satflow` binary only parses the command line and calls
//! into `cli`. See DESIGN.md for the architecture and the contracts users rely on.

pub mod actions;
pub mod cli;
pub mod config;
pub mod domain;
pub mod engine;
pub mod exchanges;
pub mod http;
pub mod ledger;
pub mod lightning;
pub mod notify;
pub mod outbox;
pub mod outcome;
pub mod pocket;
pub mod prices;
pub mod sandbox;
pub mod source;
pub mod store;
pub mod wallet;
pub mod withdraw;
pub mod workflow;
