//! BOLT11 invoices as the payout step checks them: any text is parsed and checked against an
//! expectation without panicking.
#![no_main]

use std::time::Duration;

use bitcoin::Network;
use libfuzzer_sys::fuzz_target;
use satflow::lightning::invoice::{Expected, verify};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for network in [Network::Bitcoin, Network::Regtest] {
        let expected = Expected {
            amount_msat: 1_000_000,
            network,
            payee: None,
            min_validity: Duration::from_secs(600),
            description_hash: None,
        };
        for now in [Duration::ZERO, Duration::from_secs(1_700_000_000), Duration::MAX] {
            let _ = verify(text, &expected, now);
        }
    }
});
