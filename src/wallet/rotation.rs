//! Choosing the next address of a wallet: never one handed out before, never one already used
//! on chain (when an explorer is configured), and the index only moves forward.
//!
//! The choice is made outside any transaction (the explorer is asked over the network) and
//! committed with the step that uses it, on the condition that the wallet's cursor has not
//! moved meanwhile; otherwise the step decides again. An explorer that cannot be asked fails the
//! step: handing out an address that might be used is the one thing this must never do.

use bitcoin::hex::DisplayHex;
use std::collections::HashSet;

use sha2::{Digest, Sha256};

use super::chain::ChainSource;
use crate::config::WalletConfig;
use crate::store::{Reservation, Store};

/// How many used addresses in a row are passed over before giving up (the usual gap limit).
pub const GAP_LIMIT: u32 = 20;

/// A short, stable name for a wallet's key, so a cursor is never continued with another key.
pub fn key_id(wallet: &WalletConfig) -> String {
    let digest = Sha256::digest(wallet.key.descriptor().to_string().as_bytes());
    digest[..8].to_lower_hex_string()
}

/// The next address `name` should hand out, for `used_by`.
pub async fn next_address(
    store: &Store,
    name: &str,
    wallet: &WalletConfig,
    used_by: &str,
) -> Result<Reservation, String> {
    let key = key_id(wallet);
    let cursor = store.wallet_cursor(name).await.map_err(|e| e.to_string())?;
    let (expected_next, start) = match cursor {
        Some((stored, _)) if stored != key => {
            return Err(format!(
                "wallet `{name}` now has another key than the one its addresses were handed out from; give the new key its own wallet name"
            ));
        }
        Some((_, next)) => (Some(next), next),
        None => (None, 0),
    };
    let known: HashSet<u32> = store
        .wallet_addresses(name)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|a| a.index)
        .collect();
    let explorer = ChainSource::of(wallet);
    let mut skipped = Vec::new();
    let mut index = start;
    loop {
        if known.contains(&index) {
            index += 1;
            continue;
        }
        let address = wallet
            .key
            .address_at(index, wallet.network)
            .map_err(|e| format!("wallet `{name}`: {e}"))?
            .to_string();
        if let Some(explorer) = &explorer {
            let used = explorer.is_used(&address).await.map_err(|e| {
                format!("cannot check that {address} is unused ({e}); not handing out an address that might be used")
            })?;
            if used {
                skipped.push((index, address));
                if skipped.len() as u32 >= GAP_LIMIT {
                    return Err(format!(
                        "the next {GAP_LIMIT} addresses of wallet `{name}` from index {start} are all used on chain; the wallet is used elsewhere: give satflow its own account"
                    ));
                }
                index += 1;
                continue;
            }
        }
        return Ok(Reservation {
            wallet: name.to_string(),
            key_id: key,
            expected_next,
            index,
            address,
            used_by: used_by.to_string(),
            skipped,
        });
    }
}
