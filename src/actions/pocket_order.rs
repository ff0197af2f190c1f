//! `pocket.order`: keep the order a workflow declares in shape on every run.
//!
//! It reads the order back from Pocket (a transient failure is tried again within the run, a
//! few times and within a time budget, with the attempts in the step's output or error),
//! refuses (with the reason and the way out) when a field Pocket cannot change has drifted —
//! a Lightning order's node is compared with the node's actual key — and patches `active` /
//! `fee_rate` through the outbox (a `pocket.order.patch` item) when they differ from what the
//! workflow wants now (a price cap may decide `active`). It never creates an order: that needs a
//! signature from the user's wallet, which `order setup` asks for.

use std::str::FromStr;

use bitcoin::bip32::DerivationPath;
use bitcoin::secp256k1::PublicKey;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::read::ActionReader;
use super::{ActionStep, Condition, Param, StepCx, StepOutcome};
use crate::domain::{Currency, FeeRate, Iban};
use crate::lightning::node::{Node as LightningNode, NodeError};
use crate::outbox::{Effect, HandlerError, Handlers};
use crate::pocket::outcomes::{Patience, Verdict};
use crate::pocket::types::{Order, OrderPatch};
use crate::source::reader::{describe, string};
use crate::source::{MapReader, Node, Pos};
use crate::store::ItemRow;
use crate::expr::eval_condition;

/// The outbox kind of an order patch.
pub const PATCH_KIND: &str = "pocket.order.patch";

/// Ensure the workflow's standing order exists and matches; patch `active`/`fee_rate`.
#[derive(Debug, Clone)]
pub struct PocketOrder {
    pub currency: Param<Currency>,
    pub fee_rate: Param<FeeRate>,
    pub debitor_iban: Param<Iban>,
    pub payout: Payout,
    /// Where the payout's wallet or node is named, for problems found across workflows.
    pub payout_pos: Pos,
    pub active: Condition,
    pub affiliate_id: Option<String>,
    /// What the user's bank sends for this order, watched by the missed-purchase checker.
    pub expect: Option<crate::expect::Expect>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Payout {
    /// On-chain to the wallet; with an xpub, Pocket rotates addresses from `derivation_path`.
    Wallet {
        wallet: String,
        derivation_path: Option<DerivationPath>,
    },
    Lightning {
        node: String,
        lightning_address: Option<String>,
    },
}

impl ActionStep for PocketOrder {
    const NAME: &'static str = "pocket.order";
    const OUTPUTS: &'static [&'static str] = &[
        "order_id",
        "created",
        "patched",
        "active",
        "fee_rate",
        "currency",
        "creditor_name",
        "creditor_iban",
        "creditor_bic",
        "creditor_reference",
    ];

    fn read(r: &mut ActionReader<'_, '_>, m: &mut MapReader<'_>) -> Option<Self> {
        let currency = m
            .required(
                "currency",
                "write the currency of your bank payments: eur, chf or gbp",
                r.ctx,
            )
            .and_then(|n| r.param(n, "currency", Currency::from_str));
        let fee_rate = m
            .required(
                "fee_rate",
                "write Pocket's fee as a fraction from 0.012 to 0.045, e.g. fee_rate: \"0.015\"",
                r.ctx,
            )
            .and_then(|n| r.param(n, "fee_rate", FeeRate::from_str));
        let iban = m
            .required(
                "debitor_iban",
                "write the IBAN you pay from, e.g. debitor_iban: ${MY_IBAN}",
                r.ctx,
            )
            .and_then(|n| r.param(n, "debitor_iban", Iban::from_str));
        let payout = m
            .required(
                "payout",
                "write payout: { wallet: NAME } for on-chain, or payout: { lightning: NODE }",
                r.ctx,
            )
            .and_then(|n| read_payout(r, n));
        let active = match m.get("active") {
            Some(n) => r.condition(n, "active"),
            None => Some(Condition::Fixed(true)),
        };
        let affiliate_id = m
            .get("affiliate_id")
            .and_then(|n| string(n, &r.field("affiliate_id"), r.ctx));
        let expect = match m.get("expect") {
            Some(n) => {
                let expect = crate::expect::Expect::read(r, n);
                if let (Some(e), Some(Param::Value(c))) = (&expect, &currency)
                    && e.currency != *c
                {
                    r.ctx.error(
                        n.pos,
                        format!(
                            "{}: the amount is in {}, but the order is paid in {}; write the amount in {}",
                            r.field("expect.amount"),
                            e.currency.code().to_uppercase(),
                            c.code().to_uppercase(),
                            c.code().to_uppercase()
                        ),
                    );
                    return None;
                }
                Some(expect?)
            }
            None => None,
        };
        let payout = payout?;
        Some(PocketOrder {
            expect,
            currency: currency?,
            fee_rate: fee_rate?,
            debitor_iban: iban?,
            payout: payout.0,
            payout_pos: payout.1,
            active: active?,
            affiliate_id,
        })
    }

    /// One `pocket.order` step.
    async fn perform(&self, cx: &StepCx<'_>) -> StepOutcome {
        let Some(client) = cx.pocket else {
            return StepOutcome::failed("satflow.yaml has no `pocket` section");
        };
        let workflow = cx.run.workflow.as_str();
        let stored = match cx.store.order_for_workflow(workflow).await {
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
        let (remote, failed) = client
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
        let read_attempts = failed.len() as u64 + 1;
        if let Err(drift) = unchanged(cx, workflow, self, &remote).await {
            return StepOutcome::failed(drift);
        }
        let active = match &self.active {
            Condition::Fixed(active) => *active,
            Condition::Expression(expr) => match eval_condition(cx.env, expr, cx.ctx) {
                Ok(active) => active,
                Err(e) => return StepOutcome::failed(format!("active: {e}")),
            },
        };
        let fee_rate = match cx.param(&self.fee_rate, FeeRate::from_str) {
            Ok(rate) => rate,
            Err(e) => return StepOutcome::failed(format!("fee_rate: {e}")),
        };
        let patch = PatchFields {
            active: (remote.active != active).then_some(active),
            fee_rate: (remote.fee_rate != Some(fee_rate.value())).then_some(fee_rate),
        };
        let created = match cx.store.order_checked(&remote, crate::clock::system_now()).await {
            Ok(first) => first,
            Err(e) => return StepOutcome::failed(e.to_string()),
        };
        let read_failures = (!failed.is_empty()).then_some(failed);
        if patch.is_empty() {
            return StepOutcome::succeeded(
                with_reads(order_output(&remote, created, false), Some(read_attempts), read_failures),
                Vec::new(),
            );
        }
        let payload = PatchPayload {
            order_id: remote.id.clone(),
            patch,
            created,
            read_attempts: Some(read_attempts),
            read_failures,
        };
        match OrderPatchEffect::item(cx.key(), cx.waiter(), &payload) {
            Ok(item) => StepOutcome::waiting(item),
            Err(e) => StepOutcome::failed(format!("cannot write the order patch: {e}")),
        }
    }
}

/// The payout and where its wallet or node is named.
fn read_payout(r: &mut ActionReader<'_, '_>, node: &Node) -> Option<(Payout, Pos)> {
    let field = r.field("payout");
    let mut p = MapReader::new(node, field.clone(), r.ctx)?;
    let wallet = p.get("wallet");
    let lightning = p.get("lightning");
    let payout = match (wallet, lightning) {
        (Some(w), None) => {
            let wallet = r.reference(
                w,
                "payout.wallet",
                "wallets",
                &mut r.names.wallets.iter(),
            );
            if let Some(name) = &wallet
                && r.names.taproot_wallets.contains(name)
            {
                r.ctx.error(
                    w.pos,
                    format!("{field}.wallet: `{name}` is a taproot wallet; Pocket needs a signed message to prove ownership, which taproot addresses cannot give; use a p2wpkh (zpub) wallet"),
                );
            }
            let derivation_path = p.get("derivation_path").and_then(|n| {
                let text = string(n, "derivation_path", r.ctx)?;
                DerivationPath::from_str(&text)
                    .map_err(|_| {
                        r.ctx.error(
                            n.pos,
                            format!("{field}.derivation_path: {} is not a derivation path; write e.g. m/84'/0'/0'/0/0 or 0/0", describe(&text)),
                        )
                    })
                    .ok()
            });
            wallet.map(|wallet| {
                let payout = Payout::Wallet {
                    wallet,
                    derivation_path,
                };
                (payout, w.pos)
            })
        }
        (None, Some(l)) => {
            let node = r.reference(
                l,
                "payout.lightning",
                "lightning",
                &mut r.names.nodes.keys(),
            );
            let lightning_address = p
                .get("lightning_address")
                .and_then(|n| string(n, "lightning_address", r.ctx));
            node.map(|node| {
                let payout = Payout::Lightning {
                    node,
                    lightning_address,
                };
                (payout, l.pos)
            })
        }
        (Some(w), Some(_)) => {
            r.ctx.error(w.pos, format!("{field}: both `wallet` and `lightning` are set; an order pays out one way, keep one"));
            None
        }
        (None, None) => {
            r.ctx.error(p.pos, format!("{field}: write {{ wallet: NAME }} for on-chain or {{ lightning: NODE }} for Lightning"));
            None
        }
    };
    p.finish(r.ctx);
    payout
}

/// What of an order's `payment_method` this action reads or shows (each as Pocket sent it).
#[derive(Debug, Default, Deserialize)]
struct PaymentMethod {
    #[serde(default)]
    debitor_iban: Option<Value>,
    #[serde(default)]
    currency: Option<Value>,
    #[serde(default)]
    creditor_name: Option<Value>,
    #[serde(default)]
    creditor_iban: Option<Value>,
    #[serde(default)]
    creditor_bank_bic: Option<Value>,
    #[serde(default)]
    creditor_reference: Option<Value>,
    #[serde(default)]
    swiss_qr_bill_payload: Option<Value>,
}

/// What of an order's `payout_method` this action compares.
#[derive(Debug, Default, Deserialize)]
struct PayoutMethod {
    #[serde(default)]
    extended_public_key: Option<Value>,
    #[serde(default)]
    node_pubkey: Option<Value>,
}

/// The one place the order's free-form methods are read: a typed `Order` replaces these.
fn payment_method(order: &Order) -> PaymentMethod {
    PaymentMethod::deserialize(&order.payment_method).unwrap_or_default()
}

fn payout_method(order: &Order) -> PayoutMethod {
    PayoutMethod::deserialize(&order.payout_method).unwrap_or_default()
}

/// A field given as text.
fn text(v: &Option<Value>) -> Option<&str> {
    match v {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

/// Refuses when a field Pocket cannot patch differs from the declaration.
async fn unchanged(
    cx: &StepCx<'_>,
    workflow: &str,
    declared: &PocketOrder,
    remote: &Order,
) -> Result<(), String> {
    let new_order = format!(
        "Pocket cannot change this on an existing order: a new order means a new bank reference. Run `satflow order setup {workflow} --replace`, then update your bank's standing order"
    );
    let currency = cx.param(&declared.currency, |s| {
        Currency::from_str(s).map_err(|e| e.to_string())
    })?;
    if remote.currency() != Some(currency.code()) {
        return Err(format!(
            "the order pays in {} but the workflow now says {currency}. {new_order}",
            remote.currency().unwrap_or("?")
        ));
    }
    let iban = cx.param(&declared.debitor_iban, |s| {
        Iban::from_str(s).map_err(|e| e.to_string())
    })?;
    let remote_iban = text(&payment_method(remote).debitor_iban)
        .unwrap_or_default()
        .replace(' ', "");
    if remote_iban != iban.as_str() {
        return Err(format!(
            "the order is paid from {remote_iban} but the workflow now says {iban}. {new_order}"
        ));
    }
    let payout = payout_method(remote);
    match &declared.payout {
        Payout::Wallet { wallet, .. } => {
            let expected = cx
                .config
                .wallets
                .get(wallet)
                .and_then(|w| w.key.account())
                .map(|a| a.extended());
            let actual = text(&payout.extended_public_key);
            if actual.is_some() && actual.map(str::to_string) != expected {
                return Err(format!(
                    "the order pays out to another extended public key than wallet `{wallet}`'s. {new_order}"
                ));
            }
        }
        Payout::Lightning { node, .. } => {
            let expected = node_pubkey(cx, node).await?;
            let actual = text(&payout.node_pubkey).and_then(|k| PublicKey::from_str(k).ok());
            if actual != Some(expected) {
                return Err(format!(
                    "the order pays out to node {}, not to lightning.{node} (node {expected}). {new_order}",
                    text(&payout.node_pubkey).unwrap_or("no node")
                ));
            }
        }
    }
    Ok(())
}

/// The node's actual key: `lightning.<node>.node_pubkey` when given, else the node's own
/// answer (`getinfo`), as `order setup` read it when it made the order.
async fn node_pubkey(cx: &StepCx<'_>, node: &str) -> Result<PublicKey, String> {
    let settings = cx.config.lightning.get(node).ok_or_else(|| {
        format!("the workflow pays out to lightning.{node}, which satflow.yaml does not define")
    })?;
    if let Some(key) = settings.node_pubkey {
        return Ok(key);
    }
    fn unknown(node: &str, e: impl std::fmt::Display) -> String {
        format!(
            "cannot check that the order still pays out to lightning.{node}: its key comes from the node, which did not give it ({e}); nothing was changed, the next run checks again"
        )
    }
    // Built at start (no file is read here); built now only without the daemon's clients.
    let built;
    let client = match cx.clients.node(node) {
        Some(Ok(client)) => client,
        Some(Err(e)) => return Err(unknown(node, e)),
        None => {
            built = LightningNode::from_config(settings).map_err(|e| unknown(node, e))?;
            &built
        }
    };
    client.pubkey().await.map_err(|e: NodeError| unknown(node, e))
}

/// What `steps.<id>` holds after a `pocket.order` step.
pub fn order_output(order: &Order, created: bool, patched: bool) -> Map<String, Value> {
    let pm = payment_method(order);
    let out = json!({
        "order_id": order.id,
        "created": created,
        "patched": patched,
        "active": order.active,
        "fee_rate": order.fee_rate.map(crate::pocket::types::number),
        "currency": pm.currency,
        "creditor_name": pm.creditor_name,
        "creditor_iban": pm.creditor_iban,
        "creditor_bic": pm.creditor_bank_bic,
        "creditor_reference": pm.creditor_reference,
        // For the order-created email's payment QR code (CHF).
        "swiss_qr_bill_payload": pm.swiss_qr_bill_payload,
    });
    match out {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The output with how many reads of the order it took (and what failed), for `runs show`.
fn with_reads(
    mut output: Map<String, Value>,
    attempts: Option<u64>,
    failures: Option<Vec<String>>,
) -> Value {
    if let Some(n) = attempts {
        output.insert("read_attempts".into(), json!(n));
    }
    if let Some(failures) = failures {
        output.insert("read_failures".into(), json!(failures));
    }
    Value::Object(output)
}

/// The payload of a `pocket.order.patch` item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchPayload {
    pub order_id: String,
    pub patch: PatchFields,
    /// The order was seen for the first time by this step.
    #[serde(default)]
    pub created: bool,
    #[serde(default)]
    pub read_attempts: Option<u64>,
    /// `null` when the first read succeeded.
    #[serde(default)]
    pub read_failures: Option<Vec<String>>,
}

/// The fields to set; an absent one is left as it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PatchFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// A JSON number, as Pocket takes it.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "fee_rate_number")]
    pub fee_rate: Option<FeeRate>,
}

impl PatchFields {
    fn is_empty(&self) -> bool {
        self.active.is_none() && self.fee_rate.is_none()
    }
}

mod fee_rate_number {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<FeeRate>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(rate) => crate::pocket::types::number(rate.value()).serialize(s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<FeeRate>, D::Error> {
        match Option::<Value>::deserialize(d)? {
            None | Some(Value::Null) => Ok(None),
            Some(v) => FeeRate::from_str(&v.to_string())
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// The outbox side: `PATCH` the order. Setting the same values twice is harmless, so an unknown
/// outcome is simply sent again (no reconciliation).
pub struct OrderPatchEffect;

impl Effect for OrderPatchEffect {
    const KIND: &'static str = PATCH_KIND;
    type Payload = PatchPayload;

    async fn handle(
        h: &Handlers,
        _item: &ItemRow,
        payload: PatchPayload,
    ) -> Result<Value, HandlerError> {
        let patch = OrderPatch {
            active: payload.patch.active,
            fee_rate: payload.patch.fee_rate,
        };
        let order = h
            .pocket()?
            .patch_order(&payload.order_id, &patch)
            .await
            .map_err(|e| e.handler_error())?;
        Ok(with_reads(
            order_output(&order, payload.created, true),
            payload.read_attempts,
            payload.read_failures,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_in_todays_shape_decodes_and_is_written_back_the_same() {
        let stored = json!({
            "order_id": "7d3f2b4e-9c1a-4f5e-8b2d-1a2b3c4d5e6f",
            "patch": { "active": false, "fee_rate": 0.015 },
            "created": false,
            "read_attempts": 2,
            "read_failures": ["503 Service Unavailable"],
        });
        let p = OrderPatchEffect::decode(&stored).unwrap();
        assert_eq!(p.patch.active, Some(false));
        assert_eq!(p.patch.fee_rate, Some(FeeRate::from_str("0.015").unwrap()));
        assert_eq!(p.read_attempts, Some(2));
        assert_eq!(serde_json::to_value(&p).unwrap(), stored);
        // Only what changes is sent; a first read that worked is written as null.
        let only_active = json!({
            "order_id": "o", "patch": { "active": true }, "created": true,
            "read_attempts": 1, "read_failures": null,
        });
        let p = OrderPatchEffect::decode(&only_active).unwrap();
        assert_eq!(p.patch.fee_rate, None);
        assert_eq!(p.read_failures, None);
        assert_eq!(serde_json::to_value(&p).unwrap(), only_active);
        // Rows written before the read counts existed.
        let older = OrderPatchEffect::decode(&json!({ "order_id": "o", "patch": {} })).unwrap();
        assert!(!older.created && older.read_attempts.is_none() && older.patch.is_empty());
        let bad = json!({ "order_id": "o", "patch": { "fee_rate": 0.5 } });
        assert!(OrderPatchEffect::decode(&bad).is_err(), "out of Pocket's range");
    }
}
