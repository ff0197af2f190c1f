//! The HTTP server: Pocket's webhooks, `/healthz` and `/metrics`.
//!
//! Handlers must answer fast: they never wait on the network, and the only write (the webhook
//! inbox) is one short, group-committed transaction.

pub mod metrics;
pub mod server;
pub mod webhook;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::clock::Clock;
use crate::health::{self, Heartbeats, Limits, Observed};
use crate::store::Store;

/// `/healthz` writes its probe at most this often; requests in between reuse its outcome.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// How long any one question of `/healthz` may take before its part counts as failing: the
/// answer never waits on the writers' busy timeout.
const HEALTH_QUESTION_LIMIT: Duration = Duration::from_secs(1);

/// When the last probe write was made, and how it went.
type LastProbe = Option<(Instant, Result<(), String>)>;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    /// When the scheduler, the runner and the dispatcher last completed a pass.
    pub heartbeats: Heartbeats,
    pub limits: Limits,
    /// This daemon's instance id, when it registered itself (shown beside the live instances).
    pub instance: Option<String>,
    last_probe: Arc<Mutex<LastProbe>>,
}

impl AppState {
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        heartbeats: Heartbeats,
        limits: Limits,
    ) -> AppState {
        AppState {
            store,
            clock,
            heartbeats,
            limits,
            instance: None,
            last_probe: Arc::new(Mutex::new(None)),
        }
    }

    /// The state of the daemon registered as instance `id`.
    pub fn with_instance(mut self, id: String) -> AppState {
        self.instance = Some(id);
        self
    }
}

pub fn router(state: AppState, webhooks: Option<webhook::WebhookState>) -> Router {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .with_state(state);
    match webhooks {
        Some(ws) => app.merge(
            Router::new()
                .route("/webhooks/pocket", axum::routing::post(webhook::receive))
                .with_state(ws),
        ),
        None => app,
    }
}

async fn healthz(State(state): State<AppState>) -> Response {
    let (status, body) = check_health(&state).await;
    (status, axum::Json(body)).into_response()
}

/// `question`'s answer, or why there is none within `HEALTH_QUESTION_LIMIT`.
async fn bounded<T, E: std::fmt::Display>(
    question: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(HEALTH_QUESTION_LIMIT, question).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err(format!(
            "no answer within {} s",
            HEALTH_QUESTION_LIMIT.as_secs_f64()
        )),
    }
}

/// The probe write's outcome, made at most once per `PROBE_EVERY` (a flood of `/healthz`
/// requests is not a flood of writes; concurrent requests wait for the one probe).
async fn probe(state: &AppState) -> Result<(), String> {
    let mut last = state.last_probe.lock().await;
    if let Some((at, outcome)) = &*last
        && at.elapsed() < PROBE_EVERY
    {
        return outcome.clone();
    }
    let outcome = bounded(state.store.probe_write(state.clock.now())).await;
    *last = Some((Instant::now(), outcome.clone()));
    outcome
}

/// Asks every part, concurrently and each within `HEALTH_QUESTION_LIMIT`.
async fn check_health(state: &AppState) -> (StatusCode, Value) {
    let store = &state.store;
    let (probe, oldest, backlog, inbox, instances) = tokio::join!(
        probe(state),
        bounded(store.oldest_pending_webhook()),
        bounded(store.outbox_backlog()),
        bounded(store.inbox_backlog()),
        bounded(store.live_instances(state.clock.now(), crate::instance::ALIVE_WITHIN)),
    );
    let now = state.clock.now();
    let observed = Observed {
        now,
        probe,
        // Failures are stamped with the machine's time, heartbeats with the engine's clock
        // (moved in the demo and in tests): the failure's age is carried over, not its date.
        last_write_failure: store
            .write_health()
            .last_failure()
            .map(|f| (now - (crate::clock::system_now() - f.at), f.reason)),
        scheduler: state.heartbeats.scheduler.last(),
        runner: state.heartbeats.runner.last(),
        dispatcher: state.heartbeats.dispatcher.last(),
        oldest_pending_webhook: oldest,
    };
    let verdict = health::assess(&observed, &state.limits);
    let body = json!({
        "status": if verdict.healthy() { "ok" } else { "unhealthy" },
        "failing": verdict.failing,
        "database": verdict.checks["database"]["ok"],
        "scheduler": {
            "alive": verdict.checks["scheduler"]["ok"],
            "last_tick": observed.scheduler.map(|t| t.to_rfc3339()),
        },
        "checks": verdict.checks,
        "webhooks": inbox.ok().map(|(pending, unrecognized, failed)| json!({ "pending": pending, "unrecognized": unrecognized, "failed": failed })),
        "outbox": backlog.ok().map(|(pending, dead)| json!({ "pending": pending, "dead": dead })),
        // Informative: another instance being down does not make this one unhealthy.
        "instance": state.instance,
        "instances": instances.ok().map(|rows| rows.iter().map(crate::instance::json).collect::<Vec<_>>()),
    });
    let status = if verdict.healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body)
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    // Gauges of what is in the database are read when scraped, so every daemon agrees.
    if let Ok((pending, dead)) = state.store.outbox_backlog().await {
        metrics::set("satflow_outbox_pending", &[], pending as f64);
        metrics::set("satflow_outbox_dead", &[], dead as f64);
    }
    if let Ok(counts) = state.store.run_counts().await {
        for (status, n) in counts {
            metrics::set("satflow_runs", &[("status", status.name())], n as f64);
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        metrics::render(),
    )
        .into_response()
}
