//! Runs and their step results: queueing, claiming with a lease, recording each step before the
//! next starts, finishing. A step's result and the outbox items it causes commit together.

use super::db::{self, DbRow, Tx};
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use super::outbox::{NewItem, insert_items};
use super::status::{RunStatus, StepStatus, Trigger};
use super::wallets::Reservation;
use super::withdrawals::NewWithdrawal;
use super::{Store, StoreError, from_millis};

#[derive(Debug, Clone)]
pub struct RunRow {
    pub id: i64,
    pub workflow: String,
    pub trigger: Trigger,
    pub trigger_key: String,
    pub event: Option<Value>,
    pub status: RunStatus,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct StepRow {
    pub step_id: String,
    pub position: i64,
    pub status: StepStatus,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A step's outcome, to be recorded with the effects it causes.
pub struct StepRecord<'a> {
    pub step_id: &'a str,
    pub position: usize,
    pub status: StepStatus,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub effects: Vec<NewItem>,
    /// An address the step hands out, committed with it.
    pub reservation: Option<Reservation>,
    /// A withdrawal the step plans, committed with it (before any provider is called).
    pub withdrawal: Option<NewWithdrawal>,
}

/// What became of recording a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Done,
    /// Another daemon took the run over: stop.
    LeaseLost,
    /// The address the step reserved was taken meanwhile: perform the step again.
    Conflict,
}

const RUN_COLUMNS: &str = "id, workflow, trigger, trigger_key, event_json, status, created_at, started_at, finished_at, error";

fn run_row(row: &DbRow) -> Result<RunRow, sqlx::Error> {
    let event: Option<String> = row.try_get("event_json")?;
    Ok(RunRow {
        id: row.try_get("id")?,
        workflow: row.try_get("workflow")?,
        trigger: row.try_get("trigger")?,
        trigger_key: row.try_get("trigger_key")?,
        event: event.and_then(|e| serde_json::from_str(&e).ok()),
        status: row.try_get("status")?,
        created_at: from_millis(row.try_get("created_at")?),
        started_at: row
            .try_get::<Option<i64>, _>("started_at")?
            .map(from_millis),
        finished_at: row
            .try_get::<Option<i64>, _>("finished_at")?
            .map(from_millis),
        error: row.try_get("error")?,
    })
}

impl Store {
    /// Queues a run unless one with the same `(workflow, trigger, key)` exists; returns its id
    /// when this call queued it.
    pub async fn queue_run(
        &self,
        workflow: &str,
        trigger: Trigger,
        key: &str,
        event: Option<&Value>,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.begin_write().await?;
        let id: Option<i64> = db::query_scalar(
            "INSERT INTO runs (workflow, trigger, trigger_key, event_json, status, created_at)
             VALUES ($1, $2, $3, $4, 'queued', $5)
             ON CONFLICT (workflow, trigger, trigger_key) DO NOTHING RETURNING id",
        )
        .bind(workflow)
        .bind(trigger)
        .bind(key)
        .bind(event.map(Value::to_string))
        .bind(now.timestamp_millis())
        .fetch_optional(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Takes the oldest run that is queued, or running under a lease that has expired (its
    /// daemon died), for `owner` until `now + lease`. Runs in `busy` (those this runner is
    /// executing already) are never taken again, even if their lease ran out.
    pub async fn claim_run(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        busy: &[i64],
    ) -> Result<Option<RunRow>, StoreError> {
        // The ids are integers written into the text (no array type is common to both
        // backends); formatting an i64 cannot inject anything.
        let busy = busy
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let not_busy = if busy.is_empty() {
            String::new()
        } else {
            format!("AND id NOT IN ({busy})")
        };
        let mut tx = self.begin_write().await?;
        let row = db::query(&format!(
            "UPDATE runs SET status = 'running', lease_owner = $1, lease_until = $2,
                 started_at = COALESCE(started_at, $3)
             WHERE id = (SELECT id FROM runs
                         WHERE (status = 'queued' OR (status = 'running' AND lease_until < $3))
                           {not_busy}
                         ORDER BY id LIMIT 1)
             RETURNING {RUN_COLUMNS}"
        ))
        .bind(owner)
        .bind((now + lease).timestamp_millis())
        .bind(now.timestamp_millis())
        .fetch_optional(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(row.as_ref().map(run_row).transpose()?)
    }

    /// Extends `owner`'s lease on each of `runs` that it still holds, so a step that takes long
    /// (a slow provider) does not hand its run to another daemon while this one is alive.
    /// Returns the runs whose lease was extended.
    pub async fn renew_run_leases(
        &self,
        owner: &str,
        runs: &[i64],
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Vec<i64>, StoreError> {
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_write().await?;
        let ids = runs
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let renewed: Vec<i64> = db::query_scalar(&format!(
            "UPDATE runs SET lease_until = $1
             WHERE id IN ({ids}) AND status = 'running' AND lease_owner = $2
             RETURNING id"
        ))
        .bind((now + lease).timestamp_millis())
        .bind(owner)
        .fetch_all(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(renewed)
    }

    pub async fn run(&self, id: i64) -> Result<Option<RunRow>, StoreError> {
        let row = db::query(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(run_row).transpose()?)
    }

    /// The newest runs first.
    pub async fn recent_runs(&self, limit: i64) -> Result<Vec<RunRow>, StoreError> {
        let rows = db::query(&format!(
            "SELECT {RUN_COLUMNS} FROM runs ORDER BY id DESC LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(run_row).collect::<Result<_, _>>()?)
    }

    pub async fn steps(&self, run_id: i64) -> Result<Vec<StepRow>, StoreError> {
        let rows = db::query(
            "SELECT step_id, position, status, output_json, error, started_at, finished_at
             FROM step_results WHERE run_id = $1 ORDER BY position",
        )
        .bind(run_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let output: Option<String> = row.try_get("output_json")?;
                Ok(StepRow {
                    step_id: row.try_get("step_id")?,
                    position: row.try_get("position")?,
                    status: row.try_get("status")?,
                    output: output.and_then(|o| serde_json::from_str(&o).ok()),
                    error: row.try_get("error")?,
                    started_at: from_millis(row.try_get("started_at")?),
                    finished_at: row
                        .try_get::<Option<i64>, _>("finished_at")?
                        .map(from_millis),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Records a step's outcome, its effects and its address reservation in one transaction,
    /// provided `owner` still holds the run; extends the lease. A waiting step puts the run to
    /// `waiting`.
    pub async fn record_step(
        &self,
        run_id: i64,
        owner: &str,
        step: StepRecord<'_>,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Recorded, StoreError> {
        let mut tx = self.begin_write().await?;
        if !hold_lease(&mut tx, run_id, owner, now, lease).await? {
            return Ok(Recorded::LeaseLost);
        }
        if let Some(r) = &step.reservation
            && !super::wallets::reserve(&mut tx, r, now).await?
        {
            return Ok(Recorded::Conflict);
        }
        let finished = (step.status != StepStatus::Waiting).then_some(now.timestamp_millis());
        db::query(
            "INSERT INTO step_results (run_id, step_id, position, status, output_json, error, started_at, finished_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (run_id, step_id) DO UPDATE SET status = excluded.status,
                 output_json = excluded.output_json, error = excluded.error, finished_at = excluded.finished_at",
        )
        .bind(run_id)
        .bind(step.step_id)
        .bind(step.position as i64)
        .bind(step.status)
        .bind(step.output.as_ref().map(Value::to_string))
        .bind(&step.error)
        .bind(step.started_at.timestamp_millis())
        .bind(finished)
        .execute(&mut tx)
        .await?;
        if let Some(w) = &step.withdrawal
            && !super::withdrawals::insert(&mut tx, w, now).await?
        {
            return Ok(Recorded::Conflict);
        }
        insert_items(&mut tx, &step.effects, now).await?;
        if step.status == StepStatus::Waiting {
            db::query("UPDATE runs SET status = 'waiting', lease_owner = NULL, lease_until = NULL WHERE id = $1")
                .bind(run_id)
                .execute(&mut tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Recorded::Done)
    }

    /// Ends a run. `alert` (the run_failed email) is queued in the same transaction.
    pub async fn finish_run(
        &self,
        run_id: i64,
        owner: &str,
        succeeded: bool,
        error: Option<&str>,
        alert: Option<NewItem>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = db::query(
            "UPDATE runs SET status = $1, error = $2, finished_at = $3, lease_owner = NULL, lease_until = NULL
             WHERE id = $4 AND status = 'running' AND lease_owner = $5",
        )
        .bind(if succeeded {
            RunStatus::Succeeded
        } else {
            RunStatus::Failed
        })
        .bind(error)
        .bind(now.timestamp_millis())
        .bind(run_id)
        .bind(owner)
        .execute(&mut tx)
        .await?
        .rows_affected();
        // Runs failing together (a provider down for every workflow) send one email an hour
        // with a count, not one each.
        if done == 1
            && let Some(alert) = &alert
            && super::alert_window::admit(&mut tx, "run_failed", now, super::ALERT_WINDOW).await?
        {
            insert_items(&mut tx, std::slice::from_ref(alert), now).await?;
        }
        tx.commit().await?;
        Ok(done == 1)
    }

    /// Hands back a run that `owner` holds because one of its steps waits for an item: the
    /// run waits, or is queued again if the item finished in the meantime.
    pub async fn release_to_waiting(&self, run_id: i64, owner: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        db::query(
            "UPDATE runs SET lease_owner = NULL, lease_until = NULL,
                 status = CASE WHEN EXISTS (SELECT 1 FROM step_results WHERE run_id = $1 AND status = 'waiting')
                               THEN 'waiting' ELSE 'queued' END
             WHERE id = $1 AND status = 'running' AND lease_owner = $2",
        )
        .bind(run_id)
        .bind(owner)
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Counts of runs by status, for `status` and the metrics.
    pub async fn run_counts(&self) -> Result<Vec<(RunStatus, i64)>, StoreError> {
        let rows =
            db::query("SELECT status, COUNT(*) AS n FROM runs GROUP BY status ORDER BY status")
                .fetch_all(self.pool())
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("status")?, r.try_get("n")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}

/// Extends `owner`'s lease on a running run; false if someone else holds it now.
async fn hold_lease(
    tx: &mut Tx,
    run_id: i64,
    owner: &str,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<bool, StoreError> {
    let held = db::query(
        "UPDATE runs SET lease_until = $1 WHERE id = $2 AND status = 'running' AND lease_owner = $3",
    )
    .bind((now + lease).timestamp_millis())
    .bind(run_id)
    .bind(owner)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(held == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_instance_whose_run_lease_ran_out_can_record_nothing_more() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let a = Store::open_sqlite(&path).await.unwrap();
        let b = Store::open_sqlite(&path).await.unwrap();
        let t0 = crate::clock::system_now();
        let lease = Duration::seconds(2);
        a.queue_run("w", Trigger::Manual, "m1", None, t0)
            .await
            .unwrap();
        let run = a.claim_run("a", t0, lease, &[]).await.unwrap().unwrap();
        assert!(b.claim_run("b", t0, lease, &[]).await.unwrap().is_none());
        let t1 = t0 + Duration::seconds(3);
        let taken = b.claim_run("b", t1, lease, &[]).await.unwrap().unwrap();
        assert_eq!(taken.id, run.id);
        let step = |id| StepRecord {
            step_id: id,
            position: 0,
            status: StepStatus::Succeeded,
            output: None,
            error: None,
            started_at: t1,
            effects: vec![NewItem {
                kind: "http.post".into(),
                key: format!("run/{}/step/{id}", run.id),
                payload: Value::Null,
                run: None,
            }],
            reservation: None,
            withdrawal: None,
        };
        assert_eq!(
            a.record_step(run.id, "a", step("s1"), t1, lease)
                .await
                .unwrap(),
            Recorded::LeaseLost
        );
        assert!(
            !a.finish_run(run.id, "a", true, None, None, t1)
                .await
                .unwrap()
        );
        assert!(
            a.outbox_items(10).await.unwrap().is_empty(),
            "a fenced step queues no effect"
        );
        assert_eq!(
            b.record_step(run.id, "b", step("s1"), t1, lease)
                .await
                .unwrap(),
            Recorded::Done
        );
        assert!(
            b.finish_run(run.id, "b", true, None, None, t1)
                .await
                .unwrap()
        );
        assert_eq!(a.outbox_items(10).await.unwrap().len(), 1);
    }
}
