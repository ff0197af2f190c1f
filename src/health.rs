//! Liveness of the daemon's parts, for `/healthz`: each loop (scheduler, runner, dispatcher)
//! marks a heartbeat when a pass succeeded, and `assess` turns the heartbeats, the database
//! probe and the inbox's oldest pending event into a verdict that names every failing part.
//!
//! `assess` is a pure function of what it is given, so its rules are tested without a daemon;
//! it must never wait on anything itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

/// When a loop last completed a pass that reached the database.
#[derive(Debug, Default, Clone)]
pub struct Heartbeat(Arc<AtomicI64>);

impl Heartbeat {
    pub fn beat(&self, now: DateTime<Utc>) {
        self.0.store(now.timestamp_millis(), Ordering::Relaxed);
    }

    pub fn last(&self) -> Option<DateTime<Utc>> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            ms => DateTime::from_timestamp_millis(ms),
        }
    }
}

/// The heartbeats of one daemon's loops.
#[derive(Debug, Default, Clone)]
pub struct Heartbeats {
    pub scheduler: Heartbeat,
    pub runner: Heartbeat,
    pub dispatcher: Heartbeat,
}

/// How long each part may go without a heartbeat before it counts as stopped.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The scheduler sleeps up to 30 s between passes.
    pub scheduler: Duration,
    /// The runner looks for runs at least twice a second; a claim may wait on a busy database.
    pub runner: Duration,
    /// A dispatcher pass waits for its handlers, each bounded inside the lease.
    pub dispatcher: Duration,
    /// A webhook waiting longer than this means the processor is stuck.
    pub inbox: Duration,
    /// A write that failed this recently still counts against the database.
    pub write_failure: Duration,
}

impl Limits {
    pub fn for_lease(lease: Duration) -> Limits {
        Limits {
            scheduler: Duration::seconds(90),
            runner: Duration::seconds(30),
            dispatcher: lease + Duration::seconds(30),
            inbox: Duration::minutes(2),
            write_failure: Duration::seconds(10),
        }
    }
}

/// What `/healthz` observed.
#[derive(Debug, Clone)]
pub struct Observed {
    pub now: DateTime<Utc>,
    /// The probe write: `Err(reason)` when it failed or did not answer in time.
    pub probe: Result<(), String>,
    /// The last write that failed in this process.
    pub last_write_failure: Option<(DateTime<Utc>, String)>,
    pub scheduler: Option<DateTime<Utc>>,
    pub runner: Option<DateTime<Utc>>,
    pub dispatcher: Option<DateTime<Utc>>,
    /// When the oldest pending webhook arrived: `Err` when that could not be read.
    pub oldest_pending_webhook: Result<Option<DateTime<Utc>>, String>,
}

/// The verdict: the parts that fail (empty when healthy) and a JSON detail of each part.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub failing: Vec<&'static str>,
    pub checks: Value,
}

impl Verdict {
    pub fn healthy(&self) -> bool {
        self.failing.is_empty()
    }
}

pub fn assess(o: &Observed, limits: &Limits) -> Verdict {
    let mut failing = Vec::new();
    let mut checks = serde_json::Map::new();

    let recent_failure = o
        .last_write_failure
        .as_ref()
        .filter(|(at, _)| o.now - *at < limits.write_failure);
    let database_error = match (&o.probe, recent_failure) {
        (Err(reason), _) => Some(format!("a write to the database failed: {reason}")),
        (Ok(()), Some((at, reason))) => Some(format!(
            "a write failed {} s ago: {reason}",
            (o.now - *at).num_seconds()
        )),
        (Ok(()), None) => None,
    };
    if database_error.is_some() {
        failing.push("database");
    }
    checks.insert(
        "database".into(),
        json!({ "ok": database_error.is_none(), "error": database_error }),
    );

    for (name, last, limit) in [
        ("scheduler", o.scheduler, limits.scheduler),
        ("runner", o.runner, limits.runner),
        ("dispatcher", o.dispatcher, limits.dispatcher),
    ] {
        let error = match last {
            None => Some(format!("{name} has not completed a pass yet")),
            Some(at) if o.now - at > limit => Some(format!(
                "{name} made no progress for {} s (allowed: {} s)",
                (o.now - at).num_seconds(),
                limit.num_seconds()
            )),
            Some(_) => None,
        };
        if error.is_some() {
            failing.push(name);
        }
        checks.insert(
            name.into(),
            json!({
                "ok": error.is_none(),
                "last_progress": last.map(|t| t.to_rfc3339()),
                "error": error,
            }),
        );
    }

    let (oldest, inbox_error) = match &o.oldest_pending_webhook {
        Err(reason) => (None, Some(format!("cannot read the inbox: {reason}"))),
        Ok(Some(at)) if o.now - *at > limits.inbox => (
            Some(*at),
            Some(format!(
                "the oldest pending webhook has waited {} s (allowed: {} s)",
                (o.now - *at).num_seconds(),
                limits.inbox.num_seconds()
            )),
        ),
        Ok(at) => (*at, None),
    };
    if inbox_error.is_some() {
        failing.push("inbox");
    }
    checks.insert(
        "inbox".into(),
        json!({
            "ok": inbox_error.is_none(),
            "oldest_pending": oldest.map(|t| t.to_rfc3339()),
            "error": inbox_error,
        }),
    );
    Verdict {
        failing,
        checks: Value::Object(checks),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy_at(now: DateTime<Utc>) -> Observed {
        Observed {
            now,
            probe: Ok(()),
            last_write_failure: None,
            scheduler: Some(now - Duration::seconds(5)),
            runner: Some(now - Duration::milliseconds(300)),
            dispatcher: Some(now - Duration::seconds(1)),
            oldest_pending_webhook: Ok(Some(now - Duration::seconds(3))),
        }
    }

    #[test]
    fn every_part_alive_is_healthy() {
        let now = crate::clock::system_now();
        let v = assess(&healthy_at(now), &Limits::for_lease(Duration::seconds(30)));
        assert!(v.healthy(), "{:?}", v.failing);
        assert_eq!(v.checks["runner"]["ok"], true);
    }

    #[test]
    fn a_stopped_runner_is_named_and_nothing_else_is() {
        let now = crate::clock::system_now();
        let mut o = healthy_at(now);
        o.runner = Some(now - Duration::seconds(31));
        let v = assess(&o, &Limits::for_lease(Duration::seconds(30)));
        assert_eq!(v.failing, ["runner"]);
        assert!(
            v.checks["runner"]["error"]
                .as_str()
                .unwrap()
                .contains("no progress for 31 s"),
            "{}",
            v.checks
        );
        o.runner = None;
        o.dispatcher = Some(now - Duration::seconds(61));
        let v = assess(&o, &Limits::for_lease(Duration::seconds(30)));
        assert_eq!(v.failing, ["runner", "dispatcher"]);
    }

    #[test]
    fn a_failed_probe_or_a_recent_failed_write_fails_the_database() {
        let now = crate::clock::system_now();
        let limits = Limits::for_lease(Duration::seconds(30));
        let mut o = healthy_at(now);
        o.probe = Err("database is locked".into());
        let v = assess(&o, &limits);
        assert_eq!(v.failing, ["database"]);
        assert!(
            v.checks["database"]["error"]
                .as_str()
                .unwrap()
                .contains("database is locked")
        );
        // The probe got through, but a real write failed 4 s ago: not healthy yet.
        o.probe = Ok(());
        o.last_write_failure = Some((now - Duration::seconds(4), "disk is full".into()));
        assert_eq!(assess(&o, &limits).failing, ["database"]);
        // Long enough ago, and writes go through again: healthy.
        o.last_write_failure = Some((now - Duration::seconds(11), "disk is full".into()));
        assert!(assess(&o, &limits).healthy());
    }

    #[test]
    fn an_old_pending_webhook_fails_the_inbox() {
        let now = crate::clock::system_now();
        let limits = Limits::for_lease(Duration::seconds(30));
        let mut o = healthy_at(now);
        o.oldest_pending_webhook = Ok(Some(now - Duration::minutes(3)));
        assert_eq!(assess(&o, &limits).failing, ["inbox"]);
        o.oldest_pending_webhook = Ok(None);
        assert!(assess(&o, &limits).healthy());
        o.oldest_pending_webhook = Err("timed out".into());
        assert_eq!(assess(&o, &limits).failing, ["inbox"]);
    }
}
