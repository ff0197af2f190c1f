//! Notification channels besides email — ntfy, Telegram and Standard Webhooks — and the
//! healthcheck ping. A message to a channel is composed into an outbox item (rendered once,
//! like an email) and delivered by that channel's [`Effect`]; an alert routed to several
//! targets is queued as one fan-out item that queues one item per target, each with its own
//! key (`alert/<kind>/<key>/<target>`), so each target gets it once and retries on its own.
//!
//! A payload names its target, never the target's URL or secrets: those are read from
//! satflow.yaml when the item is delivered, so no token reaches the database, a log or an
//! error. Nothing here sends from a step or an alert's caller: sending is the outbox's.

pub mod healthcheck;
pub mod ntfy;
pub mod telegram;
pub mod webhook;

use bitcoin::hex::DisplayHex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::{ChannelKind, Config, NotifyTarget};
use crate::outbox::{Effect, HandlerError, Handlers};
use crate::outcome::{Call, Class};
use crate::store::{ItemRow, NewItem};

pub use ntfy::NtfyEffect;
pub use telegram::TelegramEffect;
pub use webhook::WebhookEffect;

/// How long one delivery to a channel may take (inside the outbox's bound on a handler under
/// the default lease, 3/4 of 30 s).
pub const DELIVERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// A message to one notification target: what every channel's payload is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelMessage {
    /// The name under `notify:`; its URL and secrets are read at delivery.
    pub target: String,
    pub title: String,
    pub message: String,
    /// `alert.<kind>` for a built-in alert, `notify.message` for a `notify` step.
    #[serde(rename = "type")]
    pub event_type: String,
    /// What a webhook receiver gets as `data` besides title and message (the alert's details).
    #[serde(default)]
    pub data: Value,
    /// The same on every attempt (the webhook-id): derived from the outbox key.
    pub id: String,
    /// When it was decided (RFC 3339), the webhook body's `timestamp`.
    pub timestamp: String,
    /// A built-in alert: when it dies, it does not alert again.
    #[serde(default)]
    pub alert: bool,
}

/// The outbox kind of each channel.
pub fn kind_of(channel: ChannelKind) -> &'static str {
    match channel {
        ChannelKind::Ntfy => NtfyEffect::KIND,
        ChannelKind::Telegram => TelegramEffect::KIND,
        ChannelKind::Webhook => WebhookEffect::KIND,
    }
}

/// `msg_` and 32 hex digits of the key's hash: the same item always has the same id.
pub fn message_id(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    format!("msg_{}", digest[..16].to_lower_hex_string())
}

/// The outbox item `key` that sends `message` through `channel`.
pub fn item(
    channel: ChannelKind,
    key: String,
    message: &ChannelMessage,
    run: Option<(i64, String)>,
) -> Result<NewItem, serde_json::Error> {
    Ok(NewItem {
        kind: kind_of(channel).into(),
        key,
        payload: serde_json::to_value(message)?,
        run,
    })
}

/// Whether a stored item is a built-in alert sent to a channel, or the fan-out of one.
pub fn is_alert(kind: &str, payload: &Value) -> bool {
    match kind {
        k if k == FanoutEffect::KIND => true,
        k if [NtfyEffect::KIND, TelegramEffect::KIND, WebhookEffect::KIND].contains(&k) => {
            payload["alert"].as_bool().unwrap_or(false)
        }
        _ => false,
    }
}

/// The target `name` of satflow.yaml as it is now.
fn target<'c>(h: &'c Handlers, name: &str) -> Result<&'c NotifyTarget, HandlerError> {
    let config: &Config = h.config()?;
    config.notify.get(name).ok_or_else(|| {
        HandlerError::permanent(format!(
            "satflow.yaml has no notification target `{name}` under `notify:` any more, so this message cannot be sent"
        ))
    })
}

/// `text` cut to at most `max` bytes at a character boundary, with `…` when cut (a channel
/// refuses, or turns into an attachment, what is longer).
pub fn truncated(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// A failed send, classified by reqwest's own predicates; the error is shown without its URL
/// (a bot token or a topic is in it).
fn transport_error(what: &str, e: reqwest::Error) -> HandlerError {
    let class = crate::outcome::of_transport(&e, Call::Write);
    let e = e.without_url();
    let message = match class {
        Class::Unknown => format!("{what}: no complete answer, it may have been delivered: {e}"),
        _ => format!("{what}: cannot be reached now: {e}"),
    };
    HandlerError::from_class(class, message, None)
}

/// A fan-out item: the items of one alert, one per target, queued when it is handled.
pub struct FanoutEffect;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FanoutItem {
    pub kind: String,
    pub key: String,
    pub payload: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fanout {
    pub items: Vec<FanoutItem>,
}

impl Fanout {
    /// The fan-out item `key` that queues `items`.
    pub fn item(key: String, items: Vec<NewItem>) -> NewItem {
        let fanout = Fanout {
            items: items
                .into_iter()
                .map(|i| FanoutItem {
                    kind: i.kind,
                    key: i.key,
                    payload: i.payload,
                })
                .collect(),
        };
        NewItem {
            kind: FanoutEffect::KIND.into(),
            key,
            payload: json!({ "items": fanout.items }),
            run: None,
        }
    }
}

impl Effect for FanoutEffect {
    const KIND: &'static str = "notify.fanout";
    type Payload = Fanout;

    async fn handle(h: &Handlers, item: &ItemRow, payload: Fanout) -> Result<Value, HandlerError> {
        let Some(store) = &h.store else {
            return Err(HandlerError::permanent(
                "no database to queue the alert's messages in",
            ));
        };
        let items: Vec<NewItem> = payload
            .items
            .into_iter()
            .map(|i| NewItem {
                kind: i.kind,
                key: i.key,
                payload: i.payload,
                run: None,
            })
            .collect();
        // Due when the fan-out was (its own time, not the machine's: a daemon on a moved
        // clock finds them due at once). Queued again after a lost answer, each key stays one
        // item: the store keeps the first.
        store
            .enqueue(&items, item.next_attempt_at)
            .await
            .map_err(|e| {
                HandlerError::transient(format!("cannot queue the alert's messages: {e}"))
            })?;
        Ok(json!({ "queued": items.iter().map(|i| i.key.clone()).collect::<Vec<_>>() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_texts_are_cut_at_a_character() {
        assert_eq!(message_id("alert/x/1"), message_id("alert/x/1"));
        assert_ne!(message_id("alert/x/1"), message_id("alert/x/2"));
        assert_eq!(message_id("k").len(), 4 + 32);
        assert_eq!(truncated("short", 10), "short");
        let cut = truncated("ääääää", 8);
        assert!(cut.len() <= 8 && cut.ends_with('…'), "{cut}");
    }

    #[test]
    fn alerts_are_told_from_notify_steps() {
        assert!(is_alert("notify.fanout", &json!({"items": []})));
        assert!(is_alert("notify.ntfy", &json!({"alert": true})));
        assert!(!is_alert("notify.telegram", &json!({"alert": false})));
        assert!(!is_alert("notify.webhook", &json!({})));
        assert!(!is_alert("http", &json!({"alert": true})));
    }
}

#[cfg(test)]
mod routing_tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::{Alert, EmailConfig, EmailTransport};
    use crate::notify::email::{Alerts, Mailer};

    /// Alerts routed to `targets`, each kind's template replaced by a plain one (so that
    /// kinds added later, with templates of their own, are covered without their context).
    fn alerts(targets: &[&str]) -> (tempfile::TempDir, Alerts) {
        let dir = tempfile::tempdir().unwrap();
        let mut templates = BTreeMap::new();
        for alert in Alert::ALL {
            let path = dir.path().join(format!("{}.txt", alert.name()));
            std::fs::write(
                &path,
                format!("Subject: alert {}\nrun {{{{ run.id }}}}\n", alert.name()),
            )
            .unwrap();
            templates.insert(alert.name().to_string(), path);
        }
        let email = EmailConfig {
            transport: EmailTransport::Dir("mail".into()),
            from: "satflow@example.com".parse().unwrap(),
            to: vec!["me@example.com".parse().unwrap()],
        };
        let routes = Alert::ALL
            .into_iter()
            .map(|a| (a, targets.iter().map(|t| t.to_string()).collect()))
            .collect();
        let channels = [
            ("phone".to_string(), ChannelKind::Ntfy),
            ("team".to_string(), ChannelKind::Telegram),
            ("ops".to_string(), ChannelKind::Webhook),
        ]
        .into_iter()
        .collect();
        let alerts = Alerts::routed(
            Some(Mailer::new(&email, templates.clone())),
            routes,
            channels,
            templates,
        );
        (dir, alerts)
    }

    fn ctx() -> Value {
        json!({ "run": {"id": 7} })
    }

    #[test]
    fn every_alert_kind_fans_out_to_one_item_per_target_with_its_own_key() {
        let env = crate::expr::environment();
        let (_dir, all) = alerts(&["email", "phone", "team", "ops"]);
        for alert in Alert::ALL {
            let item = all
                .item(&env, alert, "x1", &ctx())
                .unwrap_or_else(|| panic!("{}", alert.name()));
            assert_eq!(item.kind, FanoutEffect::KIND, "{}", alert.name());
            assert!(is_alert(&item.kind, &item.payload));
            let fanout = FanoutEffect::decode(&item.payload).unwrap();
            let base = format!("alert/{}/x1", alert.name());
            let got: Vec<(String, String)> = fanout
                .items
                .iter()
                .map(|i| (i.kind.clone(), i.key.clone()))
                .collect();
            assert_eq!(
                got,
                [
                    ("email".to_string(), base.clone()),
                    ("notify.ntfy".to_string(), format!("{base}/phone")),
                    ("notify.telegram".to_string(), format!("{base}/team")),
                    ("notify.webhook".to_string(), format!("{base}/ops")),
                ]
            );
            for child in &fanout.items[1..] {
                let message: ChannelMessage =
                    serde_json::from_value(child.payload.clone()).unwrap();
                assert!(message.alert, "{message:?}");
                assert_eq!(message.title, format!("alert {}", alert.name()));
                assert_eq!(message.message, "run 7");
                assert_eq!(message.event_type, format!("alert.{}", alert.name()));
                assert_eq!(message.id, message_id(&child.key));
                assert!(is_alert(&child.kind, &child.payload));
            }
        }
        // One target: its own item, no fan-out.
        let one = alerts(&["team"])
            .1
            .item(&env, Alert::RunFailed, "7", &ctx())
            .unwrap();
        assert_eq!(one.kind, "notify.telegram");
        assert_eq!(one.key, "alert/run_failed/7/team");
        // Email alone: exactly today's email item.
        let email = alerts(&["email"])
            .1
            .item(&env, Alert::RunFailed, "7", &ctx())
            .unwrap();
        assert_eq!(
            (email.kind.as_str(), email.key.as_str()),
            ("email", "alert/run_failed/7")
        );
        assert!(
            alerts(&[])
                .1
                .item(&env, Alert::RunFailed, "7", &ctx())
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_fan_out_handled_twice_queues_each_target_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open_sqlite(&dir.path().join("db"))
            .await
            .unwrap();
        let env = crate::expr::environment();
        let item = alerts(&["email", "phone", "ops"])
            .1
            .item(&env, Alert::DeadLetter, "k", &ctx())
            .unwrap();
        let now = crate::clock::system_now();
        store.enqueue(&[item], now).await.unwrap();
        let row = store.outbox_items(10).await.unwrap().remove(0);
        let h = Handlers::new(None, None, None, Some(store.clone()));
        for _ in 0..2 {
            let payload = FanoutEffect::decode(&row.payload).unwrap();
            FanoutEffect::handle(&h, &row, payload).await.unwrap();
        }
        let mut keys: Vec<String> = store
            .outbox_items(10)
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.key)
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "alert/dead_letter/k",
                "alert/dead_letter/k/all",
                "alert/dead_letter/k/ops",
                "alert/dead_letter/k/phone"
            ]
        );
    }
}
