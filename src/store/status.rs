//! What started a run, and the states a run, a step result, an outbox item, an outbox attempt and a withdrawal can be
//! in, as enums stored as TEXT (the same on SQLite and PostgreSQL).
//!
//! The texts are the ones the schema's CHECK constraints allow and the rows already hold; they
//! are also what `runs`, `outbox` and `withdrawals` print and what their JSON carries, so a
//! variant's text must never change. Code decides from the variants, never from the text.

use std::fmt;

/// Implements the text form (`name`, `Display` honouring width and alignment, `FromStr`) of a
/// status enum from one table of variant ↔ text.
macro_rules! status_text {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            /// Every variant, in the order the schema lists them.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The text stored in the database and printed to the user.
            pub fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.name())
            }
        }

        // Stored as its text, on any backend that stores texts.
        impl<DB: sqlx::Database> sqlx::Type<DB> for $ty
        where
            str: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <str as sqlx::Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <str as sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $ty
        where
            &'q str: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as sqlx::Database>::ArgumentBuffer<'q>,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&'q str as sqlx::Encode<'q, DB>>::encode(self.name(), buf)
            }
        }

        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $ty
        where
            &'r str: sqlx::Decode<'r, DB>,
        {
            fn decode(
                value: <DB as sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                Ok(<&'r str as sqlx::Decode<'r, DB>>::decode(value)?.parse()?)
            }
        }

        impl super::db::IntoArg for $ty {
            fn into_arg(self) -> super::db::Arg {
                super::db::Arg::Text(Some(self.name().to_owned()))
            }
        }

        impl super::db::IntoArg for Option<$ty> {
            fn into_arg(self) -> super::db::Arg {
                super::db::Arg::Text(self.map(|v| v.name().to_owned()))
            }
        }

        impl std::str::FromStr for $ty {
            type Err = UnknownStatus;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($ty::$variant),)+
                    _ => Err(UnknownStatus {
                        kind: stringify!($ty),
                        value: s.to_string(),
                        accepted: &[$($text),+],
                    }),
                }
            }
        }
    };
}

/// A text that is none of a status enum's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a {kind} (accepted: {})", accepted.join(", "))]
pub struct UnknownStatus {
    pub kind: &'static str,
    pub value: String,
    pub accepted: &'static [&'static str],
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Schedule,
    Event,
    Manual,
}

status_text!(Trigger {
    Schedule => "schedule",
    Event => "event",
    Manual => "manual",
});

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Queued,
    /// Held under a lease by one runner.
    Running,
    /// One of its steps waits for an outbox item.
    Waiting,
    Succeeded,
    Failed,
}

status_text!(RunStatus {
    Queued => "queued",
    Running => "running",
    Waiting => "waiting",
    Succeeded => "succeeded",
    Failed => "failed",
});

impl RunStatus {
    /// Whether the run is over (it will not be taken again unless an item is retried).
    pub fn is_finished(self) -> bool {
        matches!(self, RunStatus::Succeeded | RunStatus::Failed)
    }
}

/// A recorded step's result. The schema also allows `running`, which nothing writes: a step is
/// recorded once it has an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    Succeeded,
    Failed,
    Skipped,
    /// Waiting for an outbox item; the run waits with it.
    Waiting,
}

status_text!(StepStatus {
    Succeeded => "succeeded",
    Failed => "failed",
    Skipped => "skipped",
    Waiting => "waiting",
});

/// An outbox item's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxStatus {
    /// Due now or later (retries included).
    Pending,
    Done,
    /// Out of attempts, refused for good, or discarded by the user.
    Dead,
}

status_text!(OutboxStatus {
    Pending => "pending",
    Done => "done",
    Dead => "dead",
});

/// How one outbox attempt ended. An attempt still open has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttemptOutcome {
    Done,
    Retry,
    Dead,
    /// The effect may or may not have happened (a timeout, or the daemon died mid-call).
    Unknown,
}

status_text!(AttemptOutcome {
    Done => "done",
    Retry => "retry",
    Dead => "dead",
    Unknown => "unknown",
});

/// Where a withdrawal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WithdrawalStatus {
    /// Decided by its step, no provider called yet.
    Planned,
    /// A provider call may be under way: what it did must be found out before calling again.
    Requesting,
    /// The provider accepted it.
    Requested,
    /// A transaction exists.
    Sent,
    Confirmed,
    /// Nothing to withdraw; no provider ever saw it.
    Skipped,
    Failed,
}

status_text!(WithdrawalStatus {
    Planned => "planned",
    Requesting => "requesting",
    Requested => "requested",
    Sent => "sent",
    Confirmed => "confirmed",
    Skipped => "skipped",
    Failed => "failed",
});

impl WithdrawalStatus {
    /// Whether a provider took the money out (the withdrawal counts in the ledger).
    pub fn is_withdrawn(self) -> bool {
        matches!(
            self,
            WithdrawalStatus::Requested | WithdrawalStatus::Sent | WithdrawalStatus::Confirmed
        )
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use sqlx::Connection;
    use sqlx::sqlite::SqliteConnection;

    use super::*;

    async fn memory() -> SqliteConnection {
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        sqlx::query("CREATE TABLE t (s TEXT NOT NULL)")
            .execute(&mut conn)
            .await
            .unwrap();
        conn
    }

    /// Binds every variant, reads the stored text and the variant back.
    async fn round_trip<T>(all: &[T])
    where
        T: Copy
            + PartialEq
            + fmt::Debug
            + fmt::Display
            + for<'q> sqlx::Encode<'q, sqlx::Sqlite>
            + for<'r> sqlx::Decode<'r, sqlx::Sqlite>
            + sqlx::Type<sqlx::Sqlite>
            + Send
            + Unpin,
    {
        let mut conn = memory().await;
        for v in all {
            sqlx::query("DELETE FROM t")
                .execute(&mut conn)
                .await
                .unwrap();
            sqlx::query("INSERT INTO t (s) VALUES (?1)")
                .bind(*v)
                .execute(&mut conn)
                .await
                .unwrap();
            let text: String = sqlx::query_scalar("SELECT s FROM t")
                .fetch_one(&mut conn)
                .await
                .unwrap();
            assert_eq!(text, v.to_string(), "{v:?} is stored as its name");
            let back: T = sqlx::query_scalar("SELECT s FROM t")
                .fetch_one(&mut conn)
                .await
                .unwrap();
            assert_eq!(back, *v);
        }
    }

    /// Reads rows holding the texts the database holds today (written as plain text, the way
    /// every release before the enums wrote them).
    async fn reads_today<T>(texts: &[&str], expected: &[T])
    where
        T: PartialEq
            + fmt::Debug
            + for<'r> sqlx::Decode<'r, sqlx::Sqlite>
            + sqlx::Type<sqlx::Sqlite>
            + Send
            + Unpin,
    {
        let mut conn = memory().await;
        for (text, want) in texts.iter().zip(expected) {
            sqlx::query("DELETE FROM t")
                .execute(&mut conn)
                .await
                .unwrap();
            sqlx::query("INSERT INTO t (s) VALUES (?1)")
                .bind(*text)
                .execute(&mut conn)
                .await
                .unwrap();
            let got: T = sqlx::query_scalar("SELECT s FROM t")
                .fetch_one(&mut conn)
                .await
                .unwrap();
            assert_eq!(&got, want, "{text}");
        }
        assert_eq!(texts.len(), expected.len());
    }

    #[tokio::test]
    async fn trigger_round_trips_and_reads_todays_texts() {
        round_trip(Trigger::ALL).await;
        use Trigger::*;
        reads_today(&["schedule", "event", "manual"], &[Schedule, Event, Manual]).await;
    }

    #[tokio::test]
    async fn run_status_round_trips_and_reads_todays_texts() {
        round_trip(RunStatus::ALL).await;
        use RunStatus::*;
        reads_today(
            &["queued", "running", "waiting", "succeeded", "failed"],
            &[Queued, Running, Waiting, Succeeded, Failed],
        )
        .await;
    }

    #[tokio::test]
    async fn step_status_round_trips_and_reads_todays_texts() {
        round_trip(StepStatus::ALL).await;
        use StepStatus::*;
        reads_today(
            &["succeeded", "failed", "skipped", "waiting"],
            &[Succeeded, Failed, Skipped, Waiting],
        )
        .await;
    }

    #[tokio::test]
    async fn outbox_status_round_trips_and_reads_todays_texts() {
        round_trip(OutboxStatus::ALL).await;
        use OutboxStatus::*;
        reads_today(&["pending", "done", "dead"], &[Pending, Done, Dead]).await;
    }

    #[tokio::test]
    async fn attempt_outcome_round_trips_and_reads_todays_texts() {
        round_trip(AttemptOutcome::ALL).await;
        use AttemptOutcome::*;
        reads_today(
            &["done", "retry", "dead", "unknown"],
            &[Done, Retry, Dead, Unknown],
        )
        .await;
    }

    #[tokio::test]
    async fn withdrawal_status_round_trips_and_reads_todays_texts() {
        round_trip(WithdrawalStatus::ALL).await;
        use WithdrawalStatus::*;
        reads_today(
            &[
                "planned",
                "requesting",
                "requested",
                "sent",
                "confirmed",
                "skipped",
                "failed",
            ],
            &[
                Planned, Requesting, Requested, Sent, Confirmed, Skipped, Failed,
            ],
        )
        .await;
    }

    #[tokio::test]
    async fn an_unknown_text_is_refused_not_guessed() {
        let mut conn = memory().await;
        sqlx::query("INSERT INTO t (s) VALUES ('Succeeded')")
            .execute(&mut conn)
            .await
            .unwrap();
        let read: Result<RunStatus, _> = sqlx::query_scalar("SELECT s FROM t")
            .fetch_one(&mut conn)
            .await;
        assert!(read.is_err(), "{read:?}");
        let e = RunStatus::from_str("Succeeded").unwrap_err();
        assert_eq!(e.value, "Succeeded");
        assert!(e.accepted.contains(&"succeeded"));
    }

    #[test]
    fn the_text_is_the_serde_form_and_pads() {
        for v in WithdrawalStatus::ALL {
            assert_eq!(serde_json::to_value(v).unwrap(), v.name());
            assert_eq!(WithdrawalStatus::from_str(v.name()), Ok(*v));
        }
        assert_eq!(format!("[{:<9}]", RunStatus::Failed), "[failed   ]");
    }

    /// Rows written as every release before the enums wrote them (plain text in SQL) read back
    /// through the store's own queries, each status as its variant.
    #[tokio::test]
    async fn rows_of_today_read_back_through_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open_sqlite(&dir.path().join("db"))
            .await
            .unwrap();
        rows_of_today_read_back(store).await;
    }

    /// The same on PostgreSQL (the enums are TEXT there too).
    #[tokio::test]
    async fn rows_of_today_read_back_through_the_store_on_postgres() {
        let Some(db) = crate::store::test_postgres::TestDatabase::create().await else {
            return;
        };
        rows_of_today_read_back(db.store().await).await;
    }

    async fn rows_of_today_read_back(store: crate::store::Store) {
        let pool = store.pool();
        for (id, (trigger, status)) in [
            ("schedule", "queued"),
            ("event", "running"),
            ("manual", "waiting"),
            ("manual", "succeeded"),
            ("event", "failed"),
        ]
        .into_iter()
        .enumerate()
        {
            crate::store::db::query(
                "INSERT INTO runs (id, workflow, trigger, trigger_key, status, created_at)
                 VALUES ($1, 'w', $2, $3, $4, 0)",
            )
            .bind(id as i64 + 1)
            .bind(trigger)
            .bind(format!("k{id}"))
            .bind(status)
            .execute(pool)
            .await
            .unwrap();
        }
        for (position, status) in ["succeeded", "failed", "skipped", "waiting"]
            .iter()
            .enumerate()
        {
            crate::store::db::query(
                "INSERT INTO step_results (run_id, step_id, position, status, started_at)
                 VALUES (1, $1, $2, $3, 0)",
            )
            .bind(format!("s{position}"))
            .bind(position as i64)
            .bind(*status)
            .execute(pool)
            .await
            .unwrap();
        }
        for (id, status) in ["pending", "done", "dead"].iter().enumerate() {
            crate::store::db::query(
                "INSERT INTO outbox (id, kind, idempotency_key, payload_json, status, next_attempt_at, created_at, updated_at)
                 VALUES ($1, 'http', $2, '{}', $3, 0, 0, 0)",
            )
            .bind(id as i64 + 1)
            .bind(format!("key{id}"))
            .bind(*status)
            .execute(pool)
            .await
            .unwrap();
        }
        for (attempt, outcome) in [
            Some("done"),
            Some("retry"),
            Some("dead"),
            Some("unknown"),
            None,
        ]
        .into_iter()
        .enumerate()
        {
            crate::store::db::query(
                "INSERT INTO outbox_attempts (outbox_id, attempt, started_at, outcome) VALUES (1, $1, 0, $2)",
            )
            .bind(attempt as i64 + 1)
            .bind(outcome)
            .execute(pool)
            .await
            .unwrap();
        }
        let withdrawals = [
            "planned",
            "requesting",
            "requested",
            "sent",
            "confirmed",
            "skipped",
            "failed",
        ];
        for (i, status) in withdrawals.iter().enumerate() {
            crate::store::db::query(
                "INSERT INTO withdrawals (key, workflow, provider, wallet, address, address_index, status, created_at, updated_at)
                 VALUES ($1, 'w', 'hub', 'vault', $2, $3, $4, $3, $3)",
            )
            .bind(format!("w{i}"))
            .bind(format!("bc1q{i}"))
            .bind(i as i64)
            .bind(*status)
            .execute(pool)
            .await
            .unwrap();
        }

        let mut runs = store.recent_runs(10).await.unwrap();
        runs.reverse();
        use RunStatus as R;
        assert_eq!(
            runs.iter()
                .map(|r| (r.trigger, r.status))
                .collect::<Vec<_>>(),
            [
                (Trigger::Schedule, R::Queued),
                (Trigger::Event, R::Running),
                (Trigger::Manual, R::Waiting),
                (Trigger::Manual, R::Succeeded),
                (Trigger::Event, R::Failed),
            ]
        );
        use StepStatus as S;
        assert_eq!(
            store
                .steps(1)
                .await
                .unwrap()
                .iter()
                .map(|s| s.status)
                .collect::<Vec<_>>(),
            [S::Succeeded, S::Failed, S::Skipped, S::Waiting]
        );
        let mut items = store.outbox_items(10).await.unwrap();
        items.reverse();
        use OutboxStatus as O;
        assert_eq!(
            items.iter().map(|i| i.status).collect::<Vec<_>>(),
            [O::Pending, O::Done, O::Dead]
        );
        use AttemptOutcome as A;
        assert_eq!(
            store
                .outbox_attempts(1)
                .await
                .unwrap()
                .iter()
                .map(|a| a.outcome)
                .collect::<Vec<_>>(),
            [
                Some(A::Done),
                Some(A::Retry),
                Some(A::Dead),
                Some(A::Unknown),
                None
            ]
        );
        for (i, text) in withdrawals.iter().enumerate() {
            let row = store.withdrawal(&format!("w{i}")).await.unwrap().unwrap();
            assert_eq!(row.status.name(), *text);
        }
        assert_eq!(store.run_counts().await.unwrap().len(), 5);
    }
}
