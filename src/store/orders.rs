//! Pocket orders as satflow knows them (one current order per declaring workflow), and the
//! challenge an interrupted `order setup` keeps pending.

use super::db::{self, DbRow};
use chrono::{DateTime, Utc};

use super::{Store, StoreError, from_millis};
use crate::pocket::types::{Challenge, Order};

#[derive(Debug, Clone)]
pub struct OrderRow {
    pub id: String,
    pub workflow: String,
    pub payout_kind: String,
    /// The order as Pocket last returned it.
    pub order: Order,
    pub created_at: DateTime<Utc>,
    pub checked_at: Option<DateTime<Utc>>,
}

fn order_row(row: &DbRow) -> Result<OrderRow, StoreError> {
    let raw: String = row.try_get("raw_json")?;
    Ok(OrderRow {
        id: row.try_get("id")?,
        workflow: row.try_get("workflow")?,
        payout_kind: row.try_get("payout_kind")?,
        order: serde_json::from_str(&raw)
            .map_err(|e| StoreError::Corrupt(format!("order {raw}: {e}")))?,
        created_at: from_millis(row.try_get("created_at")?),
        checked_at: row
            .try_get::<Option<i64>, _>("checked_at")?
            .map(from_millis),
    })
}

impl Store {
    /// Records an order Pocket created for `workflow`; it becomes the workflow's current order.
    pub async fn save_order(
        &self,
        workflow: &str,
        payout_kind: &str,
        order: &Order,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let raw = serde_json::to_string(order).expect("an order serialises");
        let mut tx = self.begin_write().await?;
        db::query(
            "INSERT INTO orders (id, workflow, side, currency, fee_rate, active, payout_kind, payout_json, payment_json, raw_json, created_at, updated_at)
             VALUES ($1, $2, 'buy', $3, $4, $5, $6, $7, $8, $9, $10, $10)
             ON CONFLICT (id) DO UPDATE SET raw_json = excluded.raw_json, active = excluded.active,
                 fee_rate = excluded.fee_rate, updated_at = excluded.updated_at",
        )
        .bind(&order.id)
        .bind(workflow)
        .bind(order.currency().unwrap_or("eur"))
        .bind(order.fee_rate.map(|f| f.to_string()))
        .bind(order.active)
        .bind(payout_kind)
        .bind(order.payout_method.to_string())
        .bind(order.payment_method.to_string())
        .bind(raw)
        .bind(now.timestamp_millis())
        .execute(&mut tx)
        .await?;
        db::query("DELETE FROM pending_challenges WHERE workflow = $1")
            .bind(workflow)
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The workflow's current order: the one created last.
    pub async fn order_for_workflow(&self, workflow: &str) -> Result<Option<OrderRow>, StoreError> {
        let row = db::query(
            "SELECT id, workflow, payout_kind, raw_json, created_at, checked_at FROM orders
             WHERE workflow = $1 ORDER BY created_at DESC LIMIT 1",
        )
        .bind(workflow)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(order_row).transpose()
    }

    /// The order with Pocket's id `id`, if satflow made it.
    pub async fn order_by_id(&self, id: &str) -> Result<Option<OrderRow>, StoreError> {
        let row = db::query("SELECT id, workflow, payout_kind, raw_json, created_at, checked_at FROM orders WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(order_row).transpose()
    }

    /// Records what Pocket says the order is now; returns true the first time the order is
    /// read back (a workflow then says it was created).
    pub async fn order_checked(
        &self,
        order: &Order,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let first: Option<Option<i64>> =
            db::query_scalar("SELECT checked_at FROM orders WHERE id = $1")
                .bind(&order.id)
                .fetch_optional(&mut tx)
                .await?;
        db::query(
            "UPDATE orders SET raw_json = $1, active = $2, fee_rate = $3, checked_at = $4, updated_at = $4 WHERE id = $5",
        )
        .bind(serde_json::to_string(order).expect("an order serialises"))
        .bind(order.active)
        .bind(order.fee_rate.map(|f| f.to_string()))
        .bind(now.timestamp_millis())
        .bind(&order.id)
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(matches!(first, Some(None)))
    }

    pub async fn pending_challenge(&self, workflow: &str) -> Result<Option<Challenge>, StoreError> {
        let row = db::query(
            "SELECT challenge_id, token, expires_at FROM pending_challenges WHERE workflow = $1",
        )
        .bind(workflow)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(Challenge {
                id: r.try_get("challenge_id")?,
                token: r.try_get("token")?,
                expires_on: from_millis(r.try_get("expires_at")?),
                completed_on: None,
            })
        })
        .transpose()
        .map_err(|e: sqlx::Error| StoreError::Sql(e))
    }

    pub async fn save_pending_challenge(
        &self,
        workflow: &str,
        challenge: &Challenge,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        db::query(
            "INSERT INTO pending_challenges (workflow, challenge_id, token, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (workflow) DO UPDATE SET challenge_id = excluded.challenge_id, token = excluded.token,
                 expires_at = excluded.expires_at, created_at = excluded.created_at",
        )
        .bind(workflow)
        .bind(&challenge.id)
        .bind(&challenge.token)
        .bind(challenge.expires_on.timestamp_millis())
        .bind(now.timestamp_millis())
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
