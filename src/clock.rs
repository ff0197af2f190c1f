//! Where the program gets the time from. Everything that schedules, times out or stamps a row
//! asks a `Clock`, never the system directly, so tests can move time (a three-week outage, a
//! DST change, a clock stepping back) without waiting.
//!
//! This module sits at the bottom: it must never import anything else of satflow, and it is the
//! only place that may read the system's wall clock (`Utc::now`, `SystemTime::now`). Code with
//! no `Clock` at hand calls [`system_now`], which says so in one greppable name.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use chrono::{DateTime, Duration, Utc};

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;

    /// Notified when the clock jumps forward, so that a sleeper re-reads it; `None` for clocks
    /// that only move with real time.
    fn jumped(&self) -> Option<Arc<Notify>> {
        None
    }
}

/// The machine's wall clock, for code that has no `Clock` handed to it (a CLI command, an HTTP
/// client stamping a `Retry-After`, the sandbox). Code that a test drives with a fake clock must
/// take a `Clock` instead.
pub fn system_now() -> DateTime<Utc> {
    Utc::now()
}

/// The time since the Unix epoch on the machine's wall clock (zero if the clock is before 1970),
/// the form `lightning-invoice` checks expiry against.
pub fn system_since_epoch() -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// The machine's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        system_now()
    }
}

/// A clock that only moves when told to.
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock(Mutex::new(start))
    }

    pub fn set(&self, to: DateTime<Utc>) {
        *self.0.lock().expect("clock lock") = to;
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().expect("clock lock");
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("clock lock")
    }
}

/// Real time plus an offset that only grows: the demo plays weeks in seconds by jumping to just
/// before the next thing that happens, while leases and timeouts still pass at real speed.
pub struct JumpClock {
    offset: Mutex<Duration>,
    jumped: Arc<Notify>,
}

impl JumpClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        JumpClock {
            offset: Mutex::new(start - system_now()),
            jumped: Arc::new(Notify::new()),
        }
    }

    /// Moves the clock to `at`, if that is ahead of it.
    pub fn jump_to(&self, at: DateTime<Utc>) {
        let mut offset = self.offset.lock().expect("clock lock");
        let now = system_now() + *offset;
        if at > now {
            *offset += at - now;
            self.jumped.notify_one();
        }
    }
}

impl Clock for JumpClock {
    fn now(&self) -> DateTime<Utc> {
        system_now() + *self.offset.lock().expect("clock lock")
    }

    fn jumped(&self) -> Option<Arc<Notify>> {
        Some(Arc::clone(&self.jumped))
    }
}
