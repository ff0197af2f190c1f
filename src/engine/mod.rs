//! The durable engine: the scheduler that records fires, and (to come) the runner that executes
//! runs step by step and the outbox dispatcher.
//!
//! The engine reads time only from its `Clock` (`crate::clock`) and state only from the store; it must never keep
//! work in memory that is not already a row, so a kill -9 at any instant loses nothing.

/// The clock moved to the bottom of the crate (`crate::clock`); this path stays for code written
/// against the old one.
pub use crate::clock;
pub mod daemon;
pub mod health;
pub mod logs;
pub mod runner;
pub mod scheduler;
