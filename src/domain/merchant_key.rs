//! The Lightning Peach hub merchant's signing key: a secp256k1 private key, written as 64 hex
//! digits in the file `withdraw.NAME.lightningpeach.key_file` names.
//!
//! Parsed once, when the configuration is read; the hub client only signs with it. It must
//! never be shown: `Debug` hides it and no refusal repeats the text it was parsed from.

use std::fmt;
use std::str::FromStr;

use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};

#[derive(Clone, PartialEq, Eq)]
pub struct MerchantKey(SecretKey);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerchantKeyError {
    /// The text is not a valid key; it is not repeated (it may be most of one).
    #[error("does not hold a merchant key: write the secp256k1 private key as 64 hex digits")]
    NotAKey,
}

impl MerchantKey {
    pub fn secret(&self) -> &SecretKey {
        &self.0
    }

    pub fn public(&self) -> PublicKey {
        PublicKey::from_secret_key(&Secp256k1::new(), &self.0)
    }
}

impl FromStr for MerchantKey {
    type Err = MerchantKeyError;

    /// The key file's content; surrounding whitespace (a trailing newline) is allowed.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        SecretKey::from_str(text.trim())
            .map(MerchantKey)
            .map_err(|_| MerchantKeyError::NotAKey)
    }
}

impl fmt::Debug for MerchantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MerchantKey(hidden)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0000000000000000000000000000000000000000000000000000000000000001";

    #[test]
    fn a_key_file_with_a_newline_is_a_key_and_debug_hides_it() {
        let key: MerchantKey = format!("{KEY}\n").parse().unwrap();
        assert_eq!(
            key.public().to_string(),
            "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
            "the key 1 gives the generator point"
        );
        assert_eq!(format!("{key:?}"), "MerchantKey(hidden)");
    }

    #[test]
    fn a_certificate_or_a_short_key_is_refused_without_its_text() {
        for text in ["-----BEGIN CERTIFICATE-----", &KEY[1..], ""] {
            let err = text.parse::<MerchantKey>().unwrap_err();
            assert_eq!(err, MerchantKeyError::NotAKey);
            assert!(text.is_empty() || !err.to_string().contains(text));
        }
    }
}
