//! An Esplora-compatible explorer (mempool.space, blockstream.info, a self-hosted electrs):
//! whether an address was ever used, how deep a transaction is buried, and the network's fee
//! rate.
//!
//! Only public data is asked for; a wallet's keys or its list of addresses as a whole are never
//! sent anywhere. An explorer that cannot be reached is an error, never "unused". Every call is
//! a read; its outcomes are written once, in [`EsploraError::class`]:
//!
//! | failure                                            | class                          |
//! |----------------------------------------------------|--------------------------------|
//! | connection refused, DNS, connect timeout           | transient                      |
//! | timeout or cut after the request was sent          | transient (a read)             |
//! | 408, 425, 429 (Retry-After kept), any 5xx, JSON or HTML | transient                 |
//! | 400 (an address or txid it does not accept), 404 (a txid it has not seen), other 4xx | permanent |
//! | 2xx that cannot be read                            | permanent                      |
//!
//! Addresses and txids reach the URL percent-encoded, one path segment each.

use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::Value;
use url::Url;

use crate::lightning::node::{describe, with_segments};
use crate::outcome::{self, Call, Class};

/// How long a connection may take to open, and a whole call: shorter than the outbox's bound on
/// a handler under the default lease (3/4 of 30 s).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EsploraError {
    #[error("cannot ask the explorer: {0}")]
    Config(String),
    #[error("cannot reach the explorer at {url}: {reason}")]
    Unreachable {
        url: String,
        reason: String,
        class: Class,
    },
    #[error("the explorer at {url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
        retry_after: Option<Duration>,
    },
    #[error("the explorer at {url} answered something satflow cannot read: {body}")]
    Decode { url: String, body: String },
}

impl EsploraError {
    /// The outcome of the failed call: the table in this module's header, in code.
    pub fn class(&self) -> Class {
        match self {
            EsploraError::Config(_) | EsploraError::Decode { .. } => Class::Permanent,
            EsploraError::Unreachable { class, .. } => *class,
            EsploraError::Status {
                status,
                retry_after,
                ..
            } => outcome::of_status(*status, *retry_after).unwrap_or(Class::Permanent),
        }
    }

    pub fn http_status(&self) -> Option<u16> {
        match self {
            EsploraError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

#[derive(Clone)]
pub struct Esplora {
    http: reqwest::Client,
    base: Url,
    timeout: Duration,
}

impl Esplora {
    /// `base` is the API root, e.g. `https://mempool.space/api`.
    pub fn new(base: &Url) -> Self {
        Esplora::with_timeouts(base, CONNECT_TIMEOUT, TIMEOUT)
    }

    /// With other timeouts: `connect` for a connection to open, `total` for a whole call.
    pub fn with_timeouts(base: &Url, connect: Duration, total: Duration) -> Self {
        let http = reqwest::Client::builder()
            .user_agent(concat!("satflow/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(connect)
            .build()
            .expect("the HTTP client's settings are valid");
        Esplora {
            http,
            base: base.clone(),
            timeout: total,
        }
    }

    async fn get(&self, segments: &[&str]) -> Result<(Url, String), EsploraError> {
        let url = with_segments(&self.base, segments).map_err(EsploraError::Config)?;
        let unreachable = |e: reqwest::Error| EsploraError::Unreachable {
            url: url.to_string(),
            reason: describe(&e),
            class: outcome::of_transport(&e, Call::Read),
        };
        let response = self
            .http
            .get(url.clone())
            .timeout(self.timeout)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = outcome::retry_after(response.headers(), crate::clock::system_now());
            let body = response.text().await.unwrap_or_default();
            return Err(EsploraError::Status {
                url: url.to_string(),
                status: status.as_u16(),
                body: body.chars().take(200).collect(),
                retry_after,
            });
        }
        let body = response.text().await.map_err(unreachable)?;
        Ok((url, body))
    }

    async fn get_json(&self, segments: &[&str]) -> Result<(Url, Value), EsploraError> {
        let (url, body) = self.get(segments).await?;
        let v = serde_json::from_str(&body).map_err(|_| EsploraError::Decode {
            url: url.to_string(),
            body: body.chars().take(200).collect(),
        })?;
        Ok((url, v))
    }

    /// Whether any transaction (confirmed or in the mempool) touches `address`.
    pub async fn address_used(&self, address: &str) -> Result<bool, EsploraError> {
        let (url, v) = self.get_json(&["address", address]).await?;
        let count = |stats: &str| v[stats]["tx_count"].as_u64();
        match (count("chain_stats"), count("mempool_stats")) {
            (Some(chain), Some(mempool)) => Ok(chain.saturating_add(mempool) > 0),
            _ => Err(EsploraError::Decode {
                url: url.to_string(),
                body: v.to_string().chars().take(200).collect(),
            }),
        }
    }

    /// The height of the chain's tip.
    pub async fn tip_height(&self) -> Result<u64, EsploraError> {
        let (url, body) = self.get(&["blocks", "tip", "height"]).await?;
        body.trim().parse().map_err(|_| EsploraError::Decode {
            url: url.to_string(),
            body: body.chars().take(200).collect(),
        })
    }

    /// How many confirmations `txid` has: 0 while it waits in the mempool.
    pub async fn confirmations(&self, txid: &str) -> Result<u64, EsploraError> {
        let (url, status) = self.get_json(&["tx", txid, "status"]).await?;
        match status["confirmed"].as_bool() {
            Some(true) => {}
            Some(false) => return Ok(0),
            None => {
                return Err(EsploraError::Decode {
                    url: url.to_string(),
                    body: status.to_string().chars().take(200).collect(),
                });
            }
        }
        let height = status["block_height"]
            .as_u64()
            .ok_or_else(|| EsploraError::Decode {
                url: url.to_string(),
                body: status.to_string(),
            })?;
        Ok(self
            .tip_height()
            .await?
            .saturating_add(1)
            .saturating_sub(height))
    }

    /// The fee rate for confirmation within about half an hour, in whole sat/vB (rounded up: a
    /// fee a little high rather than too low): mempool.space's `v1/fees/recommended`, else
    /// Esplora's `fee-estimates` for 3 blocks. When both fail, a transient failure is the one
    /// reported, so the caller waits for it rather than giving up.
    pub async fn fee_rate(&self) -> Result<u64, EsploraError> {
        let first = self
            .rate(&["v1", "fees", "recommended"], "halfHourFee")
            .await;
        let Err(first) = first else { return first };
        match self.rate(&["fee-estimates"], "3").await {
            Ok(rate) => Ok(rate),
            Err(second) if matches!(second.class(), Class::Transient { .. }) => Err(second),
            Err(_) if matches!(first.class(), Class::Transient { .. }) => Err(first),
            Err(second) => Err(second),
        }
    }

    async fn rate(&self, segments: &[&str], field: &str) -> Result<u64, EsploraError> {
        let (url, v) = self.get_json(segments).await?;
        positive_rate(&v[field]).ok_or_else(|| EsploraError::Decode {
            url: url.to_string(),
            body: v.to_string().chars().take(200).collect(),
        })
    }
}

/// A positive fee rate from a JSON number, exactly as written, rounded up to whole sat/vB.
pub fn positive_rate(v: &Value) -> Option<u64> {
    v.as_number()
        .and_then(|n| Decimal::from_str_exact(&n.to_string()).ok())
        .and_then(|d| u64::try_from(d.ceil()).ok())
        .filter(|rate| *rate > 0)
}
