//! The webhook inbox: raw events written durably (and group-committed) before Pocket is
//! answered, then processed from here. Deliveries are unique per (exchange, event, hash of the
//! body); unrecognized bodies are kept for a bounded time and count, and their alerts are
//! coalesced, so a storm of them can neither fill the disk nor the user's mailbox.

use super::db::{self, Tx};
use chrono::{DateTime, Utc};

use super::alert_window::ALERT_WINDOW;
use super::outbox::{NewItem, insert_items};
use super::{Store, StoreError, from_millis};

/// A webhook as received, ready to be stored.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub correlation_id: Option<String>,
    pub retry_count: Option<i64>,
    pub event: Option<String>,
    pub exchange_id: Option<String>,
    pub body: Vec<u8>,
    /// False for a payload satflow does not understand: stored as `unrecognized`, not processed.
    pub recognized: bool,
    /// An alert to queue with it (for an unrecognized payload), coalesced with the other
    /// alerts of `alert_kind` (at most one per `ALERT_WINDOW`).
    pub alert: Option<NewItem>,
    pub alert_kind: Option<String>,
}

/// How many unrecognized bodies are kept at most (the newest), and for how long.
pub const KEEP_UNRECOGNIZED: i64 = 200;
pub const KEEP_UNRECOGNIZED_DAYS: i64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New(i64),
    /// The same `(exchange, event, body)` was stored before: nothing changed.
    Duplicate,
}

#[derive(Debug, Clone)]
pub struct InboxRow {
    pub id: i64,
    pub received_at: DateTime<Utc>,
    pub event: Option<String>,
    pub exchange_id: Option<String>,
    pub body: Vec<u8>,
}

/// Keeps the newest `KEEP_UNRECOGNIZED` unrecognized bodies of the last
/// `KEEP_UNRECOGNIZED_DAYS` days: they are kept to be looked at, not for ever.
async fn prune_unrecognized(tx: &mut Tx, now: DateTime<Utc>) -> Result<(), StoreError> {
    let cutoff = (now - chrono::Duration::days(KEEP_UNRECOGNIZED_DAYS)).timestamp_millis();
    db::query(
        "DELETE FROM webhook_inbox WHERE status = 'unrecognized' AND (received_at < $1 OR id < (
             SELECT MIN(id) FROM (SELECT id FROM webhook_inbox WHERE status = 'unrecognized'
                                  ORDER BY id DESC LIMIT $2) AS newest))",
    )
    .bind(cutoff)
    .bind(KEEP_UNRECOGNIZED)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

impl Store {
    /// Stores a batch of webhooks in one transaction on the `synchronous=FULL` connection: when
    /// this returns, they are on disk. Batching is what keeps that affordable under load.
    pub async fn store_webhooks(
        &self,
        batch: &[NewWebhook],
        now: DateTime<Utc>,
    ) -> Result<Vec<Stored>, StoreError> {
        let mut tx = self.begin_durable().await?;
        let mut out = Vec::with_capacity(batch.len());
        let mut unrecognized = false;
        for w in batch {
            let hash = crate::pocket::webhook::body_hash(&w.body);
            let id: Option<i64> = db::query_scalar(
                "INSERT INTO webhook_inbox (received_at, correlation_id, retry_count, event, exchange_id, body, status, body_hash)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (exchange_id, event, body_hash) WHERE exchange_id IS NOT NULL DO NOTHING RETURNING id",
            )
            .bind(now.timestamp_millis())
            .bind(&w.correlation_id)
            .bind(w.retry_count)
            .bind(&w.event)
            .bind(&w.exchange_id)
            .bind(&w.body)
            .bind(if w.recognized { "pending" } else { "unrecognized" })
            .bind(&hash)
            .fetch_optional(&mut tx)
            .await?;
            unrecognized |= !w.recognized;
            match id {
                Some(id) => {
                    if let Some(alert) = &w.alert {
                        // The same body again raises nothing; a new one is coalesced.
                        let known: Option<i64> =
                            db::query_scalar("SELECT id FROM outbox WHERE idempotency_key = $1")
                                .bind(&alert.key)
                                .fetch_optional(&mut tx)
                                .await?;
                        let admitted = match (&w.alert_kind, known) {
                            (_, Some(_)) => false,
                            (Some(kind), None) => {
                                super::alert_window::admit(&mut tx, kind, now, ALERT_WINDOW).await?
                            }
                            (None, None) => true,
                        };
                        if admitted {
                            insert_items(&mut tx, std::slice::from_ref(alert), now).await?;
                        }
                    }
                    out.push(Stored::New(id));
                }
                None => out.push(Stored::Duplicate),
            }
        }
        if unrecognized {
            prune_unrecognized(&mut tx, now).await?;
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Webhooks waiting to be processed, oldest first.
    pub async fn pending_webhooks(&self, limit: i64) -> Result<Vec<InboxRow>, StoreError> {
        let rows = db::query(
            "SELECT id, received_at, event, exchange_id, body FROM webhook_inbox
             WHERE status = 'pending' ORDER BY id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(InboxRow {
                    id: r.try_get("id")?,
                    received_at: from_millis(r.try_get("received_at")?),
                    event: r.try_get("event")?,
                    exchange_id: r.try_get("exchange_id")?,
                    body: r.try_get("body")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Marks a webhook that could not be processed, with the reason.
    pub async fn webhook_failed(
        &self,
        id: i64,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        db::query("UPDATE webhook_inbox SET status = 'failed', error = $1, processed_at = $2 WHERE id = $3")
            .bind(error)
            .bind(now.timestamp_millis())
            .bind(id)
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// When the webhook `event` of `exchange_id` first arrived.
    pub async fn webhook_received_at(
        &self,
        exchange_id: &str,
        event: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at: Option<Option<i64>> = db::query_scalar(
            "SELECT MIN(received_at) FROM webhook_inbox WHERE exchange_id = $1 AND event = $2",
        )
        .bind(exchange_id)
        .bind(event)
        .fetch_optional(self.pool())
        .await?;
        Ok(at.flatten().map(from_millis))
    }

    /// `(pending, unrecognized, failed)` counts, for status and health.
    pub async fn inbox_backlog(&self) -> Result<(i64, i64, i64), StoreError> {
        let row = db::query(
            "SELECT COALESCE(SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END), 0) AS p,
                    COALESCE(SUM(CASE WHEN status = 'unrecognized' THEN 1 ELSE 0 END), 0) AS u,
                    COALESCE(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0) AS f FROM webhook_inbox",
        )
        .fetch_one(self.pool())
        .await?;
        Ok((row.try_get("p")?, row.try_get("u")?, row.try_get("f")?))
    }
}
