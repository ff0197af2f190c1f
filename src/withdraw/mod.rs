//! Withdrawals to cold storage, exactly once: from the Lightning Peach hub (`lightningpeach`) or
//! an LND node's on-chain wallet (`lnd`) to a freshly reserved address of the user's wallet.
//!
//! A withdrawal is keyed by `(workflow, scheduled period)`. The `withdraw` step
//! (`crate::actions::withdraw`) plans it — its row and its reserved address commit with the
//! step — and an outbox item carries it out through [`execute`] here. Before the
//! provider is called the row says so (`requesting`, with the balance seen); an attempt whose
//! outcome is unknown is reconciled through the provider first (LND: the transaction labelled
//! with the key; the hub: its balance, since a withdrawal takes all of it). Then the withdrawal
//! is followed until its transaction is confirmed.
//!
//! Policy, decided just before sending: `keep_sat` stays behind, less than `min_amount_sat`
//! (and never under the hub's 1000 sat) is not worth moving, and a fee above `max_fee_rate`
//! sat/vB or `max_fee_percent` of the amount skips the period, saying why. The outbox item
//! carries the whole policy explicitly ([`Item`]): a field that is missing or unreadable stops
//! the withdrawal with the reason, never reads as "no limit".
//!
//! Outcomes of the providers' calls are decided by their clients (`NodeError::class`,
//! `HubError::class`, `EsploraError::class`, `PriceError::class`); every call here is bounded
//! well inside the lease that guards the item, and a previous attempt that may have reached the
//! provider is looked up there before anything is sent again.

pub mod hub;

use std::time::Duration;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Value, json};

use crate::clients::Clients;
use crate::config::{Alert, Config, WithdrawProvider};
use crate::lightning::node::{Node, NodeError};
use crate::notify::email::{Alerts, Mailer};
use crate::outcome::HandlerError;
use crate::store::{Store, WithdrawalRow, WithdrawalStatus, WithdrawalUpdate};
use crate::wallet::chain::ChainSource;
use hub::{HubClient, HubError};

/// The outbox kind of a withdrawal.
pub const KIND: &str = "withdraw";

/// The smallest withdrawal any provider makes (the hub's documented minimum).
pub const MIN_SAT: u64 = 1000;

/// The size of a typical sweep transaction, to turn a fee rate into a fee (one or two inputs,
/// one output): the estimate behind `max_fee_percent`.
pub const SWEEP_VBYTES: u64 = 180;

/// The outbox item of a withdrawal: which one, from where, and the whole policy. Every field
/// must be present; an absent cap is written as `null` on purpose by [`prepare`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub withdrawal: String,
    pub from: String,
    pub min_amount_sat: u64,
    /// `null`: the workflow sets no cap on the fee as a share of the amount.
    #[serde(with = "explicit_decimal")]
    pub max_fee_percent: Option<Decimal>,
    /// `null`: the workflow sets no cap on the fee rate.
    #[serde(with = "explicit_decimal")]
    pub max_fee_rate: Option<Decimal>,
    pub keep_sat: u64,
    /// At most this much leaves by this workflow per UTC day; a withdrawal that would go over
    /// is skipped with the reason. Absent: no daily cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_day_sat: Option<u64>,
}

/// A cap written as decimal text or `null` — present either way (a custom deserializer makes
/// serde refuse a missing field instead of reading it as `None`).
mod explicit_decimal {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.serialize_str(&d.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| {
            Decimal::from_str_exact(&t)
                .ok()
                .filter(|d| !d.is_sign_negative())
                .ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "`{t}` is not a cap; expected a decimal of 0 or more as text, or null for none"
                    ))
                })
        })
        .transpose()
    }
}

impl Item {
    /// The item from its stored payload; a refusal names what is wrong.
    pub fn parse(payload: &Value) -> Result<Item, String> {
        serde_json::from_value(payload.clone())
            .map_err(|e| format!("the withdrawal's policy cannot be read: {e}"))
    }
}

/// What `steps.<id>` holds after a `withdraw` step.
pub fn output(row: &WithdrawalRow) -> Value {
    let withdrawn = row.status.is_withdrawn();
    json!({
        "withdrawn": withdrawn,
        "skipped": row.status == WithdrawalStatus::Skipped,
        "reason": row.reason,
        "amount_sat": row.amount_sat,
        "fee_sat": row.fee_sat,
        "address": row.address,
        "txid": row.txid,
        "withdrawal_id": row.provider_ref,
    })
}

enum Provider {
    Hub(HubClient),
    Lnd(Node),
}

/// The timeouts of the providers' calls, `(connect, whole call)`: each call well inside the
/// lease that guards the item (the dispatcher cuts a handler at 3/4 of it), so that a call's own
/// timeout, whose meaning is known, fires first; never longer than the clients' defaults.
pub fn call_timeouts(config: &Config) -> (Duration, Duration) {
    let total = (config.engine.lease / 2).min(hub::TIMEOUT);
    (total.min(hub::CONNECT_TIMEOUT).min(total / 2), total)
}

/// The provider `withdraw.NAME`. An LND node comes from the daemon's `clients`, built at start
/// (no file is read here); it is built now only when they have none by that name (tools and
/// tests that make handlers without the daemon's clients).
fn provider(config: &Config, clients: &Clients, name: &str) -> Result<Provider, HandlerError> {
    let p = config.withdraw.get(name).ok_or_else(|| {
        HandlerError::permanent(format!("withdraw.{name} is no longer in satflow.yaml"))
    })?;
    let (connect, total) = call_timeouts(config);
    match p {
        WithdrawProvider::LightningPeach { .. } => HubClient::from_config_with(p, connect, total)
            .map(Provider::Hub)
            .map_err(hub_error),
        WithdrawProvider::Lnd { node } => {
            let settings = config.lightning.get(node).ok_or_else(|| {
                HandlerError::permanent(format!("lightning.{node} is no longer in satflow.yaml"))
            })?;
            match clients.withdraw_node(node) {
                Some(Ok(built)) => Ok(Provider::Lnd(built.clone())),
                Some(Err(e)) => Err(node_error(e.clone())),
                None => Node::from_config_with(settings, connect, total)
                    .map(Provider::Lnd)
                    .map_err(node_error),
            }
        }
    }
}

fn hub_error(e: HubError) -> HandlerError {
    HandlerError::from_class(e.class(), e.to_string(), e.http_status())
}

fn node_error(e: NodeError) -> HandlerError {
    HandlerError::from_class(e.class(), e.to_string(), e.http_status())
}

fn store_error(e: crate::store::StoreError) -> HandlerError {
    HandlerError::transient(e.to_string())
}

/// The network's fee rate now, in sat/vB for confirmation within about half an hour: from the
/// wallet's explorer when it has one, else from Peach's public estimate. No estimate, no
/// withdrawal: the class of the failure says whether to try again.
async fn fee_rate(config: &Config, wallet: &str) -> Result<u64, HandlerError> {
    let (connect, total) = call_timeouts(config);
    let explorer = config
        .wallets
        .get(wallet)
        .and_then(|w| ChainSource::with_timeouts(w, connect, total));
    match explorer {
        Some(explorer) => explorer.fee_rate().await.map_err(|e| {
            HandlerError::from_class(e.class(), format!("no fee estimate: {e}"), e.http_status())
        }),
        None => crate::prices::peach_fee_rate_with(&config.prices.peach_url, (connect, total))
            .await
            .map_err(|e| {
                HandlerError::from_class(
                    e.class(),
                    format!("no fee estimate: {e}"),
                    e.http_status(),
                )
            }),
    }
}

/// Why the policy skips this period, if it does. Arithmetic that cannot be done skips too.
fn policy_skip(policy: &Item, balance: u64, fee_rate: u64) -> Option<String> {
    let keep = policy.keep_sat;
    let amount = balance.saturating_sub(keep);
    let min = policy.min_amount_sat.max(MIN_SAT);
    if amount < min {
        // Only a reserve that is configured is mentioned.
        return Some(match keep {
            0 => format!("the balance of {balance} sat is less than the minimum of {min} sat"),
            _ => format!(
                "the balance is {balance} sat; after keeping {keep} sat, {amount} sat is less than the minimum of {min} sat"
            ),
        });
    }
    if let Some(max) = policy.max_fee_rate
        && Decimal::from(fee_rate) > max
    {
        return Some(format!(
            "the network fee is {fee_rate} sat/vB, above max_fee_rate {max} sat/vB"
        ));
    }
    if let Some(max) = policy.max_fee_percent {
        let fee = fee_rate.checked_mul(SWEEP_VBYTES);
        let percent = fee.and_then(|fee| {
            Decimal::from(fee)
                .checked_mul(Decimal::ONE_HUNDRED)?
                .checked_div(Decimal::from(amount))
        });
        let (Some(fee), Some(percent)) = (fee, percent) else {
            return Some(format!(
                "the fee at {fee_rate} sat/vB cannot be weighed against max_fee_percent {max} %"
            ));
        };
        if percent > max {
            return Some(format!(
                "the fee would be about {fee} sat ({} % of {amount} sat), above max_fee_percent {max} %",
                percent.round_dp(2)
            ));
        }
    }
    None
}

async fn recorded(store: &Store, key: &str) -> Result<Value, HandlerError> {
    let row = store.withdrawal(key).await.map_err(store_error)?;
    row.map(|r| output(&r))
        .ok_or_else(|| HandlerError::permanent(format!("withdrawal {key} is not in the database")))
}

async fn fail(store: &Store, key: &str, e: HandlerError) -> HandlerError {
    let failed = WithdrawalUpdate {
        status: WithdrawalStatus::Failed,
        reason: Some(e.to_string()),
        ..Default::default()
    };
    match store
        .update_withdrawal(key, &failed, None, crate::clock::system_now())
        .await
    {
        Ok(()) => e,
        Err(store) => store_error(store),
    }
}

/// An item whose policy cannot be read: the row says why, unless an earlier attempt may have
/// reached the provider.
pub async fn refuse(store: &Store, payload: &Value, e: HandlerError) -> HandlerError {
    /// Only which withdrawal the item is for.
    #[derive(Deserialize)]
    struct Named {
        withdrawal: String,
    }
    if let Ok(Named { withdrawal: key }) = Named::deserialize(payload)
        && let Ok(Some(row)) = store.withdrawal(&key).await
        && row.status == WithdrawalStatus::Planned
    {
        return fail(store, &key, e).await;
    }
    e
}

/// The outbox handler: decides with the policy, then withdraws.
pub async fn execute(
    store: &Store,
    config: &Config,
    clients: &Clients,
    item: &Item,
) -> Result<Value, HandlerError> {
    let key = item.withdrawal.as_str();
    let row = store
        .withdrawal(key)
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            HandlerError::permanent(format!("withdrawal {key} is not in the database"))
        })?;
    if row.status != WithdrawalStatus::Planned && row.status != WithdrawalStatus::Requesting {
        return Ok(output(&row));
    }
    match attempt(store, config, clients, item, &row).await {
        // A refusal before the provider was called is final: the row says why, so
        // `satflow withdrawals` does not show it as still in progress.
        Err(e @ HandlerError::Permanent { .. }) if row.status == WithdrawalStatus::Planned => {
            Err(fail(store, key, e).await)
        }
        other => other,
    }
}

async fn attempt(
    store: &Store,
    config: &Config,
    clients: &Clients,
    item: &Item,
    row: &WithdrawalRow,
) -> Result<Value, HandlerError> {
    let key = item.withdrawal.as_str();
    let provider = provider(config, clients, &item.from)?;
    let now = crate::clock::system_now;
    // An earlier attempt reached the point of calling the provider: whatever it was told, look
    // there first, so that a lost answer never becomes a second withdrawal.
    if row.status == WithdrawalStatus::Requesting
        && let Some(update) = found_at_provider(config, row, item.keep_sat, &provider).await?
    {
        store
            .update_withdrawal(key, &update, None, now())
            .await
            .map_err(store_error)?;
        return recorded(store, key).await;
    }
    let fee_rate = fee_rate(config, &row.wallet).await?;
    let balance = match &provider {
        Provider::Hub(hub) => hub.balance().await.map_err(hub_error)?,
        Provider::Lnd(node) => node.onchain_balance().await.map_err(node_error)?,
    };
    if let Some(reason) = policy_skip(item, balance, fee_rate) {
        let update = WithdrawalUpdate {
            status: WithdrawalStatus::Skipped,
            balance_sat: Some(balance),
            fee_rate: Some(fee_rate.to_string()),
            reason: Some(reason),
            ..Default::default()
        };
        store
            .update_withdrawal(key, &update, None, now())
            .await
            .map_err(store_error)?;
        return recorded(store, key).await;
    }
    if let Some(max) = item.max_per_day_sat {
        let day = now()
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc();
        let today = store
            .withdrawn_since(&row.workflow, day)
            .await
            .map_err(store_error)?;
        let amount = balance.saturating_sub(item.keep_sat);
        if today.checked_add(amount).is_none_or(|total| total > max) {
            let update = WithdrawalUpdate {
                status: WithdrawalStatus::Skipped,
                balance_sat: Some(balance),
                fee_rate: Some(fee_rate.to_string()),
                reason: Some(format!(
                    "{amount} sat would bring today's withdrawals to more than max_per_day_sat {max} sat ({today} sat withdrawn today)"
                )),
                ..Default::default()
            };
            store
                .update_withdrawal(key, &update, None, now())
                .await
                .map_err(store_error)?;
            return recorded(store, key).await;
        }
    }
    let keep = item.keep_sat;
    // The row says the provider is being called, and with what balance, before it is.
    let requesting = WithdrawalUpdate {
        status: WithdrawalStatus::Requesting,
        balance_sat: Some(balance),
        fee_rate: Some(fee_rate.to_string()),
        ..Default::default()
    };
    store
        .update_withdrawal(key, &requesting, None, now())
        .await
        .map_err(store_error)?;
    let follow = Some(next_look(config, now()));
    let sent = async {
        Ok(match &provider {
            Provider::Hub(hub) => {
                hub.set_address(&row.address).await.map_err(hub_error)?;
                let (id, amount) = hub.withdraw().await.map_err(hub_error)?;
                WithdrawalUpdate {
                    status: WithdrawalStatus::Requested,
                    amount_sat: Some(amount),
                    provider_ref: Some(id),
                    next_check_at: follow,
                    ..Default::default()
                }
            }
            Provider::Lnd(node) => {
                let amount = match keep {
                    0 => None,
                    // The policy made sure the balance is above what is kept.
                    keep => Some(balance.checked_sub(keep).ok_or_else(|| {
                        HandlerError::permanent(format!(
                            "the balance of {balance} sat is under keep_sat {keep} sat"
                        ))
                    })?),
                };
                let txid = node
                    .send_onchain(&row.address, amount, fee_rate, key)
                    .await
                    .map_err(node_error)?;
                // The fee the wallet paid, as it reports it (an estimate would be a guess).
                let fee = node
                    .labelled_transaction(key)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|(_, fee)| fee);
                WithdrawalUpdate {
                    status: WithdrawalStatus::Sent,
                    // Sending everything pays the fee out of the balance.
                    amount_sat: Some(amount.unwrap_or(balance.saturating_sub(fee.unwrap_or(0)))),
                    fee_sat: fee,
                    txid: Some(txid),
                    next_check_at: follow,
                    ..Default::default()
                }
            }
        })
    }
    .await;
    let update = match sent {
        Ok(update) => update,
        // The provider refused: final, and the row says why.
        Err(e @ HandlerError::Permanent { .. }) => return Err(fail(store, key, e).await),
        Err(e) => return Err(e),
    };
    store
        .update_withdrawal(key, &update, None, now())
        .await
        .map_err(store_error)?;
    recorded(store, key).await
}

/// When a withdrawal in progress is looked at next.
fn next_look(config: &Config, now: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    now + chrono::Duration::from_std(config.engine.follow_every)
        .unwrap_or(chrono::Duration::minutes(5))
}

/// After an attempt whose outcome is unknown: did the withdrawal happen? `None`: it did not
/// (or nothing was asked yet), so the handler runs again — and looks once more itself.
pub async fn reconcile(
    store: &Store,
    config: &Config,
    clients: &Clients,
    item: &Item,
) -> Option<Result<Value, HandlerError>> {
    let key = item.withdrawal.as_str();
    let row = store.withdrawal(key).await.ok()??;
    if row.status != WithdrawalStatus::Requesting {
        // Nothing was sent (`planned`), or the outcome is recorded.
        return (row.status != WithdrawalStatus::Planned).then(|| Ok(output(&row)));
    }
    let provider = match provider(config, clients, &row.provider) {
        Ok(p) => p,
        Err(e) => return Some(Err(e)),
    };
    let update = match found_at_provider(config, &row, item.keep_sat, &provider).await {
        Ok(found) => found?,
        Err(e) => return Some(Err(e)),
    };
    if let Err(e) = store
        .update_withdrawal(key, &update, None, crate::clock::system_now())
        .await
    {
        return Some(Err(store_error(e)));
    }
    Some(recorded(store, key).await)
}

/// What the provider shows of a withdrawal whose row says it was being requested: the update
/// that records it, or `None` when it was not made.
async fn found_at_provider(
    config: &Config,
    row: &WithdrawalRow,
    keep: u64,
    provider: &Provider,
) -> Result<Option<WithdrawalUpdate>, HandlerError> {
    let follow = Some(next_look(config, crate::clock::system_now()));
    let found = match provider {
        // LND's wallet keeps the label: the transaction is found exactly.
        Provider::Lnd(node) => node
            .labelled_transaction(&row.key)
            .await
            .map_err(node_error)?
            .map(|(txid, fee)| WithdrawalUpdate {
                status: WithdrawalStatus::Sent,
                // As the send asked: all but `keep`, or everything less the fee.
                amount_sat: row.balance_sat.map(|b| match keep {
                    0 => b.saturating_sub(fee.unwrap_or(0)),
                    keep => b.saturating_sub(keep),
                }),
                fee_sat: fee,
                txid: Some(txid),
                next_check_at: follow,
                ..Default::default()
            }),
        // The hub has no list of withdrawals; but a withdrawal takes the whole balance, so a
        // balance that dropped under what was seen means it went through (its id is lost). New
        // payments may have raised the balance again meanwhile: then the fresh address having
        // received anything (with an explorer) shows it too.
        Provider::Hub(hub) => {
            let now_balance = hub.balance().await.map_err(hub_error)?;
            let dropped = now_balance < row.balance_sat.unwrap_or(0);
            let (connect, total) = call_timeouts(config);
            let explorer = config
                .wallets
                .get(&row.wallet)
                .and_then(|w| ChainSource::with_timeouts(w, connect, total));
            let received = match (dropped, explorer) {
                (false, Some(explorer)) => explorer.is_used(&row.address).await.map_err(|e| {
                    HandlerError::from_class(e.class(), e.to_string(), e.http_status())
                })?,
                _ => false,
            };
            (dropped || received).then(|| WithdrawalUpdate {
                status: WithdrawalStatus::Requested,
                amount_sat: row.balance_sat,
                reason: Some(format!(
                    "the answer to the withdrawal was lost; {} shows it was made",
                    if dropped {
                        "the hub's balance"
                    } else {
                        "the address having received funds"
                    }
                )),
                ..Default::default()
            })
        }
    };
    if found.is_some() {
        tracing::info!(
            withdrawal = %row.key,
            "a withdrawal whose answer was lost was found at the provider"
        );
    }
    Ok(found)
}

/// Follows requested and sent withdrawals: the hub's status until a transaction is sent, then
/// the transaction's confirmations through the wallet's explorer. Returns how many were looked at.
/// `clock` dates the emails it sends (the demo's emails carry the demo's dates); when a
/// withdrawal is looked at again stays on the system's time, like the step that planned it.
pub async fn follow(
    store: &Store,
    config: &Config,
    clients: &Clients,
    clock: &std::sync::Arc<dyn crate::clock::Clock>,
) -> Result<usize, crate::store::StoreError> {
    let now = crate::clock::system_now();
    let later = Some(next_look(config, now));
    let due = store.withdrawals_to_follow(now).await?;
    if due.is_empty() {
        return Ok(0);
    }
    let mailer = config
        .email
        .as_ref()
        .map(|e| Mailer::new(e, config.templates.clone()).with_clock(std::sync::Arc::clone(clock)));
    let alerts = Alerts::new(mailer, config.alerts.clone());
    let env = crate::expr::environment();
    // One client (one sign-in) per hub for the whole pass.
    let mut hubs: std::collections::HashMap<&str, Option<HubClient>> = Default::default();
    for row in &due {
        let update = match (row.status, &row.provider_ref, &row.txid) {
            (WithdrawalStatus::Requested, Some(id), None) => {
                let hub = hubs.entry(row.provider.as_str()).or_insert_with(|| {
                    match provider(config, clients, &row.provider) {
                        Ok(Provider::Hub(hub)) => Some(hub),
                        _ => None,
                    }
                });
                let Some(hub) = hub else {
                    // The provider left satflow.yaml: look again later, in case it comes back.
                    let update = WithdrawalUpdate {
                        status: WithdrawalStatus::Requested,
                        next_check_at: later,
                        ..Default::default()
                    };
                    store
                        .update_withdrawal(&row.key, &update, None, now)
                        .await?;
                    continue;
                };
                match hub.withdrawal(id).await {
                    Ok((status, tx)) if status == "Withdrawn" => WithdrawalUpdate {
                        status: WithdrawalStatus::Sent,
                        txid: tx,
                        next_check_at: later,
                        ..Default::default()
                    },
                    Ok((status, _)) if status == "Canceled" => WithdrawalUpdate {
                        status: WithdrawalStatus::Failed,
                        reason: Some(
                            "the hub canceled the withdrawal; the funds are back in its balance"
                                .into(),
                        ),
                        ..Default::default()
                    },
                    _ => WithdrawalUpdate {
                        status: WithdrawalStatus::Requested,
                        next_check_at: later,
                        ..Default::default()
                    },
                }
            }
            (WithdrawalStatus::Sent, _, Some(txid)) => {
                let explorer = config.wallets.get(&row.wallet).and_then(ChainSource::of);
                match explorer {
                    None => WithdrawalUpdate {
                        status: WithdrawalStatus::Sent,
                        ..Default::default()
                    },
                    Some(explorer) => match explorer.confirmations(txid).await {
                        Ok(n) if n >= 6 => WithdrawalUpdate {
                            status: WithdrawalStatus::Confirmed,
                            confirmations: Some(n as i64),
                            ..Default::default()
                        },
                        Ok(n) => WithdrawalUpdate {
                            status: WithdrawalStatus::Sent,
                            confirmations: Some(n as i64),
                            next_check_at: later,
                            ..Default::default()
                        },
                        Err(_) => WithdrawalUpdate {
                            status: WithdrawalStatus::Sent,
                            next_check_at: later,
                            ..Default::default()
                        },
                    },
                }
            }
            (status, _, _) => WithdrawalUpdate {
                status,
                ..Default::default()
            },
        };
        // What happens after the step is reported by email too: the hub sending, or cancelling,
        // and the transaction confirming.
        let notify = ((row.status == WithdrawalStatus::Requested
            && matches!(
                update.status,
                WithdrawalStatus::Sent | WithdrawalStatus::Failed
            ))
            || (row.status == WithdrawalStatus::Sent
                && update.status == WithdrawalStatus::Confirmed))
            .then(|| {
                let mut event = output(row);
                if let Value::Object(event) = &mut event {
                    event.extend([
                        ("key".to_string(), json!(row.key)),
                        ("provider".to_string(), json!(row.provider)),
                        ("wallet".to_string(), json!(row.wallet)),
                        ("status".to_string(), json!(update.status)),
                        (
                            "txid".to_string(),
                            json!(update.txid.as_deref().or(row.txid.as_deref())),
                        ),
                        ("confirmations".to_string(), json!(update.confirmations)),
                        ("reason".to_string(), json!(update.reason)),
                    ]);
                }
                let ctx = json!({ "event": event });
                alerts.item(
                    &env,
                    Alert::WithdrawalUpdate,
                    &format!("{}/{}", row.key, update.status),
                    &ctx,
                )
            })
            .flatten();
        store
            .update_withdrawal(&row.key, &update, notify, now)
            .await?;
    }
    Ok(due.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(extra: Value) -> Value {
        let mut p = json!({
            "withdrawal": "sweep/2027-W01", "from": "hub", "min_amount_sat": 100_000,
            "keep_sat": 0, "max_fee_percent": null, "max_fee_rate": null,
        });
        if let (Some(p), Some(e)) = (p.as_object_mut(), extra.as_object()) {
            p.extend(e.clone());
        }
        p
    }

    fn policy(extra: Value) -> Item {
        Item::parse(&payload(extra)).unwrap()
    }

    #[test]
    fn a_policy_field_that_is_missing_or_unreadable_is_refused_never_read_as_no_limit() {
        for field in [
            "max_fee_percent",
            "max_fee_rate",
            "min_amount_sat",
            "keep_sat",
            "from",
            "withdrawal",
        ] {
            let mut p = payload(json!({}));
            p.as_object_mut().unwrap().remove(field);
            let refused = Item::parse(&p).unwrap_err();
            assert!(
                refused.contains(&format!("missing field `{field}`")),
                "{field}: {refused}"
            );
        }
        for (field, value) in [
            ("max_fee_percent", json!("lots")),
            ("max_fee_percent", json!("-1")),
            ("max_fee_rate", json!(true)),
            ("min_amount_sat", json!(null)),
            ("min_amount_sat", json!(-5)),
            ("keep_sat", json!("1000")),
        ] {
            let refused = Item::parse(&payload(json!({ field: value }))).unwrap_err();
            assert!(refused.contains("cannot be read"), "{field}: {refused}");
        }
        // An absent cap written on purpose is the user's choice; the round trip keeps it.
        let item = policy(json!({ "max_fee_rate": "20.5" }));
        assert_eq!(item.max_fee_percent, None);
        assert_eq!(item.max_fee_rate, Some(Decimal::new(205, 1)));
        assert_eq!(
            Item::parse(&serde_json::to_value(&item).unwrap()).unwrap(),
            item
        );
        assert_eq!(
            serde_json::to_value(&item).unwrap()["max_fee_percent"],
            Value::Null,
            "written explicitly"
        );
    }

    #[test]
    fn the_policy_skips_small_balances_and_high_fees_and_says_why() {
        assert_eq!(policy_skip(&policy(json!({})), 250_000, 10), None);
        let small = policy_skip(&policy(json!({})), 90_000, 10).unwrap();
        assert!(
            small.contains("90000 sat is less than the minimum of 100000 sat")
                && !small.contains("keeping"),
            "{small}"
        );
        let kept = policy_skip(&policy(json!({ "keep_sat": 200_000 })), 250_000, 10).unwrap();
        assert!(kept.contains("after keeping 200000 sat"), "{kept}");
        let rate = policy_skip(&policy(json!({ "max_fee_rate": "20" })), 250_000, 45).unwrap();
        assert!(rate.contains("45 sat/vB, above max_fee_rate 20"), "{rate}");
        // 30 sat/vB × 180 vB = 5400 sat = 2.16 % of 250,000 sat.
        let percent = policy_skip(&policy(json!({ "max_fee_percent": "1" })), 250_000, 30).unwrap();
        assert!(
            percent.contains("about 5400 sat (2.16 % of 250000 sat)"),
            "{percent}"
        );
        assert_eq!(
            policy_skip(&policy(json!({ "max_fee_percent": "3" })), 250_000, 30),
            None
        );
        // The hub's minimum holds whatever the workflow says.
        assert!(policy_skip(&policy(json!({ "min_amount_sat": 0 })), 999, 1).is_some());
    }
}
