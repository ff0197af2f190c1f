//! Approvals of steps: the request (committed with the step's `waiting` result, its emails and
//! its audit entry), each approver's decision, the deadline, the single-use links, and who
//! proposed a manual run.
//!
//! Every decision is checked and written in one write transaction together with its audit
//! entry, so two approvers deciding at once are counted once each and the log never misses one.
//! Nothing here decides what a step does: it only holds the step until people have decided.

use super::db::{self, DbRow, Target, Tx};
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::audit::{NewAudit, append};
use super::outbox::{NewItem, insert_items};
use super::{Store, StoreError, from_millis};

/// Where an approval is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Rejected,
    Expired,
}

impl ApprovalStatus {
    pub fn name(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Rejected => "rejected",
            ApprovalStatus::Expired => "expired",
        }
    }

    fn parse(text: &str) -> Result<Self, StoreError> {
        Ok(match text {
            "pending" => ApprovalStatus::Pending,
            "approved" => ApprovalStatus::Approved,
            "rejected" => ApprovalStatus::Rejected,
            "expired" => ApprovalStatus::Expired,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "approval status `{other}` (accepted: pending, approved, rejected, expired)"
                )));
            }
        })
    }
}

/// A request to hold a step until `required` of `approvers` approve it.
#[derive(Debug, Clone)]
pub struct NewApproval {
    pub run_id: i64,
    pub step_id: String,
    pub position: usize,
    pub workflow: String,
    pub required: u32,
    pub approvers: Vec<String>,
    pub proposer: Option<String>,
    /// What the step would do and the rule that asked.
    pub summary: Value,
    pub started_at: DateTime<Utc>,
    pub deadline: DateTime<Utc>,
    /// (approver, SHA-256 of the token in their link).
    pub tokens: Vec<(String, String)>,
    /// The emails to the approvers.
    pub emails: Vec<NewItem>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalRow {
    pub id: i64,
    pub run_id: i64,
    pub step_id: String,
    pub workflow: String,
    pub required: u32,
    pub approvers: Vec<String>,
    pub proposer: Option<String>,
    pub summary: Value,
    pub status: ApprovalStatus,
    pub created_at: DateTime<Utc>,
    pub deadline: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    /// (approver, decision, comment), in the order given.
    pub votes: Vec<(String, String, Option<String>)>,
}

/// A decision an approver gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Approve { comment: Option<String> },
    Reject { reason: String },
}

/// What became of a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    NoSuchApproval,
    /// It was decided already (approved, rejected or expired).
    NotPending(ApprovalStatus),
    NotAnApprover {
        approvers: Vec<String>,
    },
    /// The approver proposed the run (a manual trigger): separation of duties.
    OwnProposal,
    AlreadyDecided,
    /// Counted; more approvals are needed.
    Counted {
        approvals: u32,
        required: u32,
    },
    /// The last approval needed: the step runs.
    Approved,
    /// The step fails.
    Rejected,
}

const COLUMNS: &str = "id, run_id, step_id, workflow, required, approvers, proposer, summary, status, created_at, deadline_at, decided_at, reason";

/// The approval in `row`, with its votes read on `on` (the caller's transaction or the pool).
async fn read_row<'e>(on: impl Into<Target<'e>>, row: &DbRow) -> Result<ApprovalRow, StoreError> {
    let id: i64 = row.try_get("id")?;
    let approvers: String = row.try_get("approvers")?;
    let summary: String = row.try_get("summary")?;
    let status: String = row.try_get("status")?;
    let votes = db::query(
        "SELECT approver, decision, comment FROM approval_votes WHERE approval_id = $1 ORDER BY at, approver",
    )
    .bind(id)
    .fetch_all(on)
    .await?
    .iter()
    .map(|v| {
        Ok((
            v.try_get("approver")?,
            v.try_get("decision")?,
            v.try_get("comment")?,
        ))
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(ApprovalRow {
        id,
        run_id: row.try_get("run_id")?,
        step_id: row.try_get("step_id")?,
        workflow: row.try_get("workflow")?,
        required: u32::try_from(row.try_get::<i64, _>("required")?)
            .map_err(|_| StoreError::Corrupt(format!("approval {id}: required out of range")))?,
        approvers: serde_json::from_str(&approvers)
            .map_err(|e| StoreError::Corrupt(format!("approval {id}: approvers: {e}")))?,
        proposer: row.try_get("proposer")?,
        summary: serde_json::from_str(&summary).unwrap_or(Value::Null),
        status: ApprovalStatus::parse(&status)?,
        created_at: from_millis(row.try_get("created_at")?),
        deadline: from_millis(row.try_get("deadline_at")?),
        decided_at: row
            .try_get::<Option<i64>, _>("decided_at")?
            .map(from_millis),
        reason: row.try_get("reason")?,
        votes,
    })
}

/// Fails the waiting step with `error` and gives the run back to the runner (which fails it).
async fn fail_step(
    tx: &mut Tx,
    run_id: i64,
    step_id: &str,
    error: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    db::query(
        "UPDATE step_results SET status = 'failed', error = $1, finished_at = $2
         WHERE run_id = $3 AND step_id = $4 AND status = 'waiting'",
    )
    .bind(error)
    .bind(now_ms)
    .bind(run_id)
    .bind(step_id)
    .execute(&mut *tx)
    .await?;
    queue_run(tx, run_id).await
}

async fn queue_run(tx: &mut Tx, run_id: i64) -> Result<(), StoreError> {
    db::query("UPDATE runs SET status = 'queued' WHERE id = $1 AND status = 'waiting'")
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

impl Store {
    /// Queues a manual run with who proposed it and its audit entry, in one transaction (the
    /// proposer is on record before any runner can take the run).
    pub async fn queue_manual_run(
        &self,
        workflow: &str,
        key: &str,
        proposer: Option<&str>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.begin_write().await?;
        let id: Option<i64> = db::query_scalar(
            "INSERT INTO runs (workflow, trigger, trigger_key, status, created_at)
             VALUES ($1, 'manual', $2, 'queued', $3)
             ON CONFLICT (workflow, trigger, trigger_key) DO NOTHING RETURNING id",
        )
        .bind(workflow)
        .bind(key)
        .bind(now.timestamp_millis())
        .fetch_optional(&mut tx)
        .await?;
        let Some(id) = id else {
            return Ok(None);
        };
        if let Some(proposer) = proposer {
            db::query("INSERT INTO run_proposers (run_id, proposer) VALUES ($1, $2)")
                .bind(id)
                .bind(proposer)
                .execute(&mut tx)
                .await?;
        }
        let entry = NewAudit {
            actor: proposer.unwrap_or(actor).to_string(),
            kind: "run.triggered".into(),
            subject: format!("run/{id}"),
            detail: json!({ "workflow": workflow, "proposer": proposer, "from": actor }),
        };
        append(&mut tx, &entry, now).await?;
        tx.commit().await?;
        Ok(Some(id))
    }

    /// Who proposed a manual run, if anyone said.
    pub async fn run_proposer(&self, run_id: i64) -> Result<Option<String>, StoreError> {
        Ok(
            db::query_scalar("SELECT proposer FROM run_proposers WHERE run_id = $1")
                .bind(run_id)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// Records the step as waiting for approvals, the request, its links and emails and its
    /// audit entry, provided `owner` still holds the run. `None` when the lease was lost.
    pub async fn request_approval(
        &self,
        owner: &str,
        a: &NewApproval,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<i64>, StoreError> {
        let now_ms = now.timestamp_millis();
        let mut tx = self.begin_write().await?;
        if !super::runs::hold_lease(&mut tx, a.run_id, owner, now, lease).await? {
            return Ok(None);
        }
        db::query(
            "INSERT INTO step_results (run_id, step_id, position, status, output_json, error, started_at, finished_at)
             VALUES ($1, $2, $3, 'waiting', NULL, NULL, $4, NULL)
             ON CONFLICT (run_id, step_id) DO UPDATE SET status = excluded.status,
                 output_json = NULL, error = NULL, finished_at = NULL",
        )
        .bind(a.run_id)
        .bind(&a.step_id)
        .bind(a.position as i64)
        .bind(a.started_at.timestamp_millis())
        .execute(&mut tx)
        .await?;
        let id: i64 = db::query_scalar(
            "INSERT INTO approvals (run_id, step_id, workflow, required, approvers, proposer, summary, status, created_at, deadline_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9) RETURNING id",
        )
        .bind(a.run_id)
        .bind(&a.step_id)
        .bind(&a.workflow)
        .bind(i64::from(a.required))
        .bind(json!(a.approvers).to_string())
        .bind(&a.proposer)
        .bind(a.summary.to_string())
        .bind(now_ms)
        .bind(a.deadline.timestamp_millis())
        .fetch_one(&mut tx)
        .await?;
        for (approver, hash) in &a.tokens {
            db::query(
                "INSERT INTO approval_tokens (token_hash, approval_id, approver, expires_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(hash)
            .bind(id)
            .bind(approver)
            .bind(a.deadline.timestamp_millis())
            .execute(&mut tx)
            .await?;
        }
        insert_items(&mut tx, &a.emails, now).await?;
        db::query(
            "UPDATE runs SET status = 'waiting', lease_owner = NULL, lease_until = NULL WHERE id = $1",
        )
        .bind(a.run_id)
        .execute(&mut tx)
        .await?;
        let entry = NewAudit {
            actor: crate::treasury::audit::ENGINE.into(),
            kind: "approval.requested".into(),
            subject: format!("approval/{id}"),
            detail: json!({
                "run_id": a.run_id,
                "step_id": a.step_id,
                "workflow": a.workflow,
                "required": a.required,
                "approvers": a.approvers,
                "proposer": a.proposer,
                "deadline": a.deadline.to_rfc3339(),
                "summary": a.summary,
            }),
        };
        append(&mut tx, &entry, now).await?;
        tx.commit().await?;
        Ok(Some(id))
    }

    pub async fn approval(&self, id: i64) -> Result<Option<ApprovalRow>, StoreError> {
        let row = db::query(&format!("SELECT {COLUMNS} FROM approvals WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        match row {
            Some(row) => Ok(Some(read_row(self.pool(), &row).await?)),
            None => Ok(None),
        }
    }

    pub async fn approval_for_step(
        &self,
        run_id: i64,
        step_id: &str,
    ) -> Result<Option<ApprovalRow>, StoreError> {
        let row = db::query(&format!(
            "SELECT {COLUMNS} FROM approvals WHERE run_id = $1 AND step_id = $2"
        ))
        .bind(run_id)
        .bind(step_id)
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(row) => Ok(Some(read_row(self.pool(), &row).await?)),
            None => Ok(None),
        }
    }

    /// The approvals, newest first; only the pending ones unless `all`.
    pub async fn approvals(&self, all: bool) -> Result<Vec<ApprovalRow>, StoreError> {
        let rows = db::query(&format!(
            "SELECT {COLUMNS} FROM approvals WHERE status = 'pending' OR $1 = 1 ORDER BY id DESC LIMIT 500"
        ))
        .bind(i64::from(all))
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(read_row(self.pool(), row).await?);
        }
        Ok(out)
    }

    /// `approver`'s decision on approval `id`, checked and applied in one transaction with its
    /// audit entry. `via` says where it was given (`cli`, `dashboard`).
    pub async fn decide_approval(
        &self,
        id: i64,
        approver: &str,
        decision: &Decision,
        via: &str,
        now: DateTime<Utc>,
    ) -> Result<Decided, StoreError> {
        let now_ms = now.timestamp_millis();
        let mut tx = self.begin_write().await?;
        let row = db::query(&format!("SELECT {COLUMNS} FROM approvals WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut tx)
            .await?;
        let Some(row) = row else {
            return Ok(Decided::NoSuchApproval);
        };
        let a = read_row(&mut tx, &row).await?;
        if a.status != ApprovalStatus::Pending {
            return Ok(Decided::NotPending(a.status));
        }
        if a.deadline <= now {
            // The deadline passed before the sweeper saw it: it is expired, not decided.
            expire_one(&mut tx, &a, now).await?;
            tx.commit().await?;
            return Ok(Decided::NotPending(ApprovalStatus::Expired));
        }
        if !a.approvers.iter().any(|n| n == approver) {
            return Ok(Decided::NotAnApprover {
                approvers: a.approvers,
            });
        }
        if a.proposer.as_deref() == Some(approver) {
            let entry = NewAudit {
                actor: approver.into(),
                kind: "approval.refused_self".into(),
                subject: format!("approval/{id}"),
                detail: json!({ "run_id": a.run_id, "step_id": a.step_id, "via": via }),
            };
            append(&mut tx, &entry, now).await?;
            tx.commit().await?;
            return Ok(Decided::OwnProposal);
        }
        if a.votes.iter().any(|(n, _, _)| n == approver) {
            return Ok(Decided::AlreadyDecided);
        }
        let (text, comment) = match decision {
            Decision::Approve { comment } => ("approve", comment.clone()),
            Decision::Reject { reason } => ("reject", Some(reason.clone())),
        };
        db::query(
            "INSERT INTO approval_votes (approval_id, approver, decision, comment, at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(approver)
        .bind(text)
        .bind(&comment)
        .bind(now_ms)
        .execute(&mut tx)
        .await?;
        let approvals = a.votes.iter().filter(|(_, d, _)| d == "approve").count() as u32
            + u32::from(text == "approve");
        let outcome = match decision {
            Decision::Reject { reason } => {
                let why = format!("rejected by {approver}: {reason}");
                db::query(
                    "UPDATE approvals SET status = 'rejected', decided_at = $1, reason = $2 WHERE id = $3",
                )
                .bind(now_ms)
                .bind(&why)
                .bind(id)
                .execute(&mut tx)
                .await?;
                fail_step(&mut tx, a.run_id, &a.step_id, &why, now_ms).await?;
                Decided::Rejected
            }
            Decision::Approve { .. } if approvals >= a.required => {
                db::query(
                    "UPDATE approvals SET status = 'approved', decided_at = $1 WHERE id = $2",
                )
                .bind(now_ms)
                .bind(id)
                .execute(&mut tx)
                .await?;
                // The step decides again, now approved: its waiting result goes, the run is
                // queued and resumes at it.
                db::query(
                    "DELETE FROM step_results WHERE run_id = $1 AND step_id = $2 AND status = 'waiting'",
                )
                .bind(a.run_id)
                .bind(&a.step_id)
                .execute(&mut tx)
                .await?;
                queue_run(&mut tx, a.run_id).await?;
                Decided::Approved
            }
            Decision::Approve { .. } => Decided::Counted {
                approvals,
                required: a.required,
            },
        };
        let kind = match &outcome {
            Decided::Rejected => "approval.rejected",
            Decided::Approved => "approval.approved",
            _ => "approval.approved_one",
        };
        let entry = NewAudit {
            actor: approver.into(),
            kind: kind.into(),
            subject: format!("approval/{id}"),
            detail: json!({
                "run_id": a.run_id,
                "step_id": a.step_id,
                "comment": comment,
                "approvals": approvals,
                "required": a.required,
                "via": via,
            }),
        };
        append(&mut tx, &entry, now).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// Fails the steps whose approvals' deadline passed; returns how many.
    pub async fn expire_approvals(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let due: Vec<i64> = db::query_scalar(
            "SELECT id FROM approvals WHERE status = 'pending' AND deadline_at <= $1 ORDER BY id LIMIT 100",
        )
        .bind(now.timestamp_millis())
        .fetch_all(self.pool())
        .await?;
        let mut expired = 0;
        for id in due {
            let mut tx = self.begin_write().await?;
            let row = db::query(&format!(
                "SELECT {COLUMNS} FROM approvals WHERE id = $1 AND status = 'pending'"
            ))
            .bind(id)
            .fetch_optional(&mut tx)
            .await?;
            if let Some(row) = row {
                let a = read_row(&mut tx, &row).await?;
                expire_one(&mut tx, &a, now).await?;
                expired += 1;
            }
            tx.commit().await?;
        }
        Ok(expired)
    }

    /// Spends a link's token for `approver`'s decision on approval `id`: once, before it
    /// expires, and only the token sent to that approver for that approval (another's token is
    /// left alone). False for a token unknown, used, expired or bound to something else.
    pub async fn use_approval_token(
        &self,
        token_hash: &str,
        id: i64,
        approver: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = db::query(
            "UPDATE approval_tokens SET used_at = $1
             WHERE token_hash = $2 AND approval_id = $3 AND approver = $4
               AND used_at IS NULL AND expires_at > $1",
        )
        .bind(now.timestamp_millis())
        .bind(token_hash)
        .bind(id)
        .bind(approver)
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// The names of the dashboard's users.
    pub async fn user_names(&self) -> Result<Vec<String>, StoreError> {
        Ok(db::query_scalar("SELECT name FROM users ORDER BY name")
            .fetch_all(self.pool())
            .await?)
    }
}

async fn expire_one(tx: &mut Tx, a: &ApprovalRow, now: DateTime<Utc>) -> Result<(), StoreError> {
    let now_ms = now.timestamp_millis();
    let given = a.votes.iter().filter(|(_, d, _)| d == "approve").count();
    let why = format!(
        "the approvals were not given in time: {given} of {} by {} (approvers: {})",
        a.required,
        a.deadline.to_rfc3339(),
        a.approvers.join(", ")
    );
    db::query(
        "UPDATE approvals SET status = 'expired', decided_at = $1, reason = $2 WHERE id = $3 AND status = 'pending'",
    )
    .bind(now_ms)
    .bind(&why)
    .bind(a.id)
    .execute(&mut *tx)
    .await?;
    fail_step(tx, a.run_id, &a.step_id, &why, now_ms).await?;
    let entry = NewAudit {
        actor: crate::treasury::audit::ENGINE.into(),
        kind: "approval.expired".into(),
        subject: format!("approval/{}", a.id),
        detail: json!({ "run_id": a.run_id, "step_id": a.step_id, "approvals": given, "required": a.required }),
    };
    append(tx, &entry, now).await?;
    Ok(())
}
