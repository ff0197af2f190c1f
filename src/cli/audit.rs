//! `satflow audit [--since WHEN] [--json]` lists the audit log; `satflow audit verify` walks its
//! hash chain and names the first row that does not fit (exit 2 when one does not).
//!
//! It only reads: the log is never changed from here, not even to repair it.

use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::json;

use super::{Outcome, open_store, runtime};
use crate::treasury::audit::verify;

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub action: Option<AuditCommand>,
    /// Only entries at or after this time: an RFC 3339 time or a date (YYYY-MM-DD, UTC)
    #[arg(long, value_parser = parse_since)]
    pub since: Option<DateTime<Utc>>,
    /// Print one JSON document instead of text
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain; name the first row that does not fit
    Verify,
}

fn parse_since(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            format!("`{text}` is not a time; accepted: an RFC 3339 time (2026-12-01T08:00:00Z) or a date (2026-12-01)")
        })
}

pub fn run(config_path: &Path, args: &AuditArgs) -> anyhow::Result<Outcome> {
    runtime()?.block_on(async {
        let Some(store) = open_store(config_path).await? else {
            return Ok(Outcome::UserError);
        };
        if let Some(AuditCommand::Verify) = &args.action {
            let rows = store.audit_rows(None).await?;
            store.close().await;
            let result = verify(&rows);
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&match &result {
                        Ok(n) => json!({ "ok": true, "rows": n, "last_hash": rows.last().map(|r| &r.hash) }),
                        Err(broken) => json!({ "ok": false, "error": broken.to_string(), "row": broken.row() }),
                    })?
                );
            }
            return Ok(match result {
                Ok(n) => {
                    if !args.json {
                        println!(
                            "the audit log holds {n} rows and its chain is intact; last hash {}",
                            rows.last().map(|r| r.hash.as_str()).unwrap_or("(none)")
                        );
                    }
                    Outcome::Success
                }
                Err(broken) => {
                    eprintln!("error: the audit log's chain is broken at {broken}");
                    Outcome::Failure
                }
            });
        }
        let rows = store.audit_rows(args.since).await?;
        store.close().await;
        if args.json {
            let docs: Vec<_> = rows
                .iter()
                .map(|r| {
                    json!({
                        "id": r.id,
                        "at": r.at.to_rfc3339(),
                        "actor": r.actor,
                        "kind": r.kind,
                        "subject": r.subject,
                        "detail": serde_json::from_str::<serde_json::Value>(&r.detail).unwrap_or(serde_json::Value::String(r.detail.clone())),
                        "prev_hash": r.prev_hash,
                        "hash": r.hash,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&json!({ "entries": docs }))?);
        } else if rows.is_empty() {
            println!("the audit log has no entries{}", if args.since.is_some() { " since then" } else { "" });
        } else {
            for r in &rows {
                println!(
                    "{:>6}  {}  {:<14} {:<24} {:<28} {}",
                    r.id,
                    r.at.format("%Y-%m-%d %H:%M:%S"),
                    r.actor,
                    r.kind,
                    r.subject,
                    r.detail
                );
            }
        }
        Ok(Outcome::Success)
    })
}
