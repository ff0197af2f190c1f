//! Withdrawals: planned with the step that decides them, then requested, sent, confirmed — or
//! skipped or failed, with the reason.

use super::db::{self, DbRow, Tx};
use chrono::{DateTime, Utc};

use super::status::WithdrawalStatus;
use super::{NewItem, Store, StoreError, from_millis};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWithdrawal {
    pub key: String,
    pub workflow: String,
    pub provider: String,
    pub wallet: String,
    pub address: String,
    pub address_index: u32,
}

#[derive(Debug, Clone)]
pub struct WithdrawalRow {
    pub key: String,
    pub workflow: String,
    pub provider: String,
    pub wallet: String,
    pub address: String,
    pub status: WithdrawalStatus,
    pub balance_sat: Option<u64>,
    pub amount_sat: Option<u64>,
    pub fee_sat: Option<u64>,
    pub fee_rate: Option<String>,
    pub provider_ref: Option<String>,
    pub txid: Option<String>,
    pub reason: Option<String>,
    pub confirmations: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A change of a withdrawal's state; fields left `None` keep their value.
#[derive(Debug, Clone)]
pub struct WithdrawalUpdate {
    pub status: WithdrawalStatus,
    pub balance_sat: Option<u64>,
    pub amount_sat: Option<u64>,
    pub fee_sat: Option<u64>,
    pub fee_rate: Option<String>,
    pub provider_ref: Option<String>,
    pub txid: Option<String>,
    pub reason: Option<String>,
    pub confirmations: Option<i64>,
    /// When to look at it again (`None`: not any more).
    pub next_check_at: Option<DateTime<Utc>>,
}

/// Only so that an update can name its status and leave the rest with `..Default::default()`:
/// every update names its status.
impl Default for WithdrawalUpdate {
    fn default() -> Self {
        WithdrawalUpdate {
            status: WithdrawalStatus::Planned,
            balance_sat: None,
            amount_sat: None,
            fee_sat: None,
            fee_rate: None,
            provider_ref: None,
            txid: None,
            reason: None,
            confirmations: None,
            next_check_at: None,
        }
    }
}

const COLUMNS: &str =
    "key, workflow, provider, wallet, address, status, balance_sat, amount_sat, fee_sat, fee_rate,
    provider_ref, txid, reason, confirmations, created_at, updated_at";

fn row(r: &DbRow) -> Result<WithdrawalRow, sqlx::Error> {
    let sats = |name: &str| -> Result<Option<u64>, sqlx::Error> {
        Ok(r.try_get::<Option<i64>, _>(name)?.map(|v| v as u64))
    };
    Ok(WithdrawalRow {
        key: r.try_get("key")?,
        workflow: r.try_get("workflow")?,
        provider: r.try_get("provider")?,
        wallet: r.try_get("wallet")?,
        address: r.try_get("address")?,
        status: r.try_get("status")?,
        balance_sat: sats("balance_sat")?,
        amount_sat: sats("amount_sat")?,
        fee_sat: sats("fee_sat")?,
        fee_rate: r.try_get("fee_rate")?,
        provider_ref: r.try_get("provider_ref")?,
        txid: r.try_get("txid")?,
        reason: r.try_get("reason")?,
        confirmations: r.try_get("confirmations")?,
        created_at: from_millis(r.try_get("created_at")?),
        updated_at: from_millis(r.try_get("updated_at")?),
    })
}

/// Plans a withdrawal inside the caller's transaction (the step that decides it). `false`: its
/// address is already another withdrawal's (one that reused a skipped address concurrently),
/// and the step must decide again.
pub(super) async fn insert(
    tx: &mut Tx,
    w: &NewWithdrawal,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let taken: Option<String> = db::query_scalar(
        "SELECT key FROM withdrawals WHERE wallet = $1 AND address = $2 AND key != $3 AND status != 'skipped' LIMIT 1",
    )
    .bind(&w.wallet)
    .bind(&w.address)
    .bind(&w.key)
    .fetch_optional(&mut *tx)
    .await?;
    if taken.is_some() {
        return Ok(false);
    }
    db::query(
        "INSERT INTO withdrawals (key, workflow, provider, wallet, address, address_index, status, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, 'planned', $7, $7) ON CONFLICT (key) DO NOTHING",
    )
    .bind(&w.key)
    .bind(&w.workflow)
    .bind(&w.provider)
    .bind(&w.wallet)
    .bind(&w.address)
    .bind(i64::from(w.address_index))
    .bind(now.timestamp_millis())
    .execute(&mut *tx)
    .await?;
    Ok(true)
}

impl Store {
    pub async fn withdrawal(&self, key: &str) -> Result<Option<WithdrawalRow>, StoreError> {
        let r = db::query(&format!("SELECT {COLUMNS} FROM withdrawals WHERE key = $1"))
            .bind(key)
            .fetch_optional(self.pool())
            .await?;
        Ok(r.as_ref().map(row).transpose()?)
    }

    pub async fn withdrawals(&self, limit: i64) -> Result<Vec<WithdrawalRow>, StoreError> {
        let rows = db::query(&format!(
            "SELECT {COLUMNS} FROM withdrawals ORDER BY created_at DESC LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(row).collect::<Result<_, _>>()?)
    }

    /// The address of `workflow`'s latest withdrawal to `wallet`, if that one was skipped: no
    /// provider ever saw it, so the next withdrawal takes it rather than leaving a gap in the
    /// wallet's addresses every skipped week (a gap over 20 hides funds from wallet software).
    pub async fn skipped_withdrawal_address(
        &self,
        workflow: &str,
        wallet: &str,
    ) -> Result<Option<(String, u32)>, StoreError> {
        let r = db::query(
            "SELECT address, address_index, status FROM withdrawals WHERE workflow = $1 AND wallet = $2
             ORDER BY created_at DESC LIMIT 1",
        )
        .bind(workflow)
        .bind(wallet)
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = r else { return Ok(None) };
        let status: WithdrawalStatus = r.try_get("status")?;
        let index: i64 = r.try_get("address_index")?;
        Ok((status == WithdrawalStatus::Skipped)
            .then(|| r.try_get("address"))
            .transpose()?
            .map(|a| (a, index as u32)))
    }

    /// Withdrawals whose progress is due to be looked at.
    pub async fn withdrawals_to_follow(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<WithdrawalRow>, StoreError> {
        let rows = db::query(&format!(
            "SELECT {COLUMNS} FROM withdrawals WHERE next_check_at IS NOT NULL AND next_check_at <= $1 ORDER BY next_check_at LIMIT 50"
        ))
        .bind(now.timestamp_millis())
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(row).collect::<Result<_, _>>()?)
    }

    /// Applies `u`, and queues `notify` (the email reporting it) in the same transaction.
    pub async fn update_withdrawal(
        &self,
        key: &str,
        u: &WithdrawalUpdate,
        notify: Option<NewItem>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        db::query(
            "UPDATE withdrawals SET status = $1, balance_sat = COALESCE($2, balance_sat), amount_sat = COALESCE($3, amount_sat),
                 fee_sat = COALESCE($4, fee_sat), fee_rate = COALESCE($5, fee_rate), provider_ref = COALESCE($6, provider_ref),
                 txid = COALESCE($7, txid), reason = COALESCE($8, reason), confirmations = COALESCE($9, confirmations),
                 next_check_at = $10, updated_at = $11
             WHERE key = $12",
        )
        .bind(u.status)
        .bind(u.balance_sat.map(|v| v as i64))
        .bind(u.amount_sat.map(|v| v as i64))
        .bind(u.fee_sat.map(|v| v as i64))
        .bind(&u.fee_rate)
        .bind(&u.provider_ref)
        .bind(&u.txid)
        .bind(&u.reason)
        .bind(u.confirmations)
        .bind(u.next_check_at.map(|t| t.timestamp_millis()))
        .bind(now.timestamp_millis())
        .bind(key)
        .execute(&mut tx)
        .await?;
        super::outbox::insert_items(&mut tx, notify.as_slice(), now).await?;
        tx.commit().await?;
        Ok(())
    }
}
