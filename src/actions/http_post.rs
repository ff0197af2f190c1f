//! `http.post`: POST a JSON document to a URL (a home-automation hook, a chat bot, a ledger),
//! through the outbox with an `Idempotency-Key` header, so a receiver that sees the same delivery
//! twice can apply it once; the step waits for the answer (`status`, `body`).
//!
//! A webhook URL is often a secret (Slack, Telegram): no message from here may hold it. Errors
//! name the URL as `source::redact` shows it, reqwest's errors lose their URL, and a receiver's
//! answer is cleaned of the hidden parts before it is kept.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use super::read::ActionReader;
use super::{ActionStep, Param, StepCx, StepOutcome};
use crate::outbox::{Effect, HandlerError, Handlers};
use crate::source::reader::{describe, string, to_json};
use crate::source::{Kind, MapReader, Node};
use crate::domain::HumanDuration;
use crate::store::{ItemRow, NewItem};
use crate::expr::{self, render};

/// The outbox kind of a POST.
pub const KIND: &str = "http";

/// The most of a response body kept as a step's output.
const MAX_BODY: usize = 64 * 1024;

/// How long a POST may take when its row does not say (rows written before `timeout_ms`).
const DEFAULT_TIMEOUT_MS: u64 = 10_000;

#[derive(Debug, Clone)]
pub struct HttpPost {
    pub url: Param<Url>,
    /// The values `${…}` put into the URL (tokens, often): never shown, see `source::redact`.
    pub url_secrets: Vec<String>,
    /// The body; string values may be templates.
    pub json: Value,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
}

impl ActionStep for HttpPost {
    const NAME: &'static str = "http.post";
    const OUTPUTS: &'static [&'static str] = &["status", "body"];

    fn read(r: &mut ActionReader<'_, '_>, m: &mut MapReader<'_>) -> Option<Self> {
        let url_node = m.required(
            "url",
            "write where to POST, e.g. url: https://hooks.example.com/satflow",
            r.ctx,
        );
        // What `${…}` put into the URL: hidden wherever the URL is shown.
        let url_secrets = url_node
            .and_then(|n| n.scalar())
            .map(|s| s.expanded.clone())
            .unwrap_or_default();
        let url = url_node.and_then(|n| {
            r.param(n, "url", |s| match Url::parse(s) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(u),
                _ => Err(format!(
                    "{} is not an http(s) URL; write e.g. https://example.com/hook",
                    describe(s)
                )),
            })
        });
        let json = match m.get("json") {
            Some(n) => {
                let json = to_json(n);
                let mut ok = true;
                check_json_templates(r, n, &mut ok);
                ok.then_some(json)
            }
            None => Some(Value::Object(Default::default())),
        };
        let headers = match m.get("headers") {
            None => Some(Vec::new()),
            Some(n) => match &n.kind {
                Kind::Map(entries) => {
                    let mut ok = true;
                    let mut headers = Vec::new();
                    for (k, v) in entries {
                        let Some(name) = k.scalar().map(|s| s.raw.clone()) else {
                            continue;
                        };
                        let field = r.field(&format!("headers.{name}"));
                        if !is_header_name(&name) {
                            r.ctx.error(
                                k.pos,
                                format!("{field}: {} is not an HTTP header name; use letters, digits and `-`, e.g. Authorization or X-Api-Key", describe(&name)),
                            );
                            ok = false;
                            continue;
                        }
                        match string(v, &field, r.ctx) {
                            // A line break would end the header and start another one (header
                            // injection); other control characters are refused by HTTP itr.
                            Some(value)
                                if value.chars().any(|c| {
                                    ((c as u32) < 0x20 && c != '\t') || c as u32 == 0x7f
                                }) =>
                            {
                                r.ctx.error(
                                    v.pos,
                                    format!("{field}: the value holds a line break or another control character, which would end the header and start another one; write it on one line"),
                                );
                                ok = false;
                            }
                            Some(value) => headers.push((name, value)),
                            None => ok = false,
                        }
                    }
                    ok.then_some(headers)
                }
                _ => {
                    r.ctx.error(
                        n.pos,
                        format!(
                            "{}: expected a mapping of header names to values",
                            r.field("headers")
                        ),
                    );
                    None
                }
            },
        };
        let timeout = match m.get("timeout") {
            None => Some(Duration::from_secs(10)),
            Some(n) => {
                let field = r.field("timeout");
                string(n, &field, r.ctx).and_then(|t| match t.parse::<HumanDuration>() {
                    Ok(d) if !d.0.is_zero() && d.0 <= Duration::from_secs(120) => Some(d.0),
                    Ok(_) => {
                        r.ctx.error(
                            n.pos,
                            format!(
                                "{field}: {} is out of range; accepted: more than 0, at most 2m",
                                describe(&t)
                            ),
                        );
                        None
                    }
                    Err(e) => {
                        r.ctx.error(n.pos, format!("{field}: {e}"));
                        None
                    }
                })
            }
        };
        Some(HttpPost {
            url: url?,
            url_secrets,
            json: json?,
            headers: headers?,
            timeout: timeout?,
        })
    }

    async fn perform(&self, cx: &StepCx<'_>) -> StepOutcome {
        let url = match cx.param(&self.url, |s| Url::parse(s).map_err(|e| e.to_string())) {
            Ok(url) => url,
            Err(e) => return StepOutcome::failed(format!("url: {e}")),
        };
        let body = match render_json(cx.env, &self.json, cx.ctx) {
            Ok(body) => body,
            Err(e) => return StepOutcome::failed(format!("json: {e}")),
        };
        match item(
            cx.key(),
            cx.waiter(),
            url.as_str(),
            &self.url_secrets,
            body,
            &self.headers,
            self.timeout,
        ) {
            Ok(item) => StepOutcome::waiting(item),
            Err(e) => StepOutcome::failed(format!("cannot write the POST: {e}")),
        }
    }
}

/// What `steps.<id>` holds after the POST was answered.
fn output(status: u16, body: Value) -> Value {
    serde_json::json!({ "status": status, "body": body })
}

/// Compiles every templated string inside a `json:` value.
fn check_json_templates(r: &mut ActionReader<'_, '_>, node: &Node, ok: &mut bool) {
    match &node.kind {
        Kind::Scalar(s) if s.is_template() => {
            if let Err(e) = expr::check_template(r.env, &s.value, &r.scope) {
                r.ctx
                    .error(node.pos, format!("{}: {e}", r.field("json")));
                *ok = false;
            }
        }
        Kind::Seq(items) => items.iter().for_each(|n| check_json_templates(r, n, ok)),
        Kind::Map(entries) => entries
            .iter()
            .for_each(|(_, v)| check_json_templates(r, v, ok)),
        _ => {}
    }
}

/// An HTTP header name (RFC 9110 token characters).
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
}

/// Renders every templated string inside a JSON value.
fn render_json(
    env: &minijinja::Environment<'_>,
    value: &Value,
    ctx: &Value,
) -> Result<Value, String> {
    Ok(match value {
        Value::String(s) if s.contains("{{") || s.contains("{%") => {
            Value::String(render(env, s, ctx)?)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| render_json(env, v, ctx))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_json(env, v, ctx)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// The payload of an `http` item, as stored since the first version (`url_shown` came later).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpPayload {
    /// Where it is sent: may hold a token, never shown.
    pub url: String,
    /// The URL as it may be shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_shown: Option<String>,
    #[serde(default)]
    pub json: Value,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

impl HttpPayload {
    /// The URL as it may be shown (items queued before `url_shown` existed get the generic
    /// redaction).
    pub fn shown_url(&self) -> String {
        match &self.url_shown {
            Some(shown) => shown.clone(),
            None => crate::source::redact::url(&self.url, &[]),
        }
    }
}

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
) -> Result<NewItem, serde_json::Error> {
    let payload = HttpPayload {
        url: url.to_string(),
        url_shown: Some(crate::source::redact::url(url, url_secrets)),
        json: body,
        headers: headers.iter().cloned().collect(),
        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
    };
    HttpEffect::item(key, run, &payload)
}

/// The URL of a stored http item as it may be shown, if it has one.
pub fn shown_url(payload: &Value) -> Option<String> {
    HttpEffect::decode(payload).ok().map(|p| p.shown_url())
}

/// The outbox side: the POST itself.
pub struct HttpEffect;

impl Effect for HttpEffect {
    const KIND: &'static str = KIND;
    type Payload = HttpPayload;

    async fn handle(h: &Handlers, item: &ItemRow, payload: HttpPayload) -> Result<Value, HandlerError> {
        post(&h.http, &item.key, &payload).await
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

/// The POST: `key` travels as the `Idempotency-Key` header.
pub async fn post(
    client: &reqwest::Client,
    key: &str,
    p: &HttpPayload,
) -> Result<Value, HandlerError> {
    let target = p.url.as_str();
    // Every message below names the URL as it may be shown: the real one may carry a token.
    let url = p.shown_url();
    let url = url.as_str();
    let timeout = Duration::from_millis(p.timeout_ms);
    let mut request = client
        .post(target)
        .timeout(timeout)
        .header("Idempotency-Key", key)
        .json(&p.json);
    for (name, value) in &p.headers {
        request = request.header(name.as_str(), value.as_str());
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
        return Ok(output(code, body));
    }
    let message = format!("{url} answered {status}: {snippet}");
    let class =
        crate::outcome::of_status(code, retry_after).unwrap_or(crate::outcome::Class::Permanent);
    Err(HandlerError::from_class(class, message, Some(code)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_payload_in_todays_shape_decodes_and_is_written_back_the_same() {
        let stored = json!({
            "url": "https://hooks.example.com/T0KEN/satflow",
            "url_shown": "https://hooks.example.com/…/satflow",
            "json": { "text": "bought" },
            "headers": { "X-Api-Key": "k" },
            "timeout_ms": 2500,
        });
        let p = HttpEffect::decode(&stored).unwrap();
        assert_eq!(p.url, "https://hooks.example.com/T0KEN/satflow");
        assert_eq!(p.shown_url(), "https://hooks.example.com/…/satflow");
        assert_eq!(p.headers.get("X-Api-Key").map(String::as_str), Some("k"));
        assert_eq!(p.timeout_ms, 2500);
        assert_eq!(serde_json::to_value(&p).unwrap(), stored);
        let written = item(
            "k".into(),
            None,
            "https://hooks.example.com/T0KEN/satflow",
            &["T0KEN".to_string()],
            json!({ "text": "bought" }),
            &[("X-Api-Key".to_string(), "k".to_string())],
            Duration::from_millis(2500),
        )
        .unwrap();
        assert_eq!(written.kind, "http");
        assert_eq!(
            written.payload.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["headers", "json", "timeout_ms", "url", "url_shown"]
        );
    }

    #[test]
    fn an_older_payload_without_the_shown_url_or_timeout_still_decodes() {
        let p = HttpEffect::decode(&json!({ "url": "https://example.com/hook", "json": {} })).unwrap();
        assert_eq!(p.timeout_ms, DEFAULT_TIMEOUT_MS);
        assert!(p.headers.is_empty());
        assert_eq!(p.shown_url(), crate::source::redact::url("https://example.com/hook", &[]));
        assert!(HttpEffect::decode(&json!({ "json": {} })).is_err(), "no URL, no POST");
    }
}
