//! Schedule fires: one row per `(workflow, scheduled_for)`, so a fire happens once however many
//! daemons notice it and however the clock moves.

use chrono::{DateTime, Utc};

use super::{Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FireOutcome {
    /// This call recorded the fire: the caller owns starting its run.
    Recorded,
    /// Someone recorded it before; nothing to do.
    AlreadyRecorded,
}

impl Store {
    /// Records that `workflow` fires at `scheduled_for`, unless that fire is already recorded.
    pub async fn record_fire(
        &self,
        workflow: &str,
        scheduled_for: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<FireOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO fires (workflow, scheduled_for, recorded_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (workflow, scheduled_for) DO NOTHING",
        )
        .bind(workflow)
        .bind(scheduled_for.timestamp_millis())
        .bind(now.timestamp_millis())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(if inserted == 1 {
            FireOutcome::Recorded
        } else {
            FireOutcome::AlreadyRecorded
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn two_stores_on_one_file_record_a_fire_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("satflow.db");
        let a = Store::open_sqlite(&path).await.unwrap();
        let b = Store::open_sqlite(&path).await.unwrap();
        let at = DateTime::parse_from_rfc3339("2027-03-29T07:00:00Z")
            .unwrap()
            .to_utc();
        let now = Utc::now();
        let mut tasks = Vec::new();
        for i in 0..20 {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                store.record_fire("weekly", at, now).await
            }));
        }
        let mut recorded = 0;
        for t in tasks {
            if t.await.unwrap().unwrap() == FireOutcome::Recorded {
                recorded += 1;
            }
        }
        assert_eq!(recorded, 1);
        let next = at + chrono::Duration::days(7);
        assert_eq!(
            a.record_fire("weekly", next, now).await.unwrap(),
            FireOutcome::Recorded
        );
    }
}
