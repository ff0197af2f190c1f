//! BOLT11 invoices as the payout step checks them: any text is parsed and checked against an
//! expectation without panicking. Inputs starting with an even byte are turned into a
//! well-formed bech32 string (a known prefix, the rest as 5-bit groups, a valid checksum), so
//! mutations get past the checksum into the invoice's fields.
#![no_main]

use std::time::Duration;

use bitcoin::Network;
use libfuzzer_sys::fuzz_target;
use satflow::lightning::invoice::{Expected, verify};

const CHARSET: &[u8; 32] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
const PREFIXES: [&str; 6] = ["lnbc", "lnbc10u", "lnbc1m", "lnbcrt", "lntb", "lnbc2500n"];

/// The BIP-173 checksum polynomial (constants from the BIP).
fn polymod(values: &[u8]) -> u32 {
    const GEN: [u32; 5] = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];
    let mut chk: u32 = 1;
    for v in values {
        let top = chk >> 25;
        chk = ((chk & 0x1ffffff) << 5) ^ u32::from(*v);
        for (i, g) in GEN.iter().enumerate() {
            if (top >> i) & 1 == 1 {
                chk ^= g;
            }
        }
    }
    chk
}

fn bech32(hrp: &str, data: &[u8]) -> String {
    let mut values: Vec<u8> = hrp.bytes().map(|b| b >> 5).collect();
    values.push(0);
    values.extend(hrp.bytes().map(|b| b & 31));
    values.extend_from_slice(data);
    values.extend_from_slice(&[0; 6]);
    let checksum = polymod(&values) ^ 1;
    let mut out = format!("{hrp}1");
    for v in data {
        out.push(CHARSET[*v as usize] as char);
    }
    for i in 0..6 {
        out.push(CHARSET[((checksum >> (5 * (5 - i))) & 31) as usize] as char);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let text = match data.split_first() {
        Some((first, rest)) if first % 2 == 0 => {
            let hrp = PREFIXES[(*first as usize / 2) % PREFIXES.len()];
            let groups: Vec<u8> = rest.iter().map(|b| b & 31).collect();
            bech32(hrp, &groups)
        }
        _ => match std::str::from_utf8(data) {
            Ok(text) => text.to_string(),
            Err(_) => return,
        },
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
            let _ = verify(&text, &expected, now);
        }
    }
});
