//! What an order's exchanges cost since a time, for its budget (`treasury::limits`), and what
//! a workflow's withdrawals took out since a time (`max_per_day_sat`).
//!
//! It only reads; a cost the database holds but satflow cannot read is an error, never zero.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::db;
use super::{Store, StoreError, from_millis};

impl Store {
    /// The executed (or settled) exchanges of `order_id` first seen at or after `since`:
    /// (exchange id, cost, first seen). Refunded and interrupted ones cost nothing.
    pub async fn order_spent_since(
        &self,
        order_id: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, Decimal, DateTime<Utc>)>, StoreError> {
        let rows: Vec<(String, Option<String>, i64)> = db::query_as(
            "SELECT id, cost, first_seen_at FROM exchanges
             WHERE order_id = $1 AND state IN ('executed', 'settled') AND first_seen_at >= $2
             ORDER BY first_seen_at",
        )
        .bind(order_id)
        .bind(since.timestamp_millis())
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|(id, cost, at)| {
                let cost = cost.unwrap_or_default();
                let value = Decimal::from_str_exact(cost.trim()).map_err(|_| {
                    StoreError::Corrupt(format!("exchange {id}: cost `{cost}` is not an amount"))
                })?;
                Ok((id, value, from_millis(at)))
            })
            .collect()
    }

    /// The sats `workflow`'s withdrawals took out since `since` (requested, sent or
    /// confirmed ones), for `max_per_day_sat`.
    pub async fn withdrawn_since(
        &self,
        workflow: &str,
        since: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let amounts: Vec<Option<i64>> = db::query_scalar(
            "SELECT amount_sat FROM withdrawals
             WHERE workflow = $1 AND status IN ('requested', 'sent', 'confirmed') AND created_at >= $2",
        )
        .bind(workflow)
        .bind(since.timestamp_millis())
        .fetch_all(self.pool())
        .await?;
        amounts.into_iter().try_fold(0u64, |acc, a| {
            let a = u64::try_from(a.unwrap_or(0))
                .map_err(|_| StoreError::Corrupt("a withdrawal's amount_sat is negative".into()))?;
            acc.checked_add(a)
                .ok_or_else(|| StoreError::Corrupt("withdrawal amounts overflow".into()))
        })
    }
}
