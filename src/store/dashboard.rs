//! The dashboard's reads: counts and pages of ids (newest first) for its paginated lists, and
//! the stamps that tell whether the ledger changed. Rows themselves are read with the
//! single-row queries of their own modules, so this file never duplicates a row's columns.
//!
//! Read-only: nothing here may write.

use super::db;
use super::{Store, StoreError};

/// A list the dashboard pages through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    Runs,
    Exchanges,
    Outbox,
    DeadOutbox,
    UnsettledExchanges,
}

impl Listing {
    /// The id column, the table with its filter, and the newest-first order of the list.
    fn sql(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Listing::Runs => ("CAST(id AS TEXT)", "runs", "id DESC"),
            Listing::Exchanges => ("id", "exchanges", "updated_at DESC, id DESC"),
            Listing::Outbox => ("CAST(id AS TEXT)", "outbox", "id DESC"),
            Listing::DeadOutbox => (
                "CAST(id AS TEXT)",
                "outbox WHERE status = 'dead'",
                "id DESC",
            ),
            // Settled and refunded are final; executed and interrupted still move.
            Listing::UnsettledExchanges => (
                "id",
                "exchanges WHERE state IN ('executed', 'interrupted')",
                "updated_at DESC, id DESC",
            ),
        }
    }
}

/// What changes whenever a ledger entry could: how many rows and the latest update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerStamp {
    pub exchanges: (i64, i64),
    pub withdrawals: (i64, i64),
}

impl Store {
    /// How many rows `listing` has.
    pub async fn dashboard_count(&self, listing: Listing) -> Result<i64, StoreError> {
        let (_, from, _) = listing.sql();
        Ok(db::query_scalar(&format!("SELECT COUNT(*) FROM {from}"))
            .fetch_one(self.pool())
            .await?)
    }

    /// The ids of one page of `listing`, newest first.
    pub async fn dashboard_page(
        &self,
        listing: Listing,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let (id, from, order) = listing.sql();
        Ok(db::query_scalar(&format!(
            "SELECT {id} FROM {from} ORDER BY {order} LIMIT $1 OFFSET $2"
        ))
        .bind(limit)
        .bind(offset)
        .fetch_all(self.pool())
        .await?)
    }

    /// The ledger's stamp: reading every exchange again is only needed when it moved.
    pub async fn ledger_stamp(&self) -> Result<LedgerStamp, StoreError> {
        let read = |table: &'static str| async move {
            db::query_as::<(i64, i64)>(&format!(
                "SELECT COUNT(*), COALESCE(MAX(updated_at), 0) FROM {table}"
            ))
            .fetch_one(self.pool())
            .await
        };
        Ok(LedgerStamp {
            exchanges: read("exchanges").await?,
            withdrawals: read("withdrawals").await?,
        })
    }

    /// Names of the wallets that ever handed out an address.
    pub async fn wallets_with_addresses(&self) -> Result<Vec<String>, StoreError> {
        Ok(
            db::query_scalar("SELECT DISTINCT wallet FROM wallet_addresses ORDER BY wallet")
                .fetch_all(self.pool())
                .await?,
        )
    }
}
