//! Who is asking: the session cookie, the CSRF token every form carries, and the limit on
//! failed logins.
//!
//! Cookies are HttpOnly and SameSite=Strict (Secure when the request came over TLS or the
//! configuration says so). A session token is only ever sent in its cookie and kept in the
//! database as its hash. This module must never log a token, a password or a CSRF token.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::{HeaderMap, HeaderValue, header};
use chrono::{DateTime, Duration, Utc};

use crate::store::UserRow;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "satflow_session";
/// The cookie carrying the login form's CSRF token (there is no session yet to hold it).
pub const LOGIN_CSRF_COOKIE: &str = "satflow_login_csrf";

/// A session lives this long after its last use.
pub const SESSION_IDLE: Duration = Duration::hours(12);

/// Failed logins allowed per name within `FAILURE_WINDOW`, and for all names together.
pub const FAILURES_PER_NAME: u32 = 5;
pub const FAILURES_IN_ALL: u32 = 30;
pub const FAILURE_WINDOW: Duration = Duration::minutes(15);

/// The logged-in user of a request, put there by the guard.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub user: UserRow,
    pub csrf: String,
}

impl Session {
    /// Whether `given` is this session's CSRF token (compared in constant time).
    pub fn csrf_matches(&self, given: Option<&str>) -> bool {
        given.is_some_and(|g| same(g, &self.csrf))
    }
}

/// Constant-time equality of two tokens.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether the request came over TLS: a TLS-terminating proxy in front says so with
/// `X-Forwarded-Proto: https` (the daemon itself speaks plain HTTP).
pub fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, for the whole site.
pub fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> HeaderValue {
    let text = format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        max_age.num_seconds().max(0),
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&text).expect("cookie names and hex tokens are valid header text")
}

/// Failed logins, counted per name and in all, within a sliding window.
#[derive(Debug, Default)]
pub struct Limiter {
    inner: Mutex<LimiterState>,
}

#[derive(Debug, Default)]
struct LimiterState {
    by_name: HashMap<String, Vec<DateTime<Utc>>>,
    all: Vec<DateTime<Utc>>,
}

impl LimiterState {
    fn forget_before(&mut self, cutoff: DateTime<Utc>) {
        self.all.retain(|t| *t > cutoff);
        self.by_name.retain(|_, v| {
            v.retain(|t| *t > cutoff);
            !v.is_empty()
        });
    }
}

impl Limiter {
    /// `Some(wait)` when logins for `name` are refused for now: too many failures.
    pub fn refused(&self, name: &str, now: DateTime<Utc>) -> Option<Duration> {
        let mut s = self.inner.lock().expect("limiter lock");
        s.forget_before(now - FAILURE_WINDOW);
        let wait_after = |times: &[DateTime<Utc>], limit: u32| {
            (times.len() >= limit as usize)
                .then(|| times.first().map(|t| *t + FAILURE_WINDOW - now))
                .flatten()
        };
        let for_name = s
            .by_name
            .get(name)
            .and_then(|v| wait_after(v, FAILURES_PER_NAME));
        for_name.or_else(|| wait_after(&s.all, FAILURES_IN_ALL))
    }

    pub fn failed(&self, name: &str, now: DateTime<Utc>) {
        let mut s = self.inner.lock().expect("limiter lock");
        // Bounded: a flood of random names cannot grow the map past what the window holds,
        // since every failure also counts against the global limit.
        s.all.push(now);
        s.by_name.entry(name.to_string()).or_default().push(now);
    }

    pub fn succeeded(&self, name: &str) {
        self.inner
            .lock()
            .expect("limiter lock")
            .by_name
            .remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; satflow_session=abc"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn cookies_are_http_only_and_strict() {
        let c = set_cookie(SESSION_COOKIE, "t", SESSION_IDLE, true);
        let c = c.to_str().unwrap();
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("Secure"));
        let plain = set_cookie(SESSION_COOKIE, "t", SESSION_IDLE, false);
        assert!(!plain.to_str().unwrap().contains("Secure"));
    }

    #[test]
    fn failures_lock_a_name_for_the_window() {
        let l = Limiter::default();
        let t0 = crate::clock::system_now();
        for _ in 0..FAILURES_PER_NAME {
            assert!(l.refused("alice", t0).is_none());
            l.failed("alice", t0);
        }
        assert!(l.refused("alice", t0).is_some());
        assert!(l.refused("bob", t0).is_none(), "another name is not locked");
        let later = t0 + FAILURE_WINDOW + Duration::seconds(1);
        assert!(l.refused("alice", later).is_none(), "the window passed");
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
