//! `report --format koinly|cointracker` and `labels WALLET` over generated exchanges: the tax
//! files parse back (csv crate) to the report's exact totals, and the labels file holds one
//! valid BIP-329 record per address and transaction of the wallet.

use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;

use bitcoin::bip32::{DerivationPath, Xpriv, Xpub};
use bitcoin::secp256k1::Secp256k1;
use bitcoin::{Address, Network};
use rust_decimal::Decimal;
use satflow::pocket::types::Exchange;
use satflow::store::{Effects, Store};
use serde_json::{Value, json};

use super::helpers::TestApp;

/// The test wallet: its descriptor with key origin, and its receive addresses.
struct Wallet {
    descriptor: String,
    origin: String,
    account: Xpub,
}

impl Wallet {
    fn new() -> Wallet {
        let secp = Secp256k1::new();
        let master = Xpriv::new_master(Network::Bitcoin, &[11u8; 32]).unwrap();
        let path = DerivationPath::from_str("m/84'/0'/0'").unwrap();
        let account = Xpub::from_priv(&secp, &master.derive_priv(&secp, &path).unwrap());
        let fingerprint = master.fingerprint(&secp);
        Wallet {
            descriptor: format!("wpkh([{fingerprint}/84'/0'/0']{account}/0/*)"),
            origin: format!("wpkh([{fingerprint}/84'/0'/0'])"),
            account,
        }
    }

    fn address(&self, index: u32) -> String {
        let secp = Secp256k1::new();
        let path = DerivationPath::from_str(&format!("m/0/{index}")).unwrap();
        let key = self.account.derive_pub(&secp, &path).unwrap();
        Address::p2wpkh(
            &bitcoin::CompressedPublicKey(key.public_key),
            Network::Bitcoin,
        )
        .to_string()
    }
}

fn dec(v: &Value) -> Decimal {
    v.as_str().unwrap().parse().unwrap()
}

/// A setup with wallets `cold` (a descriptor with key origin) and `spare`, and `n` exchanges:
/// buys in EUR and CHF, a third settled to `cold`'s addresses, a few to an address of another
/// wallet, some refunded. Returns the app, the wallet and the payouts made to `cold`
/// (address, txid, exchange id).
async fn setup(n: u64) -> (TestApp, Wallet, Vec<(String, String, String)>) {
    let app = TestApp::engine();
    let wallet = Wallet::new();
    let config = std::fs::read_to_string(app.path().join("satflow.yaml")).unwrap();
    app.write(
        "satflow.yaml",
        &format!(
            "{config}wallets:\n  cold:\n    descriptor: \"{}\"\n  spare:\n    xpub: zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs\n",
            wallet.descriptor
        ),
    );
    let store = Store::open_sqlite(&app.path().join("satflow.db"))
        .await
        .unwrap();
    let mut to_cold = Vec::new();
    for i in 0..n {
        let currency = if i % 2 == 0 { "chf" } else { "eur" };
        // Costs with cents and rates with cents: sums a float would get wrong.
        let cost = Decimal::new(10_000 + (i as i64 * 137) % 9_000, 2);
        let fee = (cost * Decimal::new(15, 3)).round_dp(2);
        let rate = Decimal::new(5_700_000 + (i as i64 * 7_919) % 900_000, 2);
        let amount = ((cost - fee) / rate).round_dp(8);
        let txid = format!("{:064x}", i + 1);
        let payout = match i % 5 {
            0 | 1 => {
                let address = wallet.address(i as u32);
                to_cold.push((address.clone(), txid.clone(), format!("ex-{i:03}")));
                Some(
                    json!({ "txid": txid, "bitcoin_address": address, "fee": "0.0000021",
                    "amount": (amount - Decimal::new(210, 8)).to_string() }),
                )
            }
            // Another wallet's address: not `cold`'s to label.
            2 => Some(json!({ "txid": txid,
                "bitcoin_address": "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
                "fee": "0.0000021", "amount": (amount - Decimal::new(210, 8)).to_string() })),
            _ => None,
        };
        let refunded = i % 7 == 6;
        let exchange: Exchange = serde_json::from_value(json!({
            "id": format!("ex-{i:03}"), "order_id": "order-1", "fee_rate": 0.015,
            "pair": format!("btc/{currency}"), "type": "buy", "cost": cost.to_string(),
            "executed_on": format!("2026-{:02}-{:02}T09:{:02}:{:02}Z", 1 + i % 12, 1 + i % 28, i % 60, (i * 7) % 60),
            "amount": if refunded { Value::Null } else { json!(amount.to_string()) },
            "rate": if refunded { Value::Null } else { json!(rate.to_string()) },
            "fee": if refunded { Value::Null } else { json!(fee.to_string()) },
            "reason": if refunded { json!({ "code": "threshold_exceeded" }) } else { Value::Null },
            "payout": if refunded { Value::Null } else { payout.unwrap_or(Value::Null) },
        }))
        .unwrap();
        if refunded {
            to_cold.retain(|(_, _, id)| *id != format!("ex-{i:03}"));
        }
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
    }
    store.close().await;
    (app, wallet, to_cold)
}

/// The rows of a CSV by column name, after checking its header is exactly `header`.
fn read_csv(text: &str, header: &[&str]) -> Vec<HashMap<String, String>> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let got: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(got, header);
    reader
        .deserialize()
        .collect::<Result<_, _>>()
        .expect("every row parses")
}

fn sum(rows: &[HashMap<String, String>], amount: &str, currency: &str, code: &str) -> Decimal {
    rows.iter()
        .filter(|r| r[currency] == code)
        .map(|r| r[amount].parse::<Decimal>().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn koinly_and_cointracker_files_add_up_to_the_report() {
    let (app, _, _) = setup(120).await;
    let run = app.satflow(&["report", "--format", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    let totals = &doc["totals"];
    let entries = doc["entries"].as_array().unwrap();
    let buys = entries.iter().filter(|e| e["kind"] == "buy").count();
    let payouts = entries.iter().filter(|e| e["kind"] == "payout").count();
    assert!(buys > 50 && payouts > 30, "{buys} buys, {payouts} payouts");

    let koinly = app.satflow(&["report", "--format", "koinly"]);
    assert_eq!(koinly.code, 0, "{koinly:?}");
    let rows = read_csv(&koinly.stdout, &satflow::ledger::exports::KOINLY_COLUMNS);
    // Refunds move no asset: one row per buy and per payout.
    assert_eq!(rows.len(), buys + payouts);
    let cointracker = app.satflow(&["report", "--format", "cointracker"]);
    assert_eq!(cointracker.code, 0, "{cointracker:?}");
    let ct = read_csv(
        &cointracker.stdout,
        &satflow::ledger::exports::COINTRACKER_COLUMNS,
    );
    assert_eq!(ct.len(), rows.len());

    for code in ["eur", "chf"] {
        let c = &totals["currencies"][code];
        let up = code.to_uppercase();
        let (spent, fees) = (dec(&c["spent"]), dec(&c["fees"]));
        // What was exchanged plus its fee is what was spent, to the cent.
        let k_sent = sum(&rows, "Sent Amount", "Sent Currency", &up);
        let k_fees = sum(&rows, "Fee Amount", "Fee Currency", &up);
        assert_eq!(k_sent + k_fees, spent, "koinly {code}");
        assert_eq!(k_fees, fees, "koinly {code} fees");
        assert_eq!(
            sum(&rows, "Net Worth Amount", "Net Worth Currency", &up),
            spent
        );
        let c_sent = sum(&ct, "Sent Quantity", "Sent Currency", &up);
        let c_fees = sum(&ct, "Fee Amount", "Fee Currency", &up);
        assert_eq!(c_sent + c_fees, spent, "cointracker {code}");
        assert_eq!(c_fees, fees, "cointracker {code} fees");
    }
    let btc_bought = dec(&totals["btc_bought"]);
    let payout_fees = dec(&totals["payout_fees_btc"]);
    assert_eq!(
        sum(&rows, "Received Amount", "Received Currency", "BTC"),
        btc_bought
    );
    assert_eq!(sum(&rows, "Fee Amount", "Fee Currency", "BTC"), payout_fees);
    assert_eq!(
        sum(&ct, "Received Quantity", "Received Currency", "BTC"),
        btc_bought
    );
    assert_eq!(sum(&ct, "Fee Amount", "Fee Currency", "BTC"), payout_fees);

    // Dates in each tool's format, in UTC, equal to the report's; payouts carry their txid.
    for ((k, c), e) in rows.iter().zip(&ct).zip(
        entries
            .iter()
            .filter(|e| e["kind"] == "buy" || e["kind"] == "payout"),
    ) {
        let date = chrono::DateTime::parse_from_rfc3339(e["date"].as_str().unwrap()).unwrap();
        let kd = chrono::NaiveDateTime::parse_from_str(&k["Date"], "%Y-%m-%d %H:%M UTC").unwrap();
        let date = date.naive_utc().with_nanosecond(0).unwrap();
        assert_eq!(kd, date.with_second(0).unwrap(), "{k:?}");
        let cd = chrono::NaiveDateTime::parse_from_str(&c["Date"], "%m/%d/%Y %H:%M:%S").unwrap();
        assert_eq!(cd, date, "{c:?}");
        assert_eq!(k["TxHash"], e["txid"].as_str().unwrap_or(""));
        assert_eq!(c["Tag"], "");
    }
}

use chrono::Timelike;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_are_one_valid_bip329_record_per_address_and_transaction() {
    let (app, wallet, to_cold) = setup(40).await;
    let run = app.satflow(&["labels", "cold"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.ends_with('\n'));
    let allowed = ["tx", "addr", "pubkey", "input", "output", "xpub"];
    let mut addrs = BTreeSet::new();
    let mut txs = BTreeSet::new();
    for line in run.stdout.split('\n').filter(|l| !l.is_empty()) {
        // One record per line, each a JSON object.
        let record: serde_json::Map<String, Value> =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON object: {line}: {e}"));
        let kind = record["type"].as_str().expect("type is a string");
        assert!(allowed.contains(&kind), "{line}");
        let reference = record["ref"].as_str().expect("ref is a string");
        for key in record.keys() {
            assert!(
                ["type", "ref", "label", "origin", "spendable", "keypath"].contains(&key.as_str()),
                "{key} in {line}"
            );
        }
        // `spendable` only on outputs.
        assert!(
            kind == "output" || !record.contains_key("spendable"),
            "{line}"
        );
        assert_eq!(record["origin"], wallet.origin.as_str(), "{line}");
        let label = record["label"].as_str().expect("label is a string");
        assert!(!label.is_empty() && label.chars().count() <= 255, "{line}");
        match kind {
            "addr" => {
                let address = Address::from_str(reference)
                    .unwrap_or_else(|e| panic!("{reference}: {e}"))
                    .require_network(Network::Bitcoin)
                    .unwrap();
                assert!(addrs.insert(address.to_string()), "one record per address");
            }
            "tx" => {
                assert!(
                    reference.len() == 64 && reference.chars().all(|c| c.is_ascii_hexdigit()),
                    "{reference}"
                );
                assert!(
                    txs.insert(reference.to_string()),
                    "one record per transaction"
                );
            }
            other => panic!("unexpected {other}: {line}"),
        }
        if let Some(path) = record.get("keypath") {
            let path = path.as_str().unwrap();
            let index: u32 = path.strip_prefix("/0/").unwrap().parse().unwrap();
            assert_eq!(wallet.address(index), reference, "{line}");
        }
    }
    let want_addrs: BTreeSet<String> = to_cold.iter().map(|(a, _, _)| a.clone()).collect();
    let want_txs: BTreeSet<String> = to_cold.iter().map(|(_, t, _)| t.clone()).collect();
    assert_eq!(addrs, want_addrs);
    assert_eq!(txs, want_txs);
    // The label says the cost basis: date, fiat paid, rate with thousands separators.
    let first = run
        .stdout
        .lines()
        .find(|l| l.contains(&to_cold[0].1))
        .unwrap();
    let label = serde_json::from_str::<Value>(first).unwrap()["label"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(label, "Pocket buy 2026-01-01, 100 CHF at 57,000 CHF/BTC");

    // Another wallet has none of these; an unknown one is refused with the known names.
    let spare = app.satflow(&["labels", "spare"]);
    assert_eq!(spare.code, 0, "{spare:?}");
    assert_eq!(spare.stdout, "");
    let unknown = app.satflow(&["labels", "colt"]);
    assert_eq!(unknown.code, 1, "{unknown:?}");
    assert!(
        unknown.stderr.contains("no wallet `colt`") && unknown.stderr.contains("cold, spare"),
        "{unknown:?}"
    );
    assert_eq!(unknown.stdout, "");
}
