//! `pocket.payout`: when an exchange of a Lightning order executes, pay it out to the
//! user's own node — an invoice from the node, checked, then `PATCH /v1/exchanges/{id}`; or,
//! when the node lacks inbound liquidity and the workflow allows it, a channel.
//!
//! The step only queues the payout; the outbox handler gets the invoice, so every retry asks the
//! node for a fresh one. Pocket's answers decide what happens next, as the table of outcomes
//! (`pocket::outcomes`) says: the status first (408, 425, 429, 5xx: try again, after
//! `Retry-After`), then the documented codes: done (on both branches), try again with a new
//! invoice, fall back from channel to invoice, or stop for a human (a dead item, whose alert
//! names the reason).
//!
//! Amount rule: Pocket pays the exchange's whole `amount` (BTC × 10^11 msat); when the executed
//! payload carries a `payout_fee` (BTC), that is deducted first. No public source shows such a
//! field, so this is where to correct it.

use std::str::FromStr;
use std::time::Duration;

use bitcoin::Network;
use bitcoin::secp256k1::PublicKey;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::read::ActionReader;
use super::{ActionStep, StepCx, StepOutcome};
use crate::config::{Config, NodeKind};
use crate::domain::{Btc, Msat};
use crate::exchanges::ExchangeEvent;
use crate::lightning::invoice::{Expected, InvoiceError, MIN_REMAINING, verify};
use crate::lightning::node::{Node, NodeError};
use crate::outbox::{Effect, HandlerError, Handlers};
use crate::outcome::Class;
use crate::pocket::PocketClient;
use crate::pocket::outcomes::Verdict;
use crate::pocket::types::{Exchange, ExchangePayout, ExchangeState};
use crate::source::MapReader;
use crate::source::reader::{boolean, string};
use crate::store::ItemRow;

/// The outbox kind of a payout.
pub const KIND: &str = "pocket.payout";

/// How many invoices one attempt asks for when each is too close to its expiry (a provider
/// handing out stale invoices); then the attempt is retried later, as a transient failure.
const INVOICE_ASKS: u32 = 3;

/// How long the invoices asked of the node are valid.
const INVOICE_EXPIRY: Duration = Duration::from_secs(60 * 60);

/// Patch a Lightning exchange with an invoice (or a channel) from the user's node.
#[derive(Debug, Clone)]
pub struct PocketPayout {
    pub node: Option<String>,
    pub channel_fallback: bool,
    pub node_address: Option<String>,
}

impl ActionStep for PocketPayout {
    const NAME: &'static str = "pocket.payout";
    const OUTPUTS: &'static [&'static str] = &["method", "invoice", "amount_msat", "patched"];

    fn read(r: &mut ActionReader<'_, '_>, m: &mut MapReader<'_>) -> Option<Self> {
        let node = m
            .get("node")
            .map(|n| r.reference(n, "node", "lightning", &mut r.names.nodes.keys()));
        let fallback_node = m.get("channel_fallback");
        let channel_fallback = match fallback_node {
            Some(n) => boolean(n, &r.field("channel_fallback"), r.ctx)?,
            None => false,
        };
        let node_address = m
            .get("node_address")
            .and_then(|n| string(n, "node_address", r.ctx));
        if let (Some(Some(name)), Some(n)) = (&node, fallback_node)
            && channel_fallback
            && node_address.is_none()
            && matches!(
                r.names.nodes.get(name),
                Some(Some(NodeKind::LightningAddress))
            )
        {
            r.ctx.error(
                n.pos,
                format!(
                    "{}: a channel needs a node to open it to, and `{name}` is a Lightning address; set node_address (PUBKEY@HOST:PORT) or channel_fallback: false",
                    r.field("channel_fallback")
                ),
            );
        }
        Some(PocketPayout {
            node: match node {
                Some(n) => Some(n?),
                None => None,
            },
            channel_fallback,
            node_address,
        })
    }

    /// Decides whether the event's exchange is paid out by Lightning, and queues it.
    async fn perform(&self, cx: &StepCx<'_>) -> StepOutcome {
        let Some(event) = &cx.run.event else {
            return StepOutcome::failed(
                "pocket.payout pays out an exchange: run it on `exchange.executed` events",
            );
        };
        // A run's event is always one `ExchangeEvent::to_json` wrote; one that does not read back
        // as such names no exchange this step could pay out.
        let Ok(event) = ExchangeEvent::from_json(event) else {
            return StepOutcome::failed("the event names no exchange and order");
        };
        let Some(order_id) = event.order_id.clone() else {
            return StepOutcome::failed("the event names no exchange and order");
        };
        let exchange_id = event.exchange_id.clone();
        let not_lightning = || StepOutcome::succeeded(output("none", None, None, false), Vec::new());
        let order = match cx.store.order_by_id(&order_id).await {
            Ok(Some(order)) => order,
            Ok(None) => return not_lightning(), // an order satflow did not make
            Err(e) => return StepOutcome::failed(e.to_string()),
        };
        if order.payout_kind != "lightning" {
            return not_lightning();
        }
        let Some(node_pubkey) = order_node_pubkey(&order.order) else {
            return StepOutcome::failed(format!(
                "order {order_id} pays out by Lightning but names no node_pubkey"
            ));
        };
        // The node: the step's, else the one the order's workflow declares.
        let declared = (cx.declared_node)(&order.workflow);
        let Some(node) = self.node.clone().or(declared) else {
            return StepOutcome::failed(format!(
                "no Lightning node to pay exchange {exchange_id} out to: set `node:` on the step"
            ));
        };
        let amount = match payout_msat(&event) {
            Ok(msat) => msat,
            Err(e) => return StepOutcome::failed(e),
        };
        let node_address = self.node_address.clone().or_else(|| {
            cx.config
                .lightning
                .get(&node)
                .and_then(|n| n.node_address.clone())
        });
        let payload = PayoutPayload {
            exchange_id,
            node,
            node_pubkey,
            amount_msat: amount,
            channel_fallback: self.channel_fallback,
            node_address,
        };
        match PayoutEffect::item(cx.key(), cx.waiter(), &payload) {
            Ok(item) => StepOutcome::waiting(item),
            Err(e) => StepOutcome::failed(format!("cannot write the payout: {e}")),
        }
    }
}

/// What `steps.<id>` holds after a `pocket.payout` step.
fn output(method: &str, invoice: Option<&str>, amount_msat: Option<Msat>, patched: bool) -> Value {
    json!({ "method": method, "invoice": invoice, "amount_msat": amount_msat, "patched": patched })
}

/// A field that counts only when it is text (anything else reads as absent).
fn text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        _ => None,
    })
}

/// The node an order pays out to, as the order names it.
fn order_node_pubkey(order: &crate::pocket::types::Order) -> Option<String> {
    #[derive(Deserialize)]
    struct PayoutMethod {
        #[serde(default, deserialize_with = "text")]
        node_pubkey: Option<String>,
    }
    PayoutMethod::deserialize(&order.payout_method)
        .ok()?
        .node_pubkey
}

/// The amount Pocket pays out for the exchange in `event`, in msat (see the module's rule).
pub fn payout_msat(event: &ExchangeEvent) -> Result<Msat, String> {
    let amount = event
        .amount
        .ok_or("the executed exchange carries no amount")?;
    let amount = Btc::new(amount).map_err(|e| e.to_string())?;
    let fee = event.payout_fee()?.unwrap_or(Decimal::ZERO);
    let net = amount.value().checked_sub(fee).ok_or_else(|| {
        format!("payout_fee: {fee} BTC cannot be deducted from {amount} BTC")
    })?;
    let net = Btc::new(net).map_err(|e| format!("the payout fee exceeds the amount: {e}"))?;
    Ok(Msat::from(net))
}

/// [`payout_msat`] of a stored event (a run's `event`), which must read back as an
/// `ExchangeEvent`.
pub fn payout_amount(event: &Value) -> Result<Msat, String> {
    let event = ExchangeEvent::from_json(event)
        .map_err(|e| format!("the event is not an exchange event: {e}"))?;
    payout_msat(&event)
}

/// The payload of a `pocket.payout` item. The invoice is not in it: every attempt asks the node
/// for a fresh one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutPayload {
    pub exchange_id: String,
    /// The `lightning.<node>` that receives it.
    pub node: String,
    /// The node the order names, as it names it: the invoice must be payable to it.
    pub node_pubkey: String,
    pub amount_msat: Msat,
    #[serde(default)]
    pub channel_fallback: bool,
    /// `PUBKEY@HOST:PORT`, for a channel payout.
    #[serde(default)]
    pub node_address: Option<String>,
}

/// The outbox side: the invoice (or channel) and the PATCH.
pub struct PayoutEffect;

impl Effect for PayoutEffect {
    const KIND: &'static str = KIND;
    type Payload = PayoutPayload;

    async fn handle(
        h: &Handlers,
        _item: &ItemRow,
        payload: PayoutPayload,
    ) -> Result<Value, HandlerError> {
        pay_out(h.pocket()?, h.config()?, &h.clients, &payload).await
    }

    /// A payout Pocket already has is done; otherwise a new attempt (with a fresh invoice) is
    /// safe, because Pocket pays an exchange once.
    async fn reconcile(
        h: &Handlers,
        payload: PayoutPayload,
    ) -> Option<Result<Value, HandlerError>> {
        let client = h.pocket.as_ref()?;
        match client.get_exchange(&payload.exchange_id).await {
            Ok(e) if e.state() == ExchangeState::Settled => {
                let (method, invoice) = paid_out(&e);
                Some(Ok(output(
                    method.as_deref().unwrap_or("invoice"),
                    invoice.as_deref(),
                    Some(payload.amount_msat),
                    true,
                )))
            }
            _ => None,
        }
    }
}

/// How Pocket says it paid the exchange out (`type`, `invoice`).
fn paid_out(e: &Exchange) -> (Option<String>, Option<String>) {
    match &e.payout {
        Some(p) => (p.kind.clone(), p.invoice.clone()),
        None => (None, None),
    }
}

/// The handler: invoice (or channel) → PATCH → Pocket's answer.
async fn pay_out(
    client: &PocketClient,
    config: &Config,
    clients: &crate::clients::Clients,
    payload: &PayoutPayload,
) -> Result<Value, HandlerError> {
    let exchange_id = payload.exchange_id.clone();
    let node_name = payload.node.clone();
    let payee = PublicKey::from_str(&payload.node_pubkey)
        .map_err(|e| HandlerError::permanent(e.to_string()))?;
    let amount_msat = payload.amount_msat;
    let settings = config.lightning.get(&node_name).ok_or_else(|| {
        HandlerError::permanent(format!(
            "lightning.{node_name} is no longer in satflow.yaml"
        ))
    })?;
    // Built at start (no file is read here); built now only without the daemon's clients.
    let built;
    let node: &Node = match clients.node(&node_name) {
        Some(Ok(node)) => node,
        Some(Err(e)) => return Err(HandlerError::permanent(e)),
        None => {
            built =
                Node::from_config(settings).map_err(|e| HandlerError::permanent(e.to_string()))?;
            &built
        }
    };

    if payload.channel_fallback
        && let Some(inbound) = node.inbound_msat().await.map_err(node_error)?
        && Msat::new(inbound) < amount_msat
    {
        let address = payload.node_address.as_deref().ok_or_else(|| {
            HandlerError::permanent(format!(
                "the node can receive only {inbound} msat of {amount_msat}, and a channel payout needs its address: set lightning.{node_name}.node_address"
            ))
        })?;
        match client
            .patch_exchange(&exchange_id, &ExchangePayout::Channel(address.to_string()))
            .await
        {
            Ok(_) => {
                return Ok(
                    json!({ "method": "channel", "invoice": null, "amount_msat": amount_msat, "patched": true }),
                );
            }
            Err(e) => match e.verdict() {
                Verdict::FallBackToInvoice => {
                    tracing::info!(exchange = %exchange_id, "Pocket will not open a channel; paying by invoice");
                }
                // A channel Pocket is opening or has opened (a retry after an answer that was
                // lost): done, as on the invoice branch.
                Verdict::Done => {
                    return Ok(json!({
                        "method": "channel", "invoice": null, "amount_msat": amount_msat,
                        "patched": e.status().is_some_and(|s| (200..300).contains(&s)),
                    }));
                }
                _ => return Err(e.handler_error()),
            },
        }
    }

    // How long the invoice must still be valid is relative to its own expiry
    // (`invoice::required_remaining`); one too short-lived is replaced by a fresh one.
    let mut asked = 0;
    let invoice = loop {
        asked += 1;
        let invoice = node
            .invoice(
                amount_msat.get(),
                &format!("satflow: Pocket exchange {exchange_id}"),
                INVOICE_EXPIRY,
            )
            .await
            .map_err(node_error)?;
        let now = crate::clock::system_since_epoch();
        let expected = Expected {
            amount_msat: amount_msat.get(),
            network: Network::Bitcoin,
            payee: Some(payee),
            min_remaining: MIN_REMAINING,
            description_hash: invoice.description_hash,
        };
        match verify(&invoice.bolt11, &expected, now) {
            Ok(_) => break invoice,
            Err(e @ InvoiceError::ExpiresTooSoon { .. }) => {
                if asked >= INVOICE_ASKS {
                    return Err(HandlerError::from_class(
                        Class::TRANSIENT,
                        format!(
                            "lightning.{node_name} gave {asked} invoices too close to their expiry; trying again later: {e}"
                        ),
                        None,
                    ));
                }
                tracing::info!(exchange = %exchange_id, "{e}; asking lightning.{node_name} for a fresh invoice");
            }
            Err(e) => {
                return Err(HandlerError::permanent(format!(
                    "the invoice from lightning.{node_name} was refused before sending it to Pocket: {e}"
                )));
            }
        }
    };
    match client
        .patch_exchange(
            &exchange_id,
            &ExchangePayout::Invoice(invoice.bolt11.clone()),
        )
        .await
    {
        Ok(_) => Ok(
            json!({ "method": "invoice", "invoice": invoice.bolt11, "amount_msat": amount_msat, "patched": true }),
        ),
        Err(e) => match e.verdict() {
            // Pocket accepted this invoice (a 2xx whose body satflow does not need), or is
            // paying or has paid the exchange after an earlier attempt.
            Verdict::Done => {
                let accepted = e.status().is_some_and(|s| (200..300).contains(&s));
                Ok(json!({
                    "method": "invoice",
                    "invoice": accepted.then_some(invoice.bolt11),
                    "amount_msat": amount_msat,
                    "patched": accepted,
                }))
            }
            _ => Err(e.handler_error()),
        },
    }
}

fn node_error(e: NodeError) -> HandlerError {
    HandlerError::from_class(e.class(), e.to_string(), e.http_status())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored `exchange.executed` event of an exchange with these fields, as a run holds it.
    fn stored_event(fields: Value) -> Value {
        let mut exchange = json!({
            "id": "0b6f7c2e-1c4a-4e8e-9a51-3f0d2b7c9e11",
            "order_id": "a2d75998-5ee5-4501-a4cf-4e3788732b7a",
        });
        for (k, v) in fields.as_object().unwrap() {
            exchange[k] = v.clone();
        }
        let e: Exchange = serde_json::from_value(exchange).unwrap();
        ExchangeEvent::new("exchange.executed", e.state(), e.state(), &e, None).to_json()
    }

    #[test]
    fn the_payout_is_the_whole_amount_less_a_stated_payout_fee() {
        let event = stored_event(json!({ "amount": "0.00494000" }));
        assert_eq!(payout_amount(&event).unwrap(), Msat::new(494_000_000));
        let event = stored_event(json!({ "amount": "0.00494000", "payout_fee": 0.00000100 }));
        assert_eq!(payout_amount(&event).unwrap(), Msat::new(493_900_000));
        let no_amount = payout_amount(&stored_event(json!({}))).unwrap_err();
        assert_eq!(no_amount, "the executed exchange carries no amount");
        let too_much = stored_event(json!({ "amount": "0.00494000", "payout_fee": "0.005" }));
        assert!(
            payout_amount(&too_much)
                .unwrap_err()
                .starts_with("the payout fee exceeds the amount: ")
        );
        let bad_fee = stored_event(json!({ "amount": "0.00494000", "payout_fee": "lots" }));
        assert!(payout_amount(&bad_fee).unwrap_err().starts_with("payout_fee: "));
        assert!(payout_amount(&json!({ "amount": 0.005 })).is_err(), "not an exchange event");
    }

    #[test]
    fn a_payload_in_todays_shape_decodes_and_is_written_back_the_same() {
        let stored = json!({
            "exchange_id": "0b6f7c2e-1c4a-4e8e-9a51-3f0d2b7c9e11",
            "node": "home",
            "node_pubkey": "02eec7245d6b7d2ccb30380bfbe2a3648cd7a942653f5aa340edcea1f283686619",
            "amount_msat": 494_000_000,
            "channel_fallback": true,
            "node_address": null,
        });
        let p = PayoutEffect::decode(&stored).unwrap();
        assert_eq!(p.amount_msat, Msat::new(494_000_000));
        assert!(p.channel_fallback);
        assert_eq!(p.node_address, None);
        assert_eq!(serde_json::to_value(&p).unwrap(), stored);
        let written = PayoutEffect::item("k".into(), None, &p).unwrap();
        assert_eq!((written.kind.as_str(), &written.payload), ("pocket.payout", &stored));
        let mut no_amount = stored.clone();
        no_amount.as_object_mut().unwrap().remove("amount_msat");
        assert!(PayoutEffect::decode(&no_amount).is_err());
    }

    #[test]
    fn the_executed_event_is_read_as_the_typed_event_it_was_stored_as() {
        let stored = stored_event(json!({ "amount": "0.1" }));
        let event = ExchangeEvent::from_json(&stored).unwrap();
        assert_eq!(event.exchange_id, "0b6f7c2e-1c4a-4e8e-9a51-3f0d2b7c9e11");
        assert_eq!(
            event.order_id.as_deref(),
            Some("a2d75998-5ee5-4501-a4cf-4e3788732b7a")
        );
        assert_eq!(payout_msat(&event).unwrap(), Msat::new(10_000_000_000));
        assert!(ExchangeEvent::from_json(&json!("not an object")).is_err());
    }
}
