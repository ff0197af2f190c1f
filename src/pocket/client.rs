//! The Pocket API client: every endpoint of the reference, with `Authorization: client_id …`,
//! the configured base URL, short timeouts and a `satflow/<version>` user agent. Ids are
//! percent-encoded as single path segments, so data from a webhook can never change the path
//! or add a query.
//!
//! It only talks HTTP: it never decides whether a call should be made, and it never decides
//! what a failure means — it reports the failure (`PocketError::failure`) and the table in
//! `pocket::outcomes` gives the verdict. Calls that change something are made by outbox
//! handlers or by `order setup`, never from inside a transaction.

use std::time::Duration;

use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

use super::outcomes::{Failure, Patience, PocketCall, Verdict, outcome};
use super::types::{
    ApiCode, Challenge, Exchange, ExchangePayout, NewBuyOrder, NewSellOrder, Order, OrderPatch,
};
use crate::config::PocketConfig;
use crate::outcome::HandlerError;

/// How long connecting to Pocket may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one call may take from start to the end of the answer. Shorter than the outbox
/// lease that guards an item (`engine.lease`, 30 s by default; a handler is bounded at 3/4 of
/// it), with room for the read-back of a reconcile and the call itself in one attempt; and
/// short enough that a slow Pocket cannot hold a run for long.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest error body kept in a message (a proxy's HTML page can be large).
const BODY_IN_MESSAGE: usize = 300;

#[derive(Debug, thiserror::Error)]
pub enum PocketError {
    /// Pocket (or a proxy in front of it) answered with an error status. `code` is the
    /// documented code when the body has one, at the top level or nested.
    #[error("Pocket refused {call} ({status}): {}{}{}", code.as_ref().map_or("no error code", ApiCode::as_str), message.as_ref().map(|m| format!(" — {m}")).unwrap_or_else(|| short_body(body)), retry_after.map(|d| format!(" (it asks to wait {} s)", d.as_secs())).unwrap_or_default())]
    Api {
        call: PocketCall,
        status: u16,
        code: Option<ApiCode>,
        message: Option<String>,
        body: String,
        /// What Pocket asked for with `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// Nothing reached Pocket.
    #[error("cannot reach Pocket at {url}: {reason}")]
    Unreachable {
        call: PocketCall,
        url: String,
        reason: String,
    },
    /// The request was sent, or may have been, and no whole answer came back.
    #[error("no answer from Pocket to {call} at {url}: {reason}{}", unknown_hint(*call, &Failure::NoAnswer))]
    NoAnswer {
        call: PocketCall,
        url: String,
        reason: String,
    },
    /// The request could not be made as configured.
    #[error("cannot make the request {call} to Pocket: {reason}")]
    Invalid { call: PocketCall, reason: String },
    #[error(
        "Pocket answered {call} with {status} and a body satflow cannot read ({reason}){}{}",
        short_body(body),
        unknown_hint(*call, &Failure::Malformed)
    )]
    Decode {
        call: PocketCall,
        status: u16,
        reason: String,
        body: String,
    },
}

/// Said of a failure whose outcome is unknown, so that a person reading it (`order setup`)
/// checks before trying again.
fn unknown_hint(call: PocketCall, failure: &Failure) -> &'static str {
    match (outcome(call, failure), call) {
        (Verdict::Unknown, PocketCall::CreateOrder) => {
            "; an order may have been made: look for it in Pocket before setting up again"
        }
        (Verdict::Unknown, _) => "; the request may or may not have taken effect",
        _ => "",
    }
}

fn short_body(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        return " (empty body)".into();
    }
    match body.char_indices().nth(BODY_IN_MESSAGE) {
        Some((cut, _)) => format!(" — {}…", &body[..cut]),
        None => format!(" — {body}"),
    }
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

    pub fn call(&self) -> PocketCall {
        match self {
            PocketError::Api { call, .. }
            | PocketError::Unreachable { call, .. }
            | PocketError::NoAnswer { call, .. }
            | PocketError::Invalid { call, .. }
            | PocketError::Decode { call, .. } => *call,
        }
    }

    pub fn failure(&self) -> Failure {
        match self {
            PocketError::Api {
                status,
                code,
                retry_after,
                ..
            } => Failure::Status {
                status: *status,
                code: code.clone(),
                retry_after: *retry_after,
            },
            PocketError::Unreachable { .. } => Failure::NotSent,
            PocketError::NoAnswer { .. } => Failure::NoAnswer,
            PocketError::Invalid { .. } => Failure::Invalid,
            PocketError::Decode { .. } => Failure::Malformed,
        }
    }

    /// What the table of outcomes says about this failure.
    pub fn verdict(&self) -> Verdict {
        outcome(self.call(), &self.failure())
    }

    /// The error as the outbox treats it. The reactions a caller handles itself (done, fall
    /// back to an invoice) are not for the outbox: reaching here with one is a refusal.
    pub fn handler_error(&self) -> HandlerError {
        let http_status = self.status();
        match self.verdict() {
            Verdict::Permanent(reason) => HandlerError::Permanent {
                message: format!("{self}; {reason}"),
                http_status,
            },
            Verdict::Unknown => HandlerError::Unknown(self.to_string()),
            verdict => match verdict.class() {
                Some(class) => HandlerError::from_class(class, self.to_string(), http_status),
                None => HandlerError::Permanent {
                    message: format!("{self}; satflow cannot act on this answer here"),
                    http_status,
                },
            },
        }
    }
}

/// The error's text with its causes (reqwest's own text names only the outermost one).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Cheap to clone: the clones share one connection pool.
#[derive(Clone)]
pub struct PocketClient {
    http: reqwest::Client,
    base: Url,
    client_id: SecretString,
    call_timeout: Duration,
}

impl PocketClient {
    pub fn new(config: &PocketConfig) -> Self {
        Self::with_base(config.base_url.clone(), config.client_id.clone())
    }

    pub fn with_base(base: Url, client_id: SecretString) -> Self {
        Self::with_timeouts(base, client_id, CONNECT_TIMEOUT, CALL_TIMEOUT)
    }

    /// A client with other timeouts (tests of what a timeout means).
    pub fn with_timeouts(
        base: Url,
        client_id: SecretString,
        connect: Duration,
        call: Duration,
    ) -> Self {
        let http = reqwest::Client::builder()
            .user_agent(concat!("satflow/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(connect)
            .timeout(call)
            .build()
            .expect("the HTTP client's settings are valid");
        PocketClient {
            http,
            base,
            client_id,
            call_timeout: call,
        }
    }

    pub async fn create_challenge(&self) -> Result<Challenge, PocketError> {
        self.call(
            PocketCall::CreateChallenge,
            &["v1", "challenges"],
            Some(serde_json::json!({})),
        )
        .await
    }

    pub async fn get_challenge(&self, id: &str) -> Result<Challenge, PocketError> {
        self.call(PocketCall::GetChallenge, &["v1", "challenges", id], None)
            .await
    }

    pub async fn create_buy_order(&self, order: &NewBuyOrder) -> Result<Order, PocketError> {
        self.call(
            PocketCall::CreateOrder,
            &["v1", "orders"],
            Some(order.to_json()),
        )
        .await
    }

    pub async fn create_sell_order(&self, order: &NewSellOrder) -> Result<Order, PocketError> {
        self.call(
            PocketCall::CreateOrder,
            &["v1", "orders"],
            Some(order.to_json()),
        )
        .await
    }

    pub async fn get_order(&self, id: &str) -> Result<Order, PocketError> {
        self.call(PocketCall::GetOrder, &["v1", "orders", id], None)
            .await
    }

    /// `get_order`, with transient failures retried within the call as `patience` allows.
    /// Returns the result and the text of each failed attempt (for the step's record).
    pub async fn get_order_patiently(
        &self,
        id: &str,
        patience: &Patience,
    ) -> (Result<Order, PocketError>, Vec<String>) {
        self.patiently("order", id, patience, || self.get_order(id))
            .await
    }

    /// `get_exchange`, retried as [`PocketClient::get_order_patiently`] is.
    pub async fn get_exchange_patiently(
        &self,
        id: &str,
        patience: &Patience,
    ) -> (Result<Exchange, PocketError>, Vec<String>) {
        self.patiently("exchange", id, patience, || self.get_exchange(id))
            .await
    }

    /// One read, retried while `patience` allows; returns the result and each failed attempt.
    async fn patiently<T, F, Fut>(
        &self,
        what: &str,
        id: &str,
        patience: &Patience,
        read: F,
    ) -> (Result<T, PocketError>, Vec<String>)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, PocketError>>,
    {
        let mut failed = Vec::new();
        let mut attempt = 1;
        let started = std::time::Instant::now();
        loop {
            match read().await {
                Ok(value) => return (Ok(value), failed),
                Err(e) => {
                    let wait = patience.next_wait(
                        attempt,
                        e.verdict(),
                        started.elapsed(),
                        self.call_timeout,
                    );
                    failed.push(format!("attempt {attempt}: {e}"));
                    let Some(wait) = wait else {
                        return (Err(e), failed);
                    };
                    tracing::warn!(%what, %id, attempt, error = %e, wait_ms = wait.as_millis() as u64, "reading from Pocket failed; trying again");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }

    pub async fn patch_order(&self, id: &str, patch: &OrderPatch) -> Result<Order, PocketError> {
        self.call(
            PocketCall::PatchOrder,
            &["v1", "orders", id],
            Some(patch.to_json()),
        )
        .await
    }

    pub async fn get_exchange(&self, id: &str) -> Result<Exchange, PocketError> {
        self.call(PocketCall::GetExchange, &["v1", "exchanges", id], None)
            .await
    }

    pub async fn patch_exchange(
        &self,
        id: &str,
        payout: &ExchangePayout,
    ) -> Result<Exchange, PocketError> {
        let call = match payout {
            ExchangePayout::Invoice(_) => PocketCall::PatchExchangeInvoice,
            ExchangePayout::Channel(_) => PocketCall::PatchExchangeChannel,
        };
        self.call(call, &["v1", "exchanges", id], Some(payout.to_json()))
            .await
    }

    /// The URL of `segments` under the base, each segment percent-encoded so that data (an id
    /// from a webhook) stays one segment: `/`, `?` and `#` cannot change the path or add a
    /// query. `.`, `..` and empty segments are refused: URL rules would drop or resolve them.
    fn url(&self, call: PocketCall, segments: &[&str]) -> Result<Url, PocketError> {
        if let Some(bad) = segments
            .iter()
            .find(|s| s.is_empty() || **s == "." || **s == "..")
        {
            return Err(PocketError::Invalid {
                call,
                reason: format!("\"{bad}\" is not an id"),
            });
        }
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| PocketError::Invalid {
                call,
                reason: format!("pocket.base_url {} cannot carry a path", self.base),
            })?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        call: PocketCall,
        segments: &[&str],
        body: Option<Value>,
    ) -> Result<T, PocketError> {
        let url = self.url(call, segments)?;
        let mut request = self.http.request(call.method(), url.clone()).header(
            "Authorization",
            format!("client_id {}", self.client_id.expose_secret()),
        );
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let transport = |e: reqwest::Error| {
            // Asked as for a write, the shared rule tells whether the request may have
            // reached Pocket; the table then decides what that means for this call.
            // reqwest's own text repeats the URL the error already names: its causes say why.
            let causes = match std::error::Error::source(&e) {
                Some(cause) => chain(cause),
                None => chain(&e),
            };
            let reason = if e.is_timeout() {
                format!(
                    "no whole answer within {}s ({causes})",
                    self.call_timeout.as_secs_f64(),
                )
            } else {
                causes
            };
            match crate::outcome::of_transport(&e, crate::outcome::Call::Write) {
                crate::outcome::Class::Permanent => PocketError::Invalid { call, reason },
                crate::outcome::Class::Transient { .. } => PocketError::Unreachable {
                    call,
                    url: url.to_string(),
                    reason,
                },
                crate::outcome::Class::Unknown => PocketError::NoAnswer {
                    call,
                    url: url.to_string(),
                    reason,
                },
            }
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let retry_after =
            crate::outcome::retry_after(response.headers(), crate::clock::system_now());
        let text = match response.text().await {
            Ok(text) => text,
            // An error status decides by itself; a success whose body broke off may or may
            // not have been applied.
            Err(e) if status.is_success() => return Err(transport(e)),
            Err(_) => String::new(),
        };
        if !status.is_success() {
            let (code, message) = match ApiCode::from_body(&text) {
                Some((code, message)) => (Some(code), message),
                None if status == StatusCode::UNAUTHORIZED => {
                    (None, Some("the client id was not accepted".into()))
                }
                None => (None, None),
            };
            return Err(PocketError::Api {
                call,
                status: status.as_u16(),
                code,
                message,
                body: text,
                retry_after,
            });
        }
        serde_json::from_str(&text).map_err(|e| PocketError::Decode {
            call,
            status: status.as_u16(),
            reason: e.to_string(),
            body: text,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> PocketClient {
        PocketClient::with_base(
            Url::parse(base).unwrap(),
            SecretString::from("id".to_string()),
        )
    }

    #[test]
    fn a_base_path_is_kept_with_or_without_its_trailing_slash() {
        for base in [
            "https://proxy.example/pocket",
            "https://proxy.example/pocket/",
        ] {
            let url = client(base)
                .url(PocketCall::GetExchange, &["v1", "exchanges", "ex_1"])
                .unwrap();
            assert_eq!(
                url.as_str(),
                "https://proxy.example/pocket/v1/exchanges/ex_1",
                "{base}"
            );
        }
        for base in ["https://api.example", "https://api.example/"] {
            let url = client(base)
                .url(PocketCall::GetOrder, &["v1", "orders", "o_1"])
                .unwrap();
            assert_eq!(url.as_str(), "https://api.example/v1/orders/o_1", "{base}");
        }
        let two = client("https://h.example/a/b/")
            .url(PocketCall::GetOrder, &["v1", "orders", "a/b?c"])
            .unwrap();
        assert_eq!(two.as_str(), "https://h.example/a/b/v1/orders/a%2Fb%3Fc");
    }

    /// Over HTTP: the request reaches the path under the prefix, and nothing else.
    #[tokio::test]
    async fn a_prefixed_base_reaches_the_server_under_its_prefix() {
        use std::sync::{Arc, Mutex};
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let record = Arc::clone(&seen);
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let record = Arc::clone(&record);
            async move {
                record.lock().unwrap().push(uri.path().to_string());
                (
                    axum::http::StatusCode::NOT_FOUND,
                    "{\"code\":\"NOT_FOUND\"}",
                )
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        for base in [
            format!("http://{addr}/pocket"),
            format!("http://{addr}/pocket/"),
        ] {
            let err = client(&base).get_exchange("ex_1").await.unwrap_err();
            assert_eq!(err.status(), Some(404), "{err}");
        }
        assert_eq!(
            *seen.lock().unwrap(),
            vec!["/pocket/v1/exchanges/ex_1", "/pocket/v1/exchanges/ex_1"]
        );
    }
}
