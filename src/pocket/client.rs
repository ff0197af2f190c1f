//! The Pocket API client: every endpoint of the reference, with `Authorization: client_id …`,
//! the configured base URL, timeouts and a `satflow/<version>` user agent.
//!
//! It only talks HTTP: it never decides whether a call should be made. Calls that change
//! something are made by outbox handlers or by `order setup`, never from inside a transaction.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

use super::types::{
    ApiCode, Challenge, Exchange, ExchangePayout, NewBuyOrder, NewSellOrder, Order, OrderPatch,
};
use crate::config::PocketConfig;

#[derive(Debug, thiserror::Error)]
pub enum PocketError {
    /// Pocket answered with an error status. `code` is the documented code when the body has one.
    #[error("Pocket refused the request ({status}): {}{}", code.as_ref().map_or("no error code", ApiCode::as_str), message.as_ref().map(|m| format!(" — {m}")).unwrap_or_default())]
    Api {
        status: u16,
        code: Option<ApiCode>,
        message: Option<String>,
        body: String,
    },
    #[error("cannot reach Pocket at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// No answer in time: the request may have taken effect.
    #[error("no answer from Pocket at {url} in time; the request may or may not have been applied")]
    Timeout { url: String },
    #[error("Pocket answered {status} with a body satflow cannot read ({reason}): {body}")]
    Decode {
        status: u16,
        reason: String,
        body: String,
    },
}

impl PocketError {
    pub fn status(&self) -> Option<u16> {
        match self {
            PocketError::Api { status, .. } | PocketError::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn code(&self) -> Option<&ApiCode> {
        match self {
            PocketError::Api { code, .. } => code.as_ref(),
            _ => None,
        }
    }
}

pub struct PocketClient {
    http: reqwest::Client,
    base: Url,
    client_id: SecretString,
}

impl PocketClient {
    pub fn new(config: &PocketConfig) -> Self {
        Self::with_base(config.base_url.clone(), config.client_id.clone())
    }

    pub fn with_base(base: Url, client_id: SecretString) -> Self {
        let http = reqwest::Client::builder()
            .user_agent(concat!("satflow/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .expect("the HTTP client's settings are valid");
        PocketClient {
            http,
            base,
            client_id,
        }
    }

    pub async fn create_challenge(&self) -> Result<Challenge, PocketError> {
        self.call(Method::POST, "v1/challenges", Some(serde_json::json!({})))
            .await
    }

    pub async fn get_challenge(&self, id: &str) -> Result<Challenge, PocketError> {
        self.call(Method::GET, &format!("v1/challenges/{id}"), None)
            .await
    }

    pub async fn create_buy_order(&self, order: &NewBuyOrder) -> Result<Order, PocketError> {
        self.call(Method::POST, "v1/orders", Some(order.to_json()))
            .await
    }

    pub async fn create_sell_order(&self, order: &NewSellOrder) -> Result<Order, PocketError> {
        self.call(Method::POST, "v1/orders", Some(order.to_json()))
            .await
    }

    pub async fn get_order(&self, id: &str) -> Result<Order, PocketError> {
        self.call(Method::GET, &format!("v1/orders/{id}"), None)
            .await
    }

    pub async fn patch_order(&self, id: &str, patch: &OrderPatch) -> Result<Order, PocketError> {
        self.call(
            Method::PATCH,
            &format!("v1/orders/{id}"),
            Some(patch.to_json()),
        )
        .await
    }

    pub async fn get_exchange(&self, id: &str) -> Result<Exchange, PocketError> {
        self.call(Method::GET, &format!("v1/exchanges/{id}"), None)
            .await
    }

    pub async fn patch_exchange(
        &self,
        id: &str,
        payout: &ExchangePayout,
    ) -> Result<Exchange, PocketError> {
        self.call(
            Method::PATCH,
            &format!("v1/exchanges/{id}"),
            Some(payout.to_json()),
        )
        .await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<T, PocketError> {
        let url = self.base.join(path).map_err(|e| PocketError::Unreachable {
            url: path.to_string(),
            reason: e.to_string(),
        })?;
        let mut request = self.http.request(method, url.clone()).header(
            "Authorization",
            format!("client_id {}", self.client_id.expose_secret()),
        );
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                PocketError::Timeout {
                    url: url.to_string(),
                }
            } else {
                PocketError::Unreachable {
                    url: url.to_string(),
                    reason: e.to_string(),
                }
            }
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| PocketError::Unreachable {
                url: url.to_string(),
                reason: format!("the answer was cut off: {e}"),
            })?;
        if !status.is_success() {
            let (code, message) = match ApiCode::from_body(&text) {
                Some((code, message)) => (Some(code), message),
                None if status == StatusCode::UNAUTHORIZED => {
                    (None, Some("the client id was not accepted".into()))
                }
                None => (None, None),
            };
            return Err(PocketError::Api {
                status: status.as_u16(),
                code,
                message,
                body: text,
            });
        }
        serde_json::from_str(&text).map_err(|e| PocketError::Decode {
            status: status.as_u16(),
            reason: e.to_string(),
            body: text,
        })
    }
}
