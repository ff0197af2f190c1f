//! The `pocket.order` action: keep the order a workflow declares in shape on every run.
//!
//! It reads the order back from Pocket (a transient failure is tried again within the run, a
//! few times and within a time budget, with the attempts in the step's output or error),
//! refuses (with the reason and the way out) when a field Pocket cannot change has drifted —
//! a Lightning order's node is compared with the node's actual key — and patches `active` /
//! `fee_rate` through the outbox when they differ from what the workflow wants now (a price cap
//! may decide `active`). It never creates an order: that needs a signature from the user's
//! wallet, which `order setup` asks for.

use std::str::FromStr;

use serde_json::{Value, json};

use bitcoin::secp256k1::PublicKey;

use super::client::PocketClient;
use super::outcomes::{Patience, Verdict};
use super::types::{Order, OrderPatch};
use crate::config::Config;
use crate::domain::FeeRate;
use crate::engine::runner::StepOutcome;
use crate::lightning::node::{Node, NodeError};
use crate::outbox::HandlerError;
use crate::store::{NewItem, Store};
use crate::workflow::actions::{Payout, PocketOrder};
use crate::workflow::expr::{eval_condition, render};
use crate::workflow::{Condition, Param};

/// The outbox kind of an order patch.
pub const PATCH_KIND: &str = "pocket.order.patch";

pub struct OrderKeeper<'a> {
    pub store: &'a Store,
    pub client: &'a PocketClient,
    pub config: &'a Config,
    pub env: &'a minijinja::Environment<'static>,
}

impl OrderKeeper<'_> {
    /// One `pocket.order` step. `key` and `run` identify the step, for a patch it causes.
    pub async fn keep(
        &self,
        workflow: &str,
        declared: &PocketOrder,
        ctx: &Value,
        key: String,
        run: (i64, String),
    ) -> StepOutcome {
        let stored = match self.store.order_for_workflow(workflow).await {
            Ok(Some(stored)) => stored,
            Ok(None) => {
                return StepOutcome::failed(format!(
                    "workflow `{workflow}` has no Pocket order yet: run `satflow order setup {workflow}` (it asks your wallet for a signature, which a scheduled run cannot)"
                ));
            }
            Err(e) => return StepOutcome::failed(e.to_string()),
        };
        // A read that fails for a moment is tried again within the run, so a passing 503
        // does not skip the week's check (and a price-cap pause with it).
        let (remote, failed) = self
            .client
            .get_order_patiently(&stored.id, &Patience::default())
            .await;
        let remote = match remote {
            Ok(order) => order,
            Err(e) => {
                let retried = match failed.len() {
                    0 | 1 => String::new(),
                    n => format!(" after {n} attempts ({})", failed.join("; ")),
                };
                let why = match e.verdict() {
                    Verdict::Permanent(reason) => format!("; {reason}"),
                    _ => String::new(),
                };
                return StepOutcome::failed(format!(
                    "cannot read order {} back from Pocket{retried}: {e}{why}",
                    stored.id
                ));
            }
        };
        // How many reads it took, for `runs show`.
        let read_attempts = failed.len() + 1;
        if let Err(drift) = self.unchanged(workflow, declared, &remote, ctx).await {
            return StepOutcome::failed(drift);
        }
        let active = match &declared.active {
            Condition::Fixed(active) => *active,
            Condition::Expression(expr) => match eval_condition(self.env, expr, ctx) {
                Ok(active) => active,
                Err(e) => return StepOutcome::failed(format!("active: {e}")),
            },
        };
        let fee_rate = match param(self.env, &declared.fee_rate, ctx, FeeRate::from_str) {
            Ok(rate) => rate,
            Err(e) => return StepOutcome::failed(format!("fee_rate: {e}")),
        };
        let patch = OrderPatch {
            active: (remote.active != active).then_some(active),
            fee_rate: (remote.fee_rate != Some(fee_rate.value())).then_some(fee_rate),
        };
        let created = match self
            .store
            .order_checked(&remote, crate::clock::system_now())
            .await
        {
            Ok(first) => first,
            Err(e) => return StepOutcome::failed(e.to_string()),
        };
        if patch.is_empty() {
            let mut output = order_output(&remote, created, false);
            output["read_attempts"] = json!(read_attempts);
            if !failed.is_empty() {
                output["read_failures"] = json!(failed);
            }
            return StepOutcome::succeeded(output, Vec::new());
        }
        StepOutcome::waiting(NewItem {
            kind: PATCH_KIND.into(),
            key,
            payload: json!({
                "order_id": remote.id, "patch": patch.to_json(), "created": created,
                "read_attempts": read_attempts,
                "read_failures": (!failed.is_empty()).then_some(&failed),
            }),
            run: Some(run),
        })
    }

    /// Refuses when a field Pocket cannot patch differs from the declaration.
    async fn unchanged(
        &self,
        workflow: &str,
        declared: &PocketOrder,
        remote: &Order,
        ctx: &Value,
    ) -> Result<(), String> {
        let new_order = format!(
            "Pocket cannot change this on an existing order: a new order means a new bank reference. Run `satflow order setup {workflow} --replace`, then update your bank's standing order"
        );
        let currency = param(self.env, &declared.currency, ctx, |s| {
            crate::domain::Currency::from_str(s).map_err(|e| e.to_string())
        })?;
        if remote.currency() != Some(currency.code()) {
            return Err(format!(
                "the order pays in {} but the workflow now says {currency}. {new_order}",
                remote.currency().unwrap_or("?")
            ));
        }
        let iban = param(self.env, &declared.debitor_iban, ctx, |s| {
            crate::domain::Iban::from_str(s).map_err(|e| e.to_string())
        })?;
        let remote_iban = remote.payment_method["debitor_iban"]
            .as_str()
            .unwrap_or_default()
            .replace(' ', "");
        if remote_iban != iban.as_str() {
            return Err(format!(
                "the order is paid from {remote_iban} but the workflow now says {iban}. {new_order}"
            ));
        }
        let payout = &remote.payout_method;
        match &declared.payout {
            Payout::Wallet { wallet, .. } => {
                let expected = self
                    .config
                    .wallets
                    .get(wallet)
                    .and_then(|w| w.key.account())
                    .map(|a| a.extended());
                let actual = payout["extended_public_key"].as_str();
                if actual.is_some() && actual.map(str::to_string) != expected {
                    return Err(format!(
                        "the order pays out to another extended public key than wallet `{wallet}`'s. {new_order}"
                    ));
                }
            }
            Payout::Lightning { node, .. } => {
                let expected = self.node_pubkey(node).await?;
                let actual = payout["node_pubkey"]
                    .as_str()
                    .and_then(|k| PublicKey::from_str(k).ok());
                if actual != Some(expected) {
                    return Err(format!(
                        "the order pays out to node {}, not to lightning.{node} (node {expected}). {new_order}",
                        payout["node_pubkey"].as_str().unwrap_or("no node")
                    ));
                }
            }
        }
        Ok(())
    }
}

impl OrderKeeper<'_> {
    /// The node's actual key: `lightning.<node>.node_pubkey` when given, else the node's own
    /// answer (`getinfo`), as `order setup` read it when it made the order.
    async fn node_pubkey(&self, node: &str) -> Result<PublicKey, String> {
        let settings = self.config.lightning.get(node).ok_or_else(|| {
            format!("the workflow pays out to lightning.{node}, which satflow.yaml does not define")
        })?;
        if let Some(key) = settings.node_pubkey {
            return Ok(key);
        }
        let unknown = |e: NodeError| {
            format!(
                "cannot check that the order still pays out to lightning.{node}: its key comes from the node, which did not give it ({e}); nothing was changed, the next run checks again"
            )
        };
        Node::from_config(settings)
            .map_err(unknown)?
            .pubkey()
            .await
            .map_err(unknown)
    }
}

fn param<T: Clone, E: std::fmt::Display>(
    env: &minijinja::Environment<'_>,
    param: &Param<T>,
    ctx: &Value,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<T, String> {
    match param {
        Param::Value(v) => Ok(v.clone()),
        Param::Template(source) => {
            let text = render(env, source, ctx)?;
            parse(text.trim()).map_err(|e| format!("\"{}\" (from the template): {e}", text.trim()))
        }
    }
}

/// What `steps.<id>` holds after a `pocket.order` step.
pub fn order_output(order: &Order, created: bool, patched: bool) -> Value {
    let pm = &order.payment_method;
    json!({
        "order_id": order.id,
        "created": created,
        "patched": patched,
        "active": order.active,
        "fee_rate": order.fee_rate.map(super::types::number),
        "currency": pm["currency"],
        "creditor_name": pm["creditor_name"],
        "creditor_iban": pm["creditor_iban"],
        "creditor_bic": pm["creditor_bank_bic"],
        "creditor_reference": pm["creditor_reference"],
        // For the order-created email's payment QR code (CHF).
        "swiss_qr_bill_payload": pm["swiss_qr_bill_payload"],
    })
}

/// The outbox handler of an order patch. Setting the same values twice is harmless, so an
/// unknown outcome is simply sent again.
pub async fn patch(client: &PocketClient, payload: &Value) -> Result<Value, HandlerError> {
    let id = payload["order_id"]
        .as_str()
        .ok_or_else(|| HandlerError::permanent("the item names no order"))?;
    let p = &payload["patch"];
    let fee_rate = match &p["fee_rate"] {
        Value::Null => None,
        v => Some(
            FeeRate::from_str(&v.to_string())
                .map_err(|e| HandlerError::permanent(e.to_string()))?,
        ),
    };
    let patch = OrderPatch {
        active: p["active"].as_bool(),
        fee_rate,
    };
    let order = client
        .patch_order(id, &patch)
        .await
        .map_err(|e| e.handler_error())?;
    let mut output = order_output(&order, payload["created"].as_bool().unwrap_or(false), true);
    if let Some(n) = payload["read_attempts"].as_u64() {
        output["read_attempts"] = json!(n);
    }
    if payload["read_failures"].is_array() {
        output["read_failures"] = payload["read_failures"].clone();
    }
    Ok(output)
}
