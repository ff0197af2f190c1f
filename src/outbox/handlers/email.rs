//! Sending composed emails: over SMTP (lettre, rustls), or as `.eml` files into a folder.
//! The file of an email is named after its Message-ID, so a resend overwrites, never doubles.
//!
//! Outcomes of an SMTP delivery, written once in [`smtp_class`] from lettre's own predicates
//! (never its text):
//!
//! | failure                                                   | class      |
//! |-----------------------------------------------------------|------------|
//! | a 4xx reply (421 busy, 450 mailbox busy, 451, 452)         | transient  |
//! | a 5xx reply (550 no such mailbox, 552, 553, 554)           | permanent  |
//! | refused or broken connection, timeout, TLS, unreadable reply | transient |
//! | a server that stops answering (bounded here: lettre bounds only the connect) | transient |
//! | lettre refused the message itself (no recipient, …)        | permanent  |
//!
//! A resend after a lost answer is safe enough: the same Message-ID, at worst a second copy.

use std::path::PathBuf;

use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::config::{EmailConfig, EmailTransport};
use crate::outbox::{Effect, HandlerError, Handlers};
use crate::outcome::Class;
use crate::store::ItemRow;

pub use crate::notify::mime::{Attachment, EmailPayload};

/// The outbox side of an email: sending it.
pub struct EmailEffect;

impl Effect for EmailEffect {
    const KIND: &'static str = crate::notify::email::KIND;
    type Payload = EmailPayload;

    async fn handle(
        h: &Handlers,
        _item: &ItemRow,
        payload: EmailPayload,
    ) -> Result<Value, HandlerError> {
        match &h.email {
            Some(sender) => sender.deliver(&payload).await,
            None => Err(HandlerError::permanent(
                "satflow.yaml has no `email` section any more, so this email cannot be sent",
            )),
        }
    }
}

/// Whether a stored item is a built-in alert (an email, or a message to another channel).
pub fn is_alert(kind: &str, payload: &Value) -> bool {
    (kind == EmailEffect::KIND && EmailEffect::decode(payload).is_ok_and(|p| p.alert))
        || crate::notify::channels::is_alert(kind, payload)
}

/// How long one SMTP delivery may take: shorter than the outbox's bound on a handler under the
/// default lease (3/4 of 30 s).
pub const SMTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// The class of a failed SMTP delivery: the table in this module's header, in code.
pub fn smtp_class(e: &lettre::transport::smtp::Error) -> Class {
    if e.is_permanent() || e.is_client() {
        Class::Permanent
    } else {
        // `is_transient()` (a 4xx reply) and everything before a reply: worth another try.
        Class::TRANSIENT
    }
}

pub struct EmailSender {
    transport: Transport,
    timeout: std::time::Duration,
}

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Dir(PathBuf),
}

impl EmailSender {
    pub fn new(config: &EmailConfig) -> Result<Self, String> {
        EmailSender::with_timeout(config, SMTP_TIMEOUT)
    }

    /// With another bound on one SMTP delivery.
    pub fn with_timeout(
        config: &EmailConfig,
        timeout: std::time::Duration,
    ) -> Result<Self, String> {
        let transport = match &config.transport {
            EmailTransport::Smtp(url) => Transport::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
                    // Never show the URL: it holds the password.
                    .map_err(|e| {
                        format!(
                            "email.smtp_url cannot be used: {}",
                            e.to_string().replace(url.expose_secret(), "…")
                        )
                    })?
                    .timeout(Some(timeout))
                    .build(),
            ),
            EmailTransport::Dir(dir) => Transport::Dir(dir.clone()),
        };
        Ok(EmailSender { transport, timeout })
    }

    /// Sends a stored `email` payload.
    pub async fn send(&self, payload: &Value) -> Result<Value, HandlerError> {
        match EmailEffect::decode(payload) {
            Ok(email) => self.deliver(&email).await,
            Err(e) => Err(HandlerError::permanent(format!(
                "the email item cannot be read: {e}"
            ))),
        }
    }

    pub async fn deliver(&self, payload: &EmailPayload) -> Result<Value, HandlerError> {
        let message_id = payload.message_id.clone();
        let message = crate::notify::mime::build(payload).map_err(HandlerError::permanent)?;
        match &self.transport {
            // lettre bounds the connection, not a server that stops answering: the whole
            // delivery is bounded here.
            Transport::Smtp(smtp) => match tokio::time::timeout(self.timeout, smtp.send(message))
                .await
                .map_err(|_| {
                    // Like a broken connection: transient (a resend keeps the Message-ID).
                    HandlerError::from_class(
                        Class::TRANSIENT,
                        format!(
                            "no answer from the mail server within {} s",
                            self.timeout.as_secs_f64()
                        ),
                        None,
                    )
                })? {
                Ok(response) => Ok(
                    json!({ "message_id": message_id, "smtp_code": response.code().to_string() }),
                ),
                Err(e) => {
                    let code = e.status().map(|c| c.to_string());
                    let message = match (smtp_class(&e), &code) {
                        (Class::Permanent, Some(code)) => {
                            format!("the mail server refused the email ({code}): {e}")
                        }
                        (Class::Permanent, None) => format!("the email cannot be sent: {e}"),
                        (_, Some(code)) => {
                            format!("the mail server cannot take the email now ({code}): {e}")
                        }
                        (_, None) => format!("cannot send the email now: {e}"),
                    };
                    Err(HandlerError::from_class(smtp_class(&e), message, None))
                }
            },
            Transport::Dir(dir) => {
                let name: String = message_id
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '@'))
                    .collect();
                let path = dir.join(format!("{name}.eml"));
                let tmp = dir.join(format!(".{name}.eml.tmp"));
                // On a blocking thread, so a slow disk does not stall the runtime's worker; in one
                // go, so the temporary file is there no longer than before.
                let (dir, target, bytes) = (dir.clone(), path.clone(), message.formatted());
                let write = move || -> std::io::Result<()> {
                    std::fs::create_dir_all(&dir)?;
                    std::fs::write(&tmp, bytes)?;
                    std::fs::rename(&tmp, &target)
                };
                tokio::task::spawn_blocking(write)
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)))
                    .map_err(|e| {
                        HandlerError::transient(format!("cannot write {}: {e}", path.display()))
                    })?;
                Ok(json!({ "message_id": message_id, "file": path.display().to_string() }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_in_todays_shape_decodes_and_is_written_back_the_same() {
        let stored = json!({
            "from": "satflow <satflow@example.com>",
            "to": ["me@example.com"],
            "subject": "satflow: workflow dca failed",
            "body": "boom",
            "message_id": "<0123456789ab.satflow@example.com>",
            "alert": true,
            "attachments": [
                { "filename": "stacking.png", "content_type": "image/png", "base64": "iVBORw0K" }
            ],
        });
        let p = EmailEffect::decode(&stored).unwrap();
        assert_eq!(p.to, ["me@example.com"]);
        assert!(p.alert);
        assert_eq!(p.attachments[0].filename, "stacking.png");
        assert_eq!(serde_json::to_value(&p).unwrap(), stored);
        assert!(is_alert("email", &stored));
        assert!(!is_alert("http", &stored));
        let mut plain = stored.clone();
        plain.as_object_mut().unwrap().remove("attachments");
        plain.as_object_mut().unwrap().remove("alert");
        let p = EmailEffect::decode(&plain).unwrap();
        assert!(p.attachments.is_empty() && !p.alert);
        assert!(crate::notify::mime::build(&p).is_ok());
        plain.as_object_mut().unwrap().remove("message_id");
        assert!(EmailEffect::decode(&plain).is_err());
    }
}
