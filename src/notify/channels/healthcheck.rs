//! The healthcheck ping (the healthchecks.io protocol): a plain GET of the check's URL after a
//! scheduler pass, at most once a minute, so that a daemon that stops (a Raspberry Pi without
//! power) is noticed elsewhere; and `URL/fail` when a run fails, which healthchecks.io reports
//! at once (the next success ping marks the check up again).
//!
//! A ping must never hold the engine up or fail it: it is sent from a task of its own, bounded,
//! and a failure is only logged (rate-limited). The URL is a secret of sorts (whoever has the
//! UUID can ping the check), so logs show it cut ([`HealthcheckUrl::shown`]). It does not send
//! `/start`: runs are short and the liveness pings are not tied to runs, so a start signal
//! would only make healthchecks.io measure the time between unrelated pings.

use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

use crate::config::HealthcheckUrl;

/// The least time between two success pings.
pub const EVERY: Duration = Duration::minutes(1);

/// How long one ping may take.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What the pinger sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Alive,
    Fail,
}

pub struct Pinger {
    url: HealthcheckUrl,
    http: reqwest::Client,
    /// When the last success ping was sent.
    last: Mutex<Option<DateTime<Utc>>>,
}

impl std::fmt::Debug for Pinger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pinger")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Pinger {
    pub fn new(url: HealthcheckUrl, http: reqwest::Client) -> Self {
        Pinger {
            url,
            http,
            last: Mutex::new(None),
        }
    }

    /// After a scheduler pass that reached the database: a success ping, unless one went out
    /// less than a minute ago (by `now`). Returns whether one was sent.
    pub fn pass(&self, now: DateTime<Utc>) -> bool {
        {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|at| now >= at && now - at < EVERY) {
                return false;
            }
            *last = Some(now);
        }
        self.send(Signal::Alive);
        true
    }

    /// After a run failed.
    pub fn fail(&self) {
        self.send(Signal::Fail);
    }

    /// The URL of `signal`: the check's URL, or it with `/fail` appended to its path.
    pub fn url_of(&self, signal: Signal) -> url::Url {
        let mut url = self.url.0.clone();
        if signal == Signal::Fail {
            let path = format!("{}/fail", url.path().trim_end_matches('/'));
            url.set_path(&path);
        }
        url
    }

    /// Sends `signal` from a task of its own: the caller never waits for it.
    fn send(&self, signal: Signal) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let request = self.http.get(self.url_of(signal)).timeout(TIMEOUT);
        let shown = self.url.shown();
        runtime.spawn(async move {
            let what = match signal {
                Signal::Alive => "healthcheck ping",
                Signal::Fail => "healthcheck /fail ping",
            };
            match request.send().await {
                Ok(r) if r.status().is_success() => {
                    tracing::debug!(url = %shown, ?signal, "healthcheck pinged");
                    crate::logs::recovered("healthcheck ping");
                }
                Ok(r) => crate::logs::error(
                    "healthcheck ping",
                    &format!("{what} to {shown} answered {}", r.status().as_u16()),
                ),
                Err(e) => crate::logs::error(
                    "healthcheck ping",
                    &format!("{what} to {shown} failed: {}", e.without_url()),
                ),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pinger() -> Pinger {
        let url =
            url::Url::parse("https://hc-ping.com/0f3b4a2c-1111-2222-3333-444455556666").unwrap();
        Pinger::new(HealthcheckUrl(url), reqwest::Client::new())
    }

    #[test]
    fn pings_at_most_once_a_minute_and_fail_has_its_own_path() {
        let p = pinger();
        let t0 = crate::clock::system_now();
        assert!(p.pass(t0));
        assert!(!p.pass(t0 + Duration::seconds(59)));
        assert!(p.pass(t0 + Duration::seconds(60)));
        // A clock stepping back does not silence the pings.
        assert!(p.pass(t0 - Duration::hours(1)));
        assert_eq!(
            p.url_of(Signal::Fail).as_str(),
            "https://hc-ping.com/0f3b4a2c-1111-2222-3333-444455556666/fail"
        );
        assert_eq!(p.url.shown(), "https://hc-ping.com/0f3b…");
        assert!(!format!("{p:?}").contains("1111"));
    }
}
