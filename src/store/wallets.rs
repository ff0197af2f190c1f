//! Address rotation: each wallet's next index (which only moves forward) and the addresses
//! handed out or seen used. A reservation commits with the step that uses the address.

use super::db::{self, Tx};
use chrono::{DateTime, Utc};

use super::{Store, StoreError, from_millis};

/// An address to hand out, decided outside the transaction and committed inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub wallet: String,
    /// Identifies the wallet's key: a changed key must not continue another key's indices.
    pub key_id: String,
    /// The cursor the decision was based on (`None`: the wallet had none yet).
    pub expected_next: Option<u32>,
    pub index: u32,
    pub address: String,
    pub used_by: String,
    /// Addresses passed over because they are used on chain.
    pub skipped: Vec<(u32, String)>,
}

#[derive(Debug, Clone)]
pub struct AddressRow {
    pub index: u32,
    pub address: String,
    pub state: String,
    pub used_by: Option<String>,
    pub at: DateTime<Utc>,
}

impl Store {
    /// `(key id, next index)` of a wallet, if it ever handed out an address.
    pub async fn wallet_cursor(&self, wallet: &str) -> Result<Option<(String, u32)>, StoreError> {
        let row: Option<(String, i64)> =
            db::query_as("SELECT key_id, next_index FROM wallet_cursors WHERE wallet = $1")
                .bind(wallet)
                .fetch_optional(self.pool())
                .await?;
        Ok(row.map(|(k, n)| (k, n as u32)))
    }

    /// The addresses of a wallet satflow knows about (reserved or used), by index.
    pub async fn wallet_addresses(&self, wallet: &str) -> Result<Vec<AddressRow>, StoreError> {
        let rows = db::query(
            "SELECT idx, address, state, used_by, COALESCE(used_at, reserved_at) AS at FROM wallet_addresses
             WHERE wallet = $1 ORDER BY idx",
        )
        .bind(wallet)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AddressRow {
                    index: r.try_get::<i64, _>("idx")? as u32,
                    address: r.try_get("address")?,
                    state: r.try_get("state")?,
                    used_by: r.try_get("used_by")?,
                    at: from_millis(r.try_get("at")?),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Records that `address` (index `index` of `wallet`) received funds, by `used_by`.
    pub async fn mark_address_used(
        &self,
        wallet: &str,
        index: u32,
        address: &str,
        used_by: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        mark_used(&mut tx, wallet, index, address, used_by, now).await?;
        tx.commit().await?;
        Ok(())
    }
}

pub(super) async fn mark_used(
    tx: &mut Tx,
    wallet: &str,
    index: u32,
    address: &str,
    used_by: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    db::query(
        "INSERT INTO wallet_addresses (wallet, idx, address, state, used_by, reserved_at, used_at)
         VALUES ($1, $2, $3, 'used', $4, $5, $5)
         ON CONFLICT (wallet, idx) DO UPDATE SET state = 'used', used_at = excluded.used_at,
             used_by = COALESCE(wallet_addresses.used_by, excluded.used_by)",
    )
    .bind(wallet)
    .bind(i64::from(index))
    .bind(address)
    .bind(used_by)
    .bind(now.timestamp_millis())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Takes the reserved address inside the caller's transaction, if the wallet's cursor is still
/// where the decision assumed; false when another run moved it first (decide again).
pub(super) async fn reserve(
    tx: &mut Tx,
    r: &Reservation,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let next = i64::from(r.index) + 1;
    let moved = match r.expected_next {
        None => db::query("INSERT INTO wallet_cursors (wallet, key_id, next_index) VALUES ($1, $2, $3) ON CONFLICT (wallet) DO NOTHING")
            .bind(&r.wallet)
            .bind(&r.key_id)
            .bind(next)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
        Some(expected) => db::query(
            "UPDATE wallet_cursors SET next_index = $1 WHERE wallet = $2 AND key_id = $3 AND next_index = $4",
        )
        .bind(next)
        .bind(&r.wallet)
        .bind(&r.key_id)
        .bind(i64::from(expected))
        .execute(&mut *tx)
        .await?
        .rows_affected(),
    };
    if moved != 1 {
        return Ok(false);
    }
    for (index, address) in &r.skipped {
        mark_used(tx, &r.wallet, *index, address, "found used on chain", now).await?;
    }
    let inserted = db::query(
        "INSERT INTO wallet_addresses (wallet, idx, address, state, used_by, reserved_at)
         VALUES ($1, $2, $3, 'reserved', $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(&r.wallet)
    .bind(i64::from(r.index))
    .bind(&r.address)
    .bind(&r.used_by)
    .bind(now.timestamp_millis())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}
