//! Retry timing: exponential backoff with jitter, capped, and never sooner than the other side
//! asked for with `Retry-After`.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use crate::config::OutboxConfig;

pub use crate::outcome::{MAX_RETRY_AFTER, parse_retry_after};

/// The delay before attempt `attempt + 1`, after `attempt` failed attempts (1-based).
/// "Equal jitter": half the exponential delay, plus a random part of the other half, so that
/// many items failing together do not retry together.
pub fn delay(config: &OutboxConfig, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let exp = config
        .base_delay
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
        .min(config.max_delay);
    let half = exp / 2;
    let jitter = Duration::from_nanos(random_u64() % (half.as_nanos() as u64).max(1));
    let backoff = half + jitter;
    match retry_after {
        Some(asked) => backoff.max(asked.min(MAX_RETRY_AFTER)),
        None => backoff,
    }
}

/// A random number from the standard library's randomly keyed hasher: jitter needs no more.
fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> OutboxConfig {
        OutboxConfig {
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(60),
            max_attempts: 20,
        }
    }

    #[test]
    fn grows_exponentially_with_jitter_and_a_cap() {
        for (attempt, full) in [(1, 2), (2, 4), (3, 8), (5, 32), (6, 60), (30, 60)] {
            for _ in 0..50 {
                let d = delay(&config(), attempt, None);
                let full = Duration::from_secs(full);
                assert!(
                    d >= full / 2 && d <= full,
                    "attempt {attempt}: {d:?} outside {:?}..={full:?}",
                    full / 2
                );
            }
        }
    }

    #[test]
    fn honours_retry_after_when_longer() {
        assert_eq!(
            delay(&config(), 1, Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
        assert!(delay(&config(), 1, Some(Duration::ZERO)) >= Duration::from_secs(1));
        let now = chrono::DateTime::parse_from_rfc3339("2027-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Fri, 01 Jan 2027 00:01:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
