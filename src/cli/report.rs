//! `satflow report [--format text|csv|json|koinly|cointracker]`: totals (fiat spent, bitcoin
//! stacked, average price paid, fees) and the ledger's entries, as text, as satflow's own CSV or
//! JSON, or in a tax tool's import format (docs/exports.md).
//!
//! An absurd stored value never stops the report: its entry is left out and a warning naming
//! it goes to stderr (and into `--json`), so stdout stays the report alone.

use std::path::Path;

use serde_json::json;

use super::{Outcome, open_store, runtime};
use crate::ledger;

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Same as --format csv
    #[arg(long, conflicts_with_all = ["json", "format"])]
    pub csv: bool,
    /// Same as --format json
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// text (default), csv (one row per ledger entry), json (totals and entries), koinly
    /// (Koinly's universal CSV) or cointracker (CoinTracker's CSV)
    #[arg(long, value_enum)]
    pub format: Option<Format>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Csv,
    Json,
    Koinly,
    Cointracker,
}

impl ReportArgs {
    fn format(&self) -> Format {
        match (self.format, self.csv, self.json) {
            (Some(f), _, _) => f,
            (None, true, _) => Format::Csv,
            (None, _, true) => Format::Json,
            _ => Format::Text,
        }
    }
}

pub fn run(config_path: &Path, args: &ReportArgs) -> anyhow::Result<Outcome> {
    runtime()?.block_on(async {
        let Some(store) = open_store(config_path).await? else {
            return Ok(Outcome::UserError);
        };
        let exchanges = store.exchanges(i64::MAX).await?;
        let withdrawals = store.withdrawals(i64::MAX).await?;
        let (entries, mut skipped) = ledger::checked_entries(&exchanges, &withdrawals);
        let totals = ledger::totals(&entries);
        skipped.extend(totals.skipped.iter().cloned());
        for reason in &skipped {
            eprintln!("warning: {reason}");
        }
        match args.format() {
            Format::Text => {}
            Format::Csv => {
                print!("{}", ledger::csv(&entries)?);
                return Ok(Outcome::Success);
            }
            Format::Koinly => {
                print!("{}", ledger::exports::koinly(&entries)?);
                return Ok(Outcome::Success);
            }
            Format::Cointracker => {
                print!("{}", ledger::exports::cointracker(&entries)?);
                return Ok(Outcome::Success);
            }
            Format::Json => {
                let doc = json!({
                    "totals": ledger::totals_json(&totals),
                    "entries": entries.iter().map(ledger::entry_json).collect::<Vec<_>>(),
                    "warnings": skipped,
                });
                println!("{}", serde_json::to_string_pretty(&doc)?);
                return Ok(Outcome::Success);
            }
        }
        print!("{}", text(&entries, &totals));
        Ok(Outcome::Success)
    })
}

/// The report as a person reads it.
pub fn text(entries: &[ledger::Entry], totals: &ledger::Totals) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if entries.is_empty() {
        out.push_str(
            "nothing bought yet: exchanges arrive by webhook when a payment reaches Pocket\n",
        );
        return out;
    }
    for (code, c) in &totals.by_currency {
        let code = code.to_uppercase();
        // A currency with refunds and no buys has nothing spent and no average to speak of.
        match c.average_price() {
            Some(p) if c.buys > 0 => {
                let _ = writeln!(
                    out,
                    "{code}: {}, spent {} {code} (fees {} {code}), stacked {} BTC, average price {p} {code}/BTC",
                    super::plural(usize::try_from(c.buys).unwrap_or(usize::MAX), "buy", "buys"),
                    c.spent.normalize(),
                    c.fees.normalize(),
                    c.btc.normalize()
                );
            }
            _ if c.buys > 0 => {
                let _ = writeln!(
                    out,
                    "{code}: {}, spent {} {code} (fees {} {code}), stacked {} BTC",
                    super::plural(usize::try_from(c.buys).unwrap_or(usize::MAX), "buy", "buys"),
                    c.spent.normalize(),
                    c.fees.normalize(),
                    c.btc.normalize()
                );
            }
            _ => {
                let _ = writeln!(out, "{code}: no buys yet");
            }
        }
        if c.refunds > 0 {
            let _ = writeln!(
                out,
                "{code}: {}, {} {code} returned",
                super::plural(
                    usize::try_from(c.refunds).unwrap_or(usize::MAX),
                    "refund",
                    "refunds"
                ),
                c.refunded.normalize()
            );
        }
    }
    let _ = writeln!(
        out,
        "bitcoin: {} BTC bought, {} BTC payout fees; {} BTC withdrawn to cold storage ({} BTC fees)",
        totals.btc_bought.normalize(),
        totals.payout_fees_btc.normalize(),
        totals.withdrawn_btc.normalize(),
        totals.withdrawal_fees_btc.normalize()
    );
    out.push('\n');
    for e in entries {
        let money = match e.kind {
            "buy" => format!(
                "{} {} -> {} BTC at {}",
                e.fiat
                    .map(|d| d.normalize().to_string())
                    .unwrap_or_default(),
                e.currency.as_deref().unwrap_or("").to_uppercase(),
                e.btc.map(|d| d.normalize().to_string()).unwrap_or_default(),
                e.rate
                    .map(|d| d.normalize().to_string())
                    .unwrap_or_default()
            ),
            "refund" => format!(
                "{} {} returned",
                e.fiat
                    .map(|d| d.normalize().to_string())
                    .unwrap_or_default(),
                e.currency.as_deref().unwrap_or("").to_uppercase()
            ),
            _ => format!(
                "{} BTC to {}{}",
                e.btc
                    .map(|d| d.normalize().to_string())
                    .unwrap_or("?".into()),
                // A payout without an address went over Lightning.
                e.address.as_deref().unwrap_or("your node over Lightning"),
                e.txid
                    .as_deref()
                    .map(|t| format!(" ({t})"))
                    .unwrap_or_default()
            ),
        };
        let _ = writeln!(
            out,
            "{}  {:<10} {}  {money}",
            e.date.format("%Y-%m-%d %H:%M"),
            e.kind,
            e.reference
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    fn entry(kind: &'static str, currency: &str, fiat: i64) -> ledger::Entry {
        let buy = kind == "buy";
        ledger::Entry {
            date: chrono::DateTime::UNIX_EPOCH,
            kind,
            reference: format!("{kind}-{fiat}"),
            order_id: None,
            currency: Some(currency.into()),
            fiat: Some(Decimal::new(fiat, 0)),
            fiat_fee: buy.then(|| Decimal::new(1, 0)),
            btc: buy.then(|| Decimal::new(1, 3)),
            btc_fee: None,
            rate: buy.then(|| Decimal::new(60_000, 0)),
            address: None,
            txid: None,
        }
    }

    #[test]
    fn counts_read_as_english_and_no_buys_has_no_average() {
        let entries = [
            entry("buy", "eur", 60),
            entry("refund", "eur", 20),
            entry("refund", "chf", 30),
        ];
        let out = text(&entries, &ledger::totals(&entries));
        assert!(out.contains("EUR: 1 buy, spent 60 EUR"), "{out}");
        assert!(out.contains("EUR: 1 refund, 20 EUR returned"), "{out}");
        assert!(out.contains("CHF: no buys yet\n"), "{out}");
        assert!(!out.contains("average price -"), "{out}");
        assert!(
            !out.contains("1 buys") && !out.contains("1 refunds"),
            "{out}"
        );
    }
}
