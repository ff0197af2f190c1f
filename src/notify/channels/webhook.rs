//! The generic webhook, in the Standard Webhooks convention (standardwebhooks.com): a JSON
//! body `{type, timestamp, data}`, and the headers `webhook-id` (the same on every attempt, so
//! a receiver applies it once), `webhook-timestamp` (this attempt's, in seconds) and
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, keyed by the base64
//! part of the `whsec_…` secret. It never shows the secret or the URL's path.
//!
//! Outcomes of a delivery:
//!
//! | answer                                | class                                       |
//! |---------------------------------------|---------------------------------------------|
//! | 2xx                                   | done                                        |
//! | 429 (`Retry-After` honoured), 408, 425, 5xx | transient                             |
//! | 401, 403 (signature refused), other 4xx | permanent                                  |
//! | refused connection, DNS               | transient                                   |
//! | no complete answer after sending      | unknown; sent again with the same webhook-id, so the receiver can drop the copy |

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{ChannelMessage, DELIVERY_TIMEOUT, target, transport_error};
use crate::config::NotifyTarget;
use crate::outbox::{Effect, HandlerError, Handlers};
use crate::outcome::{Class, of_status};
use crate::store::ItemRow;

pub struct WebhookEffect;

impl Effect for WebhookEffect {
    const KIND: &'static str = "notify.webhook";
    type Payload = ChannelMessage;

    async fn handle(
        h: &Handlers,
        _item: &ItemRow,
        payload: ChannelMessage,
    ) -> Result<Value, HandlerError> {
        let NotifyTarget::Webhook { url, secret } = target(h, &payload.target)? else {
            return Err(HandlerError::permanent(format!(
                "the notification target `{}` is not a webhook target any more",
                payload.target
            )));
        };
        let what = format!("webhook target `{}`", payload.target);
        let key = crate::config::webhook_key(secret)
            .map_err(|problem| HandlerError::permanent(format!("{what}: the secret {problem}")))?;
        let body = serde_json::to_vec(&body(&payload))
            .map_err(|e| HandlerError::permanent(format!("{what}: {e}")))?;
        // The receiver compares the timestamp with its own clock (to refuse replays), so it is
        // the machine's time of this attempt, whatever clock the engine runs on.
        let timestamp = crate::clock::system_now().timestamp();
        let signature = sign(&key, &payload.id, timestamp, &body);
        let response = h
            .http
            .post(url.clone())
            .timeout(DELIVERY_TIMEOUT)
            .header("content-type", "application/json")
            .header("webhook-id", &payload.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| transport_error(&what, e))?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Ok(json!({ "status": status, "webhook_id": payload.id }));
        }
        let retry_after =
            crate::outcome::retry_after(response.headers(), crate::clock::system_now());
        let advice = match status {
            401 | 403 => ": the receiver refused the signature; check that it has the same secret",
            _ => "",
        };
        Err(HandlerError::from_class(
            class(status, retry_after),
            format!("{what} answered {status}{advice}"),
            Some(status),
        ))
    }
}

/// The table in this module's header, in code.
pub fn class(status: u16, retry_after: Option<std::time::Duration>) -> Class {
    of_status(status, retry_after).unwrap_or(Class::Permanent)
}

/// The JSON body: `type`, `timestamp` (when it was decided) and `data`.
pub fn body(message: &ChannelMessage) -> Value {
    json!({
        "type": message.event_type,
        "timestamp": message.timestamp,
        "data": {
            "title": message.title,
            "message": message.message,
            "details": message.data,
        },
    })
}

/// `v1,` and the base64 of HMAC-SHA256(`key`, "`id`.`timestamp`.`body`").
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    use bitcoin::base64::Engine;
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    format!(
        "v1,{}",
        bitcoin::base64::engine::general_purpose::STANDARD.encode(tag)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    #[test]
    fn signatures_match_the_standard_webhooks_test_vector() {
        // The vector the Standard Webhooks reference libraries test against (e.g. the
        // standard-webhooks repository's libraries, and Svix's `testSignFunctionWorks`).
        let secret = SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let key = crate::config::webhook_key(&secret).unwrap();
        assert_eq!(
            sign(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secrets_must_be_whsec_base64_of_24_to_64_bytes() {
        for (secret, problem) in [
            (
                "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "does not start with `whsec_`",
            ),
            ("whsec_not base64!", "not base64"),
            ("whsec_c2hvcnQ=", "5 bytes long"),
        ] {
            let err = crate::config::webhook_key(&SecretString::from(secret)).unwrap_err();
            assert!(err.contains(problem), "{secret}: {err}");
            assert!(!err.contains(secret), "{err}");
        }
        assert_eq!(class(429, None), Class::TRANSIENT);
        assert_eq!(class(401, None), Class::Permanent);
    }
}
