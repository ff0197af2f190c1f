//! The ledger in the import formats of tax tools: Koinly's universal CSV and CoinTracker's CSV
//! (docs/exports.md documents them column by column, with where each format is specified).
//!
//! Both are written from the same [`Entry`] list as `report --csv`, so a file always adds up to
//! the report's totals. Amounts are the entries' exact decimals, never floats, written with a
//! decimal point and no thousands separators. This module must never round an amount or
//! invent one: a field the ledger does not know stays empty.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::Entry;

/// Koinly's universal template, in its column order.
pub const KOINLY_COLUMNS: [&str; 12] = [
    "Date",
    "Sent Amount",
    "Sent Currency",
    "Received Amount",
    "Received Currency",
    "Fee Amount",
    "Fee Currency",
    "Net Worth Amount",
    "Net Worth Currency",
    "Label",
    "Description",
    "TxHash",
];

/// CoinTracker's header row; it wants these eight headers exactly.
pub const COINTRACKER_COLUMNS: [&str; 8] = [
    "Date",
    "Received Quantity",
    "Received Currency",
    "Sent Quantity",
    "Sent Currency",
    "Fee Amount",
    "Fee Currency",
    "Tag",
];

/// Koinly's date format: `YYYY-MM-DD HH:MM UTC`.
pub fn koinly_date(d: DateTime<Utc>) -> String {
    d.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// CoinTracker's date format, `MM/DD/YYYY HH:MM:SS`, in UTC.
pub fn cointracker_date(d: DateTime<Utc>) -> String {
    d.format("%m/%d/%Y %H:%M:%S").to_string()
}

fn amount(d: Option<Decimal>) -> String {
    d.map(|d| d.normalize().to_string()).unwrap_or_default()
}

/// What a tax tool sees of one entry: what left, what came in, the fee, and what it was worth.
/// `None` for entries that move no asset a tax tool tracks (refunds: the payment came back).
struct Movement {
    date: DateTime<Utc>,
    sent: Option<(Decimal, String)>,
    received: Option<(Decimal, String)>,
    fee: Option<(Decimal, String)>,
    worth: Option<(Decimal, String)>,
    description: String,
    txid: Option<String>,
}

fn movement(e: &Entry) -> Option<Movement> {
    let fiat = e.currency.as_deref().map(str::to_uppercase);
    let btc = || "BTC".to_string();
    match e.kind {
        "buy" => {
            let fiat = fiat.unwrap_or_default();
            // The fee is part of the fiat paid: the sent side is what was exchanged, the fee is
            // listed beside it, and together they are what left the bank account.
            let fee = e.fiat_fee.unwrap_or(Decimal::ZERO);
            let paid = e.fiat.unwrap_or(Decimal::ZERO);
            let exchanged = paid.checked_sub(fee)?;
            Some(Movement {
                date: e.date,
                sent: Some((exchanged, fiat.clone())),
                received: e.btc.map(|b| (b, btc())),
                fee: e.fiat_fee.map(|f| (f, fiat.clone())),
                worth: e.fiat.map(|f| (f, fiat.clone())),
                description: format!(
                    "Pocket buy {}{}",
                    e.reference,
                    e.order_id
                        .as_deref()
                        .map(|o| format!(" (order {o})"))
                        .unwrap_or_default()
                ),
                txid: None,
            })
        }
        "payout" | "withdrawal" => Some(Movement {
            date: e.date,
            sent: e.btc.map(|b| (b, btc())),
            received: None,
            fee: e.btc_fee.map(|f| (f, btc())),
            worth: None,
            description: match (e.kind, &e.address) {
                ("payout", Some(a)) => format!("Pocket payout of {} to {a}", e.reference),
                ("payout", None) => format!("Pocket payout of {} over Lightning", e.reference),
                (_, Some(a)) => format!("withdrawal {} to {a}", e.reference),
                (_, None) => format!("withdrawal {}", e.reference),
            },
            txid: e.txid.clone(),
        }),
        _ => None,
    }
}

fn split(side: &Option<(Decimal, String)>) -> [String; 2] {
    match side {
        Some((d, c)) => [amount(Some(*d)), c.clone()],
        None => [String::new(), String::new()],
    }
}

fn write(header: &[&str], rows: Vec<Vec<String>>) -> Result<String, ::csv::Error> {
    let mut out = ::csv::WriterBuilder::new()
        .terminator(::csv::Terminator::CRLF)
        .from_writer(Vec::new());
    out.write_record(header)?;
    for row in rows {
        out.write_record(row)?;
    }
    let bytes = out.into_inner().map_err(|e| e.into_error())?;
    String::from_utf8(bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e).into())
}

/// Koinly's universal CSV: one row per buy, payout and withdrawal (refunds move no asset).
pub fn koinly(entries: &[Entry]) -> Result<String, ::csv::Error> {
    let rows = entries
        .iter()
        .filter_map(movement)
        .map(|m| {
            let [sent, sent_c] = split(&m.sent);
            let [received, received_c] = split(&m.received);
            let [fee, fee_c] = split(&m.fee);
            let [worth, worth_c] = split(&m.worth);
            vec![
                koinly_date(m.date),
                sent,
                sent_c,
                received,
                received_c,
                fee,
                fee_c,
                worth,
                worth_c,
                // A buy is a trade and a payout a transfer Koinly matches by itself: no label.
                String::new(),
                m.description,
                m.txid.unwrap_or_default(),
            ]
        })
        .collect();
    write(&KOINLY_COLUMNS, rows)
}

/// CoinTracker's CSV: the same rows as Koinly's, in CoinTracker's eight columns.
pub fn cointracker(entries: &[Entry]) -> Result<String, ::csv::Error> {
    let rows = entries
        .iter()
        .filter_map(movement)
        .map(|m| {
            let [sent, sent_c] = split(&m.sent);
            let [received, received_c] = split(&m.received);
            let [fee, fee_c] = split(&m.fee);
            vec![
                cointracker_date(m.date),
                received,
                received_c,
                sent,
                sent_c,
                fee,
                fee_c,
                // Tags are for income and spending; a buy or a move to one's own wallet has none.
                String::new(),
            ]
        })
        .collect();
    write(&COINTRACKER_COLUMNS, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buy() -> Entry {
        Entry {
            date: "2026-12-07T09:05:03Z".parse().unwrap(),
            kind: "buy",
            reference: "ex-1".into(),
            order_id: Some("o-1".into()),
            currency: Some("chf".into()),
            fiat: Some("100.00".parse().unwrap()),
            fiat_fee: Some("1.50".parse().unwrap()),
            btc: Some("0.00172807".parse().unwrap()),
            btc_fee: None,
            rate: Some("57000".parse().unwrap()),
            address: None,
            txid: None,
        }
    }

    #[test]
    fn koinly_bytes_are_the_documented_ones() {
        let mut payout = buy();
        payout.kind = "payout";
        payout.fiat = None;
        payout.fiat_fee = None;
        payout.currency = None;
        payout.btc = Some("0.00172617".parse().unwrap());
        payout.btc_fee = Some("0.0000019".parse().unwrap());
        payout.address = Some("bc1qexample".into());
        payout.txid = Some("ab".repeat(32));
        let mut refund = buy();
        refund.kind = "refund";
        let text = koinly(&[buy(), payout, refund]).unwrap();
        assert_eq!(
            text,
            format!(
                "Date,Sent Amount,Sent Currency,Received Amount,Received Currency,Fee Amount,Fee Currency,Net Worth Amount,Net Worth Currency,Label,Description,TxHash\r\n\
                 2026-12-07 09:05 UTC,98.5,CHF,0.00172807,BTC,1.5,CHF,100,CHF,,Pocket buy ex-1 (order o-1),\r\n\
                 2026-12-07 09:05 UTC,0.00172617,BTC,,,0.0000019,BTC,,,,Pocket payout of ex-1 to bc1qexample,{}\r\n",
                "ab".repeat(32)
            )
        );
    }

    #[test]
    fn cointracker_has_its_exact_header_and_us_dates() {
        let text = cointracker(&[buy()]).unwrap();
        assert_eq!(
            text,
            "Date,Received Quantity,Received Currency,Sent Quantity,Sent Currency,Fee Amount,Fee Currency,Tag\r\n\
             12/07/2026 09:05:03,0.00172807,BTC,98.5,CHF,1.5,CHF,\r\n"
        );
    }
}
