//! Invoice sources: LND's REST API (macaroon, pinned `tls.cert`), Core Lightning's `clnrest`
//! (rune), or a Lightning address (LUD-16 / LNURL-pay, LUD-06). Also the node's own key and
//! message signatures, and (LND) its inbound liquidity for channel payouts.
//!
//! A source only talks to the node; whether an invoice is good enough to hand to Pocket is
//! decided by `lightning::invoice::verify`.

use bitcoin::hex::DisplayHex;
use std::str::FromStr;
use std::time::Duration;

use bitcoin::secp256k1::PublicKey;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use url::Url;

use super::tls::pinned_client;
use crate::config::{InvoiceSource, LightningNode};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    #[error("cannot use the node's settings: {0}")]
    Config(String),
    #[error("cannot reach the node at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the node at {url} refused ({status}): {body}")]
    Refused {
        url: String,
        status: u16,
        body: String,
    },
    #[error("the node at {url} answered something satflow cannot read: {body}")]
    Decode { url: String, body: String },
    #[error("the Lightning address {address} refused: {reason}")]
    Lnurl { address: String, reason: String },
    #[error("{0} cannot do this")]
    Unsupported(&'static str),
}

/// An invoice from the node, with what it must be checked against.
#[derive(Debug, Clone)]
pub struct NodeInvoice {
    pub bolt11: String,
    /// For LNURL: SHA-256 of the metadata string exactly as received.
    pub description_hash: Option<[u8; 32]>,
}

enum Kind {
    Lnd { macaroon: SecretString },
    Cln { rune: SecretString },
    Address { address: String },
}

pub struct Node {
    http: reqwest::Client,
    base: Url,
    kind: Kind,
}

fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("satflow/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("the HTTP client's settings are valid")
}

impl Node {
    pub fn from_config(node: &LightningNode) -> Result<Node, NodeError> {
        match &node.source {
            InvoiceSource::Lnd {
                url,
                macaroon_file,
                tls_cert_file,
            } => {
                let macaroon = std::fs::read(macaroon_file).map_err(|e| {
                    NodeError::Config(format!("cannot read {}: {e}", macaroon_file.display()))
                })?;
                let hex = macaroon.to_lower_hex_string();
                let http = if url.scheme() == "https" {
                    let pem = std::fs::read(tls_cert_file).map_err(|e| {
                        NodeError::Config(format!("cannot read {}: {e}", tls_cert_file.display()))
                    })?;
                    pinned_client(&pem).map_err(|e| {
                        NodeError::Config(format!("{}: {e}", tls_cert_file.display()))
                    })?
                } else {
                    plain_client()
                };
                Ok(Node {
                    http,
                    base: url.clone(),
                    kind: Kind::Lnd {
                        macaroon: SecretString::from(hex),
                    },
                })
            }
            InvoiceSource::Cln { url, rune } => Ok(Node {
                http: plain_client(),
                base: url.clone(),
                kind: Kind::Cln { rune: rune.clone() },
            }),
            InvoiceSource::LightningAddress(address) => {
                let (user, domain) = address.split_once('@').ok_or_else(|| {
                    NodeError::Config(format!("{address} is not a Lightning address"))
                })?;
                // LUD-16 asks for https; a loopback domain (a node on this machine, a test) is
                // reached over plain http.
                let host = domain.split(':').next().unwrap_or(domain);
                let scheme = if matches!(host, "localhost" | "127.0.0.1") {
                    "http"
                } else {
                    "https"
                };
                let base = Url::parse(&format!("{scheme}://{domain}/.well-known/lnurlp/{user}"))
                    .map_err(|e| NodeError::Config(format!("{address}: {e}")))?;
                Ok(Node {
                    http: plain_client(),
                    base,
                    kind: Kind::Address {
                        address: address.clone(),
                    },
                })
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base.as_str().trim_end_matches('/'))
    }

    async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<Value>,
    ) -> Result<Value, NodeError> {
        let mut request = self.http.request(method, url);
        request = match &self.kind {
            Kind::Lnd { macaroon } => {
                request.header("Grpc-Metadata-macaroon", macaroon.expose_secret())
            }
            Kind::Cln { rune } => request.header("Rune", rune.expose_secret()),
            Kind::Address { .. } => request,
        };
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| NodeError::Unreachable {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(NodeError::Refused {
                url: url.to_string(),
                status: status.as_u16(),
                body: text.chars().take(300).collect(),
            });
        }
        serde_json::from_str(&text).map_err(|_| NodeError::Decode {
            url: url.to_string(),
            body: text.chars().take(300).collect(),
        })
    }

    fn field(&self, url: &str, v: &Value, name: &str) -> Result<String, NodeError> {
        v[name]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| NodeError::Decode {
                url: url.to_string(),
                body: v.to_string().chars().take(300).collect(),
            })
    }

    /// An invoice for exactly `amount_msat`, valid for `expiry`.
    pub async fn invoice(
        &self,
        amount_msat: u64,
        memo: &str,
        expiry: Duration,
    ) -> Result<NodeInvoice, NodeError> {
        match &self.kind {
            Kind::Lnd { .. } => {
                let url = self.url("v1/invoices");
                let body = json!({ "value_msat": amount_msat.to_string(), "memo": memo, "expiry": expiry.as_secs().to_string() });
                let v = self.call(reqwest::Method::POST, &url, Some(body)).await?;
                Ok(NodeInvoice {
                    bolt11: self.field(&url, &v, "payment_request")?,
                    description_hash: None,
                })
            }
            Kind::Cln { .. } => {
                let url = self.url("v1/invoice");
                // Labels must be unique on the node; the memo names the exchange, the time the attempt.
                let label = format!(
                    "{memo} {}",
                    chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
                );
                let body = json!({ "amount_msat": amount_msat, "label": label, "description": memo, "expiry": expiry.as_secs() });
                let v = self.call(reqwest::Method::POST, &url, Some(body)).await?;
                Ok(NodeInvoice {
                    bolt11: self.field(&url, &v, "bolt11")?,
                    description_hash: None,
                })
            }
            Kind::Address { address } => self.lnurl_invoice(address, amount_msat).await,
        }
    }

    async fn lnurl_invoice(
        &self,
        address: &str,
        amount_msat: u64,
    ) -> Result<NodeInvoice, NodeError> {
        let refused = |reason: String| NodeError::Lnurl {
            address: address.to_string(),
            reason,
        };
        let url = self.base.to_string();
        let params = self.call(reqwest::Method::GET, &url, None).await?;
        if params["status"] == "ERROR" {
            return Err(refused(
                params["reason"]
                    .as_str()
                    .unwrap_or("no reason given")
                    .to_string(),
            ));
        }
        if params["tag"] != "payRequest" {
            return Err(refused(format!("not a payRequest: {params}")));
        }
        let (min, max) = (
            params["minSendable"].as_u64(),
            params["maxSendable"].as_u64(),
        );
        if min.is_some_and(|m| amount_msat < m) || max.is_some_and(|m| amount_msat > m) {
            return Err(refused(format!(
                "{amount_msat} msat is outside what it accepts ({} to {} msat)",
                min.unwrap_or(0),
                max.unwrap_or(u64::MAX)
            )));
        }
        // The hash is taken over the metadata exactly as received: re-serialising could change it.
        let metadata = self.field(&url, &params, "metadata")?;
        let hash: [u8; 32] = Sha256::digest(metadata.as_bytes()).into();
        let callback = self.field(&url, &params, "callback")?;
        let separator = if callback.contains('?') { '&' } else { '?' };
        let callback = format!("{callback}{separator}amount={amount_msat}");
        let answer = self.call(reqwest::Method::GET, &callback, None).await?;
        if answer["status"] == "ERROR" {
            return Err(refused(
                answer["reason"]
                    .as_str()
                    .unwrap_or("no reason given")
                    .to_string(),
            ));
        }
        Ok(NodeInvoice {
            bolt11: self.field(&callback, &answer, "pr")?,
            description_hash: Some(hash),
        })
    }

    /// Signs `message` with the node key (LND / Core Lightning `signmessage`, zbase32).
    pub async fn sign_message(&self, message: &str) -> Result<String, NodeError> {
        use bitcoin::base64::Engine;
        match &self.kind {
            Kind::Lnd { .. } => {
                let url = self.url("v1/signmessage");
                let msg =
                    bitcoin::base64::engine::general_purpose::STANDARD.encode(message.as_bytes());
                let v = self
                    .call(reqwest::Method::POST, &url, Some(json!({ "msg": msg })))
                    .await?;
                self.field(&url, &v, "signature")
            }
            Kind::Cln { .. } => {
                let url = self.url("v1/signmessage");
                let v = self
                    .call(
                        reqwest::Method::POST,
                        &url,
                        Some(json!({ "message": message })),
                    )
                    .await?;
                self.field(&url, &v, "zbase")
            }
            Kind::Address { .. } => Err(NodeError::Unsupported("a Lightning address")),
        }
    }

    /// The node's public key (`getinfo`).
    pub async fn pubkey(&self) -> Result<PublicKey, NodeError> {
        let (url, v, name) = match &self.kind {
            Kind::Lnd { .. } => {
                let url = self.url("v1/getinfo");
                (
                    url.clone(),
                    self.call(reqwest::Method::GET, &url, None).await?,
                    "identity_pubkey",
                )
            }
            Kind::Cln { .. } => {
                let url = self.url("v1/getinfo");
                (
                    url.clone(),
                    self.call(reqwest::Method::POST, &url, Some(json!({})))
                        .await?,
                    "id",
                )
            }
            Kind::Address { .. } => return Err(NodeError::Unsupported("a Lightning address")),
        };
        let text = self.field(&url, &v, name)?;
        PublicKey::from_str(&text).map_err(|_| NodeError::Decode { url, body: text })
    }

    /// LND's on-chain wallet: the confirmed balance in sat.
    pub async fn onchain_balance(&self) -> Result<u64, NodeError> {
        let Kind::Lnd { .. } = &self.kind else {
            return Err(NodeError::Unsupported("only LND's on-chain wallet"));
        };
        let url = self.url("v1/balance/blockchain");
        let v = self.call(reqwest::Method::GET, &url, None).await?;
        let text = self.field(&url, &v, "confirmed_balance")?;
        text.parse()
            .map_err(|_| NodeError::Decode { url, body: text })
    }

    /// Sends `amount` sat (or everything, with `None`) to `address` at `sat_per_vbyte`, with
    /// `label` so the transaction can be found again. Returns the txid.
    pub async fn send_onchain(
        &self,
        address: &str,
        amount: Option<u64>,
        sat_per_vbyte: u64,
        label: &str,
    ) -> Result<String, NodeError> {
        let Kind::Lnd { .. } = &self.kind else {
            return Err(NodeError::Unsupported("only LND's on-chain wallet"));
        };
        let url = self.url("v1/transactions");
        let mut body =
            json!({ "addr": address, "sat_per_vbyte": sat_per_vbyte.to_string(), "label": label });
        match amount {
            Some(sat) => body["amount"] = json!(sat.to_string()),
            None => body["send_all"] = json!(true),
        }
        let v = self.call(reqwest::Method::POST, &url, Some(body)).await?;
        self.field(&url, &v, "txid")
    }

    /// The transaction labelled `label`, if the node's wallet has one: `(txid, fee in sat)`.
    pub async fn labelled_transaction(
        &self,
        label: &str,
    ) -> Result<Option<(String, Option<u64>)>, NodeError> {
        let Kind::Lnd { .. } = &self.kind else {
            return Err(NodeError::Unsupported("only LND's on-chain wallet"));
        };
        let url = self.url("v1/transactions");
        let v = self.call(reqwest::Method::GET, &url, None).await?;
        Ok(v["transactions"].as_array().and_then(|txs| {
            txs.iter().find(|t| t["label"] == label).map(|t| {
                let fee = t["total_fees"].as_str().and_then(|f| f.parse().ok());
                (t["tx_hash"].as_str().unwrap_or_default().to_string(), fee)
            })
        }))
    }

    /// How much the node can receive over its channels, in msat; `None` when the source cannot
    /// tell (only LND reports it).
    pub async fn inbound_msat(&self) -> Result<Option<u64>, NodeError> {
        match &self.kind {
            Kind::Lnd { .. } => {
                let url = self.url("v1/balance/channels");
                let v = self.call(reqwest::Method::GET, &url, None).await?;
                let remote = &v["remote_balance"];
                let msat = remote["msat"]
                    .as_str()
                    .and_then(|s| s.parse::<u64>().ok())
                    .or_else(|| {
                        remote["sat"]
                            .as_str()
                            .and_then(|s| s.parse::<u64>().ok())
                            .map(|s| s * 1000)
                    });
                Ok(Some(msat.ok_or_else(|| NodeError::Decode {
                    url,
                    body: v.to_string(),
                })?))
            }
            _ => Ok(None),
        }
    }
}
