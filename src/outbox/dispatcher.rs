//! The dispatcher: claims due items with a lease, runs their handlers outside any transaction,
//! and records the outcome — done, retry later, or dead with one alert.
//!
//! A handler that panics kills only its own item: the item is dead with the reason (and one
//! alert), the run waiting for it learns why, and the dispatcher goes on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::Duration;
use serde_json::json;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use super::handlers::Registry;
use super::handlers::email::is_alert;
use super::{HandlerError, Handlers, backoff};
use crate::clock::Clock;
use crate::config::{Alert, OutboxConfig};
use crate::health::Heartbeat;
use crate::logs;
use crate::notify::email::Alerts;
use crate::store::{Claimed, Completion, Store, StoreError};

/// How many items one pass claims at most; they are handled concurrently, so this is also the
/// bound on deliveries in flight.
const BATCH: i64 = 64;

/// How often closed alert windows are looked for.
const SUMMARY_EVERY: Duration = Duration::seconds(30);

pub struct Dispatcher {
    pub store: Store,
    pub handlers: Handlers,
    /// The kinds it can carry out (the actions' registry, handed in by the engine).
    pub effects: Arc<dyn Registry>,
    pub clock: Arc<dyn Clock>,
    pub config: OutboxConfig,
    pub lease: Duration,
    pub owner: String,
    pub alerts: Alerts,
    pub env: minijinja::Environment<'static>,
    /// Notified when new items may be due (after a commit in this process).
    pub wake: Arc<Notify>,
    /// Notified when an item that a run waits for is finished.
    pub wake_runner: Arc<Notify>,
    /// Marked after each pass that reached the database, for `/healthz`.
    pub heartbeat: Heartbeat,
}

/// The log line of a failing pass of the dispatcher (rate-limited).
const DISPATCHER: &str = "outbox dispatcher";

/// What an item whose handler panicked is recorded with.
fn internal_error(panic: Box<dyn std::any::Any + Send>) -> String {
    let message = match panic.downcast::<String>() {
        Ok(s) => *s,
        Err(panic) => match panic.downcast::<&'static str>() {
            Ok(s) => (*s).to_string(),
            Err(_) => "a panic without a message".to_string(),
        },
    };
    format!("satflow hit an internal error: {message}")
}

impl Dispatcher {
    /// Claims and handles the items due now; returns how many were handled.
    ///
    /// The claimed items are carried out concurrently (at most `BATCH` at once: that many are
    /// claimed); the outcomes are recorded as they come, every outcome already in at the time
    /// in one transaction, so a fast batch takes a commit or two and a slow item holds back
    /// nobody's record but its own. Each item keeps its own lease fence and attempt row.
    pub async fn run_once(self: &Arc<Self>) -> Result<usize, StoreError> {
        let claimed = self
            .store
            .claim_due(&self.owner, self.clock.now(), self.lease, BATCH)
            .await?;
        let count = claimed.len();
        let mut tasks = JoinSet::new();
        let mut items = HashMap::new();
        for c in claimed {
            let me = Arc::clone(self);
            let item = c.clone();
            let task = tasks.spawn(async move { me.attempt(c).await });
            items.insert(task.id(), item);
        }
        let mut first_error = None;
        while let Some(first) = tasks.join_next_with_id().await {
            let mut finished = vec![first];
            while let Some(more) = tasks.try_join_next_with_id() {
                finished.push(more);
            }
            let mut outcomes = Vec::with_capacity(finished.len());
            for done in finished {
                let (id, completion) = match done {
                    Ok((id, completion)) => (id, completion),
                    // The handler's own panics are caught in `attempt`; this is a panic around
                    // it (reading the clock, classifying the error): the item is dead with why.
                    Err(join) if join.is_panic() => {
                        let id = join.id();
                        let completion = Completion::Dead {
                            http_status: None,
                            error: internal_error(join.into_panic()),
                        };
                        (id, completion)
                    }
                    // Cancelled: only a runtime shutting down does that; the lease runs out.
                    Err(_) => continue,
                };
                if let Some(claimed) = items.remove(&id) {
                    outcomes.push((claimed, completion));
                }
            }
            if let Err(err) = self.record(outcomes).await {
                first_error.get_or_insert(err);
            }
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(count),
        }
    }

    /// Runs until `shutdown` turns true, then returns once in-flight items are recorded.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut next_summary = self.clock.now();
        while !*shutdown.borrow() {
            // Alerts held back by coalescing are summarised when their hour is over; the
            // dispatcher always runs, whatever the configuration, so it is the one to look.
            if self.clock.now() >= next_summary {
                match self
                    .alerts
                    .summarise_due(&self.store, &self.env, self.clock.now())
                    .await
                {
                    Ok(0) => {}
                    Ok(_) => self.wake.notify_one(),
                    Err(err) => logs::store_error(&self.store, "alert summaries", &err),
                }
                next_summary = self.clock.now() + SUMMARY_EVERY;
            }
            match self.run_once().await {
                Ok(n) => {
                    self.heartbeat.beat(self.clock.now());
                    logs::recovered(DISPATCHER);
                    if n > 0 {
                        continue;
                    }
                }
                Err(err) => logs::store_error(&self.store, DISPATCHER, &err),
            }
            // Sleep until the next item is due; at most a second, because other processes
            // (a second daemon, `satflow outbox retry`) cannot wake us.
            let now = self.clock.now();
            let wait = match self.store.next_due().await {
                Ok(Some(at)) => (at - now).to_std().unwrap_or_default(),
                _ => std::time::Duration::from_secs(1),
            }
            .min(std::time::Duration::from_secs(1));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    #[tracing::instrument(
        name = "outbox_item",
        skip_all,
        fields(item_id = claimed.item.id, kind = %claimed.item.kind, run_id = claimed.item.run_id, step_id = claimed.item.step_id.as_deref(), attempt = claimed.attempt)
    )]
    async fn attempt(self: Arc<Self>, claimed: Claimed) -> Completion {
        let item = &claimed.item;
        let started = Instant::now();
        // The handler runs in a task of its own, so a panic in it (a response nobody foresaw)
        // becomes this item's permanent failure instead of taking the dispatcher down.
        let me = Arc::clone(&self);
        let job = claimed.clone();
        let result = match tokio::spawn(async move {
            match job.previous_unknown {
                true => match me.effects.reconcile(&me.handlers, &job.item).await {
                    Some(result) => result,
                    None => me.call(&job).await,
                },
                false => me.call(&job).await,
            }
        })
        .await
        {
            Ok(result) => result,
            Err(join) if join.is_panic() => {
                Err(HandlerError::permanent(internal_error(join.into_panic())))
            }
            Err(join) => Err(HandlerError::Unknown(format!(
                "the handler was cancelled: {join}"
            ))),
        };
        crate::http::metrics::observe(
            "satflow_outbox_handler_seconds",
            &[("kind", &item.kind)],
            started.elapsed().as_secs_f64(),
        );
        let now = self.clock.now();
        match result {
            Ok(value) => Completion::Done(value),
            Err(e @ HandlerError::Permanent { .. }) => Completion::Dead {
                http_status: e.http_status(),
                error: e.to_string(),
            },
            Err(e) if item.budget_used >= i64::from(self.config.max_attempts) => Completion::Dead {
                http_status: e.http_status(),
                error: format!("gave up after {} attempts: {e}", item.budget_used),
            },
            Err(e) => {
                let retry_after = match &e {
                    HandlerError::Transient { retry_after, .. } => *retry_after,
                    _ => None,
                };
                let attempt = u32::try_from(item.budget_used).unwrap_or(u32::MAX);
                let wait = backoff::delay(&self.config, attempt, retry_after);
                Completion::Retry {
                    // Checked: a wait beyond what a date holds means "never", not a panic.
                    at: Duration::from_std(wait)
                        .ok()
                        .and_then(|wait| now.checked_add_signed(wait))
                        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC),
                    http_status: e.http_status(),
                    unknown: matches!(e, HandlerError::Unknown(_)),
                    error: e.to_string(),
                }
            }
        }
    }

    /// Logs and records the outcomes in one transaction (with a dead-letter alert for each
    /// item that died), and wakes whoever waits for them.
    async fn record(&self, outcomes: Vec<(Claimed, Completion)>) -> Result<(), StoreError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let now = self.clock.now();
        let rows = outcomes
            .iter()
            .map(|(claimed, completion)| {
                let item = &claimed.item;
                let dead_alert = match completion {
                    // An alert that dies does not alert again.
                    Completion::Dead { error, .. } if !is_alert(&item.kind, &item.payload) => {
                        let ctx = json!({ "event": {
                            "item_id": item.id,
                            "kind": item.kind,
                            "idempotency_key": item.key,
                            "attempts": item.attempts,
                            "last_error": error,
                        }});
                        self.alerts
                            .item(&self.env, Alert::DeadLetter, &item.key, &ctx)
                    }
                    _ => None,
                };
                match completion {
                    Completion::Done(_) => {
                        tracing::info!(id = item.id, kind = %item.kind, key = %item.key, "outbox item done")
                    }
                    Completion::Retry { error, at, .. } => {
                        tracing::warn!(id = item.id, kind = %item.kind, %error, retry_at = %at, "outbox item will be retried")
                    }
                    Completion::Dead { error, .. } => {
                        tracing::error!(id = item.id, kind = %item.kind, %error, "outbox item is dead")
                    }
                }
                (claimed, completion.clone(), dead_alert)
            })
            .collect();
        let recorded = self.store.complete_all(&self.owner, rows, now).await?;
        for ((claimed, completion), recorded) in outcomes.iter().zip(recorded) {
            let item = &claimed.item;
            if recorded {
                if item.run_id.is_some() && !matches!(completion, Completion::Retry { .. }) {
                    self.wake_runner.notify_one();
                }
                if matches!(completion, Completion::Dead { .. }) {
                    self.wake.notify_one();
                }
            } else {
                // Fenced: the lease ran out and the item was claimed again (by another
                // instance, or by this one for a later attempt); that attempt's outcome is the
                // one recorded.
                crate::http::metrics::count("satflow_outbox_fenced_total", &[]);
                tracing::warn!(id = item.id, kind = %item.kind, attempt = claimed.attempt, owner = %self.owner,
                    "this attempt's outcome was refused: its lease ran out and the item was claimed again");
            }
        }
        Ok(())
    }

    /// The handler, bounded well inside the lease so a slow call cannot outlive its claim.
    // The handler runs in a task of its own: the span is entered again there.
    #[tracing::instrument(
        name = "outbox_item",
        skip_all,
        fields(item_id = claimed.item.id, kind = %claimed.item.kind, run_id = claimed.item.run_id, step_id = claimed.item.step_id.as_deref(), attempt = claimed.attempt)
    )]
    async fn call(&self, claimed: &Claimed) -> Result<serde_json::Value, HandlerError> {
        let limit = (self.lease * 3 / 4).to_std().unwrap_or_default();
        match tokio::time::timeout(limit, self.effects.handle(&self.handlers, &claimed.item)).await
        {
            Ok(result) => result,
            Err(_) => Err(HandlerError::Unknown(format!(
                "the handler did not finish within {}s",
                limit.as_secs_f64()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::outbox::Effect;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The system's time, except that reading number `trip` panics: a fault injected into an
    /// attempt, after its handler answered and before its outcome is recorded.
    struct Tripwire {
        calls: AtomicUsize,
        trip: usize,
    }

    impl Clock for Tripwire {
        fn now(&self) -> chrono::DateTime<chrono::Utc> {
            if self.calls.fetch_add(1, Ordering::SeqCst) + 1 == self.trip {
                panic!("index out of bounds");
            }
            SystemClock.now()
        }
    }

    #[tokio::test]
    async fn an_attempt_that_panics_kills_its_item_with_the_reason_and_the_dispatcher_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("db")).await.unwrap();
        let item = crate::actions::http_post::item(
            "k".into(),
            None,
            "http://127.0.0.1:9/closed",
            &[],
            json!({}),
            &[],
            std::time::Duration::from_secs(2),
        )
        .unwrap();
        store
            .enqueue(&[item], crate::clock::system_now())
            .await
            .unwrap();
        // Reading 1 claims the item; reading 2 comes after the handler answered.
        let clock = Arc::new(Tripwire {
            calls: AtomicUsize::new(0),
            trip: 2,
        });
        let dispatcher = Arc::new(Dispatcher {
            store: store.clone(),
            handlers: Handlers::new(None, None, None, None),
            effects: Arc::new(crate::actions::effects::Effects),
            clock,
            config: OutboxConfig::default(),
            lease: Duration::seconds(30),
            owner: "test".into(),
            alerts: Alerts::new(None, Default::default()),
            env: crate::expr::environment(),
            wake: Arc::new(Notify::new()),
            wake_runner: Arc::new(Notify::new()),
            heartbeat: Heartbeat::default(),
        });
        assert_eq!(dispatcher.run_once().await.unwrap(), 1);
        let items = store.outbox_items(10).await.unwrap();
        assert_eq!(
            items[0].status,
            crate::store::OutboxStatus::Dead,
            "{items:?}"
        );
        assert_eq!(
            items[0].last_error.as_deref(),
            Some("satflow hit an internal error: index out of bounds")
        );
        // Nothing is left leased or due: the next pass finds nothing and returns.
        assert_eq!(dispatcher.run_once().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn dead_letters_dying_together_send_one_alert_and_then_one_summary_with_the_count() {
        use crate::clock::ManualClock;
        use crate::config::{EmailConfig, EmailTransport};
        use crate::notify::email::Mailer;
        use crate::store::NewItem;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("db")).await.unwrap();
        let start = crate::clock::system_now();
        let clock = Arc::new(ManualClock::new(start));
        // A kind no handler knows dies at its first attempt.
        let doomed: Vec<NewItem> = (0..5)
            .map(|i| NewItem {
                kind: "gone".into(),
                key: format!("doomed/{i}"),
                payload: json!({}),
                run: None,
            })
            .collect();
        store.enqueue(&doomed, start).await.unwrap();
        let email = EmailConfig {
            transport: EmailTransport::Dir("mail".into()),
            from: "satflow@example.com".parse().unwrap(),
            to: vec!["me@example.com".parse().unwrap()],
        };
        let dispatcher = Arc::new(Dispatcher {
            store: store.clone(),
            handlers: Handlers::new(None, None, None, None),
            effects: Arc::new(crate::actions::effects::Effects),
            clock: clock.clone(),
            config: OutboxConfig::default(),
            lease: Duration::seconds(30),
            owner: "test".into(),
            alerts: Alerts::new(
                Some(Mailer::new(&email, Default::default())),
                Alert::ALL.into_iter().collect(),
            ),
            env: crate::expr::environment(),
            wake: Arc::new(Notify::new()),
            wake_runner: Arc::new(Notify::new()),
            heartbeat: Heartbeat::default(),
        });
        assert_eq!(dispatcher.run_once().await.unwrap(), 5);
        let alerts = |items: &[crate::store::ItemRow]| {
            items
                .iter()
                .filter(|i| i.key.starts_with("alert/dead_letter/"))
                .map(|i| i.key.clone())
                .collect::<Vec<_>>()
        };
        let items = store.outbox_items(50).await.unwrap();
        assert_eq!(
            alerts(&items).len(),
            1,
            "one alert for five dead items: {items:#?}"
        );
        let summarise = || {
            dispatcher
                .alerts
                .summarise_due(&store, &dispatcher.env, clock.now())
        };
        assert_eq!(summarise().await.unwrap(), 0, "the hour is not over");
        clock.advance(Duration::minutes(61));
        assert_eq!(summarise().await.unwrap(), 1);
        assert_eq!(summarise().await.unwrap(), 0, "a window is summarised once");
        let items = store.outbox_items(50).await.unwrap();
        let summary = items
            .iter()
            .find(|i| i.key.starts_with("alert/dead_letter/summary/"))
            .expect("a summary");
        let email = crate::outbox::handlers::email::EmailEffect::decode(&summary.payload).unwrap();
        let subject = email.subject;
        assert!(subject.contains("4 more dead_letter alerts"), "{subject}");
        let body = email.body;
        assert!(body.contains("satflow outbox"), "{body}");
    }
}
