//! `satflow exchanges [show ID]`: exchanges with their state, amounts and payout, and the
//! events each went through.

use std::path::Path;

use serde_json::{Value, json};

use super::{Outcome, open_store, runtime};
use crate::store::ExchangeRow;

#[derive(Debug, clap::Args)]
pub struct ExchangesArgs {
    #[command(subcommand)]
    pub show: Option<ExchangesCommand>,
    /// How many exchanges to list, most recently changed first
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Print one JSON document instead of text
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum ExchangesCommand {
    /// One exchange with every event it went through
    Show {
        /// The exchange's id, as `satflow exchanges` lists it (a UUID)
        id: String,
    },
}

/// An exchange as the `exchanges --json` contract shows it: amounts as exact decimal strings;
/// payout, reason and action as received, or null.
fn exchange_json(row: &ExchangeRow) -> Value {
    let e = &row.exchange;
    let text = |d: Option<rust_decimal::Decimal>| d.map(|d| d.to_string());
    json!({
        "id": row.id,
        "order_id": row.order_id,
        "state": row.state.name(),
        "pair": e.pair,
        "cost": text(e.cost),
        "amount": text(e.amount),
        "rate": text(e.rate),
        "fee": text(e.fee),
        "payout": e.payout.as_ref().map(|p| p.as_json()),
        "reason": e.reason.as_ref().map(|r| r.as_json()),
        "action": e.action.as_ref().map(|a| a.as_json()),
        "first_seen_at": row.first_seen_at.to_rfc3339(),
        "updated_at": row.updated_at.to_rfc3339(),
        "next_check_at": row.next_check_at.map(|t| t.to_rfc3339()),
        "confirmations": row.confirmations,
    })
}

pub fn run(config_path: &Path, args: &ExchangesArgs) -> anyhow::Result<Outcome> {
    runtime()?.block_on(async {
        let Some(store) = open_store(config_path).await? else {
            return Ok(Outcome::UserError);
        };
        match &args.show {
            Some(ExchangesCommand::Show { id }) => {
                let Some(row) = store.exchange(id).await? else {
                    eprintln!("error: satflow has not seen exchange {id}; `satflow exchanges` lists those it has");
                    return Ok(Outcome::UserError);
                };
                let events = store.exchange_events(id).await?;
                if args.json {
                    let mut doc = exchange_json(&row);
                    doc["events"] = events
                        .iter()
                        .map(|e| json!({ "event": e.event, "source": e.source, "recorded_at": e.recorded_at.to_rfc3339(), "payload": e.payload }))
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&json!({ "exchanges": [doc] }))?);
                } else {
                    let e = &row.exchange;
                    println!("exchange {} of order {}: {}", row.id, row.order_id.as_deref().unwrap_or("?"), row.state.name());
                    let money = |d: Option<rust_decimal::Decimal>| d.map_or("-".to_string(), |d| d.to_string());
                    println!("  {}  cost {}  amount {} BTC  rate {}  fee {}", e.pair.as_deref().unwrap_or(""), money(e.cost), money(e.amount), money(e.rate), money(e.fee));
                    if let Some(n) = row.confirmations {
                        println!("  payout confirmations: {n}");
                    }
                    for (label, v) in [("payout", e.payout.as_ref().map(|p| p.as_json())), ("reason", e.reason.as_ref().map(|r| r.as_json())), ("action", e.action.as_ref().map(|a| a.as_json()))] {
                        if let Some(v) = v {
                            println!("  {label}: {v}");
                        }
                    }
                    println!("  events:");
                    for ev in &events {
                        println!("    {}  {:<22} via {}", ev.recorded_at.to_rfc3339(), ev.event, ev.source);
                    }
                }
            }
            None => {
                let rows = store.exchanges(i64::from(args.limit)).await?;
                if args.json {
                    let docs: Vec<Value> = rows.iter().map(exchange_json).collect();
                    println!("{}", serde_json::to_string_pretty(&json!({ "exchanges": docs }))?);
                } else if rows.is_empty() {
                    println!("no exchanges yet (they arrive by webhook when a payment reaches Pocket)");
                } else {
                    for row in &rows {
                        let e = &row.exchange;
                        println!(
                            "{}  {:<11} {:<8} cost {:<10} amount {:<12} {}",
                            row.id,
                            row.state.name(),
                            e.pair.as_deref().unwrap_or(""),
                            e.cost.map(|d| d.to_string()).unwrap_or_default(),
                            e.amount.map(|d| d.to_string()).unwrap_or_default(),
                            row.updated_at.to_rfc3339()
                        );
                    }
                }
            }
        }
        Ok(Outcome::Success)
    })
}
