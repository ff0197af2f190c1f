//! Composing emails into outbox items, and the built-in alerts.
//!
//! An email is rendered when it is queued, so a retry sends exactly what was decided, and its
//! Message-ID is derived from the outbox key: a resend after a crash is recognisably the same
//! message. Composing never sends: sending is the outbox's email handler.

use bitcoin::hex::DisplayHex;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use lettre::message::Mailbox;
use minijinja::Environment;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::channels::{self, ChannelMessage, Fanout, healthcheck::Pinger};
use super::templates;
use crate::config::{Alert, ChannelKind, EMAIL_TARGET, EmailConfig};
use crate::store::NewItem;

/// The outbox kind of emails.
pub const KIND: &str = "email";

pub enum Content<'a> {
    Template(&'a str),
    Inline { subject: &'a str, body: &'a str },
}

#[derive(Clone)]
pub struct Mailer {
    from: Mailbox,
    to: Vec<Mailbox>,
    user_templates: BTreeMap<String, PathBuf>,
    /// The clock whose time is each email's `Date:` (the demo's, in the demo); without one,
    /// the time it is sent.
    clock: Option<std::sync::Arc<dyn crate::clock::Clock>>,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("user_templates", &self.user_templates)
            .finish_non_exhaustive()
    }
}

impl Mailer {
    pub fn new(config: &EmailConfig, user_templates: BTreeMap<String, PathBuf>) -> Self {
        Mailer {
            from: config.from.clone(),
            to: config.to.clone(),
            user_templates,
            clock: None,
        }
    }

    /// Dates the emails it composes by `clock`.
    pub fn with_clock(mut self, clock: std::sync::Arc<dyn crate::clock::Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Renders `content` with `ctx` into the outbox item `key`. `to` replaces the configured
    /// recipients; `alert` marks built-in alerts (a dead alert does not alert again).
    #[allow(clippy::too_many_arguments)]
    pub fn compose(
        &self,
        env: &Environment<'_>,
        key: String,
        content: Content<'_>,
        ctx: &Value,
        to: Option<Vec<Mailbox>>,
        alert: bool,
        run: Option<(i64, String)>,
    ) -> Result<NewItem, String> {
        let order_created = matches!(content, Content::Template("order_created"));
        let (ctx, qr) = with_payment_details(ctx);
        let ctx = &ctx;
        let (subject, body) = match content {
            Content::Inline { subject, body } => (subject.to_string(), body.to_string()),
            Content::Template(name) => {
                let t = templates::find(name, &self.user_templates)
                    .ok_or_else(|| format!("there is no email template `{name}`"))??;
                (t.subject, t.body)
            }
        };
        let render = |text: &str| crate::expr::render(env, text, ctx);
        let subject = render(&subject)?.trim().replace(['\r', '\n'], " ");
        let body = render(&body)?;
        let to = to
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| self.to.clone());
        let mut payload = json!({
            "from": self.from.to_string(),
            "to": to.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "subject": subject,
            "body": body,
            "message_id": message_id(&key, &self.from),
            "alert": alert,
        });
        if let Some(clock) = &self.clock {
            payload["date"] = json!(clock.now().to_rfc3339());
        }
        let mut item = NewItem {
            kind: KIND.into(),
            key,
            payload,
            run,
        };
        if order_created && let Some(png) = qr {
            attach(&mut item, PAYMENT_QR, "image/png", &png);
        }
        Ok(item)
    }
}

/// The file name of the payment QR code in the order-created email.
pub const PAYMENT_QR: &str = "payment-qr.png";

/// `ctx` with, in each step output that holds an order's bank details (a `pocket.order`
/// step's), `payment_text`: the details as `satflow order setup` prints them (IBAN in groups
/// of four, currency in capitals); and `payment_qr` where a payment QR code exists. Returns
/// the PNG of the first such code too.
fn with_payment_details(ctx: &Value) -> (Value, Option<Vec<u8>>) {
    use crate::pocket::payment::PaymentInstructions;
    let mut ctx = ctx.clone();
    let mut png = None;
    let Some(steps) = ctx.get_mut("steps").and_then(Value::as_object_mut) else {
        return (ctx, None);
    };
    for out in steps.values_mut() {
        if !out["creditor_reference"].is_string() {
            continue;
        }
        let method = json!({
            "currency": out["currency"],
            "creditor_name": out["creditor_name"],
            "creditor_iban": out["creditor_iban"],
            "creditor_bank_bic": out["creditor_bic"],
            "creditor_reference": out["creditor_reference"],
            "swiss_qr_bill_payload": out["swiss_qr_bill_payload"],
        });
        let Ok(instructions) = PaymentInstructions::from_payment_method(&method) else {
            continue;
        };
        out["payment_text"] = json!(instructions.render_text(None));
        if let Ok(Some(payload)) = instructions.qr_payload(None)
            && let Some(bytes) = qr_png_bytes(&payload)
        {
            out["payment_qr"] = json!(PAYMENT_QR);
            png.get_or_insert(bytes);
        }
    }
    (ctx, png)
}

/// The payment QR code as PNG bytes, drawn in memory as `order setup` draws its file. `None`
/// when it cannot be made; the email then has the text only.
fn qr_png_bytes(payload: &str) -> Option<Vec<u8>> {
    match crate::qr::png_bytes(payload) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            tracing::warn!(
                "cannot render the payment QR code for the email ({e}); it has the details as text"
            );
            None
        }
    }
}

/// Attaches `data` to a composed email.
pub fn attach(item: &mut NewItem, filename: &str, content_type: &str, data: &[u8]) {
    use bitcoin::base64::Engine;
    let encoded = bitcoin::base64::engine::general_purpose::STANDARD.encode(data);
    if !item.payload["attachments"].is_array() {
        item.payload["attachments"] = json!([]);
    }
    if let Some(list) = item.payload["attachments"].as_array_mut() {
        list.push(json!({ "filename": filename, "content_type": content_type, "base64": encoded }));
    }
}

/// `<hash-of-key@sender-domain>`: the same outbox item always gives the same Message-ID.
pub fn message_id(key: &str, from: &Mailbox) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let hex = digest[..12].to_lower_hex_string();
    format!("<{hex}.satflow@{}>", from.email.domain())
}

/// The built-in alerts that are switched on, and where each goes: by email, to the targets of
/// `notify:`, or both. An alert for several targets is one fan-out item that queues one item
/// per target (see `notify::channels`).
#[derive(Debug, Clone, Default)]
pub struct Alerts {
    mailer: Option<Mailer>,
    routes: BTreeMap<Alert, Vec<String>>,
    /// The kind of each target under `notify:`.
    channels: BTreeMap<String, ChannelKind>,
    /// The user's templates (alerts to channels are rendered from them too).
    templates: BTreeMap<String, PathBuf>,
    healthcheck: Option<std::sync::Arc<Pinger>>,
}

impl Alerts {
    /// `enabled` by email only.
    pub fn new(mailer: Option<Mailer>, enabled: BTreeSet<Alert>) -> Self {
        let routes = enabled
            .into_iter()
            .map(|a| (a, vec![EMAIL_TARGET.to_string()]))
            .collect();
        Alerts {
            mailer,
            routes,
            ..Default::default()
        }
    }

    /// As `alerts:` routes them, with the kinds of the targets of `notify:`.
    pub fn routed(
        mailer: Option<Mailer>,
        routes: BTreeMap<Alert, Vec<String>>,
        channels: BTreeMap<String, ChannelKind>,
        templates: BTreeMap<String, PathBuf>,
    ) -> Self {
        Alerts {
            mailer,
            routes,
            channels,
            templates,
            healthcheck: None,
        }
    }

    /// With the healthcheck pinger (told when a run fails).
    pub fn with_healthcheck(mut self, pinger: Option<std::sync::Arc<Pinger>>) -> Self {
        self.healthcheck = pinger;
        self
    }

    /// The healthcheck pinger, when `healthcheck:` is set.
    pub fn healthcheck(&self) -> Option<&std::sync::Arc<Pinger>> {
        self.healthcheck.as_ref()
    }

    /// Whether `alert` would be sent (it is routed to a target that can be reached).
    pub fn enabled(&self, alert: Alert) -> bool {
        self.routes
            .get(&alert)
            .is_some_and(|targets| targets.iter().any(|t| self.reachable(t)))
    }

    fn reachable(&self, target: &str) -> bool {
        match target {
            EMAIL_TARGET => self.mailer.is_some(),
            other => self.channels.contains_key(other),
        }
    }

    /// The alert `alert` for the thing `key` names, or `None` when that alert is off, or
    /// when it cannot be rendered (logged: an alert must never stop the work it reports on).
    /// One target: its item; several: one fan-out item that queues one item per target.
    pub fn item(
        &self,
        env: &Environment<'_>,
        alert: Alert,
        key: &str,
        ctx: &Value,
    ) -> Option<NewItem> {
        let key = format!("alert/{}/{key}", alert.name());
        self.route(env, alert, key, Content::Template(alert.name()), ctx)
    }

    /// The items of one alert, `content` rendered with `ctx`, for each of its targets; `key`
    /// is the email's key, the other targets' keys end in `/<target>`.
    fn route(
        &self,
        env: &Environment<'_>,
        alert: Alert,
        key: String,
        content: Content<'_>,
        ctx: &Value,
    ) -> Option<NewItem> {
        let targets = self.routes.get(&alert)?;
        let mut items = Vec::new();
        for target in targets {
            let composed = match target.as_str() {
                EMAIL_TARGET => {
                    let Some(mailer) = &self.mailer else {
                        continue;
                    };
                    mailer.compose(env, key.clone(), content.again(), ctx, None, true, None)
                }
                name => {
                    let Some(kind) = self.channels.get(name) else {
                        continue;
                    };
                    self.channel_item(env, alert, *kind, name, &key, content.again(), ctx)
                }
            };
            match composed {
                Ok(item) => items.push(item),
                Err(err) => {
                    tracing::error!(alert = alert.name(), %target, %err, "cannot compose an alert")
                }
            }
        }
        match items.len() {
            0 => None,
            1 => items.pop(),
            _ => Some(Fanout::item(format!("{key}/all"), items)),
        }
    }

    /// The alert for the channel target `name`: the template's subject as title, its body as
    /// the message, the context as the details a webhook receiver gets.
    #[allow(clippy::too_many_arguments)]
    fn channel_item(
        &self,
        env: &Environment<'_>,
        alert: Alert,
        kind: ChannelKind,
        name: &str,
        key: &str,
        content: Content<'_>,
        ctx: &Value,
    ) -> Result<NewItem, String> {
        let (subject, body) = match content {
            Content::Inline { subject, body } => (subject.to_string(), body.to_string()),
            Content::Template(t) => {
                let t = templates::find(t, &self.templates)
                    .ok_or_else(|| format!("there is no template `{t}`"))??;
                (t.subject, t.body)
            }
        };
        let render = |text: &str| crate::expr::render(env, text, ctx);
        let title = render(&subject)?.trim().replace(['\r', '\n'], " ");
        let message = render(&body)?.trim().to_string();
        let key = format!("{key}/{name}");
        let now = self
            .mailer
            .as_ref()
            .and_then(|m| m.clock.as_ref())
            .map_or_else(crate::clock::system_now, |c| c.now());
        let message = ChannelMessage {
            target: name.to_string(),
            title,
            message,
            event_type: format!("alert.{}", alert.name()),
            data: json!({ "kind": alert.name(), "context": ctx }),
            id: channels::message_id(&key),
            timestamp: now.to_rfc3339(),
            alert: true,
        };
        channels::item(kind, key, &message, None).map_err(|e| e.to_string())
    }
}

impl Content<'_> {
    /// The same content, for another target.
    fn again(&self) -> Content<'_> {
        match self {
            Content::Template(t) => Content::Template(t),
            Content::Inline { subject, body } => Content::Inline { subject, body },
        }
    }
}

impl Alerts {
    /// Queues the summary of every alert window that closed with alerts held back; returns
    /// how many were queued. Safe to call from several places and instances: a window is
    /// summarised once.
    pub async fn summarise_due(
        &self,
        store: &crate::store::Store,
        env: &Environment<'_>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<usize, crate::store::StoreError> {
        let mut sent = 0;
        for window in store
            .alert_windows_due(now, crate::store::ALERT_WINDOW)
            .await?
        {
            let summary = self.summary(env, &window);
            if store
                .summarise_alert_window(&window, summary.as_ref(), now)
                .await?
            {
                tracing::warn!(kind = %window.kind, count = window.suppressed, "alerts held back in the last hour: one summary sent");
                sent += 1;
            }
        }
        Ok(sent)
    }

    /// The one message that reports the alerts of a kind held back in a window (coalescing:
    /// at most one alert per kind and hour), to the targets of that kind. `None` when it
    /// has none.
    pub fn summary(
        &self,
        env: &Environment<'_>,
        window: &crate::store::AlertWindow,
    ) -> Option<NewItem> {
        let alert = Alert::ALL.into_iter().find(|a| a.name() == window.kind)?;
        let key = format!(
            "alert/{}/summary/{}",
            window.kind,
            window.window_start.timestamp_millis()
        );
        let ctx = json!({
            "kind": window.kind,
            "count": window.suppressed,
            "since": window.window_start.to_rfc3339(),
            "first": window.first_suppressed.map(|t| t.to_rfc3339()),
            "last": window.last_suppressed.map(|t| t.to_rfc3339()),
        });
        let subject = "satflow: {{ count }} more {{ kind }} alert{% if count != 1 %}s{% endif %} in the last hour";
        let body = "satflow held back {{ count }} more alert{% if count != 1 %}s{% endif %} of the kind {{ kind }} \
                    after the first one it sent at {{ since }}: alerts of one kind are sent at most once an hour, \
                    so that a storm cannot flood your mailbox.\n\nFirst held back: {{ first }}\nLast held back: {{ last }}\n\n\
                    {% if kind == \"unrecognized_webhook\" %}`satflow status` shows how many unrecognized webhooks are stored (the newest are kept).\n\
                    {% elif kind == \"dead_letter\" %}`satflow outbox` lists the dead items; `satflow outbox retry ID` sends one again.\n\
                    {% elif kind == \"run_failed\" %}`satflow runs` lists the failed runs with their errors.\n{% endif %}";
        self.route(env, alert, key, Content::Inline { subject, body }, &ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EmailTransport;

    fn mailer() -> Mailer {
        let config = EmailConfig {
            transport: EmailTransport::Dir(PathBuf::from("mail")),
            from: "satflow <satflow@example.com>".parse().unwrap(),
            to: vec!["me@example.com".parse().unwrap()],
        };
        Mailer::new(&config, BTreeMap::new())
    }

    #[test]
    fn composes_a_rendered_email_with_a_message_id_from_its_key() {
        let env = crate::expr::environment();
        let ctx = json!({"run": {"id": 7, "trigger": "manual", "error": "boom"}, "workflow": {"name": "dca"}});
        let item = mailer()
            .compose(
                &env,
                "alert/run_failed/7".into(),
                Content::Template("run_failed"),
                &ctx,
                None,
                true,
                None,
            )
            .unwrap();
        assert_eq!(item.kind, "email");
        assert_eq!(item.payload["subject"], "satflow: workflow dca failed");
        assert!(item.payload["body"].as_str().unwrap().contains("boom"));
        assert_eq!(item.payload["to"][0], "me@example.com");
        let again = mailer()
            .compose(
                &env,
                "alert/run_failed/7".into(),
                Content::Template("run_failed"),
                &ctx,
                None,
                true,
                None,
            )
            .unwrap();
        assert_eq!(item.payload["message_id"], again.payload["message_id"]);
        assert!(
            item.payload["message_id"]
                .as_str()
                .unwrap()
                .ends_with(".satflow@example.com>")
        );
    }

    #[test]
    fn the_order_created_email_has_the_details_as_the_terminal_shows_them_and_the_qr_inline() {
        let env = crate::expr::environment();
        let ctx = json!({
            "workflow": {"name": "dca"}, "run": {"id": 1},
            "steps": {"order": {
                "order_id": "o-1", "created": true, "currency": "eur",
                "creditor_name": "Pocket App", "creditor_iban": "DE02120300000000202051",
                "creditor_bic": "BYLADEM1001", "creditor_reference": "RF18539007547034",
            }},
        });
        let item = mailer()
            .compose(
                &env,
                "k".into(),
                Content::Template("order_created"),
                &ctx,
                None,
                false,
                None,
            )
            .unwrap();
        let body = item.payload["body"].as_str().unwrap();
        assert!(
            body.contains("  IBAN:        DE02 1203 0000 0000 2020 51"),
            "{body}"
        );
        assert!(body.contains("  Currency:    EUR"), "{body}");
        assert!(
            body.contains("scan the payment QR code (payment-qr.png)"),
            "{body}"
        );
        assert!(!body.contains("creditor_"), "{body}");
        let attachments = item.payload["attachments"].as_array().unwrap();
        assert_eq!(attachments.len(), 1);
        assert_eq!(attachments[0]["filename"], PAYMENT_QR);
        assert_eq!(attachments[0]["content_type"], "image/png");
        let message = String::from_utf8(
            crate::notify::mime::build(&serde_json::from_value(item.payload.clone()).unwrap())
                .unwrap()
                .formatted(),
        )
        .unwrap();
        assert!(message.contains("multipart/related"), "{message}");
        assert!(
            message.contains("Content-ID: <payment-qr.png@satflow>"),
            "{message}"
        );
    }

    #[test]
    fn alerts_that_are_off_produce_nothing() {
        let env = crate::expr::environment();
        let alerts = Alerts::new(Some(mailer()), [Alert::Refunded].into_iter().collect());
        assert!(
            alerts
                .item(&env, Alert::RunFailed, "1", &json!({}))
                .is_none()
        );
    }
}
