//! A webhook as the handler sees it: the first line of the input is the `X-Signature-256`
//! header, the rest the body. Verification never panics and accepts exactly the right HMAC;
//! the body goes JSON → `Exchange` → its state and amounts, and through the payout amount.
#![no_main]

use libfuzzer_sys::fuzz_target;
use satflow::domain::Btc;
use satflow::pocket::payout::payout_amount;
use satflow::pocket::types::Exchange;
use satflow::pocket::webhook::{sign, verify};
use serde_json::{Value, json};

const SECRET: &[u8] = b"96eb2c74343a6d58590ea4a06ab13d24da4affc4";

fuzz_target!(|data: &[u8]| {
    let (header, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    let header = String::from_utf8_lossy(header);
    let right = sign(SECRET, body);
    if verify(SECRET, body, &header) {
        let given = header.trim();
        let given = given.strip_prefix("sha256=").unwrap_or(given);
        assert_eq!(given, &right["sha256=".len()..], "a wrong signature accepted");
    }
    assert!(verify(SECRET, body, &right));

    let Ok(json) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let _ = json["event"].as_str();
    if let Ok(exchange) = serde_json::from_value::<Exchange>(json["payload"].clone()) {
        let _ = exchange.state();
        for amount in [exchange.amount, exchange.cost, exchange.fee, exchange.rate]
            .into_iter()
            .flatten()
        {
            if let Ok(btc) = Btc::new(amount) {
                let _ = btc.sats();
                let _ = btc.msat();
                let _ = btc.to_string();
            }
        }
        let _ = serde_json::to_string(&exchange);
        if let Some(amount) = exchange.amount {
            let _ = payout_amount(&json!({ "amount": amount.to_string(), "exchange": json["payload"] }));
        }
    }
    let _ = payout_amount(&json);
});
