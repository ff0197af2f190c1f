//! How an answer from the outside world is classified — the one rule every client follows
//! (DESIGN.md, "Outcomes of calls to the outside"): the HTTP status first, then the transport
//! error's own predicates, and only then a documented code in the body.
//!
//! - connection refused, DNS, a connect timeout, 408, 425, 429 and every 5xx: **transient**,
//!   whatever the body says (an HTML page from a proxy included), with `Retry-After` honoured;
//! - a timeout or a broken connection after the request may have been received: **unknown** for
//!   a call that changes something (reconcile before any retry), transient for a read;
//! - any other answer: for the caller to decide from the documented codes, else **permanent**;
//! - from a server trusted by a pinned certificate (the user's own node or Electrum server), a
//!   refused certificate: **permanent**, found by type ([`refused_certificate`]): the same
//!   certificate is refused on every attempt until someone changes the setting or the server.
//!
//! Nothing here looks at error text: outcomes are decided from types and statuses. This module
//! never performs a call and never decides what a documented code means for a provider; each
//! client does that next to its own table of outcomes.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// The longest `Retry-After` honoured: a server asking for more is treated as asking for this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// What a failed call means for whoever retries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Worth another try later; not before `retry_after` when the other side said so.
    Transient { retry_after: Option<Duration> },
    /// Fails the same way every time: a person has to change something.
    Permanent,
    /// The request may or may not have taken effect: read the provider's state before retrying.
    Unknown,
}

impl Class {
    pub const TRANSIENT: Class = Class::Transient { retry_after: None };
}

/// Whether a call changes something at the provider: only then is a lost answer "unknown".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Read,
    Write,
}

/// The class an HTTP status decides by itself: `Some` for the statuses that are transient
/// whatever the body says, `None` for the ones whose meaning the caller reads from the body.
pub fn of_status(status: u16, retry_after: Option<Duration>) -> Option<Class> {
    match status {
        408 | 425 | 429 | 500..=599 => Some(Class::Transient { retry_after }),
        _ => None,
    }
}

/// The class of a transport error, from reqwest's own predicates (never its text).
pub fn of_transport(error: &reqwest::Error, call: Call) -> Class {
    if error.is_builder() || error.is_redirect() {
        // The request could not be made as configured (a bad URL, a redirect loop): retrying
        // sends the same request.
        return Class::Permanent;
    }
    if error.is_connect() {
        // Nothing reached the other side (refused, DNS, TLS handshake, connect timeout).
        return Class::TRANSIENT;
    }
    match call {
        Call::Read => Class::TRANSIENT,
        // A timeout after connecting, a connection cut mid-answer, a body that broke off: the
        // request may have been received and applied.
        Call::Write => Class::Unknown,
    }
}

/// The certificate problem rustls raised when a call failed because the other side's
/// certificate was refused (a pinned certificate or CA that does not vouch for it, or no
/// public authority that signed it), found by type among the error's causes; `None` for any
/// other failure.
///
/// `io::Error::source` skips the error an `io::Error` wraps (and TLS errors arrive as an
/// `io::Error` inside another one), so the walk looks into each `io::Error` itself.
pub fn refused_certificate<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::CertificateError> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(rustls::Error::InvalidCertificate(problem)) = e.downcast_ref::<rustls::Error>()
        {
            return Some(problem);
        }
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

/// `Retry-After` from a response's headers: delay-seconds or an HTTP date, capped at a day.
pub fn retry_after(headers: &reqwest::header::HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, now))
}

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3), capped at a day; a date in
/// the past means "now".
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.to_utc() - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// The error code (and message) in a JSON error body, wherever the provider puts it:
/// `{"code": …}`, `{"error": "…"}`, or nested as `{"error": {"code": …, "message": …}}`.
pub fn body_code(body: &str) -> Option<(String, Option<String>)> {
    let v: Value = serde_json::from_str(body).ok()?;
    let text = |v: &Value| v.as_str().map(str::to_string);
    let (code, message) = match &v["error"] {
        Value::Object(_) => (text(&v["error"]["code"]), text(&v["error"]["message"])),
        Value::String(code) => (Some(code.clone()), text(&v["message"])),
        _ => (None, text(&v["message"])),
    };
    let code = text(&v["code"]).or(code)?;
    Some((code, message))
}

/// Why a handler did not complete its item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// Worth another try later: timeouts before sending, connection refused, 5xx, 429.
    #[error("{message}")]
    Transient {
        message: String,
        /// What the other side asked for (`Retry-After`).
        retry_after: Option<Duration>,
        http_status: Option<u16>,
    },
    /// Will fail the same way every time: refused input, most 4xx.
    #[error("{message}")]
    Permanent {
        message: String,
        http_status: Option<u16>,
    },
    /// The request may or may not have taken effect (a timeout after sending): reconcile
    /// before any retry.
    #[error("{0}")]
    Unknown(String),
}

impl HandlerError {
    pub fn transient(message: impl Into<String>) -> Self {
        HandlerError::Transient {
            message: message.into(),
            retry_after: None,
            http_status: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        HandlerError::Permanent {
            message: message.into(),
            http_status: None,
        }
    }

    /// The error a failed call of class `class` becomes in the outbox.
    pub fn from_class(class: Class, message: impl Into<String>, http_status: Option<u16>) -> Self {
        let message = message.into();
        match class {
            Class::Transient { retry_after } => HandlerError::Transient {
                message,
                retry_after,
                http_status,
            },
            Class::Permanent => HandlerError::Permanent {
                message,
                http_status,
            },
            Class::Unknown => HandlerError::Unknown(message),
        }
    }

    pub fn http_status(&self) -> Option<u16> {
        match self {
            HandlerError::Transient { http_status, .. }
            | HandlerError::Permanent { http_status, .. } => *http_status,
            HandlerError::Unknown(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_statuses_are_decided_before_the_body() {
        for status in [408, 425, 429, 500, 502, 503, 504, 599] {
            assert_eq!(of_status(status, None), Some(Class::TRANSIENT), "{status}");
        }
        let asked = Some(Duration::from_secs(6));
        assert_eq!(
            of_status(429, asked),
            Some(Class::Transient { retry_after: asked })
        );
        for status in [400, 401, 403, 404, 409, 422, 451] {
            assert_eq!(of_status(status, None), None, "{status}");
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates_and_is_capped() {
        let now = DateTime::parse_from_rfc3339("2027-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(parse_retry_after(" 6 ", now), Some(Duration::from_secs(6)));
        assert_eq!(
            parse_retry_after("Fri, 01 Jan 2027 00:01:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Thu, 31 Dec 2026 23:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("99999999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn a_refused_certificate_is_found_inside_nested_io_errors_by_type() {
        use std::io;
        let refused = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        // As tokio-rustls and hyper hand it on: an io::Error inside an io::Error.
        let nested = io::Error::other(io::Error::new(io::ErrorKind::InvalidData, refused));
        assert_eq!(
            refused_certificate(&nested),
            Some(&rustls::CertificateError::UnknownIssuer)
        );
        // Another TLS failure, and an io::Error whose text names a certificate, are not.
        let alert = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure),
        );
        assert_eq!(refused_certificate(&alert), None);
        let words = io::Error::other("invalid peer certificate: UnknownIssuer");
        assert_eq!(refused_certificate(&words), None);
    }

    #[test]
    fn codes_are_read_at_the_top_and_nested() {
        assert_eq!(
            body_code(r#"{"code":"in_progress"}"#),
            Some(("in_progress".into(), None))
        );
        assert_eq!(
            body_code(r#"{"error":"something_new","message":"hm"}"#),
            Some(("something_new".into(), Some("hm".into())))
        );
        assert_eq!(
            body_code(r#"{"error":{"code":"already_completed","message":"paid"}}"#),
            Some(("already_completed".into(), Some("paid".into())))
        );
        assert_eq!(body_code("<html><body>502 Bad Gateway</body></html>"), None);
        assert_eq!(body_code(r#"{"message":"no code"}"#), None);
        assert_eq!(body_code(r#"{"error":{"message":"no code"}}"#), None);
    }
}
