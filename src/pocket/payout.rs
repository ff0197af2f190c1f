//! The `pocket.payout` action: when an exchange of a Lightning order executes, pay it out to the
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

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use bitcoin::Network;
use bitcoin::secp256k1::PublicKey;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::client::PocketClient;
use super::outcomes::Verdict;
use super::types::{ExchangePayout, ExchangeState};
use crate::config::Config;
use crate::domain::Btc;
use crate::engine::runner::StepOutcome;
use crate::lightning::invoice::{Expected, InvoiceError, MIN_REMAINING, verify};
use crate::lightning::node::{Node, NodeError};
use crate::outbox::HandlerError;
use crate::outcome::Class;
use crate::store::{NewItem, RunRow, Store};
use crate::workflow::actions::{Payout, PocketPayout};
use crate::workflow::{Action, Workflow};

/// The outbox kind of a payout.
pub const KIND: &str = "pocket.payout";

/// How many invoices one attempt asks for when each is too close to its expiry (a provider
/// handing out stale invoices); then the attempt is retried later, as a transient failure.
const INVOICE_ASKS: u32 = 3;

/// How long the invoices asked of the node are valid.
const INVOICE_EXPIRY: Duration = Duration::from_secs(60 * 60);

/// The step: decides whether the event's exchange is paid out by Lightning, and queues it.
pub async fn prepare(
    store: &Store,
    config: &Config,
    workflows: &BTreeMap<String, Workflow>,
    run: &RunRow,
    step: &PocketPayout,
    key: String,
    step_id: &str,
) -> StepOutcome {
    let Some(event) = &run.event else {
        return StepOutcome::failed(
            "pocket.payout pays out an exchange: run it on `exchange.executed` events",
        );
    };
    let (Some(exchange_id), Some(order_id)) =
        (event["exchange_id"].as_str(), event["order_id"].as_str())
    else {
        return StepOutcome::failed("the event names no exchange and order");
    };
    let not_lightning = || {
        StepOutcome::succeeded(
            json!({ "method": "none", "invoice": null, "amount_msat": null, "patched": false }),
            Vec::new(),
        )
    };
    let order = match store.order_by_id(order_id).await {
        Ok(Some(order)) => order,
        Ok(None) => return not_lightning(), // an order satflow did not make
        Err(e) => return StepOutcome::failed(e.to_string()),
    };
    if order.payout_kind != "lightning" {
        return not_lightning();
    }
    let Some(node_pubkey) = order.order.payout_method["node_pubkey"].as_str() else {
        return StepOutcome::failed(format!(
            "order {order_id} pays out by Lightning but names no node_pubkey"
        ));
    };
    // The node: the step's, else the one the order's workflow declares.
    let declared = workflows.get(&order.workflow).and_then(|w| {
        w.steps.iter().find_map(|s| match &s.action {
            Action::PocketOrder(o) => match &o.payout {
                Payout::Lightning { node, .. } => Some(node.clone()),
                Payout::Wallet { .. } => None,
            },
            _ => None,
        })
    });
    let Some(node) = step.node.clone().or(declared) else {
        return StepOutcome::failed(format!(
            "no Lightning node to pay exchange {exchange_id} out to: set `node:` on the step"
        ));
    };
    let amount = match payout_amount(event) {
        Ok(msat) => msat,
        Err(e) => return StepOutcome::failed(e),
    };
    let node_address = step.node_address.clone().or_else(|| {
        config
            .lightning
            .get(&node)
            .and_then(|n| n.node_address.clone())
    });
    StepOutcome::waiting(NewItem {
        kind: KIND.into(),
        key,
        payload: json!({
            "exchange_id": exchange_id,
            "node": node,
            "node_pubkey": node_pubkey,
            "amount_msat": amount,
            "channel_fallback": step.channel_fallback,
            "node_address": node_address,
        }),
        run: Some((run.id, step_id.to_string())),
    })
}

/// The amount Pocket pays out for the exchange in `event`, in msat (see the module's rule).
pub fn payout_amount(event: &Value) -> Result<u64, String> {
    let amount = event["amount"]
        .as_str()
        .ok_or("the executed exchange carries no amount")?;
    let amount = Btc::from_str(amount).map_err(|e| e.to_string())?;
    let fee = match &event["exchange"]["payout_fee"] {
        Value::Null => Decimal::ZERO,
        v => super::types::parse_decimal(v.to_string().trim_matches('"'))
            .map_err(|e| format!("payout_fee: {e}"))?,
    };
    let net = Btc::new(amount.value() - fee)
        .map_err(|e| format!("the payout fee exceeds the amount: {e}"))?;
    Ok(net.msat())
}

/// The outbox handler: invoice (or channel) → PATCH → Pocket's answer.
pub async fn pay_out(
    client: &PocketClient,
    config: &Config,
    clients: &crate::clients::Clients,
    payload: &Value,
) -> Result<Value, HandlerError> {
    let field = |name: &str| {
        payload[name]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| HandlerError::permanent(format!("the item has no {name}")))
    };
    let exchange_id = field("exchange_id")?;
    let node_name = field("node")?;
    let payee = PublicKey::from_str(&field("node_pubkey")?)
        .map_err(|e| HandlerError::permanent(e.to_string()))?;
    let amount_msat = payload["amount_msat"]
        .as_u64()
        .ok_or_else(|| HandlerError::permanent("the item has no amount"))?;
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

    if payload["channel_fallback"] == true
        && let Some(inbound) = node.inbound_msat().await.map_err(node_error)?
        && inbound < amount_msat
    {
        let address = payload["node_address"].as_str().ok_or_else(|| {
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
                amount_msat,
                &format!("satflow: Pocket exchange {exchange_id}"),
                INVOICE_EXPIRY,
            )
            .await
            .map_err(node_error)?;
        let now = crate::clock::system_since_epoch();
        let expected = Expected {
            amount_msat,
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

/// After an attempt whose outcome is unknown: a payout Pocket already has is done; otherwise
/// a new attempt (with a fresh invoice) is safe, because Pocket pays an exchange once.
pub async fn reconcile(
    client: &PocketClient,
    payload: &Value,
) -> Option<Result<Value, HandlerError>> {
    let id = payload["exchange_id"].as_str()?;
    match client.get_exchange(id).await {
        Ok(e) if e.state() == ExchangeState::Settled => Some(Ok(json!({
            "method": e.payout.as_ref().and_then(|p| p.kind.as_deref()).unwrap_or("invoice"),
            "invoice": e.payout.as_ref().and_then(|p| p.invoice.as_deref()),
            "amount_msat": payload["amount_msat"],
            "patched": true,
        }))),
        _ => None,
    }
}

fn node_error(e: NodeError) -> HandlerError {
    HandlerError::from_class(e.class(), e.to_string(), e.http_status())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payout_is_the_whole_amount_less_a_stated_payout_fee() {
        let event = json!({ "amount": "0.00494000", "exchange": {} });
        assert_eq!(payout_amount(&event).unwrap(), 494_000_000);
        let event = json!({ "amount": "0.00494000", "exchange": { "payout_fee": 0.00000100 } });
        assert_eq!(payout_amount(&event).unwrap(), 493_900_000);
        assert!(payout_amount(&json!({ "exchange": {} })).is_err());
    }
}
