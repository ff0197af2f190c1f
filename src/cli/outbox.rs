//! `satflow outbox [retry ID | discard ID]`: pending and dead effects, and acting on them.

use std::path::Path;

use serde_json::json;

use super::{Outcome, open_store, runtime};

#[derive(Debug, clap::Args)]
pub struct OutboxArgs {
    #[command(subcommand)]
    pub action: Option<OutboxCommand>,
    /// How many items to list, newest first
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Print one JSON document instead of text
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum OutboxCommand {
    /// Put a dead item back in the queue with a fresh attempt budget
    Retry {
        /// The item's number, as `satflow outbox` lists it
        id: i64,
    },
    /// Give up on a pending or dead item (a step waiting for it fails)
    Discard {
        /// The item's number, as `satflow outbox` lists it
        id: i64,
    },
}

pub fn run(config_path: &Path, args: &OutboxArgs) -> anyhow::Result<Outcome> {
    runtime()?.block_on(async {
        let Some(store) = open_store(config_path).await? else {
            return Ok(Outcome::UserError);
        };
        let now = crate::clock::system_now();
        match &args.action {
            Some(OutboxCommand::Retry { id }) => {
                return Ok(if store.retry_item(*id, &crate::treasury::audit::cli_actor(), now).await? {
                    println!("item {id} is queued again; a running daemon sends it within a second");
                    Outcome::Success
                } else {
                    eprintln!("error: there is no dead item {id}; only dead items can be retried (see `satflow outbox`)");
                    Outcome::UserError
                });
            }
            Some(OutboxCommand::Discard { id }) => {
                return Ok(if store.discard_item(*id, &crate::treasury::audit::cli_actor(), now).await? {
                    println!("item {id} is discarded");
                    Outcome::Success
                } else {
                    eprintln!("error: there is no pending or dead item {id} (see `satflow outbox`)");
                    Outcome::UserError
                });
            }
            None => {}
        }
        let mut items = store.outbox_items(i64::from(args.limit)).await?;
        for item in &mut items {
            clean_errors(item);
        }
        if args.json {
            let mut docs = Vec::new();
            for item in &items {
                let mut history = store.outbox_attempts(item.id).await?;
                for attempt in &mut history {
                    attempt.error = attempt.error.as_deref().map(|e| shown_error(item, e));
                }
                docs.push(json!({
                    "id": item.id,
                    "kind": item.kind,
                    // Where an http.post goes, as it may be shown: the real URL may hold a token.
                    "url": (item.kind == crate::actions::http_post::KIND)
                        .then(|| crate::actions::http_post::shown_url(&item.payload))
                        .flatten(),
                    "idempotency_key": item.key,
                    "status": item.status,
                    "attempts": item.attempts,
                    "next_attempt_at": (item.status == crate::store::OutboxStatus::Pending).then(|| item.next_attempt_at.to_rfc3339()),
                    "last_error": item.last_error,
                    "run_id": item.run_id,
                    "step_id": item.step_id,
                    "created_at": item.created_at.to_rfc3339(),
                    "history": history.iter().map(|a| json!({
                        "attempt": a.attempt,
                        "started_at": a.started_at.to_rfc3339(),
                        "finished_at": a.finished_at.map(|t| t.to_rfc3339()),
                        "outcome": a.outcome,
                        "http_status": a.http_status,
                        "error": a.error,
                    })).collect::<Vec<_>>(),
                }));
            }
            println!("{}", serde_json::to_string_pretty(&json!({ "items": docs }))?);
        } else if items.is_empty() {
            println!("the outbox is empty");
        } else {
            for item in &items {
                println!(
                    "{:>6}  {:<8} {:<8} attempts {:<3} {}  {}",
                    item.id,
                    item.kind,
                    item.status,
                    item.attempts,
                    item.key,
                    item.last_error.as_deref().unwrap_or("")
                );
            }
        }
        Ok(Outcome::Success)
    })
}

/// An http item's error as it may be shown: errors stored before URLs were redacted at the
/// source may still hold the URL (and its token).
fn shown_error(item: &crate::store::ItemRow, error: &str) -> String {
    use crate::actions::http_post as http;
    match (item.kind == http::KIND, item.payload["url"].as_str()) {
        (true, Some(real)) => {
            let shown = http::shown_url(&item.payload).unwrap_or_default();
            crate::source::redact::in_text(error, real, &shown)
        }
        _ => error.to_string(),
    }
}

fn clean_errors(item: &mut crate::store::ItemRow) {
    if let Some(error) = item.last_error.take() {
        item.last_error = Some(shown_error(item, &error));
    }
}
