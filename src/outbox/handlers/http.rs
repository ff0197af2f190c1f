//! `http.post`: a JSON POST with an `Idempotency-Key` header, so a receiver that sees the same
//! delivery twice can apply it once.

use std::time::Duration;

use serde_json::{Value, json};

use crate::outbox::HandlerError;
use crate::outbox::backoff::parse_retry_after;
use crate::store::{ItemRow, NewItem};

pub const KIND: &str = "http";

/// The most of a response body kept as a step's output.
const MAX_BODY: usize = 64 * 1024;

pub fn item(
    key: String,
    run: Option<(i64, String)>,
    url: &str,
    body: Value,
    headers: &[(String, String)],
    timeout: Duration,
) -> NewItem {
    NewItem {
        kind: KIND.into(),
        key,
        payload: json!({
            "url": url,
            "json": body,
            "headers": headers.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
            "timeout_ms": timeout.as_millis() as u64,
        }),
        run,
    }
}

pub async fn post(client: &reqwest::Client, item: &ItemRow) -> Result<Value, HandlerError> {
    let p = &item.payload;
    let url = p["url"]
        .as_str()
        .ok_or_else(|| HandlerError::permanent("the item has no URL"))?;
    let timeout = Duration::from_millis(p["timeout_ms"].as_u64().unwrap_or(10_000));
    let mut request = client
        .post(url)
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
                "cannot connect to {url}: {e}"
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
                "cannot build the request to {url}: {e}"
            )));
        }
        Err(e) => {
            return Err(HandlerError::Unknown(format!(
                "the request to {url} failed midway: {e}"
            )));
        }
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
    let text = response.text().await.unwrap_or_default();
    let snippet: String = text.chars().take(300).collect();
    let code = status.as_u16();
    if status.is_success() {
        let body = serde_json::from_str::<Value>(&text)
            .unwrap_or_else(|_| Value::String(text.chars().take(MAX_BODY).collect()));
        return Ok(json!({ "status": code, "body": body }));
    }
    let message = format!("{url} answered {status}: {snippet}");
    if matches!(code, 408 | 425 | 429) || status.is_server_error() {
        Err(HandlerError::Transient {
            message,
            retry_after,
            http_status: Some(code),
        })
    } else {
        Err(HandlerError::Permanent {
            message,
            http_status: Some(code),
        })
    }
}
