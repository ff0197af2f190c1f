//! `satflow withdrawals`: withdrawals to cold storage with their state, amount, address,
//! transaction and, for skipped or failed ones, why.

use std::path::Path;

use serde_json::{Value, json};

use super::{Outcome, open_store, runtime};
use crate::store::WithdrawalRow;

#[derive(Debug, clap::Args)]
pub struct WithdrawalsArgs {
    /// How many withdrawals to list, most recent first
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Print one JSON document instead of text
    #[arg(long)]
    pub json: bool,
}

fn withdrawal_json(row: &WithdrawalRow) -> Value {
    json!({
        "key": row.key,
        "workflow": row.workflow,
        "provider": row.provider,
        "wallet": row.wallet,
        "address": row.address,
        "status": row.status,
        "balance_sat": row.balance_sat,
        "amount_sat": row.amount_sat,
        "fee_sat": row.fee_sat,
        "fee_rate": row.fee_rate,
        "withdrawal_id": row.provider_ref,
        "txid": row.txid,
        "confirmations": row.confirmations,
        "reason": row.reason,
        "created_at": row.created_at.to_rfc3339(),
        "updated_at": row.updated_at.to_rfc3339(),
    })
}

pub fn run(config_path: &Path, args: &WithdrawalsArgs) -> anyhow::Result<Outcome> {
    runtime()?.block_on(async {
        let Some(store) = open_store(config_path).await? else {
            return Ok(Outcome::UserError);
        };
        let rows = store.withdrawals(i64::from(args.limit)).await?;
        if args.json {
            let docs: Vec<Value> = rows.iter().map(withdrawal_json).collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({ "withdrawals": docs }))?
            );
            return Ok(Outcome::Success);
        }
        if rows.is_empty() {
            println!("no withdrawals yet (a `withdraw` step makes them)");
        }
        for row in &rows {
            let amount = row.amount_sat.map_or("-".into(), |a| format!("{a} sat"));
            println!(
                "{}  {:<10} {:<12} to {} ({})",
                row.key, row.status, amount, row.address, row.wallet
            );
            if let Some(txid) = &row.txid {
                let confirmations = row
                    .confirmations
                    .map_or(String::new(), |n| format!(", {n} confirmations"));
                println!("    transaction {txid}{confirmations}");
            }
            if let Some(reason) = &row.reason {
                println!("    {reason}");
            }
        }
        Ok(Outcome::Success)
    })
}
