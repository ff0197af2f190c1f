//! BOLT11 invoices checked before they are handed to Pocket: the amount Pocket will pay, the
//! network, an expiry that leaves time to pay, and the payee. For LNURL, a description hash
//! that does not match the metadata is only logged (see `verify`). Never asks a node anything.
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
}

/// The least time an invoice must still be valid when it is handed to Pocket, whatever its
/// own expiry.
pub const MIN_REMAINING: Duration = Duration::from_secs(60);

/// How long an invoice of expiry `expiry` must still be valid: half of its own validity, and
/// at least `floor`. A fixed minimum would refuse every invoice of a provider whose whole
/// expiry is shorter; half leaves Pocket as much time as the invoice has already lost.
pub fn required_remaining(expiry: Duration, floor: Duration) -> Duration {
    (expiry / 2).max(floor)
}

/// What an invoice must be.
#[derive(Debug, Clone)]
pub struct Expected {
    pub amount_msat: u64,
    pub network: Network,
    /// The node the order pays to.
    pub payee: Option<PublicKey>,
    /// The floor of the remaining validity ([`required_remaining`]); [`MIN_REMAINING`] in use.
    pub min_remaining: Duration,
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

/// An invoice that passed, with what was only noted.
#[derive(Debug, Clone)]
pub struct Verified {
    pub invoice: Bolt11Invoice,
    /// For LNURL: whether the description hash matches the metadata (`None` when not asked).
    pub description_hash_matches: Option<bool>,
}

/// Parses `text` and checks it against `expected` at `now` (time since the Unix epoch).
pub fn verify(text: &str, expected: &Expected, now: Duration) -> Result<Verified, InvoiceError> {
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
    let needed = required_remaining(invoice.expiry_time(), expected.min_remaining);
    if left < needed {
        return Err(InvoiceError::ExpiresTooSoon {
            left_secs: left.as_secs(),
            needed_secs: needed.as_secs(),
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
    // LUD-06 no longer asks wallets to check the description hash against the metadata
    // (lnurl/luds PR #234 dropped it), and widely used providers do not commit to it; the
    // amount, network, payee and expiry above are what protect the money, so a mismatch is
    // only logged.
    let description_hash_matches = expected.description_hash.map(|hash| {
        let matches = matches!(invoice.description(),
            Bolt11InvoiceDescriptionRef::Hash(h) if h.0.to_byte_array() == hash);
        if !matches {
            tracing::warn!(
                payment_hash = %invoice.payment_hash(),
                "the LNURL invoice's description hash does not match the LNURL metadata; accepted, as LUD-06 no longer requires it"
            );
        }
        matches
    });
    Ok(Verified {
        invoice,
        description_hash_matches,
    })
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
            min_remaining: Duration::from_secs(30),
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
    fn the_remaining_validity_is_half_the_invoices_own_and_at_least_a_minute() {
        let ten_minutes = Duration::from_secs(600);
        assert_eq!(
            required_remaining(ten_minutes, MIN_REMAINING),
            Duration::from_secs(300)
        );
        assert_eq!(
            required_remaining(Duration::from_secs(90), MIN_REMAINING),
            MIN_REMAINING,
            "the 60 s floor"
        );
        assert_eq!(
            required_remaining(Duration::from_secs(3600), MIN_REMAINING),
            Duration::from_secs(1800)
        );
    }

    /// A 600 s invoice, as some Lightning-address providers issue, made at `made`.
    fn short_lived(expiry: u64, made: Duration) -> (String, Expected) {
        use bitcoin::secp256k1::{Secp256k1, SecretKey};
        let key = SecretKey::from_slice(&[7; 32]).unwrap();
        let secp = Secp256k1::new();
        let text = lightning_invoice::InvoiceBuilder::new(Currency::Bitcoin)
            .description("satflow test".into())
            .payment_hash(bitcoin::hashes::sha256::Hash::from_byte_array([1; 32]))
            .payment_secret(lightning_invoice::PaymentSecret([2; 32]))
            .duration_since_epoch(made)
            .expiry_time(Duration::from_secs(expiry))
            .min_final_cltv_expiry_delta(144)
            .amount_milli_satoshis(21_000)
            .build_signed(|h| secp.sign_ecdsa_recoverable(h, &key))
            .unwrap()
            .to_string();
        let expected = Expected {
            amount_msat: 21_000,
            network: Network::Bitcoin,
            payee: Some(PublicKey::from_secret_key(&secp, &key)),
            min_remaining: MIN_REMAINING,
            description_hash: None,
        };
        (text, expected)
    }

    #[test]
    fn a_fresh_600_s_invoice_passes_and_one_with_200_s_left_is_too_short() {
        let made = Duration::from_secs(1_700_000_000);
        let (text, expected) = short_lived(600, made);
        assert!(verify(&text, &expected, made + Duration::from_secs(5)).is_ok());
        assert!(verify(&text, &expected, made + Duration::from_secs(300)).is_ok());
        assert_eq!(
            verify(&text, &expected, made + Duration::from_secs(400)).unwrap_err(),
            InvoiceError::ExpiresTooSoon {
                left_secs: 200,
                needed_secs: 300
            }
        );
        // 90 s of validity: 60 s must be left, not 45.
        let (text, expected) = short_lived(90, made);
        assert!(verify(&text, &expected, made + Duration::from_secs(30)).is_ok());
        assert_eq!(
            verify(&text, &expected, made + Duration::from_secs(40)).unwrap_err(),
            InvoiceError::ExpiresTooSoon {
                left_secs: 50,
                needed_secs: 60
            }
        );
        // An invoice valid for less than the floor can never pass.
        let (text, expected) = short_lived(50, made);
        assert!(matches!(
            verify(&text, &expected, made).unwrap_err(),
            InvoiceError::ExpiresTooSoon {
                needed_secs: 60,
                ..
            }
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
        assert_eq!(
            verify(COFFEE, &e, t).unwrap().description_hash_matches,
            Some(false),
            "a description hash that does not match is noted, not refused (LUD-06 since luds#234)"
        );
        let mut e = coffee_expected();
        e.amount_msat = 2_000_000_000;
        e.description_hash = Some(
            bitcoin::hex::FromHex::from_hex(
                "3925b6f67e2c340036ed12093dd44e0368df1b6ea26c53dbe4811f58fd5db8c1",
            )
            .unwrap(),
        );
        assert_eq!(
            verify(HASHED, &e, t).unwrap().description_hash_matches,
            Some(true)
        );
        assert!(matches!(
            verify("lnbc1garbage", &coffee_expected(), t),
            Err(InvoiceError::Invalid(_))
        ));
    }
}
