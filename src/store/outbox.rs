//! The outbox table: effects queued in the transaction of the change that causes them, claimed
//! with a lease, completed with their attempt history. Completing an item that a step waits for
//! also completes the step and hands its run back to the runner, in the same transaction.

use super::db::{self, DbRow, Tx};
use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use super::status::{AttemptOutcome, OutboxStatus, StepStatus};
use super::{Store, StoreError, from_millis};

/// An effect to queue. `key` is derived from what the effect is, never random: queueing the
/// same effect twice is a no-op.
#[derive(Debug, Clone, PartialEq)]
pub struct NewItem {
    pub kind: String,
    pub key: String,
    pub payload: Value,
    /// The run and step waiting for this item's result, if any.
    pub run: Option<(i64, String)>,
}

#[derive(Debug, Clone)]
pub struct ItemRow {
    pub id: i64,
    pub kind: String,
    pub key: String,
    pub payload: Value,
    pub status: OutboxStatus,
    pub attempts: i64,
    /// Attempts made since the item's budget was last reset by `outbox retry`.
    pub budget_used: i64,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub result: Option<Value>,
    pub run_id: Option<i64>,
    pub step_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct AttemptRow {
    pub attempt: i64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: Option<AttemptOutcome>,
    pub http_status: Option<i64>,
    pub error: Option<String>,
}

/// An item taken by a dispatcher, for one attempt.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub item: ItemRow,
    pub attempt: i64,
    /// The previous attempt never reported back (its daemon died mid-call): the effect may or
    /// may not have happened, so it must be reconciled before it is sent again.
    pub previous_unknown: bool,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Completion {
    Done(Value),
    Retry {
        at: DateTime<Utc>,
        error: String,
        http_status: Option<u16>,
        /// The effect may have happened: reconcile before the next attempt.
        unknown: bool,
    },
    Dead {
        error: String,
        http_status: Option<u16>,
    },
}

const ITEM_COLUMNS: &str = "id, kind, idempotency_key, payload_json, status, attempts, attempts - budget_from AS budget_used, next_attempt_at, last_error, result_json, run_id, step_id, created_at, updated_at";

fn item_row(row: &DbRow) -> Result<ItemRow, sqlx::Error> {
    let payload: String = row.try_get("payload_json")?;
    let result: Option<String> = row.try_get("result_json")?;
    Ok(ItemRow {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        key: row.try_get("idempotency_key")?,
        payload: serde_json::from_str(&payload).unwrap_or(Value::Null),
        status: row.try_get("status")?,
        attempts: row.try_get("attempts")?,
        budget_used: row.try_get("budget_used")?,
        next_attempt_at: from_millis(row.try_get("next_attempt_at")?),
        last_error: row.try_get("last_error")?,
        result: result.and_then(|r| serde_json::from_str(&r).ok()),
        run_id: row.try_get("run_id")?,
        step_id: row.try_get("step_id")?,
        created_at: from_millis(row.try_get("created_at")?),
        updated_at: from_millis(row.try_get("updated_at")?),
    })
}

/// Queues items inside the caller's transaction; an item whose key exists already is skipped.
pub async fn insert_items(
    tx: &mut Tx,
    items: &[NewItem],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for item in items {
        db::query(
            "INSERT INTO outbox (kind, idempotency_key, payload_json, status, next_attempt_at, run_id, step_id, created_at, updated_at)
             VALUES ($1, $2, $3, 'pending', $4, $5, $6, $4, $4)
             ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(&item.kind)
        .bind(&item.key)
        .bind(item.payload.to_string())
        .bind(now.timestamp_millis())
        .bind(item.run.as_ref().map(|(r, _)| *r))
        .bind(item.run.as_ref().map(|(_, s)| s.as_str()))
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

impl Store {
    /// Queues items in a transaction of their own (effects not caused by a step: alerts).
    pub async fn enqueue(&self, items: &[NewItem], now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        insert_items(&mut tx, items, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Takes up to `limit` due items for `owner` until `now + lease`, opening an attempt for each.
    pub async fn claim_due(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        let now_ms = now.timestamp_millis();
        // Instances claim side by side; each passes over the items another is claiming.
        let mut tx = self.begin_claim().await?;
        let skip_locked = tx.backend().skip_locked();
        let rows = db::query(&format!(
            "UPDATE outbox SET lease_owner = $1, lease_until = $2, attempts = attempts + 1, updated_at = $3
             WHERE id IN (SELECT id FROM outbox
                          WHERE status = 'pending' AND next_attempt_at <= $3
                            AND (lease_until IS NULL OR lease_until < $3)
                          ORDER BY next_attempt_at, id LIMIT $4 {skip_locked})
             RETURNING {ITEM_COLUMNS}"
        ))
        .bind(owner)
        .bind((now + lease).timestamp_millis())
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&mut tx)
        .await?;
        let items = rows.iter().map(item_row).collect::<Result<Vec<_>, _>>()?;
        if items.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        // Three statements for the whole batch, not three per item: with SQLite every statement
        // is a round trip to its connection's thread. The ids are the integers just read back.
        let ids = items
            .iter()
            .map(|i| i.id.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        // How each item's previous attempt ended (none: its first attempt).
        let previous: HashMap<i64, Option<AttemptOutcome>> = db::query(&format!(
            "SELECT a.outbox_id, a.outcome FROM outbox_attempts a JOIN outbox o ON o.id = a.outbox_id
             WHERE a.outbox_id IN ({ids}) AND a.attempt = o.attempts - 1"
        ))
        .fetch_all(&mut tx)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("outbox_id")?, r.try_get("outcome")?)))
        .collect::<Result<_, sqlx::Error>>()?;
        db::query(&format!(
            "UPDATE outbox_attempts SET outcome = 'unknown', finished_at = $1,
                 error = 'satflow stopped before this attempt reported back'
             WHERE outbox_id IN ({ids}) AND outcome IS NULL"
        ))
        .bind(now_ms)
        .execute(&mut tx)
        .await?;
        db::query(&format!(
            "INSERT INTO outbox_attempts (outbox_id, attempt, started_at)
             SELECT id, attempts, $1 FROM outbox WHERE id IN ({ids})"
        ))
        .bind(now_ms)
        .execute(&mut tx)
        .await?;
        let claimed = items
            .into_iter()
            .map(|item| Claimed {
                attempt: item.attempts,
                previous_unknown: matches!(
                    previous.get(&item.id),
                    Some(None | Some(AttemptOutcome::Unknown))
                ),
                item,
            })
            .collect();
        tx.commit().await?;
        Ok(claimed)
    }

    /// Records how an attempt ended, if `owner` still holds the item. A done or dead item that a
    /// step waits for completes that step and requeues its run; a dead item queues `dead_alert`.
    pub async fn complete(
        &self,
        claimed: &Claimed,
        owner: &str,
        completion: &Completion,
        dead_alert: Option<NewItem>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let recorded = complete_in(&mut tx, claimed, owner, completion, dead_alert, now).await?;
        tx.commit().await?;
        Ok(recorded)
    }

    /// Records several attempts' ends in one transaction, each exactly as [`Store::complete`]
    /// would (in the order given); returns, for each, whether it was recorded (false: fenced).
    pub async fn complete_all(
        &self,
        owner: &str,
        outcomes: Vec<(&Claimed, Completion, Option<NewItem>)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<bool>, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut recorded = Vec::with_capacity(outcomes.len());
        for (claimed, completion, dead_alert) in outcomes {
            recorded
                .push(complete_in(&mut tx, claimed, owner, &completion, dead_alert, now).await?);
        }
        tx.commit().await?;
        Ok(recorded)
    }

    /// The newest items first.
    pub async fn outbox_items(&self, limit: i64) -> Result<Vec<ItemRow>, StoreError> {
        let rows = db::query(&format!(
            "SELECT {ITEM_COLUMNS} FROM outbox ORDER BY id DESC LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(item_row).collect::<Result<_, _>>()?)
    }

    pub async fn outbox_item(&self, id: i64) -> Result<Option<ItemRow>, StoreError> {
        let row = db::query(&format!("SELECT {ITEM_COLUMNS} FROM outbox WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(item_row).transpose()?)
    }

    pub async fn outbox_attempts(&self, id: i64) -> Result<Vec<AttemptRow>, StoreError> {
        let rows = db::query(
            "SELECT attempt, started_at, finished_at, outcome, http_status, error
             FROM outbox_attempts WHERE outbox_id = $1 ORDER BY attempt",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AttemptRow {
                    attempt: r.try_get("attempt")?,
                    started_at: from_millis(r.try_get("started_at")?),
                    finished_at: r.try_get::<Option<i64>, _>("finished_at")?.map(from_millis),
                    outcome: r.try_get("outcome")?,
                    http_status: r.try_get("http_status")?,
                    error: r.try_get("error")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// `(pending, dead)` counts.
    pub async fn outbox_backlog(&self) -> Result<(i64, i64), StoreError> {
        let row = db::query(
            "SELECT COALESCE(SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END), 0) AS pending,
                    COALESCE(SUM(CASE WHEN status = 'dead' THEN 1 ELSE 0 END), 0) AS dead FROM outbox",
        )
        .fetch_one(self.pool())
        .await?;
        Ok((row.try_get("pending")?, row.try_get("dead")?))
    }

    /// When the next pending item becomes due, for the dispatcher's sleep.
    pub async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let next: Option<i64> = db::query_scalar(
            // The later of the two, portably (SQLite has no GREATEST, PostgreSQL no MAX(a, b)).
            "SELECT MIN(CASE WHEN lease_until > next_attempt_at THEN lease_until ELSE next_attempt_at END)
             FROM outbox WHERE status = 'pending'",
        )
        .fetch_one(self.pool())
        .await?;
        Ok(next.map(from_millis))
    }

    /// Puts a dead item back in the queue with a fresh attempt budget; a run that failed
    /// because of it waits for it again. False when there is no dead item `id`.
    pub async fn retry_item(
        &self,
        id: i64,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let item: Option<(Option<i64>, Option<String>)> = db::query_as(
            "UPDATE outbox SET status = 'pending', budget_from = attempts, next_attempt_at = $1, updated_at = $1
             WHERE id = $2 AND status = 'dead' RETURNING run_id, step_id",
        )
        .bind(now.timestamp_millis())
        .bind(id)
        .fetch_optional(&mut tx)
        .await?;
        let Some((run_id, step_id)) = item else {
            return Ok(false);
        };
        if let (Some(run_id), Some(step_id)) = (run_id, step_id) {
            db::query(
                "UPDATE step_results SET status = 'waiting', error = NULL, finished_at = NULL
                 WHERE run_id = $1 AND step_id = $2 AND status = 'failed'",
            )
            .bind(run_id)
            .bind(&step_id)
            .execute(&mut tx)
            .await?;
            db::query(
                "UPDATE runs SET status = 'waiting', error = NULL, finished_at = NULL
                 WHERE id = $1 AND status IN ('failed', 'queued')",
            )
            .bind(run_id)
            .execute(&mut tx)
            .await?;
        }
        audit_decision(&mut tx, "outbox.retried", id, actor, run_id, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Gives up on a pending or dead item without another attempt (and without an alert); a
    /// step waiting for it fails. False when there is no such item.
    pub async fn discard_item(
        &self,
        id: i64,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let now_ms = now.timestamp_millis();
        let mut tx = self.begin_write().await?;
        let item: Option<(Option<i64>, Option<String>)> = db::query_as(
            "UPDATE outbox SET status = 'dead', last_error = 'discarded by the user', lease_owner = NULL,
                 lease_until = NULL, updated_at = $1
             WHERE id = $2 AND status IN ('pending', 'dead') RETURNING run_id, step_id",
        )
        .bind(now_ms)
        .bind(id)
        .fetch_optional(&mut tx)
        .await?;
        let Some((run_id, step_id)) = item else {
            return Ok(false);
        };
        if let (Some(run_id), Some(step_id)) = (run_id, step_id) {
            resume_waiting_step(
                &mut tx,
                run_id,
                &step_id,
                false,
                None,
                Some("the outbox item was discarded by the user"),
                now_ms,
            )
            .await?;
        }
        audit_decision(&mut tx, "outbox.discarded", id, actor, run_id, now).await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// One attempt's end recorded inside `tx` (see [`Store::complete`]).
async fn complete_in(
    tx: &mut Tx,
    claimed: &Claimed,
    owner: &str,
    completion: &Completion,
    dead_alert: Option<NewItem>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let id = claimed.item.id;
    let now_ms = now.timestamp_millis();
    let (status, next, error, result, http_status, outcome) = match completion {
        Completion::Done(result) => (
            OutboxStatus::Done,
            None,
            None,
            Some(result.to_string()),
            None,
            AttemptOutcome::Done,
        ),
        Completion::Retry {
            at,
            error,
            http_status,
            unknown,
        } => (
            OutboxStatus::Pending,
            Some(at.timestamp_millis()),
            Some(error.as_str()),
            None,
            *http_status,
            if *unknown {
                AttemptOutcome::Unknown
            } else {
                AttemptOutcome::Retry
            },
        ),
        Completion::Dead { error, http_status } => (
            OutboxStatus::Dead,
            None,
            Some(error.as_str()),
            None,
            *http_status,
            AttemptOutcome::Dead,
        ),
    };
    let updated = db::query(
        "UPDATE outbox SET status = $1, next_attempt_at = COALESCE($2, next_attempt_at),
             last_error = COALESCE($3, last_error), result_json = COALESCE($4, result_json),
             lease_owner = NULL, lease_until = NULL, updated_at = $5
         WHERE id = $6 AND status = 'pending' AND lease_owner = $7 AND attempts = $8",
    )
    .bind(status)
    .bind(next)
    .bind(error)
    .bind(&result)
    .bind(now_ms)
    .bind(id)
    .bind(owner)
    // The fence: the lease is (owner, attempt). An owner whose lease ran out and who took
    // the item again meanwhile holds a later attempt; its earlier one is refused too.
    .bind(claimed.attempt)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if updated == 0 {
        // Another daemon took the item over after our lease ran out; its attempt counts
        // (nothing of this one is written).
        return Ok(false);
    }
    db::query(
        "UPDATE outbox_attempts SET finished_at = $1, outcome = $2, http_status = $3, error = $4
         WHERE outbox_id = $5 AND attempt = $6",
    )
    .bind(now_ms)
    .bind(outcome)
    .bind(http_status.map(i64::from))
    .bind(error)
    .bind(id)
    .bind(claimed.attempt)
    .execute(&mut *tx)
    .await?;
    if status != OutboxStatus::Pending
        && let (Some(run_id), Some(step_id)) = (claimed.item.run_id, &claimed.item.step_id)
    {
        resume_waiting_step(
            tx,
            run_id,
            step_id,
            status == OutboxStatus::Done,
            result.as_deref(),
            error,
            now_ms,
        )
        .await?;
    }
    // An effect that moved money or changed an order is on record with its outcome, in
    // the transaction that records it.
    if status != OutboxStatus::Pending
        && let Some(kind) = crate::treasury::audit::effect_kind(&claimed.item.kind)
    {
        let entry = super::audit::NewAudit {
            actor: crate::treasury::audit::ENGINE.into(),
            kind: if status == OutboxStatus::Done {
                kind.to_string()
            } else {
                format!("{kind}.failed")
            },
            subject: format!("outbox/{id}"),
            detail: serde_json::json!({
                "key": claimed.item.key,
                "run_id": claimed.item.run_id,
                "step_id": claimed.item.step_id,
                "effect": crate::treasury::audit::effect_detail(&claimed.item.kind, &claimed.item.payload),
                "result": crate::treasury::audit::effect_result(&claimed.item.kind, result.as_deref()),
                "error": error,
            }),
        };
        super::audit::append(tx, &entry, now).await?;
    }
    // A provider that refuses everything kills many items at once: their alerts are
    // coalesced, one email an hour with a count.
    if status == OutboxStatus::Dead
        && let Some(alert) = &dead_alert
        && super::alert_window::admit(tx, "dead_letter", now, super::ALERT_WINDOW).await?
    {
        insert_items(tx, std::slice::from_ref(alert), now).await?;
    }
    Ok(true)
}

/// A person's retry or discard of an item, on record in the transaction that does it.
async fn audit_decision(
    tx: &mut Tx,
    kind: &str,
    id: i64,
    actor: &str,
    run_id: Option<i64>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let entry = super::audit::NewAudit {
        actor: actor.to_string(),
        kind: kind.to_string(),
        subject: format!("outbox/{id}"),
        detail: serde_json::json!({ "run_id": run_id }),
    };
    super::audit::append(tx, &entry, now).await?;
    Ok(())
}

/// Ends a step that waited for an item and gives its run back to the runner.
async fn resume_waiting_step(
    tx: &mut Tx,
    run_id: i64,
    step_id: &str,
    succeeded: bool,
    output: Option<&str>,
    error: Option<&str>,
    now_ms: i64,
) -> Result<(), StoreError> {
    let changed = db::query(
        "UPDATE step_results SET status = $1, output_json = COALESCE($2, output_json), error = $3, finished_at = $4
         WHERE run_id = $5 AND step_id = $6 AND status = 'waiting'",
    )
    .bind(if succeeded {
        StepStatus::Succeeded
    } else {
        StepStatus::Failed
    })
    .bind(output)
    .bind(if succeeded { None } else { error })
    .bind(now_ms)
    .bind(run_id)
    .bind(step_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if changed == 1 {
        db::query("UPDATE runs SET status = 'queued' WHERE id = $1 AND status = 'waiting'")
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(key: &str) -> NewItem {
        NewItem {
            kind: "http.post".into(),
            key: key.into(),
            payload: serde_json::json!({}),
            run: None,
        }
    }

    #[tokio::test]
    async fn an_instance_whose_lease_ran_out_cannot_mark_the_item_done() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let a = Store::open_sqlite(&path).await.unwrap();
        let b = Store::open_sqlite(&path).await.unwrap();
        lease_ran_out(a, b).await;
    }

    #[tokio::test]
    async fn an_instance_whose_lease_ran_out_cannot_mark_the_item_done_on_postgres() {
        let Some(db) = crate::store::test_postgres::TestDatabase::create().await else {
            return;
        };
        lease_ran_out(db.store().await, db.store().await).await;
    }

    #[tokio::test]
    async fn instances_claiming_at_once_on_postgres_never_take_the_same_item() {
        let Some(db) = crate::store::test_postgres::TestDatabase::create().await else {
            return;
        };
        let stores = [db.store().await, db.store().await, db.store().await];
        let t0 = crate::clock::system_now();
        let items: Vec<NewItem> = (0..60).map(|i| item(&format!("k{i}"))).collect();
        stores[0].enqueue(&items, t0).await.unwrap();
        // The three claim in turns that overlap: each awaits PostgreSQL mid-transaction.
        let (x, y, z) = tokio::join!(
            claim_all(&stores[0], "i0", t0),
            claim_all(&stores[1], "i1", t0),
            claim_all(&stores[2], "i2", t0),
        );
        let claimed: Vec<i64> = [x, y, z].concat();
        let distinct: std::collections::BTreeSet<i64> = claimed.iter().copied().collect();
        assert_eq!(distinct.len(), 60, "every item claimed");
        assert_eq!(claimed.len(), 60, "no item claimed twice: {claimed:?}");
    }

    /// Claims, three at a time, until nothing is left; the ids taken.
    async fn claim_all(store: &Store, owner: &str, now: DateTime<Utc>) -> Vec<i64> {
        let mut ids = Vec::new();
        loop {
            let claimed = store
                .claim_due(owner, now, Duration::seconds(60), 3)
                .await
                .unwrap();
            if claimed.is_empty() {
                return ids;
            }
            ids.extend(claimed.iter().map(|c| c.item.id));
        }
    }

    async fn lease_ran_out(a: Store, b: Store) {
        let t0 = crate::clock::system_now();
        let lease = Duration::seconds(2);
        a.enqueue(&[item("k")], t0).await.unwrap();
        let first = a.claim_due("a", t0, lease, 10).await.unwrap();
        assert_eq!(first.len(), 1);
        // Claimed once: nobody else gets it while the lease holds.
        assert!(b.claim_due("b", t0, lease, 10).await.unwrap().is_empty());
        // A stalls past its lease; B takes the item over and A's late outcome is refused.
        let t1 = t0 + Duration::seconds(3);
        let second = b.claim_due("b", t1, lease, 10).await.unwrap();
        assert_eq!(second.len(), 1);
        assert!(
            second[0].previous_unknown,
            "A's attempt never reported back"
        );
        let done = Completion::Done(serde_json::json!({"by": "a"}));
        assert!(!a.complete(&first[0], "a", &done, None, t1).await.unwrap());
        // A claiming again for itself (a later attempt) does not revive its first attempt.
        let t2 = t1 + Duration::seconds(3);
        let third = a.claim_due("a", t2, lease, 10).await.unwrap();
        assert_eq!(third[0].attempt, 3);
        assert!(!a.complete(&first[0], "a", &done, None, t2).await.unwrap());
        assert!(!b.complete(&second[0], "b", &done, None, t2).await.unwrap());
        let done = Completion::Done(serde_json::json!({"by": "a, third"}));
        assert!(a.complete(&third[0], "a", &done, None, t2).await.unwrap());
        let row = a.outbox_item(first[0].item.id).await.unwrap().unwrap();
        assert_eq!(row.status, OutboxStatus::Done);
        assert_eq!(row.result, Some(serde_json::json!({"by": "a, third"})));
        let attempts = a.outbox_attempts(row.id).await.unwrap();
        let outcomes: Vec<_> = attempts.iter().map(|a| a.outcome).collect();
        assert_eq!(
            outcomes,
            [
                Some(AttemptOutcome::Unknown),
                Some(AttemptOutcome::Unknown),
                Some(AttemptOutcome::Done)
            ]
        );
    }
}
