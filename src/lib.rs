//! satflow: a self-hosted workflow engine for recurring bitcoin purchases.
//!
//! The library holds everything; the `satflow` binary only parses the command line and calls
//! into `cli`. See DESIGN.md for the architecture and the contracts users rely on.

pub mod actions;
pub mod cli;
pub mod clients;
pub mod clock;
pub mod config;
pub mod dashboard;
pub mod domain;
pub mod engine;
pub mod exchanges;
pub mod expect;
pub mod expr;
pub mod health;
pub mod http;
pub mod instance;
pub mod ledger;
pub mod lightning;
pub mod logs;
pub mod memory;
pub mod notify;
pub mod outbox;
pub mod outcome;
pub mod payment;
pub mod pocket;
pub mod prices;
pub mod qr;
/// The simulator beside the product (Pocket, the hub, a Lightning node, prices and fees), for
/// the demo, `satflow sandbox` and the tests; left out of a build without the `sandbox` feature.
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod sorting;
pub mod source;
pub mod store;
pub mod treasury;
pub mod wallet;
pub mod withdraw;
pub mod workflow;
