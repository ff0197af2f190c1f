//! A client for the Lightning Peach hub's merchant API (seed 003): sign-in and token refresh,
//! the merchant's withdrawal address (approved by a signature of `merchant_id + address` with
//! the merchant key), balance, withdrawal of the whole balance, and a withdrawal's status.
//!
//! Tokens live in memory only; the password and the merchant key never leave this struct.
//!
//! Outcomes, written once in [`HubError::class`] (the seed documents 400, 401, 404 and 500):
//!
//! | failure                                     | sign-in, refresh, balance, address setup, status | withdraw |
//! |---------------------------------------------|-------------------------------|-------------|
//! | connection refused, DNS, connect timeout    | transient                     | transient   |
//! | timeout or cut after the request was sent   | transient                     | **unknown** |
//! | 408, 425, 429 (Retry-After kept), any 5xx (JSON or HTML; "internal inconsistency with merchant balance" is a 500) | transient | transient |
//! | 401 after a refresh and a fresh sign-in ("invalid email or password") | permanent | permanent |
//! | 400 ("invalid signature", "invalid BTC address", "less than minimum allowed"), 404, other 4xx | permanent | permanent |
//! | 2xx that cannot be read                     | permanent                     | **unknown** |
//!
//! Setting the address is repeated safely (the same values), so only a withdrawal is a write;
//! its lost answer is reconciled through the balance before anything is asked again. Every call
//! starts from a sign-in in a fresh client, so a hub that cannot be reached fails there first.

use std::time::Duration;

use bitcoin::hex::DisplayHex;
use bitcoin::secp256k1::{Message, Secp256k1};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;
use url::Url;

use crate::config::WithdrawProvider;
use crate::domain::MerchantKey;
use crate::lightning::node::{describe, transport_message, with_segments};
use crate::outcome::{self, Call, Class};

/// How long a connection may take to open, and a whole call: shorter than the outbox's bound on
/// a handler under the default lease (3/4 of 30 s).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// Where the hub may send its payment notifications: satflow does not use them, and the
/// reserved `.invalid` domain makes that plain.
const NOTIFICATIONS: &str = "https://notifications.invalid/satflow";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    #[error("cannot use the hub settings: {0}")]
    Config(String),
    /// No answer: `class` is decided from the transport error's own predicates.
    #[error("{}", transport_message("the hub", url, reason, *class))]
    Unreachable {
        url: String,
        reason: String,
        class: Class,
    },
    #[error("the hub refused ({status}): {message}")]
    Refused {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("the hub answered something satflow cannot read{}: {body}", if *call == Call::Write { " (the request may have been applied)" } else { "" })]
    Decode { body: String, call: Call },
}

impl HubError {
    /// The outcome of the failed call: the table in this module's header, in code.
    pub fn class(&self) -> Class {
        match self {
            HubError::Config(_) => Class::Permanent,
            HubError::Unreachable { class, .. } => *class,
            HubError::Refused {
                status,
                retry_after,
                ..
            } => outcome::of_status(*status, *retry_after).unwrap_or(Class::Permanent),
            HubError::Decode {
                call: Call::Write, ..
            } => Class::Unknown,
            HubError::Decode { .. } => Class::Permanent,
        }
    }

    pub fn http_status(&self) -> Option<u16> {
        match self {
            HubError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// What the hub answered.
struct Answer {
    status: u16,
    text: String,
    retry_after: Option<Duration>,
}

impl Answer {
    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body of a 2xx answer; an empty one reads as `null`.
    fn json(&self, call: Call) -> Result<Value, HubError> {
        if self.text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&self.text).map_err(|_| HubError::Decode {
            body: self.text.chars().take(300).collect(),
            call,
        })
    }

    /// A refusal from the status, with the hub's message (`{"error", "code", "message"}`) when
    /// the body has one, else the start of the body as it came (a proxy's page).
    fn refused(&self) -> HubError {
        let message = outcome::body_code(&self.text)
            .map(|(code, message)| message.unwrap_or(code))
            .unwrap_or_else(|| {
                let text: String = self.text.chars().take(200).collect();
                if text.trim().is_empty() {
                    "no message".into()
                } else {
                    text
                }
            });
        HubError::Refused {
            status: self.status,
            message,
            retry_after: self.retry_after,
        }
    }
}

struct Session {
    access: String,
    refresh: String,
    merchant_id: String,
}

pub struct HubClient {
    http: reqwest::Client,
    base: Url,
    timeout: Duration,
    email: String,
    password: SecretString,
    key: MerchantKey,
    session: Mutex<Option<Session>>,
}

impl HubClient {
    pub fn from_config(provider: &WithdrawProvider) -> Result<HubClient, HubError> {
        HubClient::from_config_with(provider, CONNECT_TIMEOUT, TIMEOUT)
    }

    /// With other timeouts: `connect` for a connection to open, `total` for a whole call.
    pub fn from_config_with(
        provider: &WithdrawProvider,
        connect: Duration,
        total: Duration,
    ) -> Result<HubClient, HubError> {
        let WithdrawProvider::LightningPeach {
            base_url,
            email,
            password,
            key,
        } = provider
        else {
            return Err(HubError::Config("not a lightningpeach provider".into()));
        };
        let base = base_url.clone();
        if base.cannot_be_a_base() {
            return Err(HubError::Config(format!("{base} cannot be a base URL")));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("satflow/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(connect)
            .build()
            .expect("the HTTP client's settings are valid");
        Ok(HubClient {
            http,
            base,
            timeout: total,
            email: email.clone(),
            password: password.clone(),
            key: key.clone(),
            session: Mutex::new(None),
        })
    }

    /// One request to `segments` under the base URL, each segment percent-encoded.
    async fn send(
        &self,
        method: reqwest::Method,
        segments: &[&str],
        token: Option<&str>,
        body: Option<Value>,
        call: Call,
    ) -> Result<Answer, HubError> {
        let url = with_segments(&self.base, segments).map_err(HubError::Config)?;
        // A refresh token travels in the path: it is never shown.
        let shown = if segments.starts_with(&["api", "v2", "auth", "token"]) {
            with_segments(&self.base, &["api", "v2", "auth", "token", "…"])
                .map_or_else(|_| String::new(), |u| u.to_string())
        } else {
            url.to_string()
        };
        let unreachable = |e: reqwest::Error| HubError::Unreachable {
            url: shown.clone(),
            reason: describe(&e).replace(url.as_str(), &shown),
            class: outcome::of_transport(&e, call),
        };
        let mut request = self.http.request(method, url.clone()).timeout(self.timeout);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let retry_after = outcome::retry_after(response.headers(), crate::clock::system_now());
        let text = if (200..300).contains(&status) {
            response.text().await.map_err(unreachable)?
        } else {
            response.text().await.unwrap_or_default()
        };
        Ok(Answer {
            status,
            text,
            retry_after,
        })
    }

    fn session_from(v: &Value) -> Result<Session, HubError> {
        let field = |n: &str| {
            v[n].as_str()
                .map(str::to_string)
                .ok_or_else(|| HubError::Decode {
                    body: "a sign-in answer without its tokens".into(),
                    call: Call::Read,
                })
        };
        Ok(Session {
            access: field("access_token")?,
            refresh: field("refresh_token")?,
            merchant_id: field("merchant_id")?,
        })
    }

    async fn sign_in(&self) -> Result<Session, HubError> {
        let body = json!({ "email": self.email, "password": self.password.expose_secret() });
        let answer = self
            .send(
                reqwest::Method::POST,
                &["api", "v2", "auth", "signin"],
                None,
                Some(body),
                Call::Read,
            )
            .await?;
        if !answer.ok() {
            return Err(answer.refused());
        }
        Self::session_from(&answer.json(Call::Read)?)
    }

    /// Calls the API as the merchant: an expired access token is refreshed (or, failing that,
    /// the merchant signs in again) and the call repeated once.
    async fn authed(
        &self,
        method: reqwest::Method,
        segments: &[&str],
        body: Option<Value>,
        call: Call,
    ) -> Result<Value, HubError> {
        let mut session = self.session.lock().await;
        if session.is_none() {
            *session = Some(self.sign_in().await?);
        }
        for attempt in 0..2 {
            let token = session.as_ref().map(|s| s.access.clone());
            let answer = self
                .send(
                    method.clone(),
                    segments,
                    token.as_deref(),
                    body.clone(),
                    call,
                )
                .await?;
            if answer.status == 401 && attempt == 0 {
                let refresh = session
                    .as_ref()
                    .map(|s| s.refresh.clone())
                    .unwrap_or_default();
                let fresh = match refresh.is_empty() {
                    true => None,
                    false => Some(
                        self.send(
                            reqwest::Method::POST,
                            &["api", "v2", "auth", "token", &refresh],
                            None,
                            None,
                            Call::Read,
                        )
                        .await?,
                    ),
                };
                *session = Some(match fresh {
                    Some(fresh) if fresh.ok() => Self::session_from(&fresh.json(Call::Read)?)?,
                    _ => self.sign_in().await?,
                });
                continue;
            }
            if !answer.ok() {
                return Err(answer.refused());
            }
            return answer.json(call);
        }
        Err(HubError::Refused {
            status: 401,
            message: "the hub keeps refusing fresh tokens".into(),
            retry_after: None,
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
            .authed(
                reqwest::Method::GET,
                &["api", "v2", "merchant", "balance"],
                None,
                Call::Read,
            )
            .await?;
        v["balance"]
            .as_str()
            .and_then(|b| b.parse().ok())
            .ok_or_else(|| HubError::Decode {
                body: v.to_string(),
                call: Call::Read,
            })
    }

    /// Points the merchant's withdrawals at `address`, signed with the merchant key.
    pub async fn set_address(&self, address: &str) -> Result<(), HubError> {
        let merchant_id = self.merchant_id().await?;
        let secp = Secp256k1::new();
        let pubkey = self.key.public();
        let digest: [u8; 32] = Sha256::digest(format!("{merchant_id}{address}").as_bytes()).into();
        let signature = secp
            .sign_ecdsa(&Message::from_digest(digest), self.key.secret())
            .serialize_der();
        let hex = signature.to_lower_hex_string();
        self.authed(
            reqwest::Method::POST,
            &["api", "v2", "user", "pubkey", "add"],
            Some(json!({ "pub_key": pubkey.to_string() })),
            Call::Read,
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
        let v = self
            .authed(
                reqwest::Method::POST,
                &["api", "v2", "merchant"],
                Some(body),
                Call::Read,
            )
            .await?;
        // The seed's answer names the merchant: anything else is not a setup satflow can trust.
        if v["id"].as_str().is_none() {
            return Err(HubError::Decode {
                body: v.to_string().chars().take(300).collect(),
                call: Call::Read,
            });
        }
        Ok(())
    }

    /// Withdraws the whole balance to the merchant's address: `(withdrawal id, amount in sat)`.
    pub async fn withdraw(&self) -> Result<(String, u64), HubError> {
        let v = self
            .authed(
                reqwest::Method::POST,
                &["api", "v2", "merchant", "withdraw"],
                Some(json!({})),
                Call::Write,
            )
            .await?;
        let decode = || HubError::Decode {
            body: v.to_string(),
            call: Call::Write,
        };
        let id = v["id"]
            .as_str()
            .filter(|id| !id.is_empty())
            .ok_or_else(decode)?
            .to_string();
        let amount = v["amount"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .ok_or_else(decode)?;
        Ok((id, amount))
    }

    /// A withdrawal's status: `(status, sent transaction id if any)`.
    pub async fn withdrawal(&self, id: &str) -> Result<(String, Option<String>), HubError> {
        let v = self
            .authed(
                reqwest::Method::GET,
                &["api", "v2", "merchant", "withdraw", id],
                None,
                Call::Read,
            )
            .await?;
        let status = v["status"]
            .as_str()
            .ok_or_else(|| HubError::Decode {
                body: v.to_string(),
                call: Call::Read,
            })?
            .to_string();
        let tx = v["sent_tx"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        Ok((status, tx))
    }
}
