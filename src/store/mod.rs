//! The database: the source of truth and the only queue. All SQL in satflow lives under this
//! folder, written once for both backends (see `db`): SQLite (one file, the default) or
//! PostgreSQL (`database: postgres://…`, several instances may share it).
//!
//! SQLite runs in WAL mode with `synchronous=NORMAL` (durable at each checkpoint, fast commits),
//! a busy timeout so concurrent writers wait instead of failing, and `BEGIN IMMEDIATE` for every
//! write transaction so two writers never deadlock upgrading read locks. PostgreSQL write
//! transactions take one advisory lock first, so writers take the same turns there (see
//! `db::PG_WRITE_LOCK`). Transactions here must stay short and must never be held across
//! network I/O.
//!
//! A write that fails (a full disk, an I/O error, a lock held too long) must never leave its
//! connection in the pool believing it is still inside a transaction: every SQLite connection
//! handed back is checked, and one that is not clean is closed and replaced (see
//! `clean_on_release`).

mod alert_window;
mod alerts;
mod approvals;
pub mod audit;
mod budgets;
mod copy;
mod dashboard;
pub(crate) mod db;
mod exchanges;
mod expect;
mod fires;
mod health;
mod inbox;
mod instances;
mod orders;
mod outbox;
mod prices;
mod runs;
mod status;
pub mod users;
mod wallets;
mod withdrawals;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};

use crate::config::{Database, PostgresUrl};

pub use alert_window::ALERT_WINDOW;
pub use alerts::AlertWindow;
pub use approvals::{ApprovalRow, ApprovalStatus, Decided, Decision, NewApproval};
pub use copy::{CopyError, TableCopy};
pub use dashboard::{LedgerStamp, Listing};
pub use db::Backend;
pub(crate) use db::Tx;
pub use exchanges::{
    Applied, Decide, Effects, EventRow, ExchangeRow, NewRun, Observation, Seen, UsedAddress,
    is_final, rank,
};
pub use expect::ExpectAlert;
pub use fires::{Fire, FireAction, WorkflowFires};
pub use health::{WriteFailure, WriteHealth};
pub use inbox::{InboxRow, KEEP_UNRECOGNIZED, KEEP_UNRECOGNIZED_DAYS, NewWebhook, Stored};
pub use instances::InstanceRow;
pub use orders::OrderRow;
pub use outbox::{AttemptRow, Claimed, Completion, ItemRow, NewItem};
pub use runs::{Recorded, RunRow, StepRecord, StepRow};
pub use status::{
    AttemptOutcome, OutboxStatus, RunStatus, StepStatus, Trigger, UnknownStatus, WithdrawalStatus,
};
pub use users::{Role, SessionRow, UserName, UserRow};
pub use wallets::{AddressRow, Reservation};
pub use withdrawals::{NewWithdrawal, WithdrawalRow, WithdrawalUpdate};

use db::Pool;

/// Times are stored as milliseconds since the Unix epoch.
pub(crate) fn from_millis(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// The migrations in `migrations/sqlite/` and `migrations/postgres/`, embedded in the binary.
/// The two folders hold the same schema, version for version.
static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database {path}: {source}")]
    Open { path: PathBuf, source: sqlx::Error },
    /// `target` is the URL without its password.
    #[error("cannot open the PostgreSQL database {target}: {source}")]
    OpenPostgres { target: String, source: sqlx::Error },
    #[error("cannot bring the database schema up to date: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("the database holds something satflow cannot read: {0}")]
    Corrupt(String),
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: Pool,
    /// SQLite: one connection with `synchronous=FULL`, for writes that an answer to the outside
    /// world depends on (the webhook inbox): committed means on disk. PostgreSQL: the main pool
    /// (a commit is flushed to the WAL before it returns, `synchronous_commit` left on).
    durable: Pool,
    /// One connection with a short busy (SQLite) or lock (PostgreSQL) timeout, opened on first
    /// use, for `/healthz`: a locked database is seen in a fraction of a second, not after the
    /// writers' ten.
    probe: Pool,
    /// The last write that failed, for `/healthz`.
    health: Arc<WriteHealth>,
    /// SQLite: the turn every write transaction of `pool` and `durable` waits for first.
    turn: db::WriteTurn,
}

/// How long the health probe waits for the write lock before calling the database locked.
const PROBE_BUSY_TIMEOUT: Duration = Duration::from_millis(300);

/// Pool options whose connections are checked when handed back: one that a failed write left
/// inside a transaction (or believing it is) is closed, and the pool opens a fresh one.
///
/// Why: when COMMIT or a statement fails with SQLITE_FULL or SQLITE_IOERR, SQLite may roll the
/// transaction back by itself; the ROLLBACK that sqlx then sends fails ("no transaction is
/// active") and sqlx's count of open transactions stays at one, so every later `BEGIN
/// IMMEDIATE` on that connection is refused ("attempted to call begin_with at non-zero
/// transaction depth") for as long as the process lives.
fn clean_on_release(options: SqlitePoolOptions, health: &Arc<WriteHealth>) -> SqlitePoolOptions {
    let health = Arc::clone(health);
    options.after_release(move |conn, _meta| {
        let health = Arc::clone(&health);
        Box::pin(async move {
            let clean = is_clean(conn).await?;
            if !clean {
                health.failed("a write transaction failed and left its connection unusable; it was replaced");
                tracing::warn!("a database connection left inside a failed transaction was closed and will be replaced");
            }
            Ok(clean)
        })
    })
}

/// Whether `conn` is outside any transaction, both in sqlx's count and in SQLite itself (a
/// BEGIN that failed halfway can leave SQLite inside a transaction sqlx knows nothing of,
/// holding the write lock against every other connection).
async fn is_clean(conn: &mut SqliteConnection) -> Result<bool, sqlx::Error> {
    // Locking the handle waits for the rollback that dropping a transaction queued, so what
    // is read next is what the connection's next user would meet.
    let mut handle = conn.lock_handle().await?;
    // SAFETY: the handle is a live connection, locked for us alone while `handle` is held;
    // `sqlite3_get_autocommit` only reads its state.
    let autocommit =
        unsafe { libsqlite3_sys::sqlite3_get_autocommit(handle.as_raw_handle().as_ptr()) };
    drop(handle);
    Ok(autocommit != 0 && !conn.is_in_transaction())
}

/// How many connections an instance keeps to PostgreSQL: enough for the runner, the
/// dispatcher, the webhook writer and the readers at once, few enough for a shared server.
const POSTGRES_CONNECTIONS: u32 = 8;

impl Store {
    /// Opens (creating it if needed) and migrates the configured database.
    pub async fn open(database: &Database) -> Result<Store, StoreError> {
        match database {
            Database::Sqlite(path) => Store::open_sqlite(path).await,
            Database::Postgres(url) => Store::open_postgres(url).await,
        }
    }

    /// Opens and migrates a PostgreSQL database (which must exist). TLS is used as the URL's
    /// `sslmode` says (rustls, with the webpki roots unless `sslrootcert` names others).
    pub async fn open_postgres(url: &PostgresUrl) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::OpenPostgres {
            target: url.redacted(),
            source,
        };
        let options = PgConnectOptions::from_str(url.expose())
            .map_err(open_err)?
            .application_name("satflow");
        let health = Arc::new(WriteHealth::default());
        let pool = PgPoolOptions::new()
            .max_connections(POSTGRES_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
            .map_err(open_err)?;
        // Instances starting together: sqlx's migrator holds an advisory lock while it runs,
        // the others wait and find it done.
        POSTGRES_MIGRATOR.run(&pool).await?;
        let timeout = format!("{}ms", PROBE_BUSY_TIMEOUT.as_millis());
        let probe = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(2))
            .connect_lazy_with(options.options([
                ("lock_timeout", timeout.as_str()),
                ("statement_timeout", "2000ms"),
            ]));
        Ok(Store {
            pool: Pool::Pg(pool.clone()),
            durable: Pool::Pg(pool),
            probe: Pool::Pg(probe),
            health,
            turn: db::WriteTurn::default(),
        })
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
            .foreign_keys(true)
            // Sized for an idle daemon on a Pi: 512 KiB of page cache per connection, not 2 MB.
            .pragma("cache_size", "-512");
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
        let health = Arc::new(WriteHealth::default());
        // A Pi has little memory and SQLite serialises writers anyway: a handful of connections.
        // Connections a burst opened (each a thread and a page cache) close after a minute idle.
        let pool = clean_on_release(
            SqlitePoolOptions::new()
                .max_connections(4)
                .idle_timeout(Duration::from_secs(60)),
            &health,
        )
        .connect_with(options.clone())
        .await
        .map_err(open_err)?;
        SQLITE_MIGRATOR.run(&pool).await?;
        drop(lock);
        let durable = clean_on_release(SqlitePoolOptions::new().max_connections(1), &health)
            .connect_with(options.clone().synchronous(SqliteSynchronous::Full))
            .await
            .map_err(open_err)?;
        let probe = clean_on_release(
            SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(2)),
            &health,
        )
        .connect_lazy_with(options.busy_timeout(PROBE_BUSY_TIMEOUT));
        Ok(Store {
            pool: Pool::Sqlite(pool),
            durable: Pool::Sqlite(durable),
            probe: Pool::Sqlite(probe),
            health,
            turn: db::WriteTurn::default(),
        })
    }

    /// Which database this store runs on.
    pub fn backend(&self) -> Backend {
        self.pool.backend()
    }

    /// A write transaction, holding the write lock from the start (waiting up to the busy
    /// timeout) instead of failing halfway.
    pub(crate) async fn begin_write(&self) -> Result<Tx, StoreError> {
        self.begin_on(&self.pool).await
    }

    /// A write transaction on the durable connection: committed means on disk.
    pub(crate) async fn begin_durable(&self) -> Result<Tx, StoreError> {
        self.begin_on(&self.durable).await
    }

    /// A transaction for a claim that locks the rows it takes (see `Pool::begin_claim`).
    pub(crate) async fn begin_claim(&self) -> Result<Tx, StoreError> {
        let begun = self.in_turn(self.pool.begin_claim()).await;
        self.begun(begun)
    }

    async fn begin_on(&self, pool: &Pool) -> Result<Tx, StoreError> {
        let begun = self.in_turn(pool.begin_write()).await;
        self.begun(begun)
    }

    /// `begin`, on SQLite once this process's writers have let this one through (see
    /// `db::WriteTurn`); PostgreSQL's writers take turns by its own locks.
    async fn in_turn(
        &self,
        begin: impl Future<Output = Result<Tx, sqlx::Error>>,
    ) -> Result<Tx, sqlx::Error> {
        match self.backend() {
            Backend::Postgres => begin.await,
            Backend::Sqlite => {
                let turn = self.turn.take().await?;
                Ok(begin.await?.holding(turn))
            }
        }
    }

    /// Where every write transaction begins. A failed BEGIN is remembered for `/healthz`; a
    /// SQLite connection goes back through `clean_on_release`, so it is never reused dirty.
    fn begun(&self, begun: Result<Tx, sqlx::Error>) -> Result<Tx, StoreError> {
        match begun {
            Ok(tx) => Ok(tx),
            Err(err) => {
                self.health.failed(&format!("cannot start a write: {err}"));
                Err(err.into())
            }
        }
    }

    /// What `/healthz` knows about recent writes.
    pub fn write_health(&self) -> &WriteHealth {
        &self.health
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Closes every connection, so the WAL is checkpointed before the process exits.
    pub async fn close(&self) {
        self.probe.close().await;
        self.durable.close().await;
        self.pool.close().await;
    }

    /// The SQLite pool, for the tests that reach into SQLite itself.
    #[cfg(test)]
    fn sqlite(pool: &Pool) -> &sqlx::SqlitePool {
        match pool {
            Pool::Sqlite(p) => p,
            Pool::Pg(_) => panic!("a SQLite test on a PostgreSQL store"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::ConnectOptions;

    #[tokio::test]
    async fn opens_with_wal_normal_sync_and_the_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("satflow.db");
        let store = Store::open_sqlite(&path).await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(Store::sqlite(store.pool()))
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(Store::sqlite(store.pool()))
            .await
            .unwrap();
        assert_eq!(sync, 1, "synchronous=NORMAL");
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                .fetch_all(Store::sqlite(store.pool()))
                .await
                .unwrap();
        for table in [
            "approvals",
            "audit_log",
            "schedule_anchors",
            "pending_challenges",
            "exchange_events",
            "exchanges",
            "fires",
            "orders",
            "outbox",
            "outbox_attempts",
            "runs",
            "sessions",
            "step_results",
            "users",
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
            .fetch_one(Store::sqlite(again.pool()))
            .await
            .unwrap();
        assert_eq!(applied, SQLITE_MIGRATOR.iter().count() as i64);
    }

    /// Makes every statement on every connection `pool` has now fail while `fail` is set, the
    /// way SQLite fails a write on a full disk or an I/O error: the statement is interrupted
    /// and SQLite rolls the whole transaction back by itself.
    async fn fail_writes_while(
        pool: &sqlx::SqlitePool,
        fail: &Arc<std::sync::atomic::AtomicBool>,
        steps: i32,
    ) {
        let mut held = Vec::new();
        for _ in 0..pool.options().get_max_connections() {
            held.push(pool.acquire().await.unwrap());
        }
        for conn in &mut held {
            let fail = Arc::clone(fail);
            conn.lock_handle()
                .await
                .unwrap()
                .set_progress_handler(steps, move || {
                    !fail.load(std::sync::atomic::Ordering::Relaxed)
                });
        }
    }

    fn webhook(i: usize) -> NewWebhook {
        NewWebhook {
            correlation_id: None,
            retry_count: None,
            event: Some("exchange.executed".into()),
            exchange_id: Some(format!("x-{i}")),
            body: vec![b'x'; 3000],
            recognized: true,
            alert: None,
            alert_kind: None,
        }
    }

    #[tokio::test]
    async fn writes_work_again_on_every_connection_after_sqlite_rolled_failed_ones_back() {
        // A BEGIN takes fewer VM steps than 7 and an INSERT more: the INSERT fails inside its
        // transaction, which SQLite rolls back by itself.
        writes_work_again_after_failures_every(7).await;
    }

    #[tokio::test]
    async fn writes_work_again_after_a_begin_failed_halfway() {
        // Every 3 steps: BEGIN itself is interrupted after SQLite opened the transaction, which
        // sqlx does not count; that connection would hold the write lock against every other.
        writes_work_again_after_failures_every(3).await;
    }

    async fn writes_work_again_after_failures_every(steps: i32) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("db")).await.unwrap();
        let now = crate::clock::system_now();
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
        fail_writes_while(Store::sqlite(&store.pool), &fail, steps).await;
        fail_writes_while(Store::sqlite(&store.durable), &fail, steps).await;
        let event = serde_json::json!({ "padding": "y".repeat(300) });

        // A connection replaced after its failure has no such handler: each pool fails at
        // least once, on the first write.
        fail.store(true, std::sync::atomic::Ordering::Relaxed);
        let (mut runs_failed, mut hooks_failed) = (0, 0);
        for i in 0..8 {
            let run = store
                .queue_run("w", Trigger::Event, &format!("k{i}"), Some(&event), now)
                .await;
            runs_failed += usize::from(run.is_err());
            let hooks = store.store_webhooks(&[webhook(i)], now).await;
            hooks_failed += usize::from(hooks.is_err());
        }
        assert!(
            runs_failed >= 1 && hooks_failed >= 1,
            "{runs_failed} {hooks_failed}"
        );
        assert!(
            store.write_health().last_failure().is_some(),
            "the failures are remembered for /healthz"
        );

        // The cause is gone: every connection of both pools writes again. (Before, the
        // connections left believing they were inside a transaction refused every BEGIN with
        // "attempted to call begin_with at non-zero transaction depth".)
        fail.store(false, std::sync::atomic::Ordering::Relaxed);
        for i in 1000..1040 {
            store
                .queue_run("w", Trigger::Event, &format!("k{i}"), Some(&event), now)
                .await
                .expect("a run is queued once writes work");
            store
                .store_webhooks(&[webhook(i)], now)
                .await
                .expect("a webhook is stored once writes work");
        }
        store.probe_write(now).await.unwrap();
    }

    #[tokio::test]
    async fn the_probe_sees_a_database_locked_by_another_process_without_waiting_the_busy_timeout()
    {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let store = Store::open_sqlite(&path).await.unwrap();
        store.probe_write(crate::clock::system_now()).await.unwrap();
        let mut other = SqliteConnectOptions::new()
            .filename(&path)
            .connect()
            .await
            .unwrap();
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut other)
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let locked = store.probe_write(crate::clock::system_now()).await;
        assert!(locked.is_err(), "a locked database must fail the probe");
        // Not a speed target: only that the probe does not wait the writers' 10 s timeout.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the probe waited {:?}",
            started.elapsed()
        );
        sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
        store.probe_write(crate::clock::system_now()).await.unwrap();
    }

    #[tokio::test]
    async fn refuses_bad_rows_through_constraints() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("db")).await.unwrap();
        let bad_status = sqlx::query(
            "INSERT INTO runs (workflow, trigger, trigger_key, status, created_at) VALUES ('w', 'manual', 'k', 'exploded', 0)",
        )
        .execute(Store::sqlite(store.pool()))
        .await;
        assert!(
            bad_status.is_err(),
            "a run status outside the list must be refused"
        );
        let bad_index = sqlx::query(
            "INSERT INTO wallet_cursors (wallet, key_id, next_index) VALUES ('cold', 'k', -1)",
        )
        .execute(Store::sqlite(store.pool()))
        .await;
        assert!(
            bad_index.is_err(),
            "a negative address index must be refused"
        );
    }
}

/// A PostgreSQL database of its own for a unit test, dropped with it. The server is
/// `SATFLOW_TEST_POSTGRES_URL`, else `postgres://postgres@127.0.0.1:5432/postgres`; when none
/// answers the test is skipped here without a word (the integration suite prints the one
/// line that says so), unless `SATFLOW_REQUIRE_POSTGRES=1`, which makes it fail.
#[cfg(test)]
pub(crate) mod test_postgres {
    use sqlx::Connection;

    use super::Store;
    use crate::config::PostgresUrl;

    pub(crate) struct TestDatabase {
        name: String,
        admin: String,
        pub(crate) url: PostgresUrl,
    }

    fn admin_url() -> String {
        std::env::var("SATFLOW_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
    }

    async fn admin(url: &str) -> Option<sqlx::PgConnection> {
        let conn = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            sqlx::PgConnection::connect(url),
        )
        .await;
        match conn {
            Ok(Ok(conn)) => Some(conn),
            _ if std::env::var("SATFLOW_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") => {
                panic!("SATFLOW_REQUIRE_POSTGRES=1 but no PostgreSQL server answers")
            }
            _ => None,
        }
    }

    impl TestDatabase {
        pub(crate) async fn create() -> Option<TestDatabase> {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let admin_url = admin_url();
            let mut conn = admin(&admin_url).await?;
            let name = format!(
                "satflow_unit_{}_{}_{}",
                std::process::id(),
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                crate::clock::system_now().timestamp_subsec_nanos()
            );
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .unwrap();
            let mut url = url::Url::parse(&admin_url).unwrap();
            url.set_path(&format!("/{name}"));
            Some(TestDatabase {
                name,
                admin: admin_url,
                url: PostgresUrl::new(url.to_string()),
            })
        }

        pub(crate) async fn store(&self) -> Store {
            Store::open_postgres(&self.url).await.unwrap()
        }
    }

    impl Drop for TestDatabase {
        fn drop(&mut self) {
            let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
            let admin_url = self.admin.clone();
            // Its own thread and runtime: Drop runs inside the test's runtime.
            let _ = std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(async move {
                        if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
                            let _ = sqlx::query(&drop).execute(&mut conn).await;
                        }
                    })
            })
            .join();
        }
    }
}

#[cfg(test)]
mod postgres_tests {
    use super::test_postgres::TestDatabase;
    use super::*;

    #[tokio::test]
    async fn opens_with_the_schema_and_migrating_again_applies_nothing() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let store = db.store().await;
        assert_eq!(store.backend(), Backend::Postgres);
        let tables: Vec<String> = db::query_scalar(
            "SELECT CAST(table_name AS TEXT) FROM information_schema.tables
             WHERE table_schema = 'public' ORDER BY table_name",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        for table in [
            "alert_windows",
            "approval_tokens",
            "approval_votes",
            "approvals",
            "audit_log",
            "exchange_events",
            "exchanges",
            "expect_alerts",
            "fires",
            "health_probe",
            "instances",
            "job_leases",
            "orders",
            "outbox",
            "outbox_attempts",
            "pending_challenges",
            "price_quotes",
            "run_proposers",
            "runs",
            "schedule_anchors",
            "sessions",
            "step_results",
            "users",
            "wallet_addresses",
            "wallet_cursors",
            "webhook_inbox",
            "withdrawals",
        ] {
            assert!(
                tables.iter().any(|t| t == table),
                "missing {table}: {tables:?}"
            );
        }
        store.close().await;
        let again = db.store().await;
        let applied: i64 = db::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(again.pool())
            .await
            .unwrap();
        assert_eq!(applied, POSTGRES_MIGRATOR.iter().count() as i64);
        assert_eq!(
            POSTGRES_MIGRATOR
                .iter()
                .map(|m| m.version)
                .collect::<Vec<_>>(),
            SQLITE_MIGRATOR
                .iter()
                .map(|m| m.version)
                .collect::<Vec<_>>(),
            "the two backends' migrations go version for version"
        );
        again.close().await;
    }

    #[tokio::test]
    async fn sslmode_require_connects_over_tls() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let plain = db.store().await;
        let ssl: String = db::query_scalar("SHOW ssl")
            .fetch_one(plain.pool())
            .await
            .unwrap();
        let tls_of_this_session =
            "SELECT COUNT(*) FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl";
        plain.close().await;
        if ssl != "on" {
            // A server without TLS cannot show it (Debian's cluster has it on by default).
            return;
        }
        let mut url = url::Url::parse(db.url.expose()).unwrap();
        url.set_query(Some("sslmode=require"));
        let store = Store::open_postgres(&PostgresUrl::new(url.to_string()))
            .await
            .unwrap();
        let tls: i64 = db::query_scalar(tls_of_this_session)
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(tls, 1, "the session runs over TLS (rustls)");
        let mut url = url::Url::parse(db.url.expose()).unwrap();
        url.set_query(Some("sslmode=disable"));
        let store = Store::open_postgres(&PostgresUrl::new(url.to_string()))
            .await
            .unwrap();
        let tls: i64 = db::query_scalar(tls_of_this_session)
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(tls, 0, "sslmode=disable stays in the clear");
    }

    #[tokio::test]
    async fn money_and_big_integers_come_back_exact() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let store = db.store().await;
        let now = crate::clock::system_now();
        // More digits than an f64 holds: stored as text, read back as written.
        let price = "91234.123456789012345678";
        store.save_price("peach", "eur", price, now).await.unwrap();
        let (back, at) = store.cached_price("peach", "eur").await.unwrap().unwrap();
        assert_eq!(back, price);
        assert_eq!(
            back.parse::<rust_decimal::Decimal>().unwrap().to_string(),
            price
        );
        assert_eq!(at.timestamp_millis(), now.timestamp_millis());
        // 21 million BTC in sats and beyond i32: BIGINT both ways.
        let sats: i64 = 2_100_000_000_000_000;
        db::query(
            "INSERT INTO withdrawals (key, workflow, provider, wallet, address, address_index, status, amount_sat, created_at, updated_at)
             VALUES ('w', 'w', 'hub', 'vault', 'bc1q', 0, 'sent', $1, 0, 0)",
        )
        .bind(sats)
        .execute(store.pool())
        .await
        .unwrap();
        let row = store.withdrawal("w").await.unwrap().unwrap();
        assert_eq!(row.amount_sat, Some(sats as u64));
        assert_eq!(row.status, WithdrawalStatus::Sent);
        store.close().await;
    }

    #[tokio::test]
    async fn the_probe_sees_a_held_write_lock_without_waiting_the_writers_timeout() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let store = db.store().await;
        let now = crate::clock::system_now();
        store.probe_write(now).await.unwrap();
        // Another instance in the middle of a write transaction.
        let mut other = store.pool().begin_write().await.unwrap();
        db::query("UPDATE health_probe SET at = 0")
            .execute(&mut other)
            .await
            .unwrap();
        let started = std::time::Instant::now();
        assert!(store.probe_write(now).await.is_err());
        // Not a speed target: only that the probe does not wait like a writer.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        other.commit().await.unwrap();
        store.probe_write(now).await.unwrap();
        store.close().await;
    }
}
