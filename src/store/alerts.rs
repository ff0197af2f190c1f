//! Alert coalescing: at most one alert email per kind and window (an hour). The first alert
//! of a kind opens a window and is sent; what comes while the window is open is only counted,
//! and one summary with the count goes out when it closes (it opens the next window).
//!
//! It must never lose a count: a closed window that still holds suppressed alerts keeps
//! counting until its summary has been queued.

use super::db::{self};
use chrono::{DateTime, Duration, Utc};

use super::alert_window::admit;
use super::outbox::{NewItem, insert_items};
use super::{Store, StoreError, from_millis};

/// A window whose suppressed alerts are due to be summarised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertWindow {
    pub kind: String,
    pub window_start: DateTime<Utc>,
    pub suppressed: i64,
    pub first_suppressed: Option<DateTime<Utc>>,
    pub last_suppressed: Option<DateTime<Utc>>,
}

impl Store {
    /// Queues `item`, an alert of `kind`, unless an alert of that kind went out less than
    /// `window` ago (then it is counted for the summary). Returns whether it was queued.
    pub async fn enqueue_coalesced(
        &self,
        kind: &str,
        item: &NewItem,
        now: DateTime<Utc>,
        window: Duration,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let admitted = admit(&mut tx, kind, now, window).await?;
        if admitted {
            insert_items(&mut tx, std::slice::from_ref(item), now).await?;
        }
        tx.commit().await?;
        Ok(admitted)
    }

    /// Windows that are closed and hold suppressed alerts: each needs its summary.
    pub async fn alert_windows_due(
        &self,
        now: DateTime<Utc>,
        window: Duration,
    ) -> Result<Vec<AlertWindow>, StoreError> {
        let rows = db::query(
            "SELECT kind, window_start, suppressed_count, first_suppressed, last_suppressed FROM alert_windows
             WHERE suppressed_count > 0 AND window_start <= $1 ORDER BY kind",
        )
        .bind(now.timestamp_millis().saturating_sub(window.num_milliseconds()))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AlertWindow {
                    kind: r.try_get("kind")?,
                    window_start: from_millis(r.try_get("window_start")?),
                    suppressed: r.try_get("suppressed_count")?,
                    first_suppressed: r
                        .try_get::<Option<i64>, _>("first_suppressed")?
                        .map(from_millis),
                    last_suppressed: r
                        .try_get::<Option<i64>, _>("last_suppressed")?
                        .map(from_millis),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Queues the summary of `window` and opens the next window with it, in one transaction.
    /// Returns false when another instance summarised it first (nothing is queued then).
    pub async fn summarise_alert_window(
        &self,
        window: &AlertWindow,
        summary: Option<&NewItem>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let moved = db::query(
            "UPDATE alert_windows SET window_start = $3, suppressed_count = 0, first_suppressed = NULL,
                 last_suppressed = NULL
             WHERE kind = $1 AND window_start = $2 AND suppressed_count = $4",
        )
        .bind(&window.kind)
        .bind(window.window_start.timestamp_millis())
        .bind(now.timestamp_millis())
        .bind(window.suppressed)
        .execute(&mut tx)
        .await?
        .rows_affected()
            == 1;
        if moved {
            insert_items(
                &mut tx,
                summary.map(std::slice::from_ref).unwrap_or_default(),
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(moved)
    }

    /// How many alerts of each kind are held back in open windows, for `status`.
    pub async fn alerts_held_back(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(db::query_as(
            "SELECT kind, suppressed_count FROM alert_windows WHERE suppressed_count > 0 ORDER BY kind",
        )
        .fetch_all(self.pool())
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(key: &str) -> NewItem {
        NewItem {
            kind: "email".into(),
            key: key.into(),
            payload: serde_json::json!({}),
            run: None,
        }
    }

    #[tokio::test]
    async fn one_alert_per_window_and_one_summary_with_the_count() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("db")).await.unwrap();
        let hour = Duration::hours(1);
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let mut sent = 0;
        for i in 0..50 {
            let now = t0 + Duration::seconds(i);
            if store
                .enqueue_coalesced("k", &item(&format!("alert/k/{i}")), now, hour)
                .await
                .unwrap()
            {
                sent += 1;
            }
        }
        assert_eq!(sent, 1);
        assert!(
            store
                .alert_windows_due(t0 + Duration::minutes(59), hour)
                .await
                .unwrap()
                .is_empty()
        );
        // Still counted after the hour, until the summary is out.
        assert!(
            !store
                .enqueue_coalesced("k", &item("alert/k/late"), t0 + hour, hour)
                .await
                .unwrap()
        );
        let due = store.alert_windows_due(t0 + hour, hour).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].suppressed, 50);
        assert!(
            store
                .summarise_alert_window(&due[0], Some(&item("alert/k/summary")), t0 + hour)
                .await
                .unwrap()
        );
        // A second instance with the same view queues nothing.
        assert!(
            !store
                .summarise_alert_window(&due[0], Some(&item("alert/k/summary2")), t0 + hour)
                .await
                .unwrap()
        );
        // The summary opened the next window.
        assert!(
            !store
                .enqueue_coalesced(
                    "k",
                    &item("alert/k/next"),
                    t0 + hour + Duration::minutes(1),
                    hour
                )
                .await
                .unwrap()
        );
        let keys: Vec<String> = db::query_scalar("SELECT idempotency_key FROM outbox ORDER BY id")
            .fetch_all(store.pool())
            .await
            .unwrap();
        assert_eq!(keys, ["alert/k/0", "alert/k/summary"]);
        // Other kinds have their own window.
        assert!(
            store
                .enqueue_coalesced("other", &item("alert/other/1"), t0, hour)
                .await
                .unwrap()
        );
    }
}
