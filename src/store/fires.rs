//! Schedule fires: one row per `(workflow, scheduled_for)`, so a fire happens once however many
//! daemons notice it and however the clock moves.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::db::{self};
use super::{Store, StoreError, from_millis};

/// What to do about one fire time; the scheduler decides it, the store records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FireAction {
    Run,
    /// Recorded so it is never considered again, but not run (missed, and the policy says so).
    Skip,
}

/// A fire time and what to do about it.
pub type Fire = (DateTime<Utc>, FireAction);

/// The fires decided for one workflow.
pub type WorkflowFires<'a> = (&'a str, &'a [Fire]);

impl Store {
    /// When the scheduler first saw each of `workflows`; set to `now` for those it never saw.
    pub async fn schedule_anchors(
        &self,
        workflows: &[&str],
        now: DateTime<Utc>,
    ) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
        let mut tx = self.begin_write().await?;
        for workflow in workflows {
            db::query("INSERT INTO schedule_anchors (workflow, since) VALUES ($1, $2) ON CONFLICT (workflow) DO NOTHING")
                .bind(workflow)
                .bind(now.timestamp_millis())
                .execute(&mut tx)
                .await?;
        }
        let rows: Vec<(String, i64)> = db::query_as("SELECT workflow, since FROM schedule_anchors")
            .fetch_all(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(rows.into_iter().map(|(w, t)| (w, from_millis(t))).collect())
    }

    /// The latest fire recorded for each workflow, run or skipped.
    pub async fn last_fires(&self) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
        let rows: Vec<(String, i64)> =
            db::query_as("SELECT workflow, MAX(scheduled_for) FROM fires GROUP BY workflow")
                .fetch_all(self.pool())
                .await?;
        Ok(rows.into_iter().map(|(w, t)| (w, from_millis(t))).collect())
    }

    /// Records fires of several workflows and queues a run for each one to run, in one
    /// transaction. A fire someone else recorded first is left alone. Returns the ids of the
    /// runs queued here.
    pub async fn record_fires(
        &self,
        fires: &[WorkflowFires<'_>],
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut queued = Vec::new();
        for (workflow, fires) in fires {
            for (at, action) in fires.iter() {
                let inserted = db::query(
                    "INSERT INTO fires (workflow, scheduled_for, recorded_at) VALUES ($1, $2, $3)
                     ON CONFLICT (workflow, scheduled_for) DO NOTHING",
                )
                .bind(workflow)
                .bind(at.timestamp_millis())
                .bind(now.timestamp_millis())
                .execute(&mut tx)
                .await?
                .rows_affected();
                if inserted == 0 || *action == FireAction::Skip {
                    continue;
                }
                let run_id: i64 = db::query_scalar(
                    "INSERT INTO runs (workflow, trigger, trigger_key, status, created_at)
                     VALUES ($1, 'schedule', $2, 'queued', $3) RETURNING id",
                )
                .bind(workflow)
                .bind(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .bind(now.timestamp_millis())
                .fetch_one(&mut tx)
                .await?;
                db::query(
                    "UPDATE fires SET run_id = $1 WHERE workflow = $2 AND scheduled_for = $3",
                )
                .bind(run_id)
                .bind(workflow)
                .bind(at.timestamp_millis())
                .execute(&mut tx)
                .await?;
                queued.push(run_id);
            }
        }
        tx.commit().await?;
        Ok(queued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn two_stores_on_one_file_queue_a_fire_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("satflow.db");
        let a = Store::open_sqlite(&path).await.unwrap();
        let b = Store::open_sqlite(&path).await.unwrap();
        let at = DateTime::parse_from_rfc3339("2027-03-29T07:00:00Z")
            .unwrap()
            .to_utc();
        let now = crate::clock::system_now();
        let mut tasks = Vec::new();
        for i in 0..20 {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                let fires = [(at, FireAction::Run)];
                store.record_fires(&[("weekly", &fires)], now).await
            }));
        }
        let mut queued = Vec::new();
        for t in tasks {
            queued.extend(t.await.unwrap().unwrap());
        }
        assert_eq!(queued.len(), 1, "one run for one fire: {queued:?}");
        assert_eq!(a.last_fires().await.unwrap().get("weekly"), Some(&at));
        let skipped = at + chrono::Duration::days(7);
        let fires = [(skipped, FireAction::Skip)];
        assert!(
            b.record_fires(&[("weekly", &fires)], now)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            a.last_fires().await.unwrap().get("weekly"),
            Some(&skipped),
            "a skipped fire is still recorded"
        );
    }

    #[tokio::test]
    async fn an_anchor_is_set_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("db")).await.unwrap();
        let first = DateTime::parse_from_rfc3339("2027-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            store.schedule_anchors(&["w"], first).await.unwrap()["w"],
            first
        );
        let later = first + chrono::Duration::days(30);
        let anchors = store.schedule_anchors(&["w", "new"], later).await.unwrap();
        assert_eq!((anchors["w"], anchors["new"]), (first, later));
    }
}
