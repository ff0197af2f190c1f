//! Pocket's answers: any body read as an order, an exchange, a challenge or an error code
//! never panics, and what parses serializes again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use satflow::pocket::types::{ApiCode, Challenge, Exchange, Order, parse_decimal};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some((code, _message)) = ApiCode::from_body(text) {
        assert_eq!(ApiCode::parse(code.as_str()), code);
    }
    if let Ok(order) = serde_json::from_str::<Order>(text) {
        let _ = order.currency();
        let _ = serde_json::to_string(&order);
    }
    if let Ok(exchange) = serde_json::from_str::<Exchange>(text) {
        let _ = exchange.state();
        let _ = serde_json::to_string(&exchange);
    }
    if let Ok(challenge) = serde_json::from_str::<Challenge>(text) {
        let _ = challenge.message();
    }
    let _ = serde_json::from_str::<Vec<Exchange>>(text);
    let _ = parse_decimal(text);
});
