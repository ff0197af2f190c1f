//! `pocket.refresh`: read an exchange back from Pocket now (`exchange:`, else the event's) and
//! apply what it shows through the exchange state machine, as a reconciliation would.

use serde::Deserialize;
use serde_json::{Value, json};

use super::read::ActionReader;
use super::{ActionStep, Param, StepCx, StepOutcome};
use crate::source::MapReader;

/// Re-read an exchange from Pocket.
#[derive(Debug, Clone)]
pub struct PocketRefresh {
    pub exchange: Option<Param<String>>,
}

impl ActionStep for PocketRefresh {
    const NAME: &'static str = "pocket.refresh";
    const OUTPUTS: &'static [&'static str] = &["exchange_id", "state", "changed"];

    fn read(r: &mut ActionReader<'_, '_>, m: &mut MapReader<'_>) -> Option<Self> {
        Some(PocketRefresh {
            exchange: m
                .get("exchange")
                .and_then(|n| r.param(n, "exchange", |s| Ok::<_, String>(s.to_string()))),
        })
    }

    async fn perform(&self, cx: &StepCx<'_>) -> StepOutcome {
        let Some(client) = cx.pocket else {
            return StepOutcome::failed("satflow.yaml has no `pocket` section");
        };
        let id = match &self.exchange {
            Some(p) => match cx.param(p, |s| Ok::<_, String>(s.to_string())) {
                Ok(id) => id,
                Err(e) => return StepOutcome::failed(format!("exchange: {e}")),
            },
            None => match event_exchange(cx.ctx) {
                Some(id) => id,
                None => {
                    return StepOutcome::failed(format!(
                        "exchange: run {} has no event exchange; name one with `exchange:`",
                        cx.run.id
                    ));
                }
            },
        };
        let id = id.trim().to_string();
        if !crate::pocket::types::is_uuid(&id) {
            return StepOutcome::failed(format!(
                "exchange: \"{id}\" is not a Pocket exchange id; expected a UUID such as 0b6f7c2e-1c4a-4e8e-9a51-3f0d2b7c9e11"
            ));
        }
        // The processor's state machine, for this one read-back.
        let processor = (cx.processor)();
        match processor
            .refresh(client, &id, &crate::pocket::outcomes::Patience::default())
            .await
        {
            Ok(applied) => StepOutcome::succeeded(
                json!({
                    "exchange_id": id,
                    "state": applied.state.name(),
                    "changed": applied.transitioned,
                }),
                Vec::new(),
            ),
            Err(e) => StepOutcome::failed(format!("exchange {id}: {e}")),
        }
    }
}

/// The exchange id of the run's event, if it names one: the one place this action reads the
/// event, so a typed event replaces this function only.
fn event_exchange(ctx: &Value) -> Option<String> {
    #[derive(Deserialize)]
    struct Context {
        #[serde(default)]
        event: Option<Event>,
    }
    #[derive(Deserialize)]
    struct Event {
        #[serde(default)]
        exchange_id: Option<Value>,
    }
    match Context::deserialize(ctx).ok()?.event?.exchange_id? {
        Value::String(id) => Some(id),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_exchange_is_read_only_when_it_is_text() {
        let id = "0b6f7c2e-1c4a-4e8e-9a51-3f0d2b7c9e11";
        assert_eq!(
            event_exchange(&json!({ "event": { "exchange_id": id }, "steps": {} })).as_deref(),
            Some(id)
        );
        assert_eq!(event_exchange(&json!({ "event": null })), None);
        assert_eq!(event_exchange(&json!({ "event": { "exchange_id": 7 } })), None);
        assert_eq!(event_exchange(&json!({ "event": { "order_id": "o" } })), None);
    }
}
