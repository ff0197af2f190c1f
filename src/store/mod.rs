//! The database: the source of truth and the only queue. All SQL in satflow lives under this
//! folder.
//!
//! SQLite runs in WAL mode with `synchronous=NORMAL` (durable at each checkpoint, fast commits),
//! a busy timeout so concurrent writers wait instead of failing, and `BEGIN IMMEDIATE` for every
//! write transaction so two writers never deadlock upgrading read locks. Transactions here must
//! stay short and must never be held across network I/O.

mod alerts;
mod exchanges;
mod fires;
mod inbox;
mod orders;
mod outbox;
mod prices;
mod runs;
mod wallets;
mod withdrawals;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use crate::config::Database;

pub use alerts::AlertWindow;
pub use exchanges::{
    Applied, Effects, EventRow, ExchangeRow, NewRun, Observation, Seen, UsedAddress, is_final, rank,
};
pub use inbox::{
    ALERT_WINDOW, InboxRow, KEEP_UNRECOGNIZED, KEEP_UNRECOGNIZED_DAYS, NewWebhook, Stored,
};
pub use orders::OrderRow;
pub use outbox::{AttemptRow, Claimed, Completion, ItemRow, NewItem};
pub use runs::{Recorded, RunRow, StepRecord, StepRow, StepStatus, Trigger};
pub use wallets::{AddressRow, Reservation};
pub use withdrawals::{NewWithdrawal, WithdrawalRow, WithdrawalUpdate};

/// Times are stored as milliseconds since the Unix epoch.
pub(crate) fn from_millis(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// The migrations in `migrations/`, embedded in the binary.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database {path}: {source}")]
    Open { path: PathBuf, source: sqlx::Error },
    #[error("cannot bring the database schema up to date: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("the database holds something satflow cannot read: {0}")]
    Corrupt(String),
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
    /// One connection with `synchronous=FULL`, for writes that an answer to the outside world
    /// depends on (the webhook inbox): committed means on disk.
    durable: SqlitePool,
}

impl Store {
    /// Opens (creating it if needed) and migrates the configured database.
    pub async fn open(database: &Database) -> Result<Store, StoreError> {
        match database {
            Database::Sqlite(path) => Store::open_sqlite(path).await,
        }
    }

    pub async fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(open_err)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        // Two daemons starting together would both create the schema: the first to open the
        // database migrates it while holding this lock, the other waits and finds it done.
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| open_err(sqlx::Error::Io(e)))?;
        let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
            .await
            .map_err(|e| open_err(sqlx::Error::Io(std::io::Error::other(e))))?
            .map_err(|e| open_err(sqlx::Error::Io(e)))?;
        // A Pi has little memory and SQLite serialises writers anyway: a handful of connections.
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await
            .map_err(open_err)?;
        MIGRATOR.run(&pool).await?;
        drop(lock);
        let durable = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.synchronous(SqliteSynchronous::Full))
            .await
            .map_err(open_err)?;
        Ok(Store { pool, durable })
    }

    /// A write transaction, started with `BEGIN IMMEDIATE` so it holds the write lock from the
    /// start (waiting up to the busy timeout) instead of failing halfway.
    pub async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Whether the database answers, for /healthz.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Closes every connection, so the WAL is checkpointed before the process exits.
    pub async fn close(&self) {
        self.durable.close().await;
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn opens_with_wal_normal_sync_and_the_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("satflow.db");
        let store = Store::open_sqlite(&path).await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(sync, 1, "synchronous=NORMAL");
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                .fetch_all(store.pool())
                .await
                .unwrap();
        for table in [
            "schedule_anchors",
            "pending_challenges",
            "exchange_events",
            "exchanges",
            "fires",
            "orders",
            "outbox",
            "outbox_attempts",
            "runs",
            "step_results",
            "wallet_addresses",
            "wallet_cursors",
            "webhook_inbox",
        ] {
            assert!(
                tables.iter().any(|t| t == table),
                "missing table {table}: {tables:?}"
            );
        }
        store.close().await;
        // Reopening applies nothing twice.
        let again = Store::open_sqlite(&path).await.unwrap();
        let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(again.pool())
            .await
            .unwrap();
        assert_eq!(applied, MIGRATOR.iter().count() as i64);
    }

    #[tokio::test]
    async fn refuses_bad_rows_through_constraints() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("db")).await.unwrap();
        let bad_status = sqlx::query(
            "INSERT INTO runs (workflow, trigger, trigger_key, status, created_at) VALUES ('w', 'manual', 'k', 'exploded', 0)",
        )
        .execute(store.pool())
        .await;
        assert!(
            bad_status.is_err(),
            "a run status outside the list must be refused"
        );
        let bad_index = sqlx::query(
            "INSERT INTO wallet_cursors (wallet, key_id, next_index) VALUES ('cold', 'k', -1)",
        )
        .execute(store.pool())
        .await;
        assert!(
            bad_index.is_err(),
            "a negative address index must be refused"
        );
    }
}
