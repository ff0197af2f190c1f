//! An Esplora-compatible explorer (mempool.space, blockstream.info, a self-hosted electrs):
//! whether an address was ever used, and how deep a transaction is buried.
//!
//! Only public data is asked for; a wallet's keys or its list of addresses as a whole are never
//! sent anywhere. An explorer that cannot be reached is an error, never "unused".

use std::time::Duration;

use serde_json::Value;
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum EsploraError {
    #[error("cannot reach the explorer at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the explorer at {url} answered {status}")]
    Status { url: String, status: u16 },
    #[error("the explorer at {url} answered something satflow cannot read: {body}")]
    Decode { url: String, body: String },
}

#[derive(Clone)]
pub struct Esplora {
    http: reqwest::Client,
    base: Url,
}

impl Esplora {
    /// `base` is the API root, e.g. `https://mempool.space/api`.
    pub fn new(base: &Url) -> Self {
        let mut base = base.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("satflow/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(20))
            .build()
            .expect("the HTTP client's settings are valid");
        Esplora { http, base }
    }

    async fn get(&self, path: &str) -> Result<String, EsploraError> {
        let url = self
            .base
            .join(path)
            .map_err(|e| EsploraError::Unreachable {
                url: path.to_string(),
                reason: e.to_string(),
            })?;
        let response =
            self.http
                .get(url.clone())
                .send()
                .await
                .map_err(|e| EsploraError::Unreachable {
                    url: url.to_string(),
                    reason: e.to_string(),
                })?;
        let status = response.status();
        if !status.is_success() {
            return Err(EsploraError::Status {
                url: url.to_string(),
                status: status.as_u16(),
            });
        }
        response
            .text()
            .await
            .map_err(|e| EsploraError::Unreachable {
                url: url.to_string(),
                reason: e.to_string(),
            })
    }

    async fn get_json(&self, path: &str) -> Result<Value, EsploraError> {
        let body = self.get(path).await?;
        serde_json::from_str(&body).map_err(|_| EsploraError::Decode {
            url: format!("{}{path}", self.base),
            body: body.chars().take(200).collect(),
        })
    }

    /// Whether any transaction (confirmed or in the mempool) touches `address`.
    pub async fn address_used(&self, address: &str) -> Result<bool, EsploraError> {
        let v = self.get_json(&format!("address/{address}")).await?;
        let count = |stats: &str| v[stats]["tx_count"].as_u64();
        match (count("chain_stats"), count("mempool_stats")) {
            (Some(chain), Some(mempool)) => Ok(chain + mempool > 0),
            _ => Err(EsploraError::Decode {
                url: format!("{}address/{address}", self.base),
                body: v.to_string().chars().take(200).collect(),
            }),
        }
    }

    /// The height of the chain's tip.
    pub async fn tip_height(&self) -> Result<u64, EsploraError> {
        let body = self.get("blocks/tip/height").await?;
        body.trim().parse().map_err(|_| EsploraError::Decode {
            url: format!("{}blocks/tip/height", self.base),
            body,
        })
    }

    /// How many confirmations `txid` has: 0 while it waits in the mempool.
    pub async fn confirmations(&self, txid: &str) -> Result<u64, EsploraError> {
        let status = self.get_json(&format!("tx/{txid}/status")).await?;
        if status["confirmed"] != true {
            return Ok(0);
        }
        let height = status["block_height"]
            .as_u64()
            .ok_or_else(|| EsploraError::Decode {
                url: format!("{}tx/{txid}/status", self.base),
                body: status.to_string(),
            })?;
        Ok((self.tip_height().await? + 1).saturating_sub(height))
    }
}
