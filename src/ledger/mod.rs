//! The ledger: every exchange and withdrawal as dated entries with exact amounts, and the
//! totals a user (or their accountant) wants — fiat spent, bitcoin stacked, average price paid,
//! fees. Derived from what the database holds, so it can never disagree with it.
//!
//! Amounts stay `Decimal` throughout; satoshis become BTC by moving the decimal point. Every
//! sum and quotient is checked: an absurd value in the database (a bitcoin amount above 21
//! million, a fiat amount beyond any real purchase) is left out with a warning that names it,
//! never a panic.

pub mod chart;
pub mod exports;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::domain::Btc;
use crate::pocket::types::ExchangeState;
use crate::store::{ExchangeRow, WithdrawalRow};

/// One line of the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub date: DateTime<Utc>,
    /// `buy`, `payout`, `refund` or `withdrawal`.
    pub kind: &'static str,
    /// The exchange id, or the withdrawal's key.
    pub reference: String,
    pub order_id: Option<String>,
    /// Lowercase fiat code of a buy or refund.
    pub currency: Option<String>,
    /// Fiat paid (buy) or returned (refund).
    pub fiat: Option<Decimal>,
    /// Pocket's fee, in fiat, included in `fiat`.
    pub fiat_fee: Option<Decimal>,
    /// Bitcoin bought, paid out or withdrawn.
    pub btc: Option<Decimal>,
    /// The network fee of a payout or withdrawal, in BTC.
    pub btc_fee: Option<Decimal>,
    /// Fiat per BTC of a buy.
    pub rate: Option<Decimal>,
    pub address: Option<String>,
    pub txid: Option<String>,
}

/// No real purchase, fee or rate comes near a thousand trillion units of a fiat currency.
pub const MAX_FIAT: Decimal = Decimal::from_parts(2_764_472_320, 232_830, 0, false, 0);

fn sat_to_btc(sat: u64) -> Decimal {
    // Dividing by a constant above one cannot overflow.
    Decimal::from(sat) / Decimal::from(100_000_000u64)
}

impl Entry {
    /// Why this entry cannot be counted, if one of its amounts is absurd.
    fn absurd(&self) -> Option<String> {
        let btc = [("bitcoin amount", self.btc), ("network fee", self.btc_fee)];
        let fiat = [
            ("fiat amount", self.fiat),
            ("fiat fee", self.fiat_fee),
            ("rate", self.rate),
        ];
        for (what, value) in btc {
            if let Some(v) = value
                && (v.is_sign_negative() && !v.is_zero() || v > Btc::MAX_BTC)
            {
                return Some(format!(
                    "{} {}: its {what} {v} is not between 0 and 21,000,000 BTC",
                    self.kind, self.reference
                ));
            }
        }
        for (what, value) in fiat {
            if let Some(v) = value
                && (v.is_sign_negative() && !v.is_zero() || v > MAX_FIAT)
            {
                return Some(format!(
                    "{} {}: its {what} {v} is not between 0 and {MAX_FIAT}",
                    self.kind, self.reference
                ));
            }
        }
        None
    }
}

/// The ledger's entries, oldest first; an entry with an absurd amount is left out and logged.
pub fn entries(exchanges: &[ExchangeRow], withdrawals: &[WithdrawalRow]) -> Vec<Entry> {
    let (entries, skipped) = checked_entries(exchanges, withdrawals);
    for reason in skipped {
        tracing::warn!(%reason, "a ledger entry is left out");
    }
    entries
}

/// The ledger's entries, oldest first, and why each entry left out was left out.
pub fn checked_entries(
    exchanges: &[ExchangeRow],
    withdrawals: &[WithdrawalRow],
) -> (Vec<Entry>, Vec<String>) {
    let (mut kept, mut skipped) = (Vec::new(), Vec::new());
    for entry in all_entries(exchanges, withdrawals) {
        match entry.absurd() {
            Some(reason) => skipped.push(format!("left out {reason}")),
            None => kept.push(entry),
        }
    }
    (kept, skipped)
}

fn all_entries(exchanges: &[ExchangeRow], withdrawals: &[WithdrawalRow]) -> Vec<Entry> {
    let mut out = Vec::new();
    for row in exchanges {
        let e = &row.exchange;
        let date = e.executed_on.unwrap_or(row.first_seen_at);
        let currency = e
            .pair
            .as_deref()
            .and_then(|p| p.split('/').nth(1))
            .map(str::to_lowercase);
        let base = Entry {
            date,
            kind: "buy",
            reference: row.id.clone(),
            order_id: row.order_id.clone(),
            currency,
            fiat: e.cost,
            fiat_fee: e.fee,
            btc: e.amount,
            btc_fee: None,
            rate: e.rate,
            address: None,
            txid: None,
        };
        match row.state {
            ExchangeState::Refunded => out.push(Entry {
                kind: "refund",
                fiat_fee: None,
                btc: None,
                rate: None,
                ..base
            }),
            // Nothing was bought yet: no money moved.
            ExchangeState::Interrupted => {}
            ExchangeState::Executed => out.push(base),
            ExchangeState::Settled => {
                let payout = e.payout.as_ref();
                out.push(base.clone());
                out.push(Entry {
                    date: row.updated_at,
                    kind: "payout",
                    fiat: None,
                    fiat_fee: None,
                    rate: None,
                    btc: payout.and_then(|p| p.amount),
                    btc_fee: payout.and_then(|p| p.fee),
                    address: payout.and_then(|p| p.bitcoin_address.clone()),
                    txid: payout.and_then(|p| p.txid.clone()),
                    currency: None,
                    ..base
                });
            }
        }
    }
    for w in withdrawals {
        if !w.status.is_withdrawn() {
            continue;
        }
        out.push(Entry {
            date: w.created_at,
            kind: "withdrawal",
            reference: w.key.clone(),
            order_id: None,
            currency: None,
            fiat: None,
            fiat_fee: None,
            btc: w.amount_sat.map(sat_to_btc),
            btc_fee: w.fee_sat.map(sat_to_btc),
            rate: None,
            address: Some(w.address.clone()),
            txid: w.txid.clone(),
        });
    }
    crate::sorting::sort_by(&mut out, |a, b| {
        a.date.cmp(&b.date).then(a.reference.cmp(&b.reference))
    });
    out
}

/// Totals of one fiat currency.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CurrencyTotals {
    pub buys: u64,
    /// Fiat paid for the bitcoin bought, Pocket's fees included.
    pub spent: Decimal,
    pub fees: Decimal,
    pub btc: Decimal,
    pub refunds: u64,
    pub refunded: Decimal,
}

impl CurrencyTotals {
    /// What a bitcoin cost on average, fees included; `None` before the first buy (or if the
    /// quotient does not fit a decimal).
    pub fn average_price(&self) -> Option<Decimal> {
        (self.btc > Decimal::ZERO)
            .then(|| self.spent.checked_div(self.btc))
            .flatten()
            .map(|p| p.round_dp(2))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    pub by_currency: BTreeMap<String, CurrencyTotals>,
    pub btc_bought: Decimal,
    pub payout_fees_btc: Decimal,
    pub withdrawn_btc: Decimal,
    pub withdrawal_fees_btc: Decimal,
    /// Entries that could not be added up (a sum beyond what a decimal holds), and why.
    pub skipped: Vec<String>,
}

/// `total + value`, or `None` when it does not fit.
fn add(total: Decimal, value: Option<Decimal>) -> Option<Decimal> {
    total.checked_add(value.unwrap_or(Decimal::ZERO))
}

pub fn totals(entries: &[Entry]) -> Totals {
    let mut t = Totals::default();
    for e in entries {
        // Each entry is added to a copy, kept only when every sum fits: an entry counts whole
        // or not at all.
        let mut next = t.clone();
        let added = (|| -> Option<()> {
            match e.kind {
                "buy" => {
                    let c = next
                        .by_currency
                        .entry(e.currency.clone().unwrap_or_default())
                        .or_default();
                    c.buys = c.buys.checked_add(1)?;
                    c.spent = add(c.spent, e.fiat)?;
                    c.fees = add(c.fees, e.fiat_fee)?;
                    c.btc = add(c.btc, e.btc)?;
                    next.btc_bought = add(next.btc_bought, e.btc)?;
                }
                "refund" => {
                    let c = next
                        .by_currency
                        .entry(e.currency.clone().unwrap_or_default())
                        .or_default();
                    c.refunds = c.refunds.checked_add(1)?;
                    c.refunded = add(c.refunded, e.fiat)?;
                }
                "payout" => next.payout_fees_btc = add(next.payout_fees_btc, e.btc_fee)?,
                "withdrawal" => {
                    next.withdrawn_btc = add(next.withdrawn_btc, e.btc)?;
                    next.withdrawal_fees_btc = add(next.withdrawal_fees_btc, e.btc_fee)?;
                }
                _ => {}
            }
            Some(())
        })();
        match added {
            Some(()) => t = next,
            None => t.skipped.push(format!(
                "left out {} {} from the totals: the sum would not fit a decimal",
                e.kind, e.reference
            )),
        }
    }
    t
}

fn text(d: Option<Decimal>) -> Value {
    d.map_or(Value::Null, |d| Value::String(d.normalize().to_string()))
}

pub fn entry_json(e: &Entry) -> Value {
    json!({
        "date": e.date.to_rfc3339(),
        "kind": e.kind,
        "reference": e.reference,
        "order_id": e.order_id,
        "currency": e.currency,
        "fiat_amount": text(e.fiat),
        "fiat_fee": text(e.fiat_fee),
        "btc_amount": text(e.btc),
        "btc_fee": text(e.btc_fee),
        "rate": text(e.rate),
        "address": e.address,
        "txid": e.txid,
    })
}

pub fn totals_json(t: &Totals) -> Value {
    let currencies: serde_json::Map<String, Value> = t
        .by_currency
        .iter()
        .map(|(code, c)| {
            (
                code.clone(),
                json!({
                    "buys": c.buys,
                    "spent": text(Some(c.spent)),
                    "fees": text(Some(c.fees)),
                    "btc": text(Some(c.btc)),
                    "average_price": text(c.average_price()),
                    "refunds": c.refunds,
                    "refunded": text(Some(c.refunded)),
                }),
            )
        })
        .collect();
    json!({
        "currencies": currencies,
        "btc_bought": text(Some(t.btc_bought)),
        "payout_fees_btc": text(Some(t.payout_fees_btc)),
        "withdrawn_btc": text(Some(t.withdrawn_btc)),
        "withdrawal_fees_btc": text(Some(t.withdrawal_fees_btc)),
    })
}

/// The CSV columns, in order (documented in the README).
pub const CSV_COLUMNS: [&str; 12] = [
    "date",
    "kind",
    "reference",
    "order_id",
    "currency",
    "fiat_amount",
    "fiat_fee",
    "btc_amount",
    "btc_fee",
    "rate",
    "address",
    "txid",
];

/// One row per entry: ISO 8601 dates in UTC, a decimal point, no thousands separators, CRLF
/// line ends; a field is quoted only when it holds a comma, a quote or a line break (RFC 4180,
/// as the `csv` crate writes it). Fails only if the writer does, which a `Vec` never does.
pub fn csv(entries: &[Entry]) -> Result<String, ::csv::Error> {
    let mut out = ::csv::WriterBuilder::new()
        .terminator(::csv::Terminator::CRLF)
        .from_writer(Vec::new());
    out.write_record(CSV_COLUMNS)?;
    for e in entries {
        let v = entry_json(e);
        out.write_record(CSV_COLUMNS.iter().map(|c| match &v[*c] {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        }))?;
    }
    let bytes = out.into_inner().map_err(|e| e.into_error())?;
    // Every field came from a `String`, so the bytes are UTF-8.
    String::from_utf8(bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e).into())
}

/// The name of the built-in template that gets the digest context and the chart.
pub const DIGEST_TEMPLATE: &str = "weekly_digest";

/// What the weekly digest shows: the last 7 days' entries and their totals, the totals so far,
/// and the chart's scales. The chart is of the currency with the most buys; `None` without a buy.
pub fn digest(entries: &[Entry], now: DateTime<Utc>) -> (Value, Option<Vec<u8>>) {
    let since = now - chrono::Duration::days(7);
    let week: Vec<Entry> = entries
        .iter()
        .filter(|e| e.date > since && e.date <= now)
        .cloned()
        .collect();
    let week_totals = totals(&week);
    let all = totals(entries);
    let currency = all
        .by_currency
        .iter()
        .max_by_key(|(_, c)| c.buys)
        .map(|(code, _)| code.clone());
    let chart = currency.and_then(|c| chart::draw(entries, &c, now));
    let scales = chart.as_ref().map(|(_, s)| {
        json!({
            "currency": s.currency.to_uppercase(),
            "btc_max": s.btc_max.normalize().to_string(),
            "price_min": s.price_min.normalize().to_string(),
            "price_max": s.price_max.normalize().to_string(),
            "file": "stacking.png",
        })
    });
    let doc = json!({
        "since": since.to_rfc3339(),
        "until": now.to_rfc3339(),
        "week": totals_json(&week_totals),
        "week_entries": week.iter().map(entry_json).collect::<Vec<_>>(),
        "totals": totals_json(&all),
        "chart": scales,
    });
    (doc, chart.map(|(png, _)| png))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buy(cost: &str, fee: &str, btc: &str) -> Entry {
        Entry {
            date: crate::clock::system_now(),
            kind: "buy",
            reference: "x".into(),
            order_id: None,
            currency: Some("eur".into()),
            fiat: Some(cost.parse().unwrap()),
            fiat_fee: Some(fee.parse().unwrap()),
            btc: Some(btc.parse().unwrap()),
            btc_fee: None,
            rate: None,
            address: None,
            txid: None,
        }
    }

    #[test]
    fn totals_are_exact_and_the_average_includes_fees() {
        // Seed 001's exchange, three times: 0.1 + 0.2 style sums must stay exact.
        let entries = vec![
            buy("100.00", "1.20", "0.00494000"),
            buy("100.10", "1.20", "0.00494000"),
            buy("0.20", "0", "0.00000001"),
        ];
        let t = totals(&entries);
        let eur = &t.by_currency["eur"];
        assert_eq!(eur.spent.to_string(), "200.30");
        assert_eq!(eur.btc.to_string(), "0.00988001");
        assert_eq!(eur.average_price().unwrap().to_string(), "20273.26");
    }

    #[test]
    fn absurd_amounts_are_left_out_with_a_reason_and_sums_never_overflow() {
        let mut poison = buy("100", "1", "0.001");
        poison.reference = "poison".into();
        poison.btc = Some("10000000000000000000000000000".parse().unwrap());
        assert!(
            poison.absurd().unwrap().contains("poison"),
            "{:?}",
            poison.absurd()
        );
        let mut negative = buy("-5", "0", "0.001");
        negative.reference = "negative".into();
        assert!(negative.absurd().unwrap().contains("fiat amount -5"));
        assert!(buy("100", "1", "0.001").absurd().is_none());

        // Sums at the edge of a decimal: the entry that would overflow is left out whole.
        let huge = Decimal::MAX - Decimal::ONE;
        let mut a = buy("1", "0", "0.001");
        a.fiat = Some(huge);
        let mut b = buy("1", "0", "0.002");
        b.reference = "second".into();
        b.fiat = Some(huge);
        let t = totals(&[a, b]);
        assert_eq!(t.by_currency["eur"].buys, 1);
        assert_eq!(t.by_currency["eur"].btc.to_string(), "0.001");
        assert_eq!(t.skipped.len(), 1, "{:?}", t.skipped);
        assert!(t.skipped[0].contains("second"));
        // The average of a huge sum over a tiny amount does not fit: no average, no panic.
        let mut c = buy("1", "0", "0.00000001");
        c.fiat = Some(huge);
        assert_eq!(totals(&[c]).by_currency["eur"].average_price(), None);
    }

    #[test]
    fn csv_quotes_only_what_needs_it() {
        let mut e = buy("100", "1", "0.001");
        e.reference = "a,\"b\"".into();
        let text = csv(&[e]).unwrap();
        let line = text.lines().nth(1).unwrap();
        assert!(
            line.contains(",buy,\"a,\"\"b\"\"\",,eur,100,1,0.001,,,"),
            "{line}"
        );
    }

    #[test]
    fn csv_bytes_are_the_documented_ones() {
        let e = Entry {
            date: "2026-01-02T03:04:05Z".parse().unwrap(),
            kind: "payout",
            reference: "a b".into(),
            order_id: Some("o\r\n1".into()),
            currency: None,
            fiat: None,
            fiat_fee: None,
            btc: Some("0.00100".parse().unwrap()),
            btc_fee: Some("0.0000019".parse().unwrap()),
            rate: None,
            address: Some(" bc1q, x".into()),
            txid: Some("t\"x".into()),
        };
        assert_eq!(
            csv(&[e]).unwrap(),
            "date,kind,reference,order_id,currency,fiat_amount,fiat_fee,btc_amount,btc_fee,rate,address,txid\r\n\
             2026-01-02T03:04:05+00:00,payout,a b,\"o\r\n1\",,,,0.001,0.0000019,,\" bc1q, x\",\"t\"\"x\"\r\n"
        );
        assert_eq!(csv(&[]).unwrap(), format!("{}\r\n", CSV_COLUMNS.join(",")));
    }
}
