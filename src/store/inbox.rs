//! The webhook inbox: raw events written durably (and group-committed) before Pocket is
//! answered, then processed from here.

use chrono::{DateTime, Utc};
use sqlx::Row;

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
    /// An alert to queue with it (for an unrecognized payload).
    pub alert: Option<NewItem>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New(i64),
    /// The same `(exchange, event)` was stored before: nothing changed.
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
        for w in batch {
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO webhook_inbox (received_at, correlation_id, retry_count, event, exchange_id, body, status)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (exchange_id, event) WHERE exchange_id IS NOT NULL DO NOTHING RETURNING id",
            )
            .bind(now.timestamp_millis())
            .bind(&w.correlation_id)
            .bind(w.retry_count)
            .bind(&w.event)
            .bind(&w.exchange_id)
            .bind(&w.body)
            .bind(if w.recognized { "pending" } else { "unrecognized" })
            .fetch_optional(&mut *tx)
            .await?;
            match id {
                Some(id) => {
                    insert_items(&mut tx, w.alert.as_slice(), now).await?;
                    out.push(Stored::New(id));
                }
                None => out.push(Stored::Duplicate),
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Webhooks waiting to be processed, oldest first.
    pub async fn pending_webhooks(&self, limit: i64) -> Result<Vec<InboxRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, received_at, event, exchange_id, body FROM webhook_inbox
             WHERE status = 'pending' ORDER BY id LIMIT ?1",
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
        sqlx::query("UPDATE webhook_inbox SET status = 'failed', error = ?1, processed_at = ?2 WHERE id = ?3")
            .bind(error)
            .bind(now.timestamp_millis())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// When the webhook `event` of `exchange_id` arrived.
    pub async fn webhook_received_at(
        &self,
        exchange_id: &str,
        event: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let at: Option<i64> = sqlx::query_scalar(
            "SELECT received_at FROM webhook_inbox WHERE exchange_id = ?1 AND event = ?2",
        )
        .bind(exchange_id)
        .bind(event)
        .fetch_optional(self.pool())
        .await?;
        Ok(at.map(from_millis))
    }

    /// `(pending, unrecognized, failed)` counts, for status and health.
    pub async fn inbox_backlog(&self) -> Result<(i64, i64, i64), StoreError> {
        let row = sqlx::query(
            "SELECT COALESCE(SUM(status = 'pending'), 0) AS p, COALESCE(SUM(status = 'unrecognized'), 0) AS u,
                    COALESCE(SUM(status = 'failed'), 0) AS f FROM webhook_inbox",
        )
        .fetch_one(self.pool())
        .await?;
        Ok((row.try_get("p")?, row.try_get("u")?, row.try_get("f")?))
    }
}
