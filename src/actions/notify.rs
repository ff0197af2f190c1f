//! `notify`: a message to a target of `notify:` (ntfy, Telegram, a Standard Webhooks receiver),
//! `title` and `message` templated, composed now and sent through the outbox. The step does
//! not wait: its output is the message's id (the webhook-id a receiver sees).
//!
//! It never reads the target's secrets: the outbox handler does, when it sends.

use serde_json::json;

use super::read::ActionReader;
use super::{ActionStep, StepCx, StepOutcome};
use crate::notify::channels::{self, ChannelMessage};
use crate::source::MapReader;

#[derive(Debug, Clone)]
pub struct Notify {
    /// A name under `notify:`.
    pub to: String,
    pub title: String,
    pub message: String,
}

impl ActionStep for Notify {
    const NAME: &'static str = "notify";
    const OUTPUTS: &'static [&'static str] = &["id", "target"];

    fn read(r: &mut ActionReader<'_, '_>, m: &mut MapReader<'_>) -> Option<Self> {
        let to = m
            .required(
                "to",
                "name a target defined under `notify:` in satflow.yaml, e.g. to: phone",
                r.ctx,
            )
            .and_then(|n| r.reference(n, "to", "notify", &mut r.names.notify_targets.keys()));
        let title = match m.get("title") {
            Some(n) => r.template_text(n, "title"),
            None => Some(String::new()),
        };
        let message = m
            .required(
                "message",
                "write what to send, e.g. message: \"Bought {{ steps.order.amount }}\"",
                r.ctx,
            )
            .and_then(|n| r.template_text(n, "message"));
        Some(Notify {
            to: to?,
            title: title?,
            message: message?,
        })
    }

    async fn perform(&self, cx: &StepCx<'_>) -> StepOutcome {
        let Some(target) = cx.config.notify.get(&self.to) else {
            return StepOutcome::failed(format!(
                "the notification target `{}` is no longer under `notify:` in satflow.yaml",
                self.to
            ));
        };
        let render = |text: &str| crate::expr::render(cx.env, text, cx.ctx);
        let title = match render(&self.title) {
            Ok(t) => t.trim().replace(['\r', '\n'], " "),
            Err(e) => return StepOutcome::failed(format!("title: {e}")),
        };
        let message = match render(&self.message) {
            Ok(m) => m.trim().to_string(),
            Err(e) => return StepOutcome::failed(format!("message: {e}")),
        };
        let key = cx.key();
        let id = channels::message_id(&key);
        let payload = ChannelMessage {
            target: self.to.clone(),
            title,
            message,
            event_type: "notify.message".into(),
            data: json!({ "workflow": cx.run.workflow, "run": cx.run.id, "step": cx.step_id }),
            id: id.clone(),
            timestamp: cx.clock.now().to_rfc3339(),
            alert: false,
        };
        match channels::item(target.kind(), key, &payload, None) {
            Ok(item) => {
                StepOutcome::succeeded(json!({ "id": id, "target": self.to }), vec![item])
            }
            Err(e) => StepOutcome::failed(format!("cannot write the message: {e}")),
        }
    }
}
