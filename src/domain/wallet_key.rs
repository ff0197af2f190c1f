//! xpub / ypub / zpub keys and output descriptors, turned into one descriptor each.
//!
//! An extended key alone becomes the descriptor of its receive chain (`…/0/*`) with the script
//! type its prefix implies (xpub → P2PKH, ypub → P2SH-P2WPKH, zpub → P2WPKH) unless one is
//! stated, so every address is derived by miniscript along a single path.

use bitcoin::hex::DisplayHex;
use std::fmt;
use std::str::FromStr;

use bitcoin::base58;
use bitcoin::bip32::{ChildNumber, DerivationPath, Xpub};
use bitcoin::{Address, Network, NetworkKind};
use miniscript::descriptor::{DescriptorPublicKey, DescriptorType};
use miniscript::{Descriptor, ForEachKey};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptType {
    P2pkh,
    P2shP2wpkh,
    P2wpkh,
    P2tr,
}

impl ScriptType {
    pub const ACCEPTED: &'static str = "p2pkh, p2sh-p2wpkh, p2wpkh, p2tr";

    fn wrap(self, key: &str) -> String {
        match self {
            ScriptType::P2pkh => format!("pkh({key})"),
            ScriptType::P2shP2wpkh => format!("sh(wpkh({key}))"),
            ScriptType::P2wpkh => format!("wpkh({key})"),
            ScriptType::P2tr => format!("tr({key})"),
        }
    }
}

impl FromStr for ScriptType {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "p2pkh" => Ok(ScriptType::P2pkh),
            "p2sh-p2wpkh" => Ok(ScriptType::P2shP2wpkh),
            "p2wpkh" => Ok(ScriptType::P2wpkh),
            "p2tr" => Ok(ScriptType::P2tr),
            _ => Err(KeyError::ScriptType(s.to_string())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error(
        "not an extended public key ({0}); expected an xpub, ypub or zpub (tpub, upub, vpub on test networks) as exported by your wallet"
    )]
    Extended(String),
    #[error(
        "\"{0}\" is a private key; satflow only needs the extended *public* key (xpub/ypub/zpub): never give it a private key"
    )]
    Private(String),
    #[error(
        "not an output descriptor satflow can use: {0}; expected e.g. wpkh([fingerprint/84'/0'/0']xpub…/0/*)"
    )]
    Descriptor(String),
    #[error("\"{0}\" is not a script type; accepted: p2pkh, p2sh-p2wpkh, p2wpkh, p2tr")]
    ScriptType(String),
}

/// A wallet's public key material, as one ranged descriptor.
#[derive(Clone, PartialEq, Eq)]
pub struct WalletKey {
    descriptor: Descriptor<DescriptorPublicKey>,
    network: NetworkKind,
}

impl fmt::Debug for WalletKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WalletKey({})", self.descriptor)
    }
}

impl WalletKey {
    /// An xpub/ypub/zpub (or tpub/upub/vpub); `script` overrides what the prefix implies.
    pub fn from_extended(text: &str, script: Option<ScriptType>) -> Result<Self, KeyError> {
        let (xpub, implied) = decode_extended(text)?;
        let key = format!("{xpub}/0/*");
        let descriptor = script.unwrap_or(implied).wrap(&key);
        let descriptor =
            Descriptor::from_str(&descriptor).map_err(|e| KeyError::Descriptor(e.to_string()))?;
        Ok(WalletKey {
            descriptor,
            network: xpub.network,
        })
    }

    /// A ranged single-key descriptor: `pkh`, `sh(wpkh)`, `wpkh` or `tr`, ending in `/*`.
    pub fn from_descriptor(text: &str) -> Result<Self, KeyError> {
        let descriptor = Descriptor::<DescriptorPublicKey>::from_str(text.trim())
            .map_err(|e| KeyError::Descriptor(e.to_string()))?;
        match descriptor.desc_type() {
            DescriptorType::Pkh
            | DescriptorType::ShWpkh
            | DescriptorType::Wpkh
            | DescriptorType::Tr => {}
            other => {
                return Err(KeyError::Descriptor(format!(
                    "{other:?} descriptors are not supported (accepted: pkh, sh(wpkh), wpkh, tr)"
                )));
            }
        }
        if !descriptor.has_wildcard() {
            return Err(KeyError::Descriptor(
                "it has no `/*`, so it describes a single address; end the key path with /0/*"
                    .into(),
            ));
        }
        if descriptor.is_multipath() {
            return Err(KeyError::Descriptor(
                "multipath `<0;1>` descriptors are not supported; write the receive chain, …/0/*"
                    .into(),
            ));
        }
        let mut network = NetworkKind::Main;
        descriptor.for_each_key(|k| {
            if let DescriptorPublicKey::XPub(x) = k {
                network = x.xkey.network;
            }
            true
        });
        Ok(WalletKey {
            descriptor,
            network,
        })
    }

    /// The account key behind the descriptor, as Pocket wants it for address rotation.
    /// `None` for taproot (Pocket cannot be given proof for it) or an unusual descriptor.
    pub fn account(&self) -> Option<AccountKey> {
        let script = match self.descriptor.desc_type() {
            DescriptorType::Pkh => ScriptType::P2pkh,
            DescriptorType::ShWpkh => ScriptType::P2shP2wpkh,
            DescriptorType::Wpkh => ScriptType::P2wpkh,
            _ => return None,
        };
        let mut account = None;
        self.descriptor.for_each_key(|k| {
            if let DescriptorPublicKey::XPub(x) = k {
                account = Some(AccountKey {
                    xpub: x.xkey,
                    script,
                    origin: x.origin.as_ref().map(|(_, path)| path.clone()),
                    chain: x.derivation_path.clone(),
                });
            }
            true
        });
        account
    }

    /// Whether the key was exported for mainnet or for a test network.
    pub fn network_kind(&self) -> NetworkKind {
        self.network
    }

    pub fn descriptor(&self) -> &Descriptor<DescriptorPublicKey> {
        &self.descriptor
    }

    /// The receive address at `index`.
    pub fn address_at(&self, index: u32, network: Network) -> Result<Address, KeyError> {
        self.descriptor
            .at_derivation_index(index)
            .map_err(|e| KeyError::Descriptor(e.to_string()))?
            .address(network)
            .map_err(|e| KeyError::Descriptor(e.to_string()))
    }
}

/// An account-level extended public key and where its receive addresses are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountKey {
    pub xpub: Xpub,
    pub script: ScriptType,
    /// The account's path from the master key (`m/84'/0'/0'`), when the wallet states it.
    pub origin: Option<DerivationPath>,
    /// The path of the receive chain under the account key (`0`).
    pub chain: DerivationPath,
}

impl AccountKey {
    /// The key written with the prefix wallets and Pocket use for its script type.
    pub fn extended(&self) -> String {
        encode_extended(&self.xpub, self.script)
    }

    /// The path of receive address `index`: in full when the origin is known
    /// (`m/84'/0'/0'/0/5`), else relative to the account key (`0/5`).
    pub fn path_of(&self, index: u32) -> DerivationPath {
        let relative = self.chain.child(ChildNumber::Normal { index });
        match &self.origin {
            Some(origin) => origin.extend(&relative),
            None => relative,
        }
    }
}

/// Decodes an xpub/ypub/zpub (or tpub/upub/vpub) and the script type its prefix implies.
fn decode_extended(text: &str) -> Result<(Xpub, ScriptType), KeyError> {
    let text = text.trim();
    let mut data = base58::decode_check(text).map_err(|e| KeyError::Extended(e.to_string()))?;
    if data.len() != 78 {
        return Err(KeyError::Extended(format!(
            "{} bytes instead of 78",
            data.len()
        )));
    }
    let version: [u8; 4] = data[..4].try_into().expect("length checked above");
    let (implied, main) = match version {
        [0x04, 0x88, 0xb2, 0x1e] => (ScriptType::P2pkh, true),
        [0x04, 0x9d, 0x7c, 0xb2] => (ScriptType::P2shP2wpkh, true),
        [0x04, 0xb2, 0x47, 0x46] => (ScriptType::P2wpkh, true),
        [0x04, 0x35, 0x87, 0xcf] => (ScriptType::P2pkh, false),
        [0x04, 0x4a, 0x52, 0x62] => (ScriptType::P2shP2wpkh, false),
        [0x04, 0x5f, 0x1c, 0xf6] => (ScriptType::P2wpkh, false),
        [0x04, 0x88, 0xad, 0xe4]
        | [0x04, 0x9d, 0x78, 0x78]
        | [0x04, 0xb2, 0x43, 0x0c]
        | [0x04, 0x35, 0x83, 0x94]
        | [0x04, 0x4a, 0x4e, 0x28]
        | [0x04, 0x5f, 0x18, 0xbc] => {
            return Err(KeyError::Private(text.chars().take(4).collect()));
        }
        _ => {
            let hex = version.to_lower_hex_string();
            return Err(KeyError::Extended(format!("unknown version bytes {hex}")));
        }
    };
    // ypub/zpub are plain xpubs with other version bytes: swap them so `Xpub` decodes it.
    data[..4].copy_from_slice(if main {
        &[0x04, 0x88, 0xb2, 0x1e]
    } else {
        &[0x04, 0x35, 0x87, 0xcf]
    });
    let xpub = Xpub::decode(&data).map_err(|e| KeyError::Extended(e.to_string()))?;
    Ok((xpub, implied))
}

/// Writes an extended public key with the prefix of its script type (xpub, ypub, zpub; tpub,
/// upub, vpub on test networks), as wallets export it.
pub fn encode_extended(xpub: &Xpub, script: ScriptType) -> String {
    let main = xpub.network == NetworkKind::Main;
    let version: [u8; 4] = match (script, main) {
        (ScriptType::P2shP2wpkh, true) => [0x04, 0x9d, 0x7c, 0xb2],
        (ScriptType::P2wpkh, true) => [0x04, 0xb2, 0x47, 0x46],
        (_, true) => [0x04, 0x88, 0xb2, 0x1e],
        (ScriptType::P2shP2wpkh, false) => [0x04, 0x4a, 0x52, 0x62],
        (ScriptType::P2wpkh, false) => [0x04, 0x5f, 0x1c, 0xf6],
        (_, false) => [0x04, 0x35, 0x87, 0xcf],
    };
    let mut data = xpub.encode();
    data[..4].copy_from_slice(&version);
    base58::encode_check(&data)
}

/// The address at `path` under an account-level extended key, as Pocket derives it from an
/// order's `extended_public_key` and `derivation_path`. The path may be written in full
/// (`m/84'/0'/0'/0/5`: the hardened account part is the key's own and is skipped) or relative
/// (`0/5`). The script type comes from the key's prefix (xpub → P2PKH, ypub → P2SH-P2WPKH,
/// zpub → P2WPKH).
pub fn address_at_path(
    extended: &str,
    path: &DerivationPath,
    network: Network,
) -> Result<Address, KeyError> {
    let (xpub, script) = decode_extended(extended)?;
    let children: Vec<ChildNumber> = path.into_iter().copied().collect();
    let first_normal = children
        .iter()
        .rposition(ChildNumber::is_hardened)
        .map_or(0, |i| i + 1);
    let relative = &children[first_normal..];
    if relative.is_empty() {
        return Err(KeyError::Descriptor(format!(
            "the path {path} ends in a hardened step; an extended public key can only derive normal (unhardened) children such as 0/0"
        )));
    }
    let secp = bitcoin::secp256k1::Secp256k1::verification_only();
    let child = xpub
        .derive_pub(&secp, &relative)
        .map_err(|e| KeyError::Descriptor(e.to_string()))?;
    let key = bitcoin::CompressedPublicKey(child.public_key);
    Ok(match script {
        ScriptType::P2pkh => Address::p2pkh(key, network),
        ScriptType::P2shP2wpkh => Address::p2shwpkh(&key, network),
        ScriptType::P2wpkh => Address::p2wpkh(&key, network),
        ScriptType::P2tr => Address::p2tr(&secp, key.into(), None, network),
    })
}

/// The BIP-39 seed of the published test mnemonic "abandon" ×11 "about" (PBKDF2-HMAC-SHA512,
/// 2048 rounds, salt "mnemonic"). Its keys are public: for tests and the demo, never for money.
pub fn test_seed() -> Vec<u8> {
    use bitcoin::hex::FromHex;
    Vec::from_hex("5eb00bbddcf069084889a8ab9155568165f5c453ccb85e70811aaed6f6da5fc19a5ac40b389cd370d086206dec8aa6c43daea6690f20ad3d8d48b2d2ce9e38e4")
        .expect("valid hex")
}

#[cfg(test)]
mod tests {
    use super::*;

    // BIP-84 test vector, account 0 of the "abandon … about" mnemonic.
    const ZPUB: &str = "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs";

    #[test]
    fn zpub_derives_the_bip84_receive_addresses() {
        let key = WalletKey::from_extended(ZPUB, None).unwrap();
        assert_eq!(key.network_kind(), NetworkKind::Main);
        let first = key.address_at(0, Network::Bitcoin).unwrap();
        assert_eq!(
            first.to_string(),
            "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
        );
        let second = key.address_at(1, Network::Bitcoin).unwrap();
        assert_eq!(
            second.to_string(),
            "bc1qnjg0jd8228aq7egyzacy8cys3knf9xvrerkf9g"
        );
    }

    #[test]
    fn ypub_and_its_descriptor_derive_the_bip49_address() {
        let ypub = "ypub6Ww3ibxVfGzLrAH1PNcjyAWenMTbbAosGNB6VvmSEgytSER9azLDWCxoJwW7Ke7icmizBMXrzBx9979FfaHxHcrArf3zbeJJJUZPf663zsP";
        let key = WalletKey::from_extended(ypub, None).unwrap();
        assert_eq!(
            key.address_at(0, Network::Bitcoin).unwrap().to_string(),
            "37VucYSaXLCAsxYyAPfbSi9eh4iEcbShgf"
        );
        let desc = WalletKey::from_descriptor("sh(wpkh([73c5da0a/49'/0'/0']xpub6C6nQwHaWbSrzs5tZ1q7m5R9cPK9eYpNMFesiXsYrgc1P8bvLLAet9JfHjYXKjToD8cBRswJXXbbFpXgwsswVPAZzKMa1jUp2kVkGVUaJa7/0/*))").unwrap();
        assert_eq!(
            desc.address_at(0, Network::Bitcoin).unwrap().to_string(),
            "37VucYSaXLCAsxYyAPfbSi9eh4iEcbShgf"
        );
    }

    #[test]
    fn the_account_key_gives_pocket_a_path_that_finds_the_address() {
        let key = WalletKey::from_extended(ZPUB, None).unwrap();
        let account = key.account().unwrap();
        assert_eq!(account.extended(), ZPUB);
        assert_eq!(account.path_of(3).to_string(), "0/3");
        let address =
            address_at_path(&account.extended(), &account.path_of(3), Network::Bitcoin).unwrap();
        assert_eq!(address, key.address_at(3, Network::Bitcoin).unwrap());
        let with_origin = WalletKey::from_descriptor("sh(wpkh([73c5da0a/49'/0'/0']xpub6C6nQwHaWbSrzs5tZ1q7m5R9cPK9eYpNMFesiXsYrgc1P8bvLLAet9JfHjYXKjToD8cBRswJXXbbFpXgwsswVPAZzKMa1jUp2kVkGVUaJa7/0/*))").unwrap();
        let account = with_origin.account().unwrap();
        assert!(account.extended().starts_with("ypub"));
        assert_eq!(account.path_of(0).to_string(), "49'/0'/0'/0/0");
        let tr = WalletKey::from_extended(ZPUB, Some(ScriptType::P2tr)).unwrap();
        assert!(tr.account().is_none());
    }

    #[test]
    fn a_key_written_as_zpub_reads_back_the_same() {
        let (xpub, script) = decode_extended(ZPUB).unwrap();
        assert_eq!(script, ScriptType::P2wpkh);
        assert_eq!(encode_extended(&xpub, ScriptType::P2wpkh), ZPUB);
    }

    #[test]
    fn an_address_is_found_at_its_full_or_relative_path() {
        let first = "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu";
        for path in ["m/84'/0'/0'/0/0", "0/0"] {
            let path: DerivationPath = path.parse().unwrap();
            assert_eq!(
                address_at_path(ZPUB, &path, Network::Bitcoin)
                    .unwrap()
                    .to_string(),
                first
            );
        }
        let change: DerivationPath = "m/84'/0'/0'/1/0".parse().unwrap();
        assert_eq!(
            address_at_path(ZPUB, &change, Network::Bitcoin)
                .unwrap()
                .to_string(),
            "bc1q8c6fshw2dlwun7ekn9qwf37cu2rn755upcp6el"
        );
        let hardened: DerivationPath = "m/84'/0'/0'".parse().unwrap();
        assert!(address_at_path(ZPUB, &hardened, Network::Bitcoin).is_err());
    }

    #[test]
    fn bip44_and_bip86_accounts_derive_their_published_first_addresses() {
        // Account 0 of the "abandon … about" test seed under m/44'/0'/0' and m/86'/0'/0'.
        let bip44 = "xpub6BosfCnifzxcFwrSzQiqu2DBVTshkCXacvNsWGYJVVhhawA7d4R5WSWGFNbi8Aw6ZRc1brxMyWMzG3DSSSSoekkudhUd9yLb6qx39T9nMdj";
        let key = WalletKey::from_extended(bip44, None).unwrap();
        assert_eq!(
            key.address_at(0, Network::Bitcoin).unwrap().to_string(),
            "1LqBGSKuX5yYUonjxT5qGfpUsXKYYWeabA"
        );
        let bip86 = "tr([73c5da0a/86'/0'/0']xpub6BgBgsespWvERF3LHQu6CnqdvfEvtMcQjYrcRzx53QJjSxarj2afYWcLteoGVky7D3UKDP9QyrLprQ3VCECoY49yfdDEHGCtMMj92pReUsQ/0/*)";
        let key = WalletKey::from_descriptor(bip86).unwrap();
        assert_eq!(
            key.address_at(0, Network::Bitcoin).unwrap().to_string(),
            "bc1p5cyxnuxmeuwuvkwfem96lqzszd02n6xdcjrs20cac6yqjjwudpxqkedrcr"
        );
    }

    #[test]
    fn the_test_accounts_come_from_the_published_test_seed() {
        use bitcoin::bip32::Xpriv;
        let seed = test_seed();
        let secp = bitcoin::secp256k1::Secp256k1::new();
        let master = Xpriv::new_master(Network::Bitcoin, &seed).unwrap();
        let account = |path: &str| {
            Xpub::from_priv(
                &secp,
                &master
                    .derive_priv(&secp, &DerivationPath::from_str(path).unwrap())
                    .unwrap(),
            )
        };
        assert_eq!(
            encode_extended(&account("m/84'/0'/0'"), ScriptType::P2wpkh),
            ZPUB
        );
        assert_eq!(master.fingerprint(&secp).to_string(), "73c5da0a");
        // The demo's third wallet is account 1 of the same seed.
        assert_eq!(
            encode_extended(&account("m/84'/0'/1'"), ScriptType::P2wpkh),
            "zpub6rFR7y4Q2AijF6Gk1bofHLs1d66hKFamhXWdWBup1Em25wfabZqkDqvaieV63fDQFaYmaatCG7jVNUpUiM2hAMo6SAVHcrUpSnHDpNzucB7"
        );
    }

    #[test]
    fn descriptor_form_gives_the_same_addresses() {
        let zpub = WalletKey::from_extended(ZPUB, None).unwrap();
        let desc = WalletKey::from_descriptor(&zpub.descriptor().to_string()).unwrap();
        assert_eq!(
            desc.address_at(5, Network::Bitcoin).unwrap(),
            zpub.address_at(5, Network::Bitcoin).unwrap()
        );
    }

    #[test]
    fn refuses_private_keys_unranged_and_multisig_descriptors() {
        let xprv = "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHi";
        assert!(matches!(
            WalletKey::from_extended(xprv, None),
            Err(KeyError::Private(_))
        ));
        assert!(matches!(
            WalletKey::from_extended("zpub123", None),
            Err(KeyError::Extended(_))
        ));
        let ranged = WalletKey::from_extended(ZPUB, None)
            .unwrap()
            .descriptor()
            .to_string();
        let unranged = ranged.split('#').next().unwrap().replace("/0/*", "/0/0");
        let err = WalletKey::from_descriptor(&unranged)
            .unwrap_err()
            .to_string();
        assert!(err.contains("/*"), "{err}");
    }
}
