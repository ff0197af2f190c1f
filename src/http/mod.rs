//! The HTTP server: Pocket's webhooks, `/healthz` and `/metrics`.
//!
//! Handlers must answer fast: they never wait on the network, and the only write (the webhook
//! inbox) is one short, group-committed transaction.

pub mod server;
pub mod webhook;

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;

use crate::engine::clock::Clock;
use crate::store::Store;

/// A scheduler that has not ticked for this long is reported dead.
const SCHEDULER_STALE_MS: i64 = 90_000;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    /// When the scheduler last finished a pass, in ms since the epoch.
    pub scheduler_heartbeat: Arc<AtomicI64>,
    pub metrics: PrometheusHandle,
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    300.0,
                ])
                .expect("bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Tests may start several servers in one process: the first recorder stays.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
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
    let database = state.store.ping().await;
    let backlog = state.store.outbox_backlog().await.ok();
    let last_tick = state.scheduler_heartbeat.load(Ordering::Relaxed);
    let scheduler_alive =
        last_tick > 0 && state.clock.now().timestamp_millis() - last_tick < SCHEDULER_STALE_MS;
    let healthy = database && scheduler_alive && backlog.is_some();
    let inbox = state.store.inbox_backlog().await.ok();
    let body = json!({
        "status": if healthy { "ok" } else { "unhealthy" },
        "webhooks": inbox.map(|(pending, unrecognized, failed)| json!({ "pending": pending, "unrecognized": unrecognized, "failed": failed })),
        "database": database,
        "scheduler": {
            "alive": scheduler_alive,
            "last_tick": chrono::DateTime::from_timestamp_millis(last_tick).map(|t| t.to_rfc3339()),
        },
        "outbox": backlog.map(|(pending, dead)| json!({ "pending": pending, "dead": dead })),
    });
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    // Gauges of what is in the database are read when scraped, so every daemon agrees.
    if let Ok((pending, dead)) = state.store.outbox_backlog().await {
        metrics::gauge!("satflow_outbox_pending").set(pending as f64);
        metrics::gauge!("satflow_outbox_dead").set(dead as f64);
    }
    if let Ok(counts) = state.store.run_counts().await {
        for (status, n) in counts {
            metrics::gauge!("satflow_runs", "status" => status).set(n as f64);
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
        .into_response()
}
