//! LND / Core Lightning `signmessage` signatures: zbase32 of a 65-byte recoverable signature.
//!
//! A node proves it holds its identity key by signing a challenge with `lncli signmessage` or
//! `lightning-cli signmessage`; this module recovers the key behind such a signature and checks
//! it against the node public key the user claimed.
//!
//! It must never hold or ask for a real node's private key: `sign_node_message` exists for tests,
//! the sandbox and the demo's node stand-in, which sign with throwaway keys.

use bitcoin::hashes::{Hash, sha256d};
use bitcoin::secp256k1::ecdsa::{RecoverableSignature, RecoveryId};
use bitcoin::secp256k1::{Message, PublicKey, Secp256k1, SecretKey};

/// What LND and Core Lightning put in front of the message before hashing, so that a node
/// signature can never double as a signature over a transaction or a Bitcoin signed message.
const LIGHTNING_SIGNED_MSG_PREFIX: &[u8] = b"Lightning Signed Message:";

/// The zbase32 alphabet (human-oriented base-32, as used by LND and Core Lightning).
const ZBASE32_ALPHABET: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";

/// Header byte of a signature made with a compressed key: 31 + recovery id. The node key is
/// always compressed, but btcec (LND) also accepts the uncompressed family 27–30 and only the
/// recovery id matters for recovering the key, so both families are read.
const HEADER_UNCOMPRESSED: u8 = 27;
const HEADER_COMPRESSED: u8 = 31;
const HEADER_LAST: u8 = 34;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error(
        "the node signature is not zbase32; expected the text `lncli signmessage` or `lightning-cli signmessage` printed (letters and digits from \"ybndrfg8ejkmcpqxot1uwisza345h769\")"
    )]
    NotZbase32,
    #[error(
        "the node signature decodes to {len} bytes; expected 65 (a header byte, then r and s), i.e. 104 zbase32 characters"
    )]
    BadLength { len: usize },
    #[error(
        "node signature header byte {0} is not a recovery header; expected 31 to 34 (or 27 to 30), as LND and Core Lightning produce"
    )]
    BadHeader(u8),
    #[error(
        "no public key can be recovered from this node signature; it is corrupt or was not made over this message"
    )]
    Recovery,
    #[error(
        "the signature was made by node key {recovered}, not by {expected}; sign the exact message with the node {expected}"
    )]
    WrongNode { expected: String, recovered: String },
}

/// Encodes `data` as zbase32: 5 bits per character, most significant bits first, no padding.
pub fn zbase32_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity((data.len() * 8).div_ceil(5));
    let mut buffer: u16 = 0;
    let mut bits: u32 = 0;
    for &byte in data {
        buffer = (buffer << 8) | u16::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(
                ZBASE32_ALPHABET[usize::from((buffer >> bits) & 0x1f)],
            ));
        }
        // Keep only the bits not yet written, so the buffer never overflows.
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(
            ZBASE32_ALPHABET[usize::from((buffer << (5 - bits)) & 0x1f)],
        ));
    }
    out
}

/// Decodes zbase32 (case-insensitive). Returns `None` for a character outside the alphabet, or
/// for a text no byte string encodes to (a dangling character, or non-zero filler bits): such a
/// text is a truncated or mistyped signature, and guessing what was meant would hide that.
pub fn zbase32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut buffer: u16 = 0;
    let mut bits: u32 = 0;
    for c in text.chars() {
        let c = c.to_ascii_lowercase();
        let value = ZBASE32_ALPHABET.iter().position(|&a| char::from(a) == c)?;
        // `position` in a 32-entry table is always below 32.
        buffer = (buffer << 5) | value as u16;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    if bits >= 5 || buffer != 0 {
        return None;
    }
    Some(out)
}

/// Double SHA-256 of the prefix and the message, the digest LND and Core Lightning sign.
fn lightning_message_hash(message: &str) -> [u8; 32] {
    let mut engine = sha256d::Hash::engine();
    bitcoin::hashes::HashEngine::input(&mut engine, LIGHTNING_SIGNED_MSG_PREFIX);
    bitcoin::hashes::HashEngine::input(&mut engine, message.as_bytes());
    sha256d::Hash::from_engine(engine).to_byte_array()
}

/// The node key that made `signature` over `message`.
pub fn recover_node_key(message: &str, signature: &str) -> Result<PublicKey, SignatureError> {
    let bytes = zbase32_decode(signature.trim()).ok_or(SignatureError::NotZbase32)?;
    if bytes.len() != 65 {
        return Err(SignatureError::BadLength { len: bytes.len() });
    }
    let header = bytes[0];
    if !(HEADER_UNCOMPRESSED..=HEADER_LAST).contains(&header) {
        return Err(SignatureError::BadHeader(header));
    }
    let recovery_id = RecoveryId::from_i32(i32::from((header - HEADER_UNCOMPRESSED) % 4))
        .map_err(|_| SignatureError::BadHeader(header))?;
    let signature = RecoverableSignature::from_compact(&bytes[1..], recovery_id)
        .map_err(|_| SignatureError::Recovery)?;
    let digest = Message::from_digest(lightning_message_hash(message));
    Secp256k1::verification_only()
        .recover_ecdsa(&digest, &signature)
        .map_err(|_| SignatureError::Recovery)
}

/// Checks that `signature` over `message` was made by `node_pubkey`.
pub fn verify_node_signature(
    message: &str,
    signature: &str,
    node_pubkey: &PublicKey,
) -> Result<(), SignatureError> {
    let recovered = recover_node_key(message, signature)?;
    if recovered != *node_pubkey {
        return Err(SignatureError::WrongNode {
            expected: node_pubkey.to_string(),
            recovered: recovered.to_string(),
        });
    }
    Ok(())
}

/// Signs like LND's signmessage (for tests, the sandbox and the demo's node stand-in).
pub fn sign_node_message(key: &SecretKey, message: &str) -> String {
    let digest = Message::from_digest(lightning_message_hash(message));
    let signature = Secp256k1::signing_only().sign_ecdsa_recoverable(&digest, key);
    let (recovery_id, compact) = signature.serialize_compact();
    let mut bytes = [0u8; 65];
    // A recovery id is 0..=3, so the header stays within 31..=34.
    bytes[0] = HEADER_COMPRESSED + recovery_id.to_i32() as u8;
    bytes[1..].copy_from_slice(&compact);
    zbase32_encode(&bytes)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    const POCKET_NODE: &str = "02765a281bd188e80a89e6ea5092dcb8ebaaa5c5da341e64327e3fadbadcbc686c";
    const POCKET_MESSAGE: &str = "I confirm my bitcoin wallet. [7v7t4Fmb]";
    const POCKET_SIGNATURE: &str = "rywfek6717yuqpfpjmghyf173obgswr9uw5wbfsfhc8exjomftm71st4cyxprzkx5juxiokhbxm8rzkxoz8e3zmmpa644tudgt119s91";

    fn throwaway_key(seed: u8) -> SecretKey {
        SecretKey::from_slice(&[seed; 32]).expect("a constant non-zero scalar below the order")
    }

    #[test]
    fn the_signature_from_pockets_docs_recovers_to_the_node_that_made_it() {
        let node = PublicKey::from_str(POCKET_NODE).expect("test vector is a valid key");
        assert_eq!(recover_node_key(POCKET_MESSAGE, POCKET_SIGNATURE), Ok(node));
        assert_eq!(
            verify_node_signature(POCKET_MESSAGE, POCKET_SIGNATURE, &node),
            Ok(())
        );
    }

    #[test]
    fn pockets_example_signature_does_not_prove_another_challenge() {
        let node = PublicKey::from_str(POCKET_NODE).expect("test vector is a valid key");
        let result = verify_node_signature(
            "I confirm my bitcoin wallet. [7v7t4Fmc]",
            POCKET_SIGNATURE,
            &node,
        );
        assert!(matches!(
            result,
            Err(SignatureError::WrongNode { .. } | SignatureError::Recovery)
        ));
    }

    #[test]
    fn zbase32_round_trips_byte_strings_of_every_small_length() {
        // A cheap deterministic byte stream (xorshift) stands in for random data.
        let mut state: u32 = 0x9e37_79b9;
        for len in 0usize..=70 {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    state as u8
                })
                .collect();
            let text = zbase32_encode(&data);
            assert_eq!(text.len(), (len * 8).div_ceil(5));
            assert_eq!(zbase32_decode(&text), Some(data), "length {len}");
        }
    }

    #[test]
    fn zbase32_matches_the_alphabet_bit_for_bit() {
        // Worked by hand: 0x00 → 00000|000 → "yy"; 0xff → 11111|111(00) → "9h";
        // 0xf0 0xbf → 11110 00010 11111 1(0000) → "6n9o" with the alphabet above.
        assert_eq!(zbase32_encode(&[]), "");
        assert_eq!(zbase32_encode(&[0x00]), "yy");
        assert_eq!(zbase32_encode(&[0xff]), "9h");
        assert_eq!(zbase32_encode(&[0xf0, 0xbf]), "6n9o");
        assert_eq!(zbase32_decode("6N9O"), Some(vec![0xf0, 0xbf]));
    }

    #[test]
    fn zbase32_refuses_texts_no_bytes_encode_to() {
        assert_eq!(zbase32_decode("yyl"), None, "'l' is not in the alphabet");
        assert_eq!(
            zbase32_decode("y"),
            None,
            "a lone character holds no whole byte"
        );
        assert_eq!(zbase32_decode("99"), None, "filler bits must be zero");
    }

    #[test]
    fn a_node_signature_made_here_recovers_to_the_signing_node() {
        let secp = Secp256k1::signing_only();
        for seed in 1..=8 {
            let key = throwaway_key(seed);
            let node = PublicKey::from_secret_key(&secp, &key);
            let signature = sign_node_message(&key, "I confirm my bitcoin wallet. [abc]");
            assert_eq!(signature.len(), 104);
            assert_eq!(
                recover_node_key("I confirm my bitcoin wallet. [abc]", &signature),
                Ok(node)
            );
            assert_eq!(
                verify_node_signature("I confirm my bitcoin wallet. [abc]", &signature, &node),
                Ok(())
            );
        }
    }

    #[test]
    fn a_signature_over_another_message_is_refused_as_another_node() {
        let secp = Secp256k1::signing_only();
        let key = throwaway_key(7);
        let node = PublicKey::from_secret_key(&secp, &key);
        let signature = sign_node_message(&key, "I confirm my bitcoin wallet. [abc]");
        let result = verify_node_signature("I confirm my bitcoin wallet. [abd]", &signature, &node);
        match result {
            Err(SignatureError::WrongNode { expected, .. }) => {
                assert_eq!(expected, node.to_string())
            }
            other => panic!("expected WrongNode, got {other:?}"),
        }
    }

    #[test]
    fn a_signature_by_another_node_is_refused_naming_both_keys() {
        let secp = Secp256k1::signing_only();
        let claimed = PublicKey::from_secret_key(&secp, &throwaway_key(1));
        let signer = PublicKey::from_secret_key(&secp, &throwaway_key(2));
        let signature = sign_node_message(&throwaway_key(2), "hello");
        assert_eq!(
            verify_node_signature("hello", &signature, &claimed),
            Err(SignatureError::WrongNode {
                expected: claimed.to_string(),
                recovered: signer.to_string(),
            })
        );
    }

    #[test]
    fn garbage_signatures_are_refused_with_what_is_wrong() {
        assert_eq!(
            recover_node_key("m", "not a signature!"),
            Err(SignatureError::NotZbase32)
        );
        assert_eq!(
            recover_node_key("m", &zbase32_encode(&[31u8; 64])),
            Err(SignatureError::BadLength { len: 64 })
        );
        let mut bytes = [1u8; 65];
        bytes[0] = 42;
        assert_eq!(
            recover_node_key("m", &zbase32_encode(&bytes)),
            Err(SignatureError::BadHeader(42))
        );
        // r = 0 is not a valid signature component.
        let mut zero_r = [0u8; 65];
        zero_r[0] = 31;
        zero_r[64] = 1;
        assert_eq!(
            recover_node_key("m", &zbase32_encode(&zero_r)),
            Err(SignatureError::Recovery)
        );
    }
}
