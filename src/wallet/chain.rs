//! Where a wallet's chain data comes from: an Esplora explorer (`esplora_url`) or the user's own
//! Electrum server (`electrum_url`), behind one face so callers do not care which.
//!
//! Adds no behaviour of its own: each source classifies its own failures
//! ([`EsploraError::class`], [`ElectrumError::class`]); this only passes them on.

use std::time::Duration;

use super::electrum::{Electrum, ElectrumError};
use super::esplora::{CONNECT_TIMEOUT, Esplora, EsploraError, TIMEOUT};
use crate::config::WalletConfig;
use crate::outcome::Class;

#[derive(Clone)]
pub enum ChainSource {
    Esplora(Esplora),
    Electrum(Electrum),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error(transparent)]
    Esplora(#[from] EsploraError),
    #[error(transparent)]
    Electrum(#[from] ElectrumError),
}

impl ChainError {
    pub fn class(&self) -> Class {
        match self {
            ChainError::Esplora(e) => e.class(),
            ChainError::Electrum(e) => e.class(),
        }
    }

    /// The HTTP status the explorer answered, for an Esplora failure that had one.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            ChainError::Esplora(e) => e.http_status(),
            ChainError::Electrum(_) => None,
        }
    }
}

impl ChainSource {
    /// The wallet's chain source, if it names one.
    pub fn of(wallet: &WalletConfig) -> Option<ChainSource> {
        ChainSource::with_timeouts(wallet, CONNECT_TIMEOUT, TIMEOUT)
    }

    /// With other timeouts: `connect` for a connection to open, `total` for a whole call.
    pub fn with_timeouts(
        wallet: &WalletConfig,
        connect: Duration,
        total: Duration,
    ) -> Option<ChainSource> {
        // The configuration refuses a wallet naming both; Electrum, the user's own node, would
        // win otherwise.
        if let Some(url) = &wallet.electrum_url {
            return Some(ChainSource::Electrum(
                Electrum::with_timeouts(url, wallet.network, connect, total)
                    .pinning(wallet.tls_cert_file.clone()),
            ));
        }
        let url = wallet.esplora_url.as_ref()?;
        Some(ChainSource::Esplora(Esplora::with_timeouts(
            url, connect, total,
        )))
    }

    /// Whether any transaction (confirmed or in the mempool) touches `address`.
    pub async fn is_used(&self, address: &str) -> Result<bool, ChainError> {
        Ok(match self {
            ChainSource::Esplora(e) => e.address_used(address).await?,
            ChainSource::Electrum(e) => e.address_used(address).await?,
        })
    }

    /// How many confirmations `txid` has: 0 while it waits in the mempool.
    pub async fn confirmations(&self, txid: &str) -> Result<u64, ChainError> {
        Ok(match self {
            ChainSource::Esplora(e) => e.confirmations(txid).await?,
            ChainSource::Electrum(e) => e.confirmations(txid).await?,
        })
    }

    /// The fee rate for confirmation within about half an hour, in whole sat/vB.
    pub async fn fee_rate(&self) -> Result<u64, ChainError> {
        Ok(match self {
            ChainSource::Esplora(e) => e.fee_rate().await?,
            ChainSource::Electrum(e) => e.fee_rate().await?,
        })
    }
}
