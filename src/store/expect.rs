//! The alerts of the missed-purchase checker (`expect:`), recorded so each is raised once.
//!
//! A row and the alert it stands for are written in one transaction: never an alert without its
//! row (it would be raised again), never a row without its alert.

use super::db;
use super::outbox::{NewItem, insert_items};
use super::{Store, StoreError, from_millis};
use chrono::{DateTime, Utc};

/// An alert the checker raised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectAlert {
    pub workflow: String,
    /// `missed_purchase` or `cost_mismatch`.
    pub kind: String,
    /// The missed window's start (ms since the epoch) or the exchange's id.
    pub reference: String,
    pub message: String,
    pub raised_at: DateTime<Utc>,
}

impl Store {
    /// Records the alert `(workflow, kind, reference)` and queues `item` with it, unless it was
    /// recorded before. Returns whether it is new.
    pub async fn record_expect_alert(
        &self,
        workflow: &str,
        kind: &str,
        reference: &str,
        message: &str,
        item: Option<&NewItem>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let new = db::query(
            "INSERT INTO expect_alerts (workflow, kind, ref, message, raised_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (workflow, kind, ref) DO NOTHING",
        )
        .bind(workflow)
        .bind(kind)
        .bind(reference)
        .bind(message)
        .bind(now.timestamp_millis())
        .execute(&mut tx)
        .await?
        .rows_affected()
            == 1;
        if new {
            insert_items(
                &mut tx,
                item.map(std::slice::from_ref).unwrap_or_default(),
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(new)
    }

    /// The checker's alerts, newest first, at most `limit`.
    pub async fn expect_alerts(&self, limit: i64) -> Result<Vec<ExpectAlert>, StoreError> {
        let rows = db::query(
            "SELECT workflow, kind, ref, message, raised_at FROM expect_alerts
             ORDER BY raised_at DESC, workflow, ref LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ExpectAlert {
                    workflow: r.try_get("workflow")?,
                    kind: r.try_get("kind")?,
                    reference: r.try_get("ref")?,
                    message: r.try_get("message")?,
                    raised_at: from_millis(r.try_get("raised_at")?),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}
