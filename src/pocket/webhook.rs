//! Pocket's webhook signature: `X-Signature-256: sha256=<hex(HMAC-SHA256(secret, raw body))>`,
//! computed over the raw bytes as received (never re-serialised JSON).
//!
//! Verification decodes the hex and lets `hmac` compare the tags in constant time; it accepts
//! the header with or without the `sha256=` prefix (Pocket's own example omits it). A header
//! that is not lowercase hex is refused like a wrong signature.

use bitcoin::hex::{DisplayHex, FromHex};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header value Pocket sends for `body`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex = digest.to_lower_hex_string();
    format!("sha256={hex}")
}

/// The hex SHA-256 of a body: deliveries are told apart by it (an exact retry has the same).
pub fn body_hash(body: &[u8]) -> String {
    use sha2::Digest;
    Sha256::digest(body).to_lower_hex_string()
}

/// Whether `header` is the signature of `body` under `secret`.
pub fn verify(secret: &[u8], body: &[u8], header: &str) -> bool {
    let given = header.trim();
    let given = given.strip_prefix("sha256=").unwrap_or(given);
    // Lowercase hex only, as Pocket writes it: an uppercase signature fails, as it always has.
    if !given
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return false;
    }
    let Ok(tag) = Vec::<u8>::from_hex(given) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    // A tag of the wrong length is refused here too.
    mac.verify_slice(&tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"96eb2c74343a6d58590ea4a06ab13d24da4affc4";
    const BODY: &[u8] = br#"{"val":123,"val1":123456}"#;
    const SIGNATURE: &str =
        "sha256=89cc7396704998f25bd0019bdc2ec30de78ff0c89add39685b30df608ba2a8d6";

    #[test]
    fn the_documented_test_vector_signs_and_verifies_with_or_without_prefix() {
        assert_eq!(sign(SECRET, BODY), SIGNATURE);
        assert!(verify(SECRET, BODY, SIGNATURE));
        assert!(verify(SECRET, BODY, &SIGNATURE["sha256=".len()..]));
    }

    #[test]
    fn wrong_truncated_or_foreign_signatures_fail() {
        assert!(!verify(SECRET, BODY, &SIGNATURE[..SIGNATURE.len() - 2]));
        assert!(!verify(b"another secret", BODY, SIGNATURE));
        assert!(!verify(SECRET, br#"{"val":124,"val1":123456}"#, SIGNATURE));
        assert!(!verify(SECRET, BODY, ""));
        assert!(!verify(SECRET, BODY, "sha256="));
    }

    #[test]
    fn malformed_hex_is_refused_like_a_wrong_signature() {
        let hex = &SIGNATURE["sha256=".len()..];
        // Odd length, a non-hex digit, uppercase, extra bytes, one byte short.
        assert!(!verify(SECRET, BODY, &hex[..hex.len() - 1]));
        assert!(!verify(
            SECRET,
            BODY,
            &format!("{}g", &hex[..hex.len() - 1])
        ));
        assert!(!verify(SECRET, BODY, &hex.to_uppercase()));
        assert!(!verify(SECRET, BODY, &format!("{hex}00")));
        assert!(!verify(SECRET, BODY, &hex[..hex.len() - 2]));
        assert!(!verify(SECRET, BODY, &format!("sha256= {hex}")));
    }
}
