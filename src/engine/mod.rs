//! The durable engine: the scheduler that records fires, and (to come) the runner that executes
//! runs step by step and the outbox dispatcher.
//!
//! The engine reads time only from its `Clock` (`crate::clock`) and state only from the store; it must never keep
//! work in memory that is not already a row, so a kill -9 at any instant loses nothing.

// The clock, the heartbeats and the rate-limited logs moved below the engine (`crate::clock`,
// `crate::health`, `crate::logs`), so that the outbox, the HTTP server and the exchanges no
// longer import the engine; these paths stay for code written against the old ones.
pub use crate::{clock, health, logs};
pub mod context;
pub mod daemon;
pub mod runner;
pub mod scheduler;
