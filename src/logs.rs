//! Rate-limited error logs for loops that retry: the first occurrence of a failure is logged at
//! once, repeats within the next minute are only counted, and the count is logged when the
//! minute is over (at the next occurrence) or when the loop recovers. A full disk or a locked
//! database then writes a few lines a minute instead of hundreds a second.
//!
//! Only the log is limited: callers still handle every error. Never use it for an error that
//! needs a person on each occurrence (those are alerts, through the outbox).

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long repeats of one failure are only counted.
pub const WINDOW: Duration = Duration::from_secs(60);

/// One failure's window: when it opened and how many repeats were held back in it.
#[derive(Debug, Clone, Copy)]
struct Window {
    opened: Instant,
    held_back: u64,
}

/// What to log for an occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// Log it (the first of a window); `repeats` held back in the window that just closed.
    Log { repeats: u64 },
    /// Only count it.
    Hold,
}

#[derive(Debug, Default)]
struct Limiter {
    windows: HashMap<&'static str, Window>,
}

impl Limiter {
    fn occurred(&mut self, what: &'static str, now: Instant) -> Decision {
        match self.windows.get_mut(what) {
            Some(w) if now.duration_since(w.opened) < WINDOW => {
                w.held_back = w.held_back.saturating_add(1);
                Decision::Hold
            }
            Some(w) => {
                let repeats = w.held_back;
                *w = Window {
                    opened: now,
                    held_back: 0,
                };
                Decision::Log { repeats }
            }
            None => {
                self.windows.insert(
                    what,
                    Window {
                        opened: now,
                        held_back: 0,
                    },
                );
                Decision::Log { repeats: 0 }
            }
        }
    }

    /// The failure stopped: how many repeats were held back, if it was failing.
    fn recovered(&mut self, what: &'static str) -> Option<u64> {
        self.windows.remove(what).map(|w| w.held_back)
    }
}

fn limiter() -> &'static Mutex<Limiter> {
    static LIMITER: OnceLock<Mutex<Limiter>> = OnceLock::new();
    LIMITER.get_or_init(Default::default)
}

/// Logs `err` as an error of `what` (a fixed description of the loop or the operation), at
/// most once a minute, with the count of repeats held back since.
pub fn error(what: &'static str, err: &dyn Display) {
    let decision = match limiter().lock() {
        Ok(mut l) => l.occurred(what, Instant::now()),
        Err(_) => Decision::Log { repeats: 0 },
    };
    match decision {
        Decision::Log { repeats: 0 } => tracing::error!(%err, "{what}"),
        Decision::Log { repeats } => tracing::error!(
            %err,
            "{what} (the error repeated {repeats} times in the last minute)"
        ),
        Decision::Hold => {}
    }
}

/// Like `error`, for a failure of the database itself, which `/healthz` is also told of: a
/// webhook answered 503 for want of room must not sit beside a health check that says "ok".
pub fn store_error(
    store: &crate::store::Store,
    what: &'static str,
    err: &crate::store::StoreError,
) {
    if matches!(err, crate::store::StoreError::Sql(_)) {
        store.write_health().failed(&format!("{what}: {err}"));
    }
    error(what, err);
}

/// Tells that `what` works again; logs how often it failed since its last line, if it did.
pub fn recovered(what: &'static str) {
    let held_back = limiter().lock().ok().and_then(|mut l| l.recovered(what));
    match held_back {
        Some(0) => tracing::info!("{what}: works again"),
        Some(n) => tracing::info!("{what}: works again (the error repeated {n} more times)"),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_occurrence_is_logged_repeats_are_counted_and_summed_up_a_minute_later() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        assert_eq!(l.occurred("disk", t0), Decision::Log { repeats: 0 });
        for i in 1..=700 {
            assert_eq!(
                l.occurred("disk", t0 + Duration::from_millis(i * 50)),
                Decision::Hold
            );
        }
        // Another failure has its own window.
        assert_eq!(
            l.occurred("lock", t0 + Duration::from_secs(1)),
            Decision::Log { repeats: 0 }
        );
        assert_eq!(
            l.occurred("disk", t0 + WINDOW + Duration::from_secs(1)),
            Decision::Log { repeats: 700 }
        );
        assert_eq!(l.occurred("disk", t0 + WINDOW * 2), Decision::Hold);
        assert_eq!(l.recovered("disk"), Some(1));
        assert_eq!(l.recovered("disk"), None, "already recovered");
        assert_eq!(
            l.occurred("disk", t0 + WINDOW * 2),
            Decision::Log { repeats: 0 },
            "a failure after a recovery is logged at once"
        );
    }
}
