//! `satflow report` over a few hundred generated exchanges: totals equal the exact sums of the
//! events, and the CSV parses back into the same rows.

use std::collections::HashMap;

use rust_decimal::Decimal;
use satflow::pocket::types::Exchange;
use satflow::store::{Effects, Store};
use serde_json::{Value, json};

use super::helpers::TestApp;

/// A tiny deterministic generator, so a failure can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// The exchange id of event `i`; one holds a comma, quotes and a line break, which the CSV
/// must quote and a reader must get back unchanged.
fn id(i: u64) -> String {
    if i == 7 {
        "ex-0007, \"the seventh\"\r\nsecond line".to_string()
    } else {
        format!("ex-{i:04}")
    }
}

fn dec(v: &Value) -> Decimal {
    v.as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_totals_are_the_exact_sums_and_the_csv_reads_back() {
    let app = TestApp::engine();
    let store = Store::open_sqlite(&app.path().join("satflow.db"))
        .await
        .unwrap();
    let mut rng = Lcg(42);
    let mut spent: HashMap<&str, Decimal> = HashMap::new();
    let mut fees: HashMap<&str, Decimal> = HashMap::new();
    let mut btc = Decimal::ZERO;
    let mut payout_fees = Decimal::ZERO;
    let (mut buys, mut payouts, mut refunds) = (0, 0, 0);
    for i in 0..300u64 {
        let currency = ["eur", "chf"][rng.next(2) as usize];
        // Costs with cents, fees at 1.2 %, amounts to the satoshi: sums a float would get wrong.
        let cost = Decimal::new(1000 + rng.next(100_000) as i64, 2);
        let fee = (cost * Decimal::new(12, 3)).round_dp(2);
        let rate = Decimal::new(5_000_000 + rng.next(2_000_000) as i64, 2);
        let amount = ((cost - fee) / rate).round_dp(8);
        let kind = rng.next(10);
        let payout = (kind < 5).then(|| {
            json!({ "txid": format!("{i:064x}"), "bitcoin_address": "bc1qexample", "fee": "0.0000019", "amount": (amount - Decimal::new(190, 8)).to_string() })
        });
        let reason = (kind == 9).then(|| json!({ "code": "threshold_exceeded" }));
        let action = (kind == 8).then(|| json!({ "code": "identify" }));
        let exchange: Exchange = serde_json::from_value(json!({
            "id": id(i), "order_id": "order-1", "fee_rate": 0.012,
            "pair": format!("btc/{currency}"), "type": "buy", "cost": cost.to_string(),
            "executed_on": format!("2026-{:02}-{:02}T09:00:00Z", 1 + i / 28 % 12, 1 + i % 28),
            "amount": if reason.is_some() { Value::Null } else { json!(amount.to_string()) },
            "rate": if reason.is_some() { Value::Null } else { json!(rate.to_string()) },
            "fee": if reason.is_some() { Value::Null } else { json!(fee.to_string()) },
            "action": action, "reason": reason, "payout": payout,
        }))
        .unwrap();
        store
            .apply_exchange(
                "reconcile",
                "exchange.executed",
                &exchange,
                None,
                None,
                chrono::Utc::now(),
                |_, _| Effects::default(),
            )
            .await
            .unwrap();
        match kind {
            9 => refunds += 1,
            8 => {}
            _ => {
                buys += 1;
                *spent.entry(currency).or_default() += cost;
                *fees.entry(currency).or_default() += fee;
                btc += amount;
                if kind < 5 {
                    payouts += 1;
                    payout_fees += Decimal::new(190, 8);
                }
            }
        }
    }
    store.close().await;

    let run = app.satflow(&["report", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    let totals = &doc["totals"];
    for code in ["eur", "chf"] {
        assert_eq!(
            dec(&totals["currencies"][code]["spent"]),
            spent[code],
            "{code} spent"
        );
        assert_eq!(
            dec(&totals["currencies"][code]["fees"]),
            fees[code],
            "{code} fees"
        );
    }
    assert_eq!(dec(&totals["btc_bought"]), btc);
    assert_eq!(dec(&totals["payout_fees_btc"]), payout_fees);
    let entries = doc["entries"].as_array().unwrap();
    assert_eq!(entries.len(), buys + payouts + refunds);

    let csv = app.satflow(&["report", "--csv"]);
    assert_eq!(csv.code, 0, "{csv:?}");
    // Read back with the csv crate's reader, by column name, and compared field by field
    // with the JSON report of the same entries (in the same order).
    let mut reader = csv::Reader::from_reader(csv.stdout.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header, satflow::ledger::CSV_COLUMNS);
    let rows: Vec<HashMap<String, String>> = reader
        .deserialize()
        .collect::<Result<_, _>>()
        .expect("every CSV row parses");
    assert_eq!(rows.len(), entries.len(), "one row per entry");
    let mut csv_btc = Decimal::ZERO;
    for (row, entry) in rows.iter().zip(entries) {
        assert_eq!(row.len(), 12, "{row:?}");
        for column in satflow::ledger::CSV_COLUMNS {
            let want = entry[column].as_str().unwrap_or("");
            assert_eq!(row[column], want, "{column} of {entry}");
        }
        assert!(
            chrono::DateTime::parse_from_rfc3339(&row["date"]).is_ok(),
            "{row:?}"
        );
        if row["kind"] == "buy" {
            csv_btc += row["btc_amount"].parse::<Decimal>().unwrap();
        }
    }
    let odd = id(7);
    assert!(
        rows.iter().any(|r| r["reference"] == odd),
        "the id with a comma, quotes and a line break reads back whole"
    );
    assert_eq!(csv_btc, btc, "the CSV adds up to the same bitcoin");

    let text = app.satflow(&["report"]);
    assert!(
        text.stdout
            .contains(&format!("bitcoin: {} BTC bought", btc.normalize())),
        "{text:?}"
    );
}
