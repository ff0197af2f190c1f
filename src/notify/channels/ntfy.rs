//! ntfy: a message POSTed to the topic URL, the body as the message, `Title`, `Priority` and
//! `Tags` headers, `Authorization: Bearer` with the access token. It never shows the topic URL
//! (on a public server the topic is the password) or the token.
//!
//! Outcomes of a publish:
//!
//! | answer                                   | class                                  |
//! |------------------------------------------|----------------------------------------|
//! | 2xx                                      | done                                   |
//! | 429 (rate or message quota), `Retry-After` honoured | transient                   |
//! | 408, 425, 5xx                            | transient                              |
//! | 401, 403 (token refused, topic reserved) | permanent: the token or topic needs a change |
//! | any other 4xx (400 bad header, 413 too large) | permanent                         |
//! | refused connection, DNS                  | transient                              |
//! | no complete answer after sending         | unknown (sending again may repeat it)  |

use reqwest::header::{AUTHORIZATION, HeaderValue};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::{ChannelMessage, DELIVERY_TIMEOUT, target, transport_error, truncated};
use crate::config::NotifyTarget;
use crate::outbox::{Effect, HandlerError, Handlers};
use crate::outcome::{Class, of_status};
use crate::store::ItemRow;

/// ntfy turns a longer message into an attachment (its default `message-size-limit`).
const MAX_MESSAGE: usize = 4096;

pub struct NtfyEffect;

impl Effect for NtfyEffect {
    const KIND: &'static str = "notify.ntfy";
    type Payload = ChannelMessage;

    async fn handle(
        h: &Handlers,
        _item: &ItemRow,
        payload: ChannelMessage,
    ) -> Result<Value, HandlerError> {
        let NotifyTarget::Ntfy {
            url,
            token,
            priority,
        } = target(h, &payload.target)?
        else {
            return Err(HandlerError::permanent(format!(
                "the notification target `{}` is not an ntfy target any more",
                payload.target
            )));
        };
        let what = format!("ntfy target `{}`", payload.target);
        let mut request = h
            .http
            .post(url.clone())
            .timeout(DELIVERY_TIMEOUT)
            .header("Tags", tags(&payload.event_type))
            .body(truncated(&payload.message, MAX_MESSAGE));
        if !payload.title.is_empty() {
            request = request.header("Title", header_text(&payload.title));
        }
        if let Some(p) = priority {
            request = request.header("Priority", p.to_string());
        }
        if let Some(token) = token {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
                .map_err(|_| {
                    HandlerError::permanent(format!(
                        "{what}: the token cannot be sent in a header (it holds characters a header cannot)"
                    ))
                })?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(&what, e))?;
        let status = response.status().as_u16();
        let retry_after =
            crate::outcome::retry_after(response.headers(), crate::clock::system_now());
        if response.status().is_success() {
            let body: Value = response.json().await.unwrap_or(Value::Null);
            return Ok(json!({ "status": status, "ntfy_id": body["id"] }));
        }
        Err(HandlerError::from_class(
            class(status, retry_after),
            format!("{what} answered {status}{}", advice(status)),
            Some(status),
        ))
    }
}

/// The table in this module's header, in code.
pub fn class(status: u16, retry_after: Option<std::time::Duration>) -> Class {
    of_status(status, retry_after).unwrap_or(Class::Permanent)
}

fn advice(status: u16) -> &'static str {
    match status {
        401 | 403 => {
            ": the token was refused or the topic is reserved for others; check notify's token and topic"
        }
        413 => ": the message is too large for this server",
        429 => ": too many messages; sending again later",
        _ => "",
    }
}

/// `alert.dead_letter` → `warning,dead_letter` (ntfy shows the tag `warning` as an emoji).
fn tags(event_type: &str) -> String {
    match event_type.strip_prefix("alert.") {
        Some(kind) => format!("warning,{kind}"),
        None => "satflow".to_string(),
    }
}

/// A header value for any text: as is when it is printable ASCII, else as an RFC 2047 encoded
/// word (`=?UTF-8?B?…?=`), which ntfy decodes (since 2.4.0); line breaks become spaces.
pub fn header_text(text: &str) -> String {
    use bitcoin::base64::Engine;
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line
        .chars()
        .all(|c| c.is_ascii() && !c.is_ascii_control())
    {
        return one_line;
    }
    format!(
        "=?UTF-8?B?{}?=",
        bitcoin::base64::engine::general_purpose::STANDARD.encode(one_line.as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn statuses_are_classified_as_the_table_says() {
        let asked = Some(Duration::from_secs(7));
        assert_eq!(class(429, asked), Class::Transient { retry_after: asked });
        assert_eq!(class(503, None), Class::TRANSIENT);
        for status in [400, 401, 403, 404, 413] {
            assert_eq!(class(status, None), Class::Permanent, "{status}");
        }
    }

    #[test]
    fn titles_that_are_not_ascii_are_encoded_words() {
        assert_eq!(header_text("satflow: run failed"), "satflow: run failed");
        assert_eq!(header_text("a\nb"), "a b");
        assert_eq!(header_text("Zürich"), "=?UTF-8?B?WsO8cmljaA==?=");
        assert!(HeaderValue::from_str(&header_text("€ 100 → ₿")).is_ok());
        assert_eq!(tags("alert.dead_letter"), "warning,dead_letter");
        assert_eq!(tags("notify.message"), "satflow");
    }
}
