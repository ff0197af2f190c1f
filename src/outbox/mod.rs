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

use std::time::Duration;

pub use dispatcher::Dispatcher;
pub use effect::Effect;
pub use handlers::Handlers;

/// Why a handler did not complete its item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// Worth another try later: timeouts before sending, connection refused, 5xx, 429.
    #[error("{message}")]
    Transient {
        message: String,
        /// What the other side asked for (`Retry-After`).
        retry_after: Option<Duration>,
        http_status: Option<u16>,
    },
    /// Will fail the same way every time: refused input, most 4xx.
    #[error("{message}")]
    Permanent {
        message: String,
        http_status: Option<u16>,
    },
    /// The request may or may not have taken effect (a timeout after sending): reconcile
    /// before any retry.
    #[error("{0}")]
    Unknown(String),
}

impl HandlerError {
    pub fn transient(message: impl Into<String>) -> Self {
        HandlerError::Transient {
            message: message.into(),
            retry_after: None,
            http_status: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        HandlerError::Permanent {
            message: message.into(),
            http_status: None,
        }
    }

    /// The error a failed call of class `class` becomes in the outbox.
    pub fn from_class(
        class: crate::outcome::Class,
        message: impl Into<String>,
        http_status: Option<u16>,
    ) -> Self {
        use crate::outcome::Class;
        let message = message.into();
        match class {
            Class::Transient { retry_after } => HandlerError::Transient {
                message,
                retry_after,
                http_status,
            },
            Class::Permanent => HandlerError::Permanent {
                message,
                http_status,
            },
            Class::Unknown => HandlerError::Unknown(message),
        }
    }

    pub fn http_status(&self) -> Option<u16> {
        match self {
            HandlerError::Transient { http_status, .. }
            | HandlerError::Permanent { http_status, .. } => *http_status,
            HandlerError::Unknown(_) => None,
        }
    }
}
