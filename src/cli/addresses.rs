//! `satflow addresses WALLET`: the wallet's addresses by index with their state, to compare with
//! what a hardware wallet shows; `--scan` asks the wallet's chain source (its Esplora explorer
//! or its own Electrum server) which are used on chain.

use std::io::Write;
use std::path::Path;

use serde_json::json;

use super::{Outcome, open_config, runtime};
use crate::store::{Store, WithdrawalStatus};
use crate::wallet::chain::ChainSource;

#[derive(Debug, clap::Args)]
pub struct AddressesArgs {
    /// The wallet, as named under `wallets:` in satflow.yaml
    pub wallet: String,
    /// How many addresses to show at least (from index 0)
    #[arg(long, default_value_t = 10)]
    pub count: u32,
    /// Ask the wallet's chain source (esplora_url or electrum_url) which addresses are used on chain
    #[arg(long)]
    pub scan: bool,
    /// Print one JSON document instead of text
    #[arg(long)]
    pub json: bool,
}

pub fn run(config_path: &Path, args: &AddressesArgs) -> anyhow::Result<Outcome> {
    let Some(config) = open_config(config_path) else {
        return Ok(Outcome::UserError);
    };
    let Some(wallet) = config.wallets.get(&args.wallet) else {
        let names: Vec<&str> = config.wallets.keys().map(String::as_str).collect();
        eprintln!(
            "error: there is no wallet `{}` in satflow.yaml; wallets: {}",
            args.wallet,
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        );
        return Ok(Outcome::UserError);
    };
    let explorer = match (ChainSource::of(wallet), args.scan) {
        (Some(source), true) => Some(source),
        (None, true) => {
            eprintln!(
                "error: wallet `{}` has no chain source to scan with; add esplora_url (e.g. https://mempool.space/api) or your own node's electrum_url (e.g. tcp://umbrel.local:50001)",
                args.wallet
            );
            return Ok(Outcome::UserError);
        }
        _ => None,
    };
    runtime()?.block_on(async {
        let store = Store::open(&config.database).await?;
        let known = store.wallet_addresses(&args.wallet).await?;
        let next = store.wallet_cursor(&args.wallet).await?.map_or(0, |(_, n)| n);
        // A withdrawal that was sent (or confirmed) paid the address: it is used, whatever the
        // reservation row still says.
        let withdrawn: Vec<_> = store
            .withdrawals(i64::MAX)
            .await?
            .into_iter()
            .filter(|w| w.wallet == args.wallet && matches!(w.status, WithdrawalStatus::Sent | WithdrawalStatus::Confirmed))
            .collect();
        let last_known = known.iter().map(|a| a.index + 1).max().unwrap_or(0);
        let count = args.count.max(next).max(last_known);
        let mut rows = Vec::with_capacity(count as usize);
        for index in 0..count {
            let address = wallet.key.address_at(index, wallet.network)?.to_string();
            let entry = known.iter().find(|a| a.index == index);
            let (mut state, mut used_by) = match entry {
                Some(a) => (a.state.clone(), a.used_by.clone()),
                None => ("fresh".to_string(), None),
            };
            if let Some(w) = withdrawn.iter().find(|w| w.address == address) {
                state = "used".into();
                used_by = Some(format!("withdrawal {} ({})", w.key, w.status));
            }
            if let Some(explorer) = &explorer {
                eprint!("\rscanning {}/{count} …", index + 1);
                let _ = std::io::stderr().flush();
                if explorer.is_used(&address).await? {
                    if state != "used" {
                        used_by = Some(used_by.map_or("on chain".to_string(), |u| format!("{u}; on chain")));
                    }
                    state = "used".into();
                }
            }
            rows.push((index, address, state, used_by));
        }
        if explorer.is_some() {
            eprintln!("\rscanned {count} addresses.        ");
        }
        // The cursor only moves forward, and an address known to be taken is passed over: the
        // next one handed out is the first fresh one from the cursor on.
        let next = rows
            .iter()
            .find(|(i, _, s, _)| *i >= next && s == "fresh")
            .map_or(count, |(i, _, _, _)| *i);
        if args.json {
            let doc = json!({ "next_index": next, "addresses": rows.iter().map(|(i, a, s, u)| json!({ "index": i, "address": a, "state": s, "used_by": u })).collect::<Vec<_>>() });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        } else {
            println!(
                "wallet {} ({}): the next address handed out is index {next}",
                args.wallet, wallet.network
            );
            for (i, a, s, u) in &rows {
                let marker = if *i == next { "  <- next" } else { "" };
                println!("{i:>5}  {a:<64} {s:<9} {}{marker}", u.as_deref().unwrap_or(""));
            }
        }
        store.close().await;
        Ok(Outcome::Success)
    })
}
