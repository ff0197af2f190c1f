//! `satflow approvals [--all] [--json]`, `satflow approve ID --as NAME [--comment …]`,
//! `satflow reject ID --as NAME --reason …`: the steps waiting for approvals, and deciding them
//! from the host (headless; the dashboard's page does the same through the same store call).
//!
//! ID is the approval's number, or `run/RUN/STEP`. `--as` names a dashboard user; the store
//! refuses anyone not among the step's approvers and the proposer of the run.

use std::path::Path;

use serde_json::json;

use super::{Outcome, open_store, runtime};
use crate::store::{ApprovalRow, Decided, Decision, Store};

#[derive(Debug, clap::Args)]
pub struct ApprovalsArgs {
    /// Also the approvals already decided (approved, rejected, expired)
    #[arg(long)]
    pub all: bool,
    /// Print one JSON document instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct DecideArgs {
    /// The approval: its number as `satflow approvals` lists it, or run/RUN/STEP
    pub id: String,
    /// The user deciding (one of the step's approvers)
    #[arg(long = "as", value_name = "NAME")]
    pub approver: String,
    /// A comment kept with the decision
    #[arg(long)]
    pub comment: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct RejectArgs {
    /// The approval: its number as `satflow approvals` lists it, or run/RUN/STEP
    pub id: String,
    /// The user deciding (one of the step's approvers)
    #[arg(long = "as", value_name = "NAME")]
    pub approver: String,
    /// Why: the step fails with it
    #[arg(long)]
    pub reason: String,
}

fn doc(a: &ApprovalRow) -> serde_json::Value {
    json!({
        "id": a.id,
        "run_id": a.run_id,
        "step_id": a.step_id,
        "workflow": a.workflow,
        "status": if a.status == crate::store::ApprovalStatus::Pending { "waiting_approval" } else { a.status.name() },
        "required": a.required,
        "approvers": a.approvers,
        "proposer": a.proposer,
        "approved_by": a.votes.iter().filter(|v| v.1 == "approve").map(|v| &v.0).collect::<Vec<_>>(),
        "votes": a.votes.iter().map(|(n, d, c)| json!({ "approver": n, "decision": d, "comment": c })).collect::<Vec<_>>(),
        "deadline": a.deadline.to_rfc3339(),
        "created_at": a.created_at.to_rfc3339(),
        "decided_at": a.decided_at.map(|t| t.to_rfc3339()),
        "reason": a.reason,
        "summary": a.summary,
    })
}

pub fn list(config_path: &Path, args: &ApprovalsArgs) -> anyhow::Result<Outcome> {
    runtime()?.block_on(async {
        let Some(store) = open_store(config_path).await? else {
            return Ok(Outcome::UserError);
        };
        let rows = store.approvals(args.all).await?;
        store.close().await;
        if args.json {
            let docs: Vec<_> = rows.iter().map(doc).collect();
            println!("{}", serde_json::to_string_pretty(&json!({ "approvals": docs }))?);
        } else if rows.is_empty() {
            println!("no step waits for approvals");
        } else {
            for a in &rows {
                let given = a.votes.iter().filter(|v| v.1 == "approve").count();
                println!(
                    "{:>5}  {:<16} run {:<5} {:<14} step {:<12} {given}/{} approvals (of {})  until {}{}",
                    a.id,
                    if a.status == crate::store::ApprovalStatus::Pending { "waiting_approval" } else { a.status.name() },
                    a.run_id,
                    a.workflow,
                    a.step_id,
                    a.required,
                    a.approvers.join(", "),
                    a.deadline.format("%Y-%m-%d %H:%M UTC"),
                    a.reason.as_deref().map(|r| format!("  ({r})")).unwrap_or_default(),
                );
            }
        }
        Ok(Outcome::Success)
    })
}

/// The approval `id` names: a number or run/RUN/STEP.
async fn find(store: &Store, id: &str) -> anyhow::Result<Option<i64>> {
    if let Ok(n) = id.parse::<i64>() {
        return Ok(Some(n));
    }
    let parts: Vec<&str> = id.split('/').collect();
    if let ["run", run, step] = parts.as_slice()
        && let Ok(run) = run.parse::<i64>()
    {
        return Ok(store.approval_for_step(run, step).await?.map(|a| a.id));
    }
    Ok(None)
}

fn decide(
    config_path: &Path,
    id: &str,
    approver: &str,
    decision: Decision,
) -> anyhow::Result<Outcome> {
    runtime()?.block_on(async {
        let Some(store) = open_store(config_path).await? else {
            return Ok(Outcome::UserError);
        };
        let Some(number) = find(&store, id).await? else {
            eprintln!("error: `{id}` is not an approval; write its number as `satflow approvals` lists it, or run/RUN/STEP");
            return Ok(Outcome::UserError);
        };
        if !store.user_names().await?.iter().any(|u| u == approver) {
            eprintln!("error: --as {approver}: there is no user `{approver}` (add one with `satflow user add`)");
            return Ok(Outcome::UserError);
        }
        let decided = store
            .decide_approval(number, approver, &decision, "cli", crate::clock::system_now())
            .await?;
        store.close().await;
        Ok(match decided {
            Decided::NoSuchApproval => {
                eprintln!("error: there is no approval {number} (see `satflow approvals --all`)");
                Outcome::UserError
            }
            Decided::NotPending(status) => {
                eprintln!("error: approval {number} is {} already; nothing to decide", status.name());
                Outcome::UserError
            }
            Decided::NotAnApprover { approvers } => {
                eprintln!("error: --as {approver}: not an approver of this step (approvers: {})", approvers.join(", "));
                Outcome::UserError
            }
            Decided::OwnProposal => {
                eprintln!("error: --as {approver}: {approver} proposed this run and cannot approve it; another approver must");
                Outcome::UserError
            }
            Decided::AlreadyDecided => {
                eprintln!("error: --as {approver}: {approver} has decided on approval {number} already");
                Outcome::UserError
            }
            Decided::Counted { approvals, required } => {
                println!("approval {number}: {approvals} of {required} approvals; waiting for more");
                Outcome::Success
            }
            Decided::Approved => {
                println!("approval {number}: approved; the step runs (a running daemon takes it within a second)");
                Outcome::Success
            }
            Decided::Rejected => {
                println!("approval {number}: rejected; the step fails");
                Outcome::Success
            }
        })
    })
}

pub fn approve(config_path: &Path, args: &DecideArgs) -> anyhow::Result<Outcome> {
    decide(
        config_path,
        &args.id,
        &args.approver,
        Decision::Approve {
            comment: args.comment.clone(),
        },
    )
}

pub fn reject(config_path: &Path, args: &RejectArgs) -> anyhow::Result<Outcome> {
    if args.reason.trim().is_empty() {
        eprintln!("error: --reason: write why the step must not run");
        return Ok(Outcome::UserError);
    }
    decide(
        config_path,
        &args.id,
        &args.approver,
        Decision::Reject {
            reason: args.reason.clone(),
        },
    )
}
