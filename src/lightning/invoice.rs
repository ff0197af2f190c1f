//! BOLT11 invoices checked before they are handed to Pocket: the amount Pocket will pay, the
//! network, an expiry that leaves time to pay, the payee, and (for LNURL) the description hash.
//!
//! A refusal here means the invoice never leaves satflow: Pocket answering `invoice_amount`
//! after the fact would waste the exchange's time, and a wrong payee would waste the money.

use std::str::FromStr;
use std::time::Duration;

use bitcoin::Network;
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::PublicKey;
use lightning_invoice::{Bolt11Invoice, Bolt11InvoiceDescriptionRef, Currency};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvoiceError {
    #[error("not a valid BOLT11 invoice: {0}")]
    Invalid(String),
    #[error("the invoice is for {got} msat, but Pocket pays {expected} msat")]
    Amount { expected: u64, got: String },
    #[error("the invoice is for {got}, not {expected}")]
    Network { expected: String, got: String },
    #[error("the invoice expires in {left_secs} s; at least {needed_secs} s are needed to pay it")]
    ExpiresTooSoon { left_secs: u64, needed_secs: u64 },
    #[error("the invoice is payable to node {got}, not to the order's node {expected}")]
    Payee { expected: String, got: String },
    #[error("the invoice's description hash does not match the LNURL metadata")]
    DescriptionHash,
}

/// What an invoice must be.
#[derive(Debug, Clone)]
pub struct Expected {
    pub amount_msat: u64,
    pub network: Network,
    /// The node the order pays to.
    pub payee: Option<PublicKey>,
    /// How long the invoice must still be valid.
    pub min_validity: Duration,
    /// SHA-256 of the LNURL metadata, when the invoice came from an LNURL server.
    pub description_hash: Option<[u8; 32]>,
}

fn currency_of(network: Network) -> Currency {
    match network {
        Network::Bitcoin => Currency::Bitcoin,
        Network::Testnet | Network::Testnet4 => Currency::BitcoinTestnet,
        Network::Signet => Currency::Signet,
        Network::Regtest => Currency::Regtest,
    }
}

/// Parses `text` and checks it against `expected` at `now` (time since the Unix epoch).
pub fn verify(
    text: &str,
    expected: &Expected,
    now: Duration,
) -> Result<Bolt11Invoice, InvoiceError> {
    let invoice =
        Bolt11Invoice::from_str(text.trim()).map_err(|e| InvoiceError::Invalid(e.to_string()))?;
    let currency = currency_of(expected.network);
    if invoice.currency() != currency {
        return Err(InvoiceError::Network {
            expected: format!("{currency:?}"),
            got: format!("{:?}", invoice.currency()),
        });
    }
    if invoice.amount_milli_satoshis() != Some(expected.amount_msat) {
        return Err(InvoiceError::Amount {
            expected: expected.amount_msat,
            got: invoice
                .amount_milli_satoshis()
                .map_or_else(|| "no amount".into(), |a| a.to_string()),
        });
    }
    let left = invoice
        .expires_at()
        .map_or(Duration::ZERO, |at| at.saturating_sub(now));
    if left < expected.min_validity {
        return Err(InvoiceError::ExpiresTooSoon {
            left_secs: left.as_secs(),
            needed_secs: expected.min_validity.as_secs(),
        });
    }
    if let Some(payee) = expected.payee {
        let got = invoice.get_payee_pub_key();
        if got != payee {
            return Err(InvoiceError::Payee {
                expected: payee.to_string(),
                got: got.to_string(),
            });
        }
    }
    if let Some(hash) = expected.description_hash {
        match invoice.description() {
            Bolt11InvoiceDescriptionRef::Hash(h) if h.0.to_byte_array() == hash => {}
            _ => return Err(InvoiceError::DescriptionHash),
        }
    }
    Ok(invoice)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Test vectors of the BOLT 11 specification; every one is payable to this node.
    const SPEC_NODE: &str = "03e7156ae33b0a208d0744199163177e909e80176e55d97a2f221ede0f934dd9ad";
    const DONATION: &str = "lnbc1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygspp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdpl2pkx2ctnv5sxxmmwwd5kgetjypeh2ursdae8g6twvus8g6rfwvs8qun0dfjkxaq9qrsgq357wnc5r2ueh7ck6q93dj32dlqnls087fxdwk8qakdyafkq3yap9us6v52vjjsrvywa6rt52cm9r9zqt8r2t7mlcwspyetp5h2tztugp9lfyql";
    const COFFEE: &str = "lnbc2500u1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygspp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5xysxxatsyp3k7enxv4jsxqzpu9qrsgquk0rl77nj30yxdy8j9vdx85fkpmdla2087ne0xh8nhedh8w27kyke0lp53ut353s06fv3qfegext0eh0ymjpf39tuven09sam30g4vgpfna3rh";
    const HASHED: &str = "lnbc20m1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygspp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqhp58yjmdan79s6qqdhdzgynm4zwqd5d7xmw5fk98klysy043l2ahrqs9qrsgq7ea976txfraylvgzuxs8kgcw23ezlrszfnh8r6qtfpr6cxga50aj6txm9rxrydzd06dfeawfk6swupvz4erwnyutnjq7x39ymw6j38gp7ynn44";
    const TESTNET: &str = "lntb20m1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygshp58yjmdan79s6qqdhdzgynm4zwqd5d7xmw5fk98klysy043l2ahrqspp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqfpp3x9et2e20v6pu37c5d9vax37wxq72un989qrsgqdj545axuxtnfemtpwkc45hx9d2ft7x04mt8q7y6t0k2dge9e7h8kpy9p34ytyslj3yu569aalz2xdk8xkd7ltxqld94u8h2esmsmacgpghe9k8";
    /// The specification's invoices were made at this time (2017-06-01).
    const SIGNED_AT: u64 = 1_496_314_658;

    fn parse(text: &str) -> Bolt11Invoice {
        Bolt11Invoice::from_str(text).unwrap()
    }

    #[test]
    fn the_bolt11_test_vectors_parse_as_the_specification_says() {
        let node = PublicKey::from_str(SPEC_NODE).unwrap();
        let donation = parse(DONATION);
        assert_eq!(donation.amount_milli_satoshis(), None);
        assert_eq!(donation.currency(), Currency::Bitcoin);
        assert_eq!(donation.get_payee_pub_key(), node);
        assert_eq!(donation.duration_since_epoch().as_secs(), SIGNED_AT);
        assert!(
            matches!(donation.description(), Bolt11InvoiceDescriptionRef::Direct(d) if d.to_string() == "Please consider supporting this project")
        );
        assert_eq!(
            donation.payment_hash().to_string(),
            "0001020304050607080900010203040506070809000102030405060708090102"
        );

        let coffee = parse(COFFEE);
        assert_eq!(
            coffee.amount_milli_satoshis(),
            Some(250_000_000),
            "2500u is 250,000 sat"
        );
        assert_eq!(coffee.expiry_time(), Duration::from_secs(60));
        assert!(
            matches!(coffee.description(), Bolt11InvoiceDescriptionRef::Direct(d) if d.to_string() == "1 cup coffee")
        );

        let hashed = parse(HASHED);
        assert_eq!(
            hashed.amount_milli_satoshis(),
            Some(2_000_000_000),
            "20m is 2,000,000 sat"
        );
        let Bolt11InvoiceDescriptionRef::Hash(h) = hashed.description() else {
            panic!("a hashed description")
        };
        // SHA-256 of the specification's long description (the cake, the ice cream, ...).
        assert_eq!(
            h.0.to_string(),
            "3925b6f67e2c340036ed12093dd44e0368df1b6ea26c53dbe4811f58fd5db8c1"
        );

        assert_eq!(parse(TESTNET).currency(), Currency::BitcoinTestnet);
        assert_eq!(parse(TESTNET).get_payee_pub_key(), node);
        assert!(
            Bolt11Invoice::from_str(&COFFEE.replace("quk0rl", "quk0rm")).is_err(),
            "a damaged checksum"
        );
    }

    fn coffee_expected() -> Expected {
        Expected {
            amount_msat: 250_000_000,
            network: Network::Bitcoin,
            payee: Some(PublicKey::from_str(SPEC_NODE).unwrap()),
            min_validity: Duration::from_secs(30),
            description_hash: None,
        }
    }

    #[test]
    fn a_right_invoice_passes_while_time_allows() {
        let just_made = Duration::from_secs(SIGNED_AT + 10);
        assert!(verify(COFFEE, &coffee_expected(), just_made).is_ok());
        let late = Duration::from_secs(SIGNED_AT + 45);
        assert!(matches!(
            verify(COFFEE, &coffee_expected(), late),
            Err(InvoiceError::ExpiresTooSoon { left_secs: 15, .. })
        ));
    }

    #[test]
    fn wrong_amount_network_payee_or_hash_is_refused() {
        let t = Duration::from_secs(SIGNED_AT + 10);
        let mut e = coffee_expected();
        e.amount_msat += 1;
        assert!(matches!(
            verify(COFFEE, &e, t),
            Err(InvoiceError::Amount { .. })
        ));
        assert!(
            matches!(verify(DONATION, &coffee_expected(), t), Err(InvoiceError::Amount { got, .. }) if got == "no amount")
        );
        let mut e = coffee_expected();
        e.network = Network::Testnet;
        assert!(matches!(
            verify(COFFEE, &e, t),
            Err(InvoiceError::Network { .. })
        ));
        let mut e = coffee_expected();
        e.payee = Some(
            PublicKey::from_str(
                "02765a281bd188e80a89e6ea5092dcb8ebaaa5c5da341e64327e3fadbadcbc686c",
            )
            .unwrap(),
        );
        assert!(matches!(
            verify(COFFEE, &e, t),
            Err(InvoiceError::Payee { .. })
        ));
        let mut e = coffee_expected();
        e.description_hash = Some([0; 32]);
        assert!(matches!(
            verify(COFFEE, &e, t),
            Err(InvoiceError::DescriptionHash)
        ));
        assert!(matches!(
            verify("lnbc1garbage", &coffee_expected(), t),
            Err(InvoiceError::Invalid(_))
        ));
    }
}
