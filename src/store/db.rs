//! The two backends behind one query interface: each query under `src/store` is written once,
//! in portable SQL with `$1, $2` placeholders, and runs on SQLite or on PostgreSQL, whichever
//! the store was opened on. Arguments are bound as integers, texts or bytes (the only column
//! types the schema uses: times are BIGINT milliseconds, money is exact decimal TEXT or
//! BIGINT sats, booleans BIGINT 0/1) and rows are read through the same `try_get` on both.
//!
//! It must never let a backend type (a pool, a connection, a row) escape `src/store`, and it
//! must never rewrite SQL: a query that has to differ between the backends says so where it
//! is written, with `Backend`.

use sqlx::postgres::{PgConnection, PgPool, PgRow};
use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};
use sqlx::{ColumnIndex, Decode, Postgres, Row as _, Sqlite, Type};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// Which database a store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// What ends a claim's SELECT: on PostgreSQL it locks the rows taken and passes over those
    /// another instance's claim holds; SQLite has no row locks (its writers take turns).
    pub(crate) fn skip_locked(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        }
    }
}

/// A pool of connections to one of the backends.
#[derive(Clone, Debug)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Pg(PgPool),
}

/// The key of the transaction-level advisory lock every PostgreSQL write transaction takes
/// first (an arbitrary constant: "satflow" in ASCII). Why: the store's transactions were
/// written for SQLite, where `BEGIN IMMEDIATE` makes writers take turns, and some of them read
/// and then write (alert windows, withdrawals, leases); the lock gives them the same turns on
/// PostgreSQL, across every instance sharing the database, so both backends behave the same.
pub(crate) const PG_WRITE_LOCK: i64 = 0x0073_6174_666c_6f77;

impl Pool {
    pub(crate) fn backend(&self) -> Backend {
        match self {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Pg(_) => Backend::Postgres,
        }
    }

    /// A write transaction. SQLite: `BEGIN IMMEDIATE`, holding the write lock from the start
    /// (waiting up to the busy timeout) instead of failing halfway. PostgreSQL: `BEGIN` and the
    /// write lock (see `PG_WRITE_LOCK`).
    pub(crate) async fn begin_write(&self) -> Result<Tx, sqlx::Error> {
        match self {
            Pool::Sqlite(pool) => Ok(Tx::new(TxInner::Sqlite(
                pool.begin_with("BEGIN IMMEDIATE").await?,
            ))),
            Pool::Pg(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(PG_WRITE_LOCK)
                    .execute(&mut *tx)
                    .await?;
                Ok(Tx::new(TxInner::Pg(tx)))
            }
        }
    }

    /// A transaction that writes only rows it locked itself: a claim, whose SELECT ends with
    /// `Backend::skip_locked`. PostgreSQL: a plain `BEGIN` without the write lock, so that
    /// instances claim side by side, each passing over the rows another has locked (it never
    /// waits for a lock, so it cannot deadlock with the write-locked transactions). SQLite:
    /// `BEGIN IMMEDIATE`, as any write.
    pub(crate) async fn begin_claim(&self) -> Result<Tx, sqlx::Error> {
        match self {
            Pool::Sqlite(_) => self.begin_write().await,
            Pool::Pg(pool) => Ok(Tx::new(TxInner::Pg(pool.begin().await?))),
        }
    }

    pub(crate) async fn close(&self) {
        match self {
            Pool::Sqlite(pool) => pool.close().await,
            Pool::Pg(pool) => pool.close().await,
        }
    }
}

/// The turn of this process's SQLite writers. SQLite lets one writer in at a time; a
/// connection that finds the lock taken sleeps in SQLite's busy handler (1, 2, 5, 10 … ms)
/// and polls again, so two busy writers of one process (the webhook inbox and the applier,
/// say) lose more time asleep than writing. Queued here instead, the next writer starts the
/// moment the last one commits. Other processes (a CLI command beside the daemon) still meet
/// the busy timeout. It must never be held across anything but the transaction itself.
///
/// It counts the writers waiting, so that a long batch (the exchange applier's) can commit
/// early and let a waiting webhook through: see [`Tx::wanted`].
#[derive(Clone, Debug, Default)]
pub(crate) struct WriteTurn {
    lock: Arc<Mutex<()>>,
    waiting: Arc<AtomicUsize>,
}

/// A writer's turn, held by its transaction until it commits or rolls back.
#[derive(Debug)]
pub(crate) struct Turn {
    _held: OwnedMutexGuard<()>,
    waiting: Arc<AtomicUsize>,
}

/// Counts one waiter for as long as it waits, however the wait ends (a timeout, a dropped
/// future).
struct Waiting(Arc<AtomicUsize>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How long a writer waits for its turn: as long as SQLite's busy timeout would have let it
/// wait for the lock.
const TURN_TIMEOUT: Duration = Duration::from_secs(10);

impl WriteTurn {
    /// Waits for this process's turn to write; refused (as a lock held too long) after
    /// `TURN_TIMEOUT`.
    pub(crate) async fn take(&self) -> Result<Turn, sqlx::Error> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let waiting = Waiting(Arc::clone(&self.waiting));
        let held = tokio::time::timeout(TURN_TIMEOUT, Arc::clone(&self.lock).lock_owned())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?;
        drop(waiting);
        Ok(Turn {
            _held: held,
            waiting: Arc::clone(&self.waiting),
        })
    }
}

/// A write transaction on either backend. Dropped without `commit`, it rolls back.
#[derive(Debug)]
pub struct Tx {
    // Declared first, dropped first: the rollback is queued before the turn passes on.
    inner: TxInner,
    turn: Option<Turn>,
}

#[derive(Debug)]
enum TxInner {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Pg(sqlx::Transaction<'static, Postgres>),
}

impl Tx {
    fn new(inner: TxInner) -> Tx {
        Tx { inner, turn: None }
    }

    /// This transaction holds `turn` until it commits or rolls back.
    pub(crate) fn holding(mut self, turn: Turn) -> Tx {
        self.turn = Some(turn);
        self
    }

    /// Whether another writer of this process waits for this transaction to end (SQLite
    /// only: PostgreSQL's writers do not queue here). A batch that can be cut anywhere commits
    /// what it has when this turns true, so a long batch never holds a short write up.
    pub(crate) fn wanted(&self) -> bool {
        self.turn
            .as_ref()
            .is_some_and(|t| t.waiting.load(Ordering::Relaxed) > 0)
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        let Tx { inner, turn } = self;
        let committed = match inner {
            TxInner::Sqlite(tx) => tx.commit().await,
            TxInner::Pg(tx) => tx.commit().await,
        };
        drop(turn);
        committed
    }

    /// For the few statements that must differ between the backends.
    pub fn backend(&self) -> Backend {
        match self.inner {
            TxInner::Sqlite(_) => Backend::Sqlite,
            TxInner::Pg(_) => Backend::Postgres,
        }
    }
}

/// Where a query runs: a pool (one statement, autocommit) or an open transaction.
pub(crate) enum Target<'a> {
    SqlitePool(&'a SqlitePool),
    PgPool(&'a PgPool),
    Sqlite(&'a mut SqliteConnection),
    Pg(&'a mut PgConnection),
}

impl<'a> From<&'a Pool> for Target<'a> {
    fn from(pool: &'a Pool) -> Target<'a> {
        match pool {
            Pool::Sqlite(p) => Target::SqlitePool(p),
            Pool::Pg(p) => Target::PgPool(p),
        }
    }
}

impl<'a> From<&'a mut Tx> for Target<'a> {
    fn from(tx: &'a mut Tx) -> Target<'a> {
        match &mut tx.inner {
            TxInner::Sqlite(tx) => Target::Sqlite(tx),
            TxInner::Pg(tx) => Target::Pg(tx),
        }
    }
}

/// A bound argument: the three column types the schema uses.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Int(Option<i64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

/// What can be bound to a placeholder.
pub(crate) trait IntoArg {
    fn into_arg(self) -> Arg;
}

macro_rules! into_arg {
    ($($ty:ty => |$v:ident| $arg:expr;)+) => {
        $(impl IntoArg for $ty {
            fn into_arg(self) -> Arg {
                let $v = self;
                $arg
            }
        })+
    };
}

into_arg! {
    i64 => |v| Arg::Int(Some(v));
    // Booleans are BIGINT 0/1 on both backends (PostgreSQL's BOOLEAN would not compare).
    bool => |v| Arg::Int(Some(i64::from(v)));
    Option<bool> => |v| Arg::Int(v.map(i64::from));
    Option<i64> => |v| Arg::Int(v);
    &i64 => |v| Arg::Int(Some(*v));
    &Option<i64> => |v| Arg::Int(*v);
    &str => |v| Arg::Text(Some(v.to_owned()));
    &&str => |v| Arg::Text(Some((*v).to_owned()));
    String => |v| Arg::Text(Some(v));
    &String => |v| Arg::Text(Some(v.clone()));
    Option<&str> => |v| Arg::Text(v.map(str::to_owned));
    Option<String> => |v| Arg::Text(v);
    Option<&String> => |v| Arg::Text(v.cloned());
    &Option<String> => |v| Arg::Text(v.clone());
    &Option<&str> => |v| Arg::Text(v.map(str::to_owned));
    Vec<u8> => |v| Arg::Bytes(Some(v));
    &Vec<u8> => |v| Arg::Bytes(Some(v.clone()));
    &[u8] => |v| Arg::Bytes(Some(v.to_vec()));
}

/// A value both backends decode (integers, texts, bytes, the status enums, and `Option`s of
/// them).
pub(crate) trait Col<'r>:
    Decode<'r, Sqlite> + Type<Sqlite> + Decode<'r, Postgres> + Type<Postgres>
{
}
impl<'r, T> Col<'r> for T where
    T: Decode<'r, Sqlite> + Type<Sqlite> + Decode<'r, Postgres> + Type<Postgres>
{
}

/// A column name or position on both backends.
pub(crate) trait Idx: ColumnIndex<SqliteRow> + ColumnIndex<PgRow> {}
impl<I> Idx for I where I: ColumnIndex<SqliteRow> + ColumnIndex<PgRow> {}

/// A row from either backend.
pub(crate) enum DbRow {
    Sqlite(SqliteRow),
    Pg(PgRow),
}

impl DbRow {
    pub(crate) fn try_get<'r, T: Col<'r>, I: Idx>(&'r self, index: I) -> Result<T, sqlx::Error> {
        match self {
            DbRow::Sqlite(row) => row.try_get(index),
            DbRow::Pg(row) => row.try_get(index),
        }
    }
}

/// Builds a row's value (a tuple of columns, in order).
pub(crate) trait FromDbRow: Sized {
    fn from_db_row(row: &DbRow) -> Result<Self, sqlx::Error>;
}

macro_rules! tuple_from_row {
    ($($t:ident $i:tt),+) => {
        impl<$($t),+> FromDbRow for ($($t,)+)
        where
            $($t: for<'r> Col<'r>,)+
        {
            fn from_db_row(row: &DbRow) -> Result<Self, sqlx::Error> {
                Ok(($(row.try_get::<$t, usize>($i)?,)+))
            }
        }
    };
}

tuple_from_row!(A 0);
tuple_from_row!(A 0, B 1);
tuple_from_row!(A 0, B 1, C 2);
tuple_from_row!(A 0, B 1, C 2, D 3);
tuple_from_row!(A 0, B 1, C 2, D 3, E 4);
tuple_from_row!(A 0, B 1, C 2, D 3, E 4, F 5);

/// What a statement changed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Done(u64);

impl Done {
    pub(crate) fn rows_affected(&self) -> u64 {
        self.0
    }
}

/// A statement with its arguments, not yet run.
#[must_use = "a query does nothing until it is run"]
pub(crate) struct Query<'q> {
    sql: &'q str,
    args: Vec<Arg>,
}

/// A statement written once for both backends.
pub(crate) fn query(sql: &str) -> Query<'_> {
    Query {
        sql,
        args: Vec::new(),
    }
}

/// A statement whose rows are one value each (the first column).
pub(crate) fn query_scalar<T>(sql: &str) -> QueryScalar<'_, T> {
    QueryScalar {
        query: query(sql),
        _t: std::marker::PhantomData,
    }
}

/// A statement whose rows are tuples.
pub(crate) fn query_as<T>(sql: &str) -> QueryAs<'_, T> {
    QueryAs {
        query: query(sql),
        _t: std::marker::PhantomData,
    }
}

fn bound<'q, DB: sqlx::Database>(
    sql: &'q str,
    args: Vec<Arg>,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    Option<i64>: sqlx::Encode<'q, DB> + Type<DB>,
    Option<String>: sqlx::Encode<'q, DB> + Type<DB>,
    Option<Vec<u8>>: sqlx::Encode<'q, DB> + Type<DB>,
{
    let mut q = sqlx::query::<DB>(sql);
    for arg in args {
        q = match arg {
            Arg::Int(v) => q.bind(v),
            Arg::Text(v) => q.bind(v),
            Arg::Bytes(v) => q.bind(v),
        };
    }
    q
}

impl<'q> Query<'q> {
    pub(crate) fn bind(mut self, value: impl IntoArg) -> Self {
        self.args.push(value.into_arg());
        self
    }

    pub(crate) async fn execute<'e>(self, on: impl Into<Target<'e>>) -> Result<Done, sqlx::Error> {
        let n = match on.into() {
            Target::SqlitePool(p) => bound::<Sqlite>(self.sql, self.args)
                .execute(p)
                .await?
                .rows_affected(),
            Target::Sqlite(c) => bound::<Sqlite>(self.sql, self.args)
                .execute(c)
                .await?
                .rows_affected(),
            Target::PgPool(p) => bound::<Postgres>(self.sql, self.args)
                .execute(p)
                .await?
                .rows_affected(),
            Target::Pg(c) => bound::<Postgres>(self.sql, self.args)
                .execute(c)
                .await?
                .rows_affected(),
        };
        Ok(Done(n))
    }

    pub(crate) async fn fetch_all<'e>(
        self,
        on: impl Into<Target<'e>>,
    ) -> Result<Vec<DbRow>, sqlx::Error> {
        Ok(match on.into() {
            Target::SqlitePool(p) => bound::<Sqlite>(self.sql, self.args)
                .fetch_all(p)
                .await?
                .into_iter()
                .map(DbRow::Sqlite)
                .collect(),
            Target::Sqlite(c) => bound::<Sqlite>(self.sql, self.args)
                .fetch_all(c)
                .await?
                .into_iter()
                .map(DbRow::Sqlite)
                .collect(),
            Target::PgPool(p) => bound::<Postgres>(self.sql, self.args)
                .fetch_all(p)
                .await?
                .into_iter()
                .map(DbRow::Pg)
                .collect(),
            Target::Pg(c) => bound::<Postgres>(self.sql, self.args)
                .fetch_all(c)
                .await?
                .into_iter()
                .map(DbRow::Pg)
                .collect(),
        })
    }

    pub(crate) async fn fetch_optional<'e>(
        self,
        on: impl Into<Target<'e>>,
    ) -> Result<Option<DbRow>, sqlx::Error> {
        Ok(match on.into() {
            Target::SqlitePool(p) => bound::<Sqlite>(self.sql, self.args)
                .fetch_optional(p)
                .await?
                .map(DbRow::Sqlite),
            Target::Sqlite(c) => bound::<Sqlite>(self.sql, self.args)
                .fetch_optional(c)
                .await?
                .map(DbRow::Sqlite),
            Target::PgPool(p) => bound::<Postgres>(self.sql, self.args)
                .fetch_optional(p)
                .await?
                .map(DbRow::Pg),
            Target::Pg(c) => bound::<Postgres>(self.sql, self.args)
                .fetch_optional(c)
                .await?
                .map(DbRow::Pg),
        })
    }

    pub(crate) async fn fetch_one<'e>(
        self,
        on: impl Into<Target<'e>>,
    ) -> Result<DbRow, sqlx::Error> {
        self.fetch_optional(on)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }
}

pub(crate) struct QueryScalar<'q, T> {
    query: Query<'q>,
    _t: std::marker::PhantomData<fn() -> T>,
}

impl<'q, T: for<'r> Col<'r>> QueryScalar<'q, T> {
    pub(crate) fn bind(mut self, value: impl IntoArg) -> Self {
        self.query = self.query.bind(value);
        self
    }

    pub(crate) async fn fetch_one<'e>(self, on: impl Into<Target<'e>>) -> Result<T, sqlx::Error> {
        self.query.fetch_one(on).await?.try_get(0)
    }

    pub(crate) async fn fetch_optional<'e>(
        self,
        on: impl Into<Target<'e>>,
    ) -> Result<Option<T>, sqlx::Error> {
        self.query
            .fetch_optional(on)
            .await?
            .map(|row| row.try_get(0))
            .transpose()
    }

    pub(crate) async fn fetch_all<'e>(
        self,
        on: impl Into<Target<'e>>,
    ) -> Result<Vec<T>, sqlx::Error> {
        self.query
            .fetch_all(on)
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect()
    }
}

pub(crate) struct QueryAs<'q, T> {
    query: Query<'q>,
    _t: std::marker::PhantomData<fn() -> T>,
}

impl<'q, T: FromDbRow> QueryAs<'q, T> {
    pub(crate) fn bind(mut self, value: impl IntoArg) -> Self {
        self.query = self.query.bind(value);
        self
    }

    #[allow(dead_code)]
    pub(crate) async fn fetch_one<'e>(self, on: impl Into<Target<'e>>) -> Result<T, sqlx::Error> {
        T::from_db_row(&self.query.fetch_one(on).await?)
    }

    pub(crate) async fn fetch_optional<'e>(
        self,
        on: impl Into<Target<'e>>,
    ) -> Result<Option<T>, sqlx::Error> {
        self.query
            .fetch_optional(on)
            .await?
            .map(|row| T::from_db_row(&row))
            .transpose()
    }

    pub(crate) async fn fetch_all<'e>(
        self,
        on: impl Into<Target<'e>>,
    ) -> Result<Vec<T>, sqlx::Error> {
        self.query
            .fetch_all(on)
            .await?
            .iter()
            .map(T::from_db_row)
            .collect()
    }
}
