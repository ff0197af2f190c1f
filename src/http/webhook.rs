//! `POST /webhooks/pocket`: verify, store durably, answer. Processing happens afterwards, from
//! the inbox.
//!
//! Order of checks, as the contract fixes it: a missing signature is refused before the body is
//! read; a body over 64 KiB is refused (413) without being read to the end; a wrong signature
//! is refused (401) before the body is parsed; invalid JSON with a valid signature is a 400;
//! everything else is stored and answered 200 — a duplicate too, and a shape satflow does not
//! understand (stored, flagged, alerted: a 4xx would make Pocket retry a payload that will
//! never parse). Only a failure to store is a 503, so Pocket retries. An acknowledged event is
//! on disk: Pocket never sends it again.
//!
//! "Does not understand" includes what no real exchange looks like: an id that is not a UUID
//! (it would end up in Pocket's URLs), a BTC amount above 21 million, negative or finer than a
//! millisatoshi. Such a body is stored as `unrecognized` with the reason, never processed, and
//! its alert is coalesced with the others (one email an hour at most).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::clock::Clock;
use crate::config::Alert;
use crate::notify::email::Alerts;
use crate::pocket::types::Exchange;
use crate::pocket::webhook;
use crate::store::{NewWebhook, Store, Stored};

pub const MAX_BODY: usize = 64 * 1024;

/// How many webhooks one transaction stores at most.
const MAX_BATCH: usize = 256;

type Job = (NewWebhook, oneshot::Sender<Option<Stored>>);

#[derive(Clone)]
pub struct WebhookState {
    secret: Option<SecretString>,
    writer: mpsc::Sender<Job>,
    alerts: Alerts,
    env: minijinja::Environment<'static>,
    clock: Arc<dyn Clock>,
}

impl WebhookState {
    /// Starts the writer that stores webhooks in batches, as one of `tasks` (it ends once every
    /// copy of the state is dropped and what they handed it is written); `stored` is notified
    /// after each batch.
    pub fn start(
        tasks: &mut tokio::task::JoinSet<()>,
        store: Store,
        secret: Option<SecretString>,
        alerts: Alerts,
        env: minijinja::Environment<'static>,
        clock: Arc<dyn Clock>,
        stored: Arc<Notify>,
    ) -> WebhookState {
        let (writer, jobs) = mpsc::channel(4 * MAX_BATCH);
        tasks.spawn(write_batches(store, jobs, Arc::clone(&clock), stored));
        WebhookState {
            secret,
            writer,
            alerts,
            env,
            clock,
        }
    }
}

/// Group commit: whatever arrived while the previous batch was being written goes into the
/// next transaction, so one fsync acknowledges many webhooks under load.
async fn write_batches(
    store: Store,
    mut jobs: mpsc::Receiver<Job>,
    clock: Arc<dyn Clock>,
    stored: Arc<Notify>,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let webhooks: Vec<NewWebhook> = batch.iter().map(|(w, _)| w.clone()).collect();
        match store.store_webhooks(&webhooks, clock.now()).await {
            Ok(results) => {
                for ((_, answer), result) in batch.drain(..).zip(results) {
                    let _ = answer.send(Some(result));
                }
                stored.notify_one();
            }
            Err(err) => {
                crate::logs::store_error(
                    &store,
                    "cannot store webhooks; Pocket is answered 503 and will retry",
                    &err,
                );
                for (_, answer) in batch.drain(..) {
                    let _ = answer.send(None);
                }
            }
        }
    }
}

fn answer(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "status": message }))).into_response()
}

pub async fn receive(
    State(state): State<WebhookState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(signature) = headers
        .get("x-signature-256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
    else {
        return answer(StatusCode::UNAUTHORIZED, "missing X-Signature-256");
    };
    let Some(secret) = &state.secret else {
        tracing::warn!(
            "a webhook arrived but pocket.webhook_secret is not set, so it cannot be verified; refused"
        );
        return answer(
            StatusCode::UNAUTHORIZED,
            "this endpoint has no webhook secret configured",
        );
    };
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) => bytes,
        Err(_) => return answer(StatusCode::PAYLOAD_TOO_LARGE, "body over 64 KiB"),
    };
    if !webhook::verify(secret.expose_secret().as_bytes(), &bytes, &signature) {
        tracing::warn!("a webhook with a wrong signature was refused");
        return answer(StatusCode::UNAUTHORIZED, "wrong signature");
    }
    let Ok(json) = serde_json::from_slice::<Value>(&bytes) else {
        return answer(StatusCode::BAD_REQUEST, "the body is not JSON");
    };
    let event = json["event"].as_str().map(str::to_string);
    // Parsed and checked at the edge: nothing absurd (an id that is not Pocket's, 10^28 BTC)
    // reaches the state machine; it is kept, flagged and alerted instead.
    let exchange = match (&event, json.get("payload")) {
        (None, _) => Err("the body has no `event` name".to_string()),
        (Some(_), None) => Err("the body has no `payload`".to_string()),
        (Some(_), Some(payload)) => serde_json::from_value::<Exchange>(payload.clone())
            .map_err(|e| format!("the payload is not an exchange: {e}"))
            .and_then(|x| {
                x.check()
                    .map(|()| x)
                    .map_err(|e| format!("the payload is refused: {e}"))
            }),
    };
    let problem = exchange.as_ref().err().cloned();
    let recognized = problem.is_none();
    let alert = problem.as_ref().and_then(|problem| {
        let body: String = String::from_utf8_lossy(&bytes).chars().take(2000).collect();
        let ctx = json!({ "event": {
            "event": event,
            "received_at": state.clock.now().to_rfc3339(),
            "reason": problem,
            "body": body,
        }});
        let key = format!("{:x}", sha2_hex(&bytes));
        state
            .alerts
            .item(&state.env, Alert::UnrecognizedWebhook, &key, &ctx)
    });
    if let Some(problem) = &problem {
        tracing::warn!(event = ?event, %problem, "a signed webhook satflow does not understand; stored and alerted");
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let job = NewWebhook {
        correlation_id: header("x-correlation-id"),
        retry_count: header("x-retry-count").and_then(|v| v.parse().ok()),
        event,
        exchange_id: exchange.ok().map(|e| e.id),
        body: bytes.to_vec(),
        recognized,
        alert,
        alert_kind: Some(Alert::UnrecognizedWebhook.name().to_string()),
    };
    let (tx, rx) = oneshot::channel();
    if state.writer.send((job, tx)).await.is_err() {
        return answer(StatusCode::SERVICE_UNAVAILABLE, "satflow is stopping");
    }
    match rx.await {
        Ok(Some(Stored::New(_))) => answer(StatusCode::OK, "stored"),
        Ok(Some(Stored::Duplicate)) => answer(StatusCode::OK, "duplicate"),
        _ => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "cannot store the event now",
        ),
    }
}

/// A digest of an unrecognized body, so its alert key is derived from what it is.
fn sha2_hex(bytes: &[u8]) -> u128 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(bytes);
    u128::from_be_bytes(digest[..16].try_into().expect("16 bytes"))
}
