//! A client for the Lightning Peach hub's merchant API (seed 003): sign-in and token refresh,
//! the merchant's withdrawal address (approved by a signature of `merchant_id + address` with
//! the merchant key), balance, withdrawal of the whole balance, and a withdrawal's status.
//!
//! Tokens live in memory only; the password and the merchant key never leave this struct.

use std::time::Duration;

use std::str::FromStr;

use bitcoin::hex::DisplayHex;
use bitcoin::secp256k1::{Message, PublicKey, Secp256k1, SecretKey};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;
use url::Url;

use crate::config::WithdrawProvider;

/// Where the hub may send its payment notifications: satflow does not use them, and the
/// reserved `.invalid` domain makes that plain.
const NOTIFICATIONS: &str = "https://notifications.invalid/satflow";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    #[error("cannot use the hub settings: {0}")]
    Config(String),
    #[error("cannot reach the hub at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("no answer from the hub at {url} in time; the request may have been applied")]
    Timeout { url: String },
    #[error("the hub refused ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("the hub answered something satflow cannot read: {0}")]
    Decode(String),
}

struct Session {
    access: String,
    refresh: String,
    merchant_id: String,
}

/// The merchant's signing key from `path`: 64 hex digits, a secp256k1 private key. The refusal
/// never shows the file's content.
pub fn read_merchant_key(path: &std::path::Path) -> Result<SecretKey, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    SecretKey::from_str(text.trim()).ok().ok_or_else(|| {
        format!(
            "{} does not hold a merchant key: write the secp256k1 private key as 64 hex digits",
            path.display()
        )
    })
}

pub struct HubClient {
    http: reqwest::Client,
    base: Url,
    email: String,
    password: SecretString,
    key: SecretKey,
    session: Mutex<Option<Session>>,
}

impl HubClient {
    pub fn from_config(provider: &WithdrawProvider) -> Result<HubClient, HubError> {
        let WithdrawProvider::LightningPeach {
            base_url,
            email,
            password,
            key_file,
        } = provider
        else {
            return Err(HubError::Config("not a lightningpeach provider".into()));
        };
        let key = read_merchant_key(key_file).map_err(HubError::Config)?;
        let mut base = base_url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("satflow/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .expect("the HTTP client's settings are valid");
        Ok(HubClient {
            http,
            base,
            email: email.clone(),
            password: password.clone(),
            key,
            session: Mutex::new(None),
        })
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<(u16, Value), HubError> {
        let url = self
            .base
            .join(path)
            .map_err(|e| HubError::Config(e.to_string()))?;
        let mut request = self.http.request(method, url.clone());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                HubError::Timeout {
                    url: url.to_string(),
                }
            } else {
                HubError::Unreachable {
                    url: url.to_string(),
                    reason: e.to_string(),
                }
            }
        })?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|_| HubError::Decode(text.clone()))?
        };
        Ok((status, value))
    }

    fn refused(status: u16, v: &Value) -> HubError {
        HubError::Refused {
            status,
            message: v["message"]
                .as_str()
                .or_else(|| v["error"].as_str())
                .unwrap_or("no message")
                .to_string(),
        }
    }

    fn session_from(v: &Value) -> Result<Session, HubError> {
        let field = |n: &str| {
            v[n].as_str()
                .map(str::to_string)
                .ok_or_else(|| HubError::Decode(v.to_string()))
        };
        Ok(Session {
            access: field("access_token")?,
            refresh: field("refresh_token")?,
            merchant_id: field("merchant_id")?,
        })
    }

    async fn sign_in(&self) -> Result<Session, HubError> {
        let body = json!({ "email": self.email, "password": self.password.expose_secret() });
        let (status, v) = self
            .send(
                reqwest::Method::POST,
                "api/v2/auth/signin",
                None,
                Some(body),
            )
            .await?;
        if status != 200 {
            return Err(Self::refused(status, &v));
        }
        Self::session_from(&v)
    }

    /// Calls the API as the merchant: an expired access token is refreshed (or, failing that,
    /// the merchant signs in again) and the call repeated once.
    async fn authed(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, HubError> {
        let mut session = self.session.lock().await;
        if session.is_none() {
            *session = Some(self.sign_in().await?);
        }
        for attempt in 0..2 {
            let token = session.as_ref().map(|s| s.access.clone());
            let (status, v) = self
                .send(method.clone(), path, token.as_deref(), body.clone())
                .await?;
            if status == 401 && attempt == 0 {
                let refresh = session
                    .as_ref()
                    .map(|s| s.refresh.clone())
                    .unwrap_or_default();
                let (status, fresh) = self
                    .send(
                        reqwest::Method::POST,
                        &format!("api/v2/auth/token/{refresh}"),
                        None,
                        None,
                    )
                    .await?;
                *session = Some(if status == 200 {
                    Self::session_from(&fresh)?
                } else {
                    self.sign_in().await?
                });
                continue;
            }
            if !(200..300).contains(&status) {
                return Err(Self::refused(status, &v));
            }
            return Ok(v);
        }
        Err(HubError::Refused {
            status: 401,
            message: "the hub keeps refusing fresh tokens".into(),
        })
    }

    async fn merchant_id(&self) -> Result<String, HubError> {
        if let Some(s) = self.session.lock().await.as_ref() {
            return Ok(s.merchant_id.clone());
        }
        let session = self.sign_in().await?;
        let id = session.merchant_id.clone();
        *self.session.lock().await = Some(session);
        Ok(id)
    }

    /// The merchant's balance in sat.
    pub async fn balance(&self) -> Result<u64, HubError> {
        let v = self
            .authed(reqwest::Method::GET, "api/v2/merchant/balance", None)
            .await?;
        v["balance"]
            .as_str()
            .and_then(|b| b.parse().ok())
            .ok_or_else(|| HubError::Decode(v.to_string()))
    }

    /// Points the merchant's withdrawals at `address`, signed with the merchant key.
    pub async fn set_address(&self, address: &str) -> Result<(), HubError> {
        let merchant_id = self.merchant_id().await?;
        let secp = Secp256k1::new();
        let pubkey = PublicKey::from_secret_key(&secp, &self.key);
        let digest: [u8; 32] = Sha256::digest(format!("{merchant_id}{address}").as_bytes()).into();
        let signature = secp
            .sign_ecdsa(&Message::from_digest(digest), &self.key)
            .serialize_der();
        let hex = signature.to_lower_hex_string();
        self.authed(
            reqwest::Method::POST,
            "api/v2/user/pubkey/add",
            Some(json!({ "pub_key": pubkey.to_string() })),
        )
        .await?;
        let body = json!({
            "merchant_id": merchant_id,
            "bitcoin_address": address,
            "merchant_pubkey": pubkey.to_string(),
            "notification_url": NOTIFICATIONS,
            "notification_url_for_on_chain_payment": NOTIFICATIONS,
            "notification_url_for_forward_payment": NOTIFICATIONS,
            "approve_address_signature": hex,
        });
        self.authed(reqwest::Method::POST, "api/v2/merchant", Some(body))
            .await?;
        Ok(())
    }

    /// Withdraws the whole balance to the merchant's address: `(withdrawal id, amount in sat)`.
    pub async fn withdraw(&self) -> Result<(String, u64), HubError> {
        let v = self
            .authed(
                reqwest::Method::POST,
                "api/v2/merchant/withdraw",
                Some(json!({})),
            )
            .await?;
        let id = v["id"]
            .as_str()
            .ok_or_else(|| HubError::Decode(v.to_string()))?
            .to_string();
        let amount = v["amount"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| HubError::Decode(v.to_string()))?;
        Ok((id, amount))
    }

    /// A withdrawal's status: `(status, sent transaction id if any)`.
    pub async fn withdrawal(&self, id: &str) -> Result<(String, Option<String>), HubError> {
        let v = self
            .authed(
                reqwest::Method::GET,
                &format!("api/v2/merchant/withdraw/{id}"),
                None,
            )
            .await?;
        let status = v["status"]
            .as_str()
            .ok_or_else(|| HubError::Decode(v.to_string()))?
            .to_string();
        let tx = v["sent_tx"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        Ok((status, tx))
    }
}
