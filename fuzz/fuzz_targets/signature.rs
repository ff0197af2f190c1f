//! Message signatures as `order setup` reads them: any text against addresses of every kind
//! never panics, and a signature made by `sign_message` always verifies.
#![no_main]

use std::str::FromStr;
use std::sync::OnceLock;

use bitcoin::secp256k1::SecretKey;
use bitcoin::{Address, Network};
use libfuzzer_sys::fuzz_target;
use satflow::wallet::proof::{sign_message, verify_message};

fn addresses() -> &'static Vec<Address> {
    static ADDRESSES: OnceLock<Vec<Address>> = OnceLock::new();
    ADDRESSES.get_or_init(|| {
        // Public example addresses of each type (BIP-173/BIP-350 test vectors and well-known ones).
        [
            "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2",
            "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy",
            "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",
            "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
        ]
        .iter()
        .map(|a| Address::from_str(a).unwrap().require_network(Network::Bitcoin).unwrap())
        .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // The first line is the message, the rest the signature.
    let (message, signature) = text.split_once('\n').unwrap_or(("I confirm my bitcoin wallet. [t]", &text));
    for address in addresses() {
        let _ = verify_message(address, message, signature);
    }
    if data.len() >= 32
        && let Ok(key) = SecretKey::from_slice(&data[..32])
    {
        let signed = sign_message(&key, message);
        let secp = bitcoin::secp256k1::Secp256k1::new();
        let public = bitcoin::PublicKey::new(key.public_key(&secp));
        let address = Address::p2pkh(public, Network::Bitcoin);
        assert_eq!(verify_message(&address, message, &signed), Ok(()), "{signed}");
    }
});
