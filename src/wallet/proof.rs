//! Proof of ownership of an on-chain address: "Bitcoin Signed Message" and BIP-322.
