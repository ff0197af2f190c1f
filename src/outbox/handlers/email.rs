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

use lettre::message::header::ContentType;
use lettre::message::{Attachment, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::config::{EmailConfig, EmailTransport};
use crate::outbox::HandlerError;
use crate::outcome::Class;

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

    pub async fn send(&self, payload: &Value) -> Result<Value, HandlerError> {
        let message_id = payload["message_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let message = build(payload).map_err(HandlerError::permanent)?;
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

fn build(payload: &Value) -> Result<Message, String> {
    let field = |name: &str| {
        payload[name]
            .as_str()
            .ok_or_else(|| format!("the email has no {name}"))
    };
    let mut builder = Message::builder()
        .from(
            field("from")?
                .parse()
                .map_err(|e| format!("bad sender: {e}"))?,
        )
        .subject(field("subject")?)
        .message_id(Some(field("message_id")?.to_string()));
    for to in payload["to"].as_array().into_iter().flatten() {
        let to = to.as_str().unwrap_or_default();
        builder = builder.to(to.parse().map_err(|e| format!("bad recipient {to}: {e}"))?);
    }
    let body = field("body")?.to_string();
    let attachments = payload["attachments"].as_array().filter(|a| !a.is_empty());
    let Some(attachments) = attachments else {
        return builder
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| format!("cannot build the email: {e}"));
    };
    let mut parts = MultiPart::mixed().singlepart(SinglePart::plain(body));
    for a in attachments {
        let name = a["filename"].as_str().unwrap_or("attachment").to_string();
        let kind = ContentType::parse(
            a["content_type"]
                .as_str()
                .unwrap_or("application/octet-stream"),
        )
        .map_err(|e| format!("attachment {name}: {e}"))?;
        let data = {
            use bitcoin::base64::Engine;
            bitcoin::base64::engine::general_purpose::STANDARD
                .decode(a["base64"].as_str().unwrap_or_default())
                .map_err(|e| format!("attachment {name}: {e}"))?
        };
        parts = parts.singlepart(Attachment::new(name).body(data, kind));
    }
    builder
        .multipart(parts)
        .map_err(|e| format!("cannot build the email: {e}"))
}
