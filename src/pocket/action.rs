//! The `pocket.order` action: keep the order a workflow declares in shape on every run.
//!
//! It reads the order back from Pocket, refuses (with the reason and the way out) when a field
//! Pocket cannot change has drifted, and patches `active` / `fee_rate` through the outbox when
//! they differ from what the workflow wants now (a price cap may decide `active`). It never
//! creates an order: that needs a signature from the user's wallet, which `order setup` asks for.

use std::str::FromStr;

use serde_json::{Value, json};

use super::client::{PocketClient, PocketError};
use super::types::{Order, OrderPatch};
use crate::config::Config;
use crate::domain::FeeRate;
use crate::engine::runner::StepOutcome;
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
        let remote = match self.client.get_order(&stored.id).await {
            Ok(order) => order,
            Err(e) => {
                return StepOutcome::failed(format!(
                    "cannot read order {} back from Pocket: {e}",
                    stored.id
                ));
            }
        };
        if let Err(drift) = self.unchanged(workflow, declared, &remote, ctx) {
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
        let created = match self.store.order_checked(&remote, chrono::Utc::now()).await {
            Ok(first) => first,
            Err(e) => return StepOutcome::failed(e.to_string()),
        };
        if patch.is_empty() {
            return StepOutcome::succeeded(order_output(&remote, created, false), Vec::new());
        }
        StepOutcome::waiting(NewItem {
            kind: PATCH_KIND.into(),
            key,
            payload: json!({ "order_id": remote.id, "patch": patch.to_json(), "created": created }),
            run: Some(run),
        })
    }

    /// Refuses when a field Pocket cannot patch differs from the declaration.
    fn unchanged(
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
                let expected = self
                    .config
                    .lightning
                    .get(node)
                    .and_then(|n| n.node_pubkey)
                    .map(|k| k.to_string());
                if payout["node_pubkey"].as_str().map(str::to_string) != expected {
                    return Err(format!(
                        "the order pays out to another node than `{node}`. {new_order}"
                    ));
                }
            }
        }
        Ok(())
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
    let order = client.patch_order(id, &patch).await.map_err(classify)?;
    Ok(order_output(
        &order,
        payload["created"].as_bool().unwrap_or(false),
        true,
    ))
}

/// How the outbox treats a Pocket error: retry what may pass later, give up on refusals.
pub fn classify(e: PocketError) -> HandlerError {
    match &e {
        PocketError::Api { status, .. } if matches!(status, 408 | 425 | 429) || *status >= 500 => {
            HandlerError::Transient {
                message: e.to_string(),
                retry_after: None,
                http_status: e.status(),
            }
        }
        PocketError::Api { .. } | PocketError::Decode { .. } => HandlerError::Permanent {
            message: e.to_string(),
            http_status: e.status(),
        },
        PocketError::Unreachable { .. } => HandlerError::transient(e.to_string()),
        PocketError::Timeout { .. } => HandlerError::Unknown(e.to_string()),
    }
}
