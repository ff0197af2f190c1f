//! The exchange event a workflow run is started with (`exchange.executed`, `settled`,
//! `interrupted`, `refunded`) and that alert emails render: what expressions see as `event.…`.
//!
//! Its JSON form is a user contract (DESIGN.md: workflows and templates read `event.amount`,
//! `event.exchange.payout.txid`, …): a field may be added, but none renamed, retyped or dropped.
//! The test below holds it to the shape recorded in tests/fixtures/pocket/event_shapes.json.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::pocket::types::{
    Action, ActionCode, Exchange, ExchangeState, Payout, Reason, ReasonCode,
};

/// An exchange as one event of its lifecycle: the exchange as `state` (the event's own stage),
/// with `current_state` where the exchange is now (a late `interrupted` is `late`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExchangeEvent {
    /// The event's name, `exchange.settled` …
    pub name: String,
    pub exchange_id: String,
    pub order_id: Option<String>,
    pub state: ExchangeState,
    pub current_state: ExchangeState,
    /// The exchange is further along than this event (it arrived after a later one).
    pub late: bool,
    /// The workflow whose order bought it, when satflow knows the order.
    pub workflow: Option<String>,
    pub pair: Option<String>,
    /// The fiat side of the pair, upper case (`EUR`), or empty.
    pub currency: String,
    /// Amounts as exact decimal strings, every digit Pocket sent.
    #[serde(with = "decimal_text")]
    pub cost: Option<Decimal>,
    #[serde(with = "decimal_text")]
    pub amount: Option<Decimal>,
    #[serde(with = "decimal_text")]
    pub rate: Option<Decimal>,
    #[serde(with = "decimal_text")]
    pub fee: Option<Decimal>,
    pub action: Option<Action>,
    /// What the action asks for, in plain words.
    pub action_text: Option<String>,
    pub reason: Option<Reason>,
    /// The reason in plain words (an unknown code verbatim).
    pub reason_text: Option<String>,
    pub payout: Option<Payout>,
    pub txid: Option<String>,
    /// The whole exchange as received, unknown fields included.
    pub exchange: Exchange,
}

impl ExchangeEvent {
    /// `exchange` seen as `event` (of the stage `stage`) while it is in `current`.
    pub fn new(
        event: &str,
        stage: ExchangeState,
        current: ExchangeState,
        exchange: &Exchange,
        workflow: Option<&str>,
    ) -> Self {
        let currency = exchange
            .pair
            .as_deref()
            .and_then(|p| p.split('/').nth(1))
            .unwrap_or("");
        ExchangeEvent {
            name: event.to_string(),
            exchange_id: exchange.id.clone(),
            order_id: exchange.order_id.clone(),
            state: stage,
            current_state: current,
            late: current.rank() > stage.rank(),
            workflow: workflow.map(str::to_string),
            pair: exchange.pair.clone(),
            currency: currency.to_uppercase(),
            cost: exchange.cost,
            amount: exchange.amount,
            rate: exchange.rate,
            fee: exchange.fee,
            action: exchange.action.clone(),
            action_text: exchange
                .action
                .as_ref()
                .and_then(|a| a.code.as_ref())
                .map(action_text),
            reason: exchange.reason.clone(),
            reason_text: exchange
                .reason
                .as_ref()
                .and_then(|r| r.code.as_ref())
                .map(reason_text),
            payout: exchange.payout.clone(),
            txid: exchange.payout.as_ref().and_then(|p| p.txid.clone()),
            exchange: exchange.clone(),
        }
    }

    /// The JSON expressions and templates see as `event`.
    pub fn to_json(&self) -> Value {
        // Every field is a string, number, bool or a JSON value already: this cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Pocket's fee for paying the exchange out, in BTC, when the exchange names one
    /// (`payout_fee`, which satflow only keeps among the exchange's other fields).
    pub fn payout_fee(&self) -> Result<Option<Decimal>, String> {
        match self.exchange.extra.get("payout_fee") {
            None | Some(Value::Null) => Ok(None),
            Some(v) => crate::pocket::types::parse_decimal(v.to_string().trim_matches('"'))
                .map(Some)
                .map_err(|e| format!("payout_fee: {e}")),
        }
    }

    /// Reads back the event a run was started with (its stored `event`).
    pub fn from_json(event: &Value) -> Result<Self, serde_json::Error> {
        ExchangeEvent::deserialize(event)
    }
}

/// What tells two interrupted observations apart: their action (a new action is a new thing
/// to do), as a short digest of its canonical JSON (keys sorted).
pub fn action_key(exchange: &Exchange) -> String {
    let action = exchange
        .action
        .as_ref()
        .map(|a| a.as_json().to_string())
        .unwrap_or_default();
    crate::pocket::webhook::body_hash(action.as_bytes())[..16].to_string()
}

/// A refund or failure reason in plain words; unknown codes are shown as received.
pub fn reason_text(code: &ReasonCode) -> String {
    match code {
        ReasonCode::ThresholdExceeded => {
            "the payment is above the amount Pocket accepts without further identification".into()
        }
        ReasonCode::OrderInactive => {
            "the order was paused (inactive) when the payment arrived".into()
        }
        ReasonCode::CompaniesUnsupported => {
            "the payment came from a company account; Pocket only serves private persons".into()
        }
        ReasonCode::CountryUnsupported => {
            "the payment came from a country Pocket does not serve".into()
        }
        ReasonCode::OtherRiskDetected => "Pocket's risk checks stopped the payment".into(),
        ReasonCode::CustomerRequested => "you asked Pocket for the refund".into(),
        ReasonCode::AccountNotMatching => {
            "the paying bank account is not the order's debitor IBAN".into()
        }
        ReasonCode::PayoutExpired => {
            "the bitcoin could not be paid out in time (for Lightning: no usable invoice)".into()
        }
        ReasonCode::NoRoute => "no Lightning route to your node was found".into(),
        ReasonCode::InvoiceExpired => "the Lightning invoice expired before it was paid".into(),
        ReasonCode::Error => "the Lightning payout failed".into(),
        // Known as an interruption's reason, but not given words of its own: shown as received,
        // as before the codes were typed.
        ReasonCode::IdentificationRequired | ReasonCode::Other(_) => format!(
            "Pocket gave the reason \"{}\", which satflow does not know",
            code.as_str()
        ),
    }
}

/// What Pocket asks for when it interrupts an exchange.
pub fn action_text(code: &ActionCode) -> String {
    match code {
        ActionCode::Identify | ActionCode::IdentificationRequired => {
            "identify yourself to Pocket".into()
        }
        ActionCode::Other(other) => format!("Pocket asks for \"{other}\""),
    }
}

/// An optional decimal written as its exact text (`"0.00494000"`), read from text or number.
mod decimal_text {
    use rust_decimal::Decimal;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&d.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
        crate::pocket::types::money(d)
    }
}

/// The exchange events a workflow can start on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    Executed,
    Settled,
    Interrupted,
    Refunded,
}

impl EventKind {
    pub const ALL: [EventKind; 4] = [
        EventKind::Executed,
        EventKind::Settled,
        EventKind::Interrupted,
        EventKind::Refunded,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EventKind::Executed => "exchange.executed",
            EventKind::Settled => "exchange.settled",
            EventKind::Interrupted => "exchange.interrupted",
            EventKind::Refunded => "exchange.refunded",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange_of(fixture: &str) -> Exchange {
        let v: Value = serde_json::from_str(fixture).unwrap();
        let payload = if v.get("payload").is_some() {
            v["payload"].clone()
        } else {
            v
        };
        serde_json::from_value(payload).unwrap()
    }

    const FIXTURES: [(&str, &str); 5] = [
        (
            "settled",
            include_str!("../../tests/fixtures/pocket/settled_exchange.json"),
        ),
        (
            "interrupted",
            include_str!("../../tests/fixtures/pocket/interrupted_webhook.json"),
        ),
        (
            "postman",
            include_str!("../../tests/fixtures/pocket/interrupted_exchange_postman.json"),
        ),
        (
            "refunded",
            include_str!("../../tests/fixtures/pocket/refunded_webhook.json"),
        ),
        (
            "welcome",
            include_str!("../../tests/fixtures/pocket/executed_webhook_welcome_reward.json"),
        ),
    ];

    /// The typed event serializes to exactly what workflows saw before it was typed: the same
    /// keys, the same values, the same digits (compared as JSON text, so `0.00000190` must stay
    /// `0.00000190`).
    #[test]
    fn the_event_workflows_see_keeps_its_recorded_shape() {
        let recorded: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/pocket/event_shapes.json"
        ))
        .unwrap();
        for (name, fixture) in FIXTURES {
            let e = exchange_of(fixture);
            let event = ExchangeEvent::new(
                "exchange.x",
                e.state(),
                ExchangeState::Settled,
                &e,
                Some("wf"),
            );
            let json = event.to_json();
            assert_eq!(
                json.to_string(),
                recorded[name].to_string(),
                "{name}: the shape changed"
            );
        }
    }

    /// A run reads back the very event it was started with.
    #[test]
    fn the_stored_event_reads_back_typed() {
        for (name, fixture) in FIXTURES {
            let e = exchange_of(fixture);
            let event = ExchangeEvent::new("exchange.x", e.state(), e.state(), &e, None);
            let stored = serde_json::to_string(&event.to_json()).unwrap();
            let back = ExchangeEvent::from_json(&serde_json::from_str(&stored).unwrap()).unwrap();
            assert_eq!(back, event, "{name}");
            assert_eq!(
                back.to_json().to_string(),
                event.to_json().to_string(),
                "{name}"
            );
        }
    }

    #[test]
    fn the_payout_fee_is_read_with_its_digits_or_refused_by_name() {
        let mut e = exchange_of(FIXTURES[0].1);
        let event =
            |e: &Exchange| ExchangeEvent::new("exchange.executed", e.state(), e.state(), e, None);
        assert_eq!(event(&e).payout_fee(), Ok(None));
        e.extra.insert(
            "payout_fee".into(),
            serde_json::from_str("0.00000100").unwrap(),
        );
        assert_eq!(
            event(&e).payout_fee().unwrap().unwrap().to_string(),
            "0.00000100"
        );
        e.extra.insert("payout_fee".into(), "lots".into());
        assert!(
            event(&e)
                .payout_fee()
                .unwrap_err()
                .starts_with("payout_fee: ")
        );
    }

    #[test]
    fn unknown_codes_and_fields_are_kept_verbatim() {
        let e: Exchange = serde_json::from_value(serde_json::json!({
            "id": "a2d75998-5ee5-4501-a4cf-4e3788732b7a",
            "action": {"code": "sign_contract", "deadline": "tomorrow"},
            "reason": {"code": "brand_new_code", "detail": {"x": 1}},
        }))
        .unwrap();
        let action = e.action.as_ref().unwrap();
        assert_eq!(action.code, Some(ActionCode::Other("sign_contract".into())));
        assert_eq!(action.as_json()["deadline"], "tomorrow");
        let reason = e.reason.as_ref().unwrap();
        assert_eq!(
            reason.code,
            Some(ReasonCode::Other("brand_new_code".into()))
        );
        let event = ExchangeEvent::new("exchange.interrupted", e.state(), e.state(), &e, None);
        let json = event.to_json();
        assert_eq!(json["reason"]["detail"]["x"], 1);
        assert_eq!(json["exchange"]["action"]["deadline"], "tomorrow");
        assert_eq!(json["action_text"], "Pocket asks for \"sign_contract\"");
        assert!(
            json["reason_text"]
                .as_str()
                .unwrap()
                .contains("\"brand_new_code\"")
        );
    }

    #[test]
    fn a_code_that_is_not_text_is_no_code_but_is_kept() {
        let e: Exchange = serde_json::from_value(serde_json::json!({
            "id": "a2d75998-5ee5-4501-a4cf-4e3788732b7a",
            "action": {"code": 7},
            "payout": "paid",
        }))
        .unwrap();
        assert_eq!(e.action.as_ref().unwrap().code, None);
        assert_eq!(e.action.as_ref().unwrap().as_json()["code"], 7);
        let payout = e.payout.as_ref().unwrap();
        assert_eq!((payout.txid.as_ref(), payout.amount), (None, None));
        assert_eq!(payout.as_json(), "paid");
        assert_eq!(e.state(), ExchangeState::Settled);
    }
}
