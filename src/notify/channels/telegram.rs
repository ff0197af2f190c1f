//! Telegram: `POST {api_url}/bot<token>/sendMessage` with `{chat_id, text}` (plain text, no
//! parse mode, so nothing in an alert is read as markup). The bot token is in the URL path:
//! no error from here may hold the URL (reqwest's errors are shown without it).
//!
//! Outcomes, from the HTTP status first and then the Bot API's documented body
//! (`{"ok":false,"error_code":…,"description":…,"parameters":{…}}`):
//!
//! | answer                                          | class                                   |
//! |-------------------------------------------------|-----------------------------------------|
//! | 200 `{"ok":true,"result":{"message_id":…}}`      | done                                    |
//! | 429, `parameters.retry_after` (else `Retry-After`) honoured | transient                    |
//! | 5xx, 408, 425                                   | transient                               |
//! | 400 with `parameters.migrate_to_chat_id`        | permanent: the group moved, its new id is named |
//! | 400 (chat not found, bad text), 401 (token refused), 403 (bot blocked or removed), 404 | permanent |
//! | refused connection, DNS                         | transient                               |
//! | no complete answer after sending                | unknown (the Bot API has no idempotency key: a resend may repeat the message) |

use std::time::Duration;

use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::{ChannelMessage, DELIVERY_TIMEOUT, target, transport_error, truncated};
use crate::config::NotifyTarget;
use crate::outbox::{Effect, HandlerError, Handlers};
use crate::outcome::{Class, MAX_RETRY_AFTER, of_status};
use crate::store::ItemRow;

/// The Bot API's limit on a message's text (in characters; bytes are a safe bound).
const MAX_TEXT: usize = 4096;

pub struct TelegramEffect;

impl Effect for TelegramEffect {
    const KIND: &'static str = "notify.telegram";
    type Payload = ChannelMessage;

    async fn handle(
        h: &Handlers,
        _item: &ItemRow,
        payload: ChannelMessage,
    ) -> Result<Value, HandlerError> {
        let NotifyTarget::Telegram {
            bot_token,
            chat_id,
            api_url,
        } = target(h, &payload.target)?
        else {
            return Err(HandlerError::permanent(format!(
                "the notification target `{}` is not a Telegram target any more",
                payload.target
            )));
        };
        let what = format!("Telegram target `{}`", payload.target);
        let base = api_url.as_str().trim_end_matches('/');
        let url = format!("{base}/bot{}/sendMessage", bot_token.expose_secret());
        let text = if payload.title.is_empty() {
            payload.message.clone()
        } else {
            format!("{}\n\n{}", payload.title, payload.message)
        };
        // A numeric id goes as a number, `@channel` as a string, as the Bot API documents.
        let chat: Value = chat_id
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::from(chat_id.as_str()));
        let response = h
            .http
            .post(url)
            .timeout(DELIVERY_TIMEOUT)
            .json(&json!({ "chat_id": chat, "text": truncated(&text, MAX_TEXT) }))
            .send()
            .await
            .map_err(|e| transport_error(&what, e))?;
        let status = response.status().as_u16();
        let header_retry =
            crate::outcome::retry_after(response.headers(), crate::clock::system_now());
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status == 200 && body["ok"] == Value::Bool(true) {
            return Ok(json!({ "message_id": body["result"]["message_id"] }));
        }
        let (class, message) = outcome(status, &body, header_retry);
        Err(HandlerError::from_class(
            class,
            format!("{what}: {message}"),
            Some(status),
        ))
    }
}

/// The table in this module's header, in code: the class of a failed answer and what to say.
pub fn outcome(status: u16, body: &Value, header_retry: Option<Duration>) -> (Class, String) {
    let description = body["description"]
        .as_str()
        .map(|d| truncated(d, 200))
        .unwrap_or_else(|| "no description".to_string());
    let asked = body["parameters"]["retry_after"]
        .as_u64()
        .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER))
        .or(header_retry);
    if let Some(class) = of_status(status, asked) {
        return (
            class,
            format!("the Bot API answered {status} ({description})"),
        );
    }
    if let Some(to) = body["parameters"]["migrate_to_chat_id"].as_i64() {
        return (
            Class::Permanent,
            format!("the group became a supergroup with the chat id {to}; write chat_id: {to}"),
        );
    }
    let advice = match status {
        401 => ": the bot token was refused; check notify's bot_token",
        403 => ": the bot cannot post to this chat (blocked, or not a member)",
        400 => ": check chat_id (the chat must have talked to the bot first)",
        _ => "",
    };
    (
        Class::Permanent,
        format!("the Bot API answered {status} ({description}){advice}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_the_body_is_honoured_before_the_header() {
        let body = json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 5", "parameters": {"retry_after": 5}});
        let (class, _) = outcome(429, &body, Some(Duration::from_secs(1)));
        assert_eq!(
            class,
            Class::Transient {
                retry_after: Some(Duration::from_secs(5))
            }
        );
        let (class, _) = outcome(429, &Value::Null, Some(Duration::from_secs(3)));
        assert_eq!(
            class,
            Class::Transient {
                retry_after: Some(Duration::from_secs(3))
            }
        );
        let (class, _) = outcome(502, &Value::Null, None);
        assert_eq!(class, Class::TRANSIENT);
    }

    #[test]
    fn refusals_are_permanent_and_a_migrated_group_names_its_new_id() {
        for status in [400, 401, 403, 404] {
            let body = json!({"ok": false, "error_code": status, "description": "Bad Request: chat not found"});
            assert_eq!(outcome(status, &body, None).0, Class::Permanent, "{status}");
        }
        let body = json!({"ok": false, "error_code": 400, "description": "Bad Request: group chat was upgraded to a supergroup chat", "parameters": {"migrate_to_chat_id": -1001234567890_i64}});
        let (class, message) = outcome(400, &body, None);
        assert_eq!(class, Class::Permanent);
        assert!(message.contains("chat_id: -1001234567890"), "{message}");
    }
}
