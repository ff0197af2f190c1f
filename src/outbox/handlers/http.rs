//! `http.post`: a JSON POST with an `Idempotency-Key` header, so a receiver that sees the same
//! delivery twice can apply it once.
//!
//! A webhook URL is often a secret (Slack, Telegram): no message from here may hold it. Errors
//! name the URL as `source::redact` shows it, reqwest's errors lose their URL, and a receiver's
//! answer is cleaned of the hidden parts before it is kept.

use std::time::Duration;

use serde_json::{Value, json};

use crate::outbox::HandlerError;
use crate::store::{ItemRow, NewItem};

pub const KIND: &str = "http";

/// The most of a response body kept as a step's output.
const MAX_BODY: usize = 64 * 1024;

/// `url_secrets` are the values `${…}` put into the URL: the payload keeps the URL as it may be
/// shown (`url_shown`) next to the one it is sent to, and only the shown one is ever printed.
pub fn item(
    key: String,
    run: Option<(i64, String)>,
    url: &str,
    url_secrets: &[String],
    body: Value,
    headers: &[(String, String)],
    timeout: Duration,
) -> NewItem {
    NewItem {
        kind: KIND.into(),
        key,
        payload: json!({
            "url": url,
            "url_shown": crate::source::redact::url(url, url_secrets),
            "json": body,
            "headers": headers.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
            "timeout_ms": timeout.as_millis() as u64,
        }),
        run,
    }
}

/// The URL of an http item as it may be shown (items queued before `url_shown` existed get the
/// generic redaction).
pub fn shown_url(payload: &Value) -> Option<String> {
    match (payload["url_shown"].as_str(), payload["url"].as_str()) {
        (Some(shown), _) => Some(shown.to_string()),
        (None, Some(url)) => Some(crate::source::redact::url(url, &[])),
        (None, None) => None,
    }
}

/// A transport error without the URL reqwest puts into its text, with its causes.
fn transport_text(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

pub async fn post(client: &reqwest::Client, item: &ItemRow) -> Result<Value, HandlerError> {
    let p = &item.payload;
    let target = p["url"]
        .as_str()
        .ok_or_else(|| HandlerError::permanent("the item has no URL"))?;
    // Every message below names the URL as it may be shown: the real one may carry a token.
    let url = shown_url(p).unwrap_or_default();
    let url = url.as_str();
    let timeout = Duration::from_millis(p["timeout_ms"].as_u64().unwrap_or(10_000));
    let mut request = client
        .post(target)
        .timeout(timeout)
        .header("Idempotency-Key", &item.key)
        .json(&p["json"]);
    if let Some(headers) = p["headers"].as_object() {
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str().unwrap_or_default());
        }
    }
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) if e.is_connect() => {
            return Err(HandlerError::transient(format!(
                "cannot connect to {url}: {}",
                transport_text(e)
            )));
        }
        Err(e) if e.is_timeout() => {
            return Err(HandlerError::Unknown(format!(
                "no answer from {url} within {}s: the request may have been applied",
                timeout.as_secs()
            )));
        }
        Err(e) if e.is_builder() => {
            return Err(HandlerError::permanent(format!(
                "cannot build the request to {url}: {}",
                transport_text(e)
            )));
        }
        Err(e) => {
            return Err(HandlerError::Unknown(format!(
                "the request to {url} failed midway: {}",
                transport_text(e)
            )));
        }
    };
    let status = response.status();
    let retry_after = crate::outcome::retry_after(response.headers(), crate::clock::system_now());
    let text = response.text().await.unwrap_or_default();
    // A receiver may echo the request line back: its answer is shown with the URL hidden too.
    let snippet =
        crate::source::redact::in_text(&text.chars().take(300).collect::<String>(), target, url);
    let code = status.as_u16();
    if status.is_success() {
        let body = serde_json::from_str::<Value>(&text)
            .unwrap_or_else(|_| Value::String(text.chars().take(MAX_BODY).collect()));
        return Ok(json!({ "status": code, "body": body }));
    }
    let message = format!("{url} answered {status}: {snippet}");
    let class =
        crate::outcome::of_status(code, retry_after).unwrap_or(crate::outcome::Class::Permanent);
    Err(HandlerError::from_class(class, message, Some(code)))
}
