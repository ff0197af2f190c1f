//! `satflow labels WALLET > labels.jsonl`: BIP-329 wallet labels for every address satflow
//! handed out or saw paid for that wallet and every transaction that paid it, so that Sparrow
//! and other BIP-329 wallets show the cost basis of each coin ("Pocket buy 2026-12-07, 100 CHF
//! at 57,000 CHF/BTC").
//!
//! Format (BIP-329, bitcoin/bips bip-0329.mediawiki): UTF-8 JSON Lines, one object per line,
//! lines ended by `\n`; `type` and `ref` always, `label`, `origin` (the wallet's key origin as
//! an abbreviated descriptor, when the wallet states it) and `spendable` only on outputs. It
//! only reads: it must never reserve an address or write to the database, and stdout holds
//! the records alone (problems go to stderr).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::{DateTime, Utc};
use miniscript::ForEachKey;
use miniscript::descriptor::{DescriptorPublicKey, DescriptorType};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

use super::{Outcome, open_config, runtime};
use crate::config::WalletConfig;
use crate::pocket::types::ExchangeState;
use crate::store::{ExchangeRow, Store, WithdrawalRow};

#[derive(Debug, clap::Args)]
pub struct LabelsArgs {
    /// The wallet, as named under `wallets:` in satflow.yaml
    pub wallet: String,
}

/// How far past the last known index payout addresses are looked for: Pocket rotates through
/// the wallet's key by itself, one address per payout.
const LOOKAHEAD: u32 = 100;
/// Addresses derived at most to find the payouts' indices.
const MAX_DERIVED: u32 = 20_000;

pub fn run(config_path: &Path, args: &LabelsArgs) -> anyhow::Result<Outcome> {
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
    runtime()?.block_on(async {
        let store = Store::open(&config.database).await?;
        let records = records(&store, &args.wallet, wallet).await?;
        store.close().await;
        let mut out = String::new();
        for r in &records {
            // `to_string` escapes line breaks inside values: one record is one line.
            out.push_str(&Value::Object(r.clone()).to_string());
            out.push('\n');
        }
        print!("{out}");
        Ok(Outcome::Success)
    })
}

/// The wallet's key origin as BIP-329 wants it: the descriptor's script with the key origin
/// and no key, e.g. `wpkh([d34db33f/84'/0'/0'])`; `None` when the wallet does not state it.
pub fn origin(wallet: &WalletConfig) -> Option<String> {
    let descriptor = wallet.key.descriptor();
    let mut found = None;
    descriptor.for_each_key(|k| {
        if let DescriptorPublicKey::XPub(x) = k
            && let Some((fingerprint, path)) = &x.origin
        {
            let steps: Vec<String> = path.into_iter().map(|c| c.to_string()).collect();
            let mut inner = fingerprint.to_string();
            for s in steps {
                inner.push('/');
                inner.push_str(&s);
            }
            found = Some(inner);
        }
        true
    });
    let inner = found?;
    Some(match descriptor.desc_type() {
        DescriptorType::Pkh => format!("pkh([{inner}])"),
        DescriptorType::ShWpkh => format!("sh(wpkh([{inner}]))"),
        DescriptorType::Wpkh => format!("wpkh([{inner}])"),
        DescriptorType::Tr => format!("tr([{inner}])"),
        _ => return None,
    })
}

/// `57000.5` as `57,000.5`: the rate as people read it in a label.
pub fn grouped(d: Decimal) -> String {
    let text = d.normalize().to_string();
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i.to_string(), Some(f.to_string())),
        None => (text.clone(), None),
    };
    let (sign, digits) = match int.strip_prefix('-') {
        Some(rest) => ("-", rest.to_string()),
        None => ("", int),
    };
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{out}.{f}"),
        None => format!("{sign}{out}"),
    }
}

/// "Pocket buy 2026-12-07, 100 CHF at 57,000 CHF/BTC".
pub fn buy_label(row: &ExchangeRow) -> String {
    let e = &row.exchange;
    let date = e.executed_on.unwrap_or(row.first_seen_at);
    let code = e
        .pair
        .as_deref()
        .and_then(|p| p.split('/').nth(1))
        .unwrap_or("")
        .to_uppercase();
    let mut label = format!("Pocket buy {}", date.format("%Y-%m-%d"));
    if let Some(cost) = e.cost {
        label.push_str(&format!(", {} {code}", grouped(cost)));
    }
    if let Some(rate) = e.rate {
        label.push_str(&format!(" at {} {code}/BTC", grouped(rate)));
    }
    label
}

fn withdrawal_label(w: &WithdrawalRow) -> String {
    let amount = w
        .amount_sat
        .map(|s| {
            format!(
                ", {} BTC",
                (Decimal::from(s) / Decimal::from(100_000_000u64)).normalize()
            )
        })
        .unwrap_or_default();
    format!(
        "Withdrawal {} from {}{amount} ({})",
        w.created_at.format("%Y-%m-%d"),
        w.provider,
        w.key
    )
}

fn record(kind: &str, reference: &str, label: &str, origin: &Option<String>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("type".into(), json!(kind));
    m.insert("ref".into(), json!(reference));
    m.insert("label".into(), json!(label));
    if let Some(o) = origin {
        m.insert("origin".into(), json!(o));
    }
    m
}

/// The wallet's records: its addresses (by index), then its transactions (oldest first), then
/// the outputs whose index Pocket stated.
pub async fn records(
    store: &Store,
    name: &str,
    wallet: &WalletConfig,
) -> anyhow::Result<Vec<Map<String, Value>>> {
    let origin = origin(wallet);
    let chain = wallet.key.account().map(|a| {
        let text = a.chain.to_string();
        text.trim_start_matches('m')
            .trim_start_matches('/')
            .to_string()
    });
    let known = store.wallet_addresses(name).await?;
    let cursor = store.wallet_cursor(name).await?.map_or(0, |(_, n)| n);
    let exchanges: Vec<ExchangeRow> = store
        .exchanges(i64::MAX)
        .await?
        .into_iter()
        .filter(|e| e.state == ExchangeState::Settled)
        .filter(|e| {
            e.exchange
                .payout
                .as_ref()
                .is_some_and(|p| p.bitcoin_address.is_some())
        })
        .collect();
    let withdrawals: Vec<WithdrawalRow> = store
        .withdrawals(i64::MAX)
        .await?
        .into_iter()
        .filter(|w| w.wallet == name)
        .collect();

    // The wallet's addresses up to past the last one known, to recognise the payouts to it.
    let last = known
        .iter()
        .map(|a| a.index + 1)
        .max()
        .unwrap_or(0)
        .max(cursor);
    let count = last
        .saturating_add(u32::try_from(exchanges.len()).unwrap_or(u32::MAX))
        .saturating_add(LOOKAHEAD)
        .min(MAX_DERIVED);
    let mut index_of: HashMap<String, u32> = HashMap::new();
    for i in 0..count {
        index_of.insert(wallet.key.address_at(i, wallet.network)?.to_string(), i);
    }

    // Address -> its labels, by index (addresses outside the derived range come last).
    let mut addresses: BTreeMap<(u32, String), Vec<String>> = BTreeMap::new();
    let slot = |addr: &str| {
        (
            index_of.get(addr).copied().unwrap_or(u32::MAX),
            addr.to_string(),
        )
    };
    let mut txs: Vec<(DateTime<Utc>, String, String)> = Vec::new();
    let mut outputs: Vec<(String, String)> = Vec::new();
    for e in &exchanges {
        let Some(payout) = &e.exchange.payout else {
            continue;
        };
        let Some(address) = payout.bitcoin_address.as_deref() else {
            continue;
        };
        if !index_of.contains_key(address) {
            continue;
        }
        let label = buy_label(e);
        addresses
            .entry(slot(address))
            .or_default()
            .push(label.clone());
        if let Some(txid) = &payout.txid {
            txs.push((e.updated_at, txid.clone(), label.clone()));
            if let Some(vout) = payout.as_json().get("vout").and_then(Value::as_u64) {
                outputs.push((format!("{txid}:{vout}"), label));
            }
        }
    }
    for w in &withdrawals {
        let label = withdrawal_label(w);
        addresses
            .entry(slot(&w.address))
            .or_default()
            .push(label.clone());
        if let Some(txid) = &w.txid {
            txs.push((w.created_at, txid.clone(), label));
        }
    }
    for a in &known {
        let labels = addresses.entry((a.index, a.address.clone())).or_default();
        if labels.is_empty() {
            labels.push(match &a.used_by {
                Some(by) => format!("satflow: {} by {by}", a.state),
                None => format!("satflow: {}", a.state),
            });
        }
    }

    let mut out = Vec::new();
    for ((index, address), labels) in &addresses {
        let mut r = record("addr", address, &labels.join("; "), &origin);
        if let (Some(chain), true) = (&chain, *index != u32::MAX) {
            // BIP-329's optional `keypath`: the path below `origin`, e.g. /0/5.
            r.insert("keypath".into(), json!(format!("/{chain}/{index}")));
        }
        out.push(r);
    }
    crate::sorting::sort(&mut txs);
    txs.dedup_by(|a, b| a.1 == b.1);
    for (_, txid, label) in &txs {
        out.push(record("tx", txid, label, &origin));
    }
    for (reference, label) in &outputs {
        let mut r = record("output", reference, label, &origin);
        r.insert("spendable".into(), json!(true));
        out.push(r);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_with_thousands_separators() {
        assert_eq!(grouped("57000".parse().unwrap()), "57,000");
        assert_eq!(grouped("1234567.50".parse().unwrap()), "1,234,567.5");
        assert_eq!(grouped("100".parse().unwrap()), "100");
        assert_eq!(grouped("-1000".parse().unwrap()), "-1,000");
    }
}
