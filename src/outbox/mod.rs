//! The outbox: every effect on the outside world leaves satflow through here — claimed with a
//! lease, handled outside any transaction, then marked done, retried with backoff, or declared
//! dead (with one alert email).
//!
//! A handler must be safe to call again for the same item: delivery is at least once, and the
//! idempotency key travels with every call so the receiver can apply it once. A handler whose
//! outcome is unknown says so, and is asked to reconcile before the item is sent again.

pub mod backoff;
pub mod dispatcher;
pub mod effect;
pub mod handlers;

pub use dispatcher::Dispatcher;
pub use effect::Effect;
pub use handlers::Handlers;

/// Lives beside the outcome classifier (it is what a classified failure becomes), so that
/// clients can return it without importing the outbox.
pub use crate::outcome::HandlerError;
