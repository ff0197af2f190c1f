//! The dashboard's treasury pages: the steps waiting for approvals and deciding them (through
//! the single-use link each approver was emailed), and the audit log with its verification for
//! admins.
//!
//! A decision here goes through the same store call as `satflow approve`, with the session's
//! user as the approver: the page never decides who may approve. A link's token is spent by the
//! decision it carries and must be bound to the same approval and user.

use std::collections::HashMap;

use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Session;
use super::{
    Dashboard, Failure, Page, message, page, pretty, refuse_bad_csrf, refuse_unless, when, when_opt,
};
use crate::store::{ApprovalRow, ApprovalStatus, Decided, Decision};

fn shown(a: &ApprovalRow, viewer: &str) -> Value {
    json!({
        "id": a.id,
        "run_id": a.run_id,
        "step_id": a.step_id,
        "workflow": a.workflow,
        "status": if a.status == ApprovalStatus::Pending { "waiting_approval" } else { a.status.name() },
        "pending": a.status == ApprovalStatus::Pending,
        "required": a.required,
        "given": a.votes.iter().filter(|v| v.1 == "approve").count(),
        "approvers": a.approvers.join(", "),
        "proposer": a.proposer,
        "votes": a.votes.iter().map(|(n, d, c)| json!({ "approver": n, "decision": d, "comment": c })).collect::<Vec<_>>(),
        "deadline": when(a.deadline),
        "decided_at": when_opt(a.decided_at),
        "reason": a.reason,
        "summary": pretty(&a.summary),
        "may_decide": a.status == ApprovalStatus::Pending
            && a.approvers.iter().any(|n| n == viewer)
            && a.proposer.as_deref() != Some(viewer)
            && !a.votes.iter().any(|v| v.0 == viewer),
    })
}

pub(super) async fn approvals_page(
    State(d): State<Dashboard>,
    axum::Extension(s): axum::Extension<Session>,
) -> Page {
    let rows = d.store().approvals(true).await?;
    let viewer = s.user.name.as_str().to_string();
    let list: Vec<Value> = rows.iter().map(|a| shown(a, &viewer)).collect();
    page(
        &s,
        "approvals.html",
        "approvals",
        "Approvals",
        json!({ "approvals": list }),
    )
}

async fn detail(d: &Dashboard, s: &Session, id: i64, token: Option<&str>) -> Page {
    let Some(a) = d.store().approval(id).await? else {
        return message(
            s,
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such approval.",
            "/approvals",
        );
    };
    let viewer = s.user.name.as_str().to_string();
    page(
        s,
        "approval.html",
        "approvals",
        &format!("Approval #{id}"),
        json!({ "a": shown(&a, &viewer), "token": token }),
    )
}

pub(super) async fn approval_page(
    State(d): State<Dashboard>,
    axum::Extension(s): axum::Extension<Session>,
    Path(id): Path<i64>,
    Query(q): Query<HashMap<String, String>>,
) -> Page {
    detail(&d, &s, id, q.get("token").map(String::as_str)).await
}

/// The link of an approver's email: the step's approval, with the token for the decision.
pub(super) async fn approval_link(
    State(d): State<Dashboard>,
    axum::Extension(s): axum::Extension<Session>,
    Path((run, step)): Path<(i64, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Page {
    let Some(a) = d.store().approval_for_step(run, &step).await? else {
        return message(
            &s,
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no approval for that step.",
            "/approvals",
        );
    };
    detail(&d, &s, a.id, q.get("token").map(String::as_str)).await
}

#[derive(Debug, Deserialize)]
pub(super) struct DecideForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    token: Option<String>,
    decision: String,
    #[serde(default)]
    comment: Option<String>,
}

pub(super) async fn decide(
    State(d): State<Dashboard>,
    axum::Extension(s): axum::Extension<Session>,
    Path(id): Path<i64>,
    Form(f): Form<DecideForm>,
) -> Page {
    refuse_bad_csrf(&s, f.csrf.as_deref())?;
    let back = format!("/approvals/{id}");
    let comment = f
        .comment
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    let decision = match f.decision.as_str() {
        "approve" => Decision::Approve { comment },
        "reject" => match comment {
            Some(reason) => Decision::Reject { reason },
            None => {
                return message(
                    &s,
                    StatusCode::BAD_REQUEST,
                    "Not rejected",
                    "A rejection needs a reason: write it in the comment.",
                    &back,
                );
            }
        },
        other => {
            return Err(Failure::Refused(
                StatusCode::BAD_REQUEST,
                format!(
                    "decision: `{}` is not a decision (accepted: approve, reject)\n",
                    other.chars().take(40).collect::<String>()
                ),
            ));
        }
    };
    // The emailed link's token: spent now, and only good for this approval and this user.
    let Some(token) = f.token.as_deref().filter(|t| !t.is_empty()) else {
        return message(
            &s,
            StatusCode::FORBIDDEN,
            "Not decided",
            "Decide through the link in your approval email (or with `satflow approve` on the host).",
            &back,
        );
    };
    let hash = crate::treasury::approvals::token_hash(token);
    let me = s.user.name.as_str();
    if !d.store().use_approval_token(&hash, id, me, d.now()).await? {
        return message(
            &s,
            StatusCode::FORBIDDEN,
            "Not decided",
            "This link is used already, expired, or was sent to another approver.",
            &back,
        );
    }
    let outcome = d
        .store()
        .decide_approval(id, me, &decision, "dashboard", d.now())
        .await?;
    let text = match outcome {
        Decided::Counted {
            approvals,
            required,
        } => format!("Approved: {approvals} of {required} approvals."),
        Decided::Approved => "Approved: the step runs now.".to_string(),
        Decided::Rejected => "Rejected: the step fails.".to_string(),
        Decided::OwnProposal => "You proposed this run and cannot approve it.".to_string(),
        Decided::NotAnApprover { .. } => "You are not an approver of this step.".to_string(),
        Decided::AlreadyDecided => "You have decided already.".to_string(),
        Decided::NotPending(status) => format!("This approval is {} already.", status.name()),
        Decided::NoSuchApproval => "There is no such approval.".to_string(),
    };
    if matches!(outcome, Decided::Approved | Decided::Rejected) {
        // The run is queued again: the runner carries on (or fails the step) now.
        d.0.parts.wake_runner.notify_one();
    }
    match outcome {
        Decided::Counted { .. } | Decided::Approved | Decided::Rejected => {
            tracing::info!(user = %s.user.name, approval = id, "approval decided from the dashboard");
            Ok(Redirect::to(&format!("{back}?done=1")).into_response())
        }
        _ => message(&s, StatusCode::CONFLICT, "Not decided", &text, &back),
    }
}

pub(super) async fn audit_page(
    State(d): State<Dashboard>,
    axum::Extension(s): axum::Extension<Session>,
) -> Page {
    refuse_unless(s.user.role.can_admin(), "read the audit log")?;
    let rows = d.store().audit_rows(None).await?;
    let verified = match crate::treasury::audit::verify(&rows) {
        Ok(n) => {
            json!({ "ok": true, "text": format!("{n} rows, chain intact; last hash {}", rows.last().map(|r| r.hash.as_str()).unwrap_or("(none)")) })
        }
        Err(broken) => json!({ "ok": false, "text": format!("chain broken at {broken}") }),
    };
    let shown: Vec<Value> = rows
        .iter()
        .rev()
        .take(500)
        .map(|r| json!({ "id": r.id, "at": when(r.at), "actor": r.actor, "kind": r.kind, "subject": r.subject, "detail": r.detail }))
        .collect();
    page(
        &s,
        "audit.html",
        "audit",
        "Audit log",
        json!({ "rows": shown, "verified": verified }),
    )
}
