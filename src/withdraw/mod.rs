//! Withdrawals to cold storage, exactly once: from the Lightning Peach hub (`lightningpeach`) or
//! an LND node's on-chain wallet (`lnd`) to a freshly reserved address of the user's wallet.
//!
//! A withdrawal is keyed by `(workflow, scheduled period)`. The step plans it — its row and its
//! reserved address commit with the step — and an outbox item carries it out. Before the
//! provider is called the row says so (`requesting`, with the balance seen); an attempt whose
//! outcome is unknown is reconciled through the provider first (LND: the transaction labelled
//! with the key; the hub: its balance, since a withdrawal takes all of it). Then the withdrawal
//! is followed until its transaction is confirmed.
//!
//! Policy, decided just before sending: `keep_sat` stays behind, less than `min_amount_sat`
//! (and never under the hub's 1000 sat) is not worth moving, and a fee above `max_fee_rate`
//! sat/vB or `max_fee_percent` of the amount skips the period, saying why.

pub mod hub;

use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::config::{Alert, Config, WithdrawProvider};
use crate::engine::runner::StepOutcome;
use crate::lightning::node::{Node, NodeError};
use crate::notify::email::{Alerts, Mailer};
use crate::outbox::HandlerError;
use crate::store::{NewItem, NewWithdrawal, RunRow, Store, WithdrawalRow, WithdrawalUpdate};
use crate::wallet::esplora::Esplora;
use crate::wallet::rotation::next_address;
use crate::workflow::actions::Withdraw;
use hub::{HubClient, HubError};

/// The outbox kind of a withdrawal.
pub const KIND: &str = "withdraw";

/// The smallest withdrawal any provider makes (the hub's documented minimum).
pub const MIN_SAT: u64 = 1000;

/// The size of a typical sweep transaction, to turn a fee rate into a fee (one or two inputs,
/// one output): the estimate behind `max_fee_percent`.
pub const SWEEP_VBYTES: u64 = 180;

/// The step: reserves the destination and plans the withdrawal; the outbox does the rest.
pub async fn prepare(
    store: &Store,
    config: &Config,
    run: &RunRow,
    w: &Withdraw,
    key: String,
    step_id: &str,
) -> StepOutcome {
    let Some(wallet) = config.wallets.get(&w.to_wallet) else {
        return StepOutcome::failed(format!(
            "wallet `{}` is no longer in satflow.yaml",
            w.to_wallet
        ));
    };
    if !config.withdraw.contains_key(&w.from) {
        return StepOutcome::failed(format!("withdraw.{} is no longer in satflow.yaml", w.from));
    }
    // One withdrawal per workflow and scheduled period (or manual trigger).
    let withdrawal_key = format!("{}/{}", run.workflow, run.trigger_key);
    let reused = match store
        .skipped_withdrawal_address(&run.workflow, &w.to_wallet)
        .await
    {
        Ok(r) => r.filter(|(address, index)| {
            // Only while the wallet still has the key that address came from.
            wallet
                .key
                .address_at(*index, wallet.network)
                .is_ok_and(|a| a.to_string() == *address)
        }),
        Err(e) => return StepOutcome::failed(e.to_string()),
    };
    let (address, index, reservation) = match reused {
        Some((address, index)) => (address, index, None),
        None => match next_address(
            store,
            &w.to_wallet,
            wallet,
            &format!("withdrawal {withdrawal_key}"),
        )
        .await
        {
            Ok(r) => (r.address.clone(), r.index, Some(r)),
            Err(e) => return StepOutcome::failed(e),
        },
    };
    let mut outcome = StepOutcome::waiting(NewItem {
        kind: KIND.into(),
        key,
        payload: json!({
            "withdrawal": withdrawal_key,
            "from": w.from,
            "min_amount_sat": w.min_amount_sat,
            "max_fee_percent": w.max_fee_percent.map(|d| d.to_string()),
            "max_fee_rate": w.max_fee_rate.map(|d| d.to_string()),
            "keep_sat": w.keep_sat,
        }),
        run: Some((run.id, step_id.to_string())),
    });
    outcome.withdrawal = Some(NewWithdrawal {
        key: withdrawal_key,
        workflow: run.workflow.clone(),
        provider: w.from.clone(),
        wallet: w.to_wallet.clone(),
        address,
        address_index: index,
    });
    outcome.reservation = reservation;
    outcome
}

/// What `steps.<id>` holds after a `withdraw` step.
pub fn output(row: &WithdrawalRow) -> Value {
    let withdrawn = matches!(row.status.as_str(), "requested" | "sent" | "confirmed");
    json!({
        "withdrawn": withdrawn,
        "skipped": row.status == "skipped",
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

fn provider(config: &Config, name: &str) -> Result<Provider, HandlerError> {
    let p = config.withdraw.get(name).ok_or_else(|| {
        HandlerError::permanent(format!("withdraw.{name} is no longer in satflow.yaml"))
    })?;
    match p {
        WithdrawProvider::LightningPeach { .. } => HubClient::from_config(p)
            .map(Provider::Hub)
            .map_err(hub_error),
        WithdrawProvider::Lnd { node } => {
            let settings = config.lightning.get(node).ok_or_else(|| {
                HandlerError::permanent(format!("lightning.{node} is no longer in satflow.yaml"))
            })?;
            Node::from_config(settings)
                .map(Provider::Lnd)
                .map_err(node_error)
        }
    }
}

fn hub_error(e: HubError) -> HandlerError {
    match &e {
        HubError::Unreachable { .. } => HandlerError::transient(e.to_string()),
        HubError::Timeout { .. } => HandlerError::Unknown(e.to_string()),
        HubError::Refused { status, .. } if *status >= 500 || *status == 429 => {
            HandlerError::transient(e.to_string())
        }
        _ => HandlerError::permanent(e.to_string()),
    }
}

fn node_error(e: NodeError) -> HandlerError {
    match &e {
        NodeError::Unreachable { reason, .. } if reason.contains("timed out") => {
            HandlerError::Unknown(e.to_string())
        }
        NodeError::Unreachable { .. } => HandlerError::transient(e.to_string()),
        NodeError::Refused { status, .. } if *status >= 500 || *status == 429 => {
            HandlerError::transient(e.to_string())
        }
        _ => HandlerError::permanent(e.to_string()),
    }
}

fn store_error(e: crate::store::StoreError) -> HandlerError {
    HandlerError::transient(e.to_string())
}

/// The network's fee rate now, in sat/vB for confirmation within about half an hour: from the
/// wallet's explorer when it has one (mempool.space's `v1/fees/recommended`, else Esplora's
/// `fee-estimates` for 3 blocks), else from Peach's public estimate.
async fn fee_rate(config: &Config, wallet: &str) -> Result<u64, HandlerError> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("the HTTP client's settings are valid");
    let mut sources = Vec::new();
    if let Some(explorer) = config
        .wallets
        .get(wallet)
        .and_then(|w| w.esplora_url.as_ref())
    {
        let base = explorer.as_str().trim_end_matches('/');
        sources.push((format!("{base}/v1/fees/recommended"), "halfHourFee"));
        sources.push((format!("{base}/fee-estimates"), "3"));
    } else {
        let base = config.prices.peach_url.as_str().trim_end_matches('/');
        sources.push((format!("{base}/v1/estimateFees"), "halfHourFee"));
    }
    let mut errors = Vec::new();
    for (url, field) in &sources {
        match fetch_rate(&http, url, field).await {
            Ok(rate) => return Ok(rate),
            Err(e) => errors.push(e),
        }
    }
    Err(HandlerError::transient(format!(
        "no fee estimate: {}",
        errors.join("; ")
    )))
}

async fn fetch_rate(http: &reqwest::Client, url: &str, field: &str) -> Result<u64, String> {
    let response = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("cannot reach {url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{url} answered {}", response.status()));
    }
    let v: Value = response
        .json()
        .await
        .map_err(|e| format!("cannot read {url}: {e}"))?;
    // Esplora's rates are fractional: round up, a fee a little high rather than too low.
    v.get(field)
        .filter(|n| n.is_number())
        .and_then(|n| Decimal::from_str_exact(&n.to_string()).ok())
        .and_then(|d| u64::try_from(d.ceil()).ok())
        .filter(|rate| *rate > 0)
        .ok_or_else(|| format!("{url} gave no {field} rate: {v}"))
}

/// Why the policy skips this period, if it does.
fn policy_skip(payload: &Value, balance: u64, fee_rate: u64) -> Option<String> {
    let keep = payload["keep_sat"].as_u64().unwrap_or(0);
    let amount = balance.saturating_sub(keep);
    let min = payload["min_amount_sat"].as_u64().unwrap_or(0).max(MIN_SAT);
    if amount < min {
        return Some(format!(
            "the balance is {balance} sat; after keeping {keep} sat, {amount} sat is less than the minimum of {min} sat"
        ));
    }
    let decimal = |name: &str| {
        payload[name]
            .as_str()
            .and_then(|d| Decimal::from_str_exact(d).ok())
    };
    if let Some(max) = decimal("max_fee_rate")
        && Decimal::from(fee_rate) > max
    {
        return Some(format!(
            "the network fee is {fee_rate} sat/vB, above max_fee_rate {max} sat/vB"
        ));
    }
    if let Some(max) = decimal("max_fee_percent") {
        let fee = fee_rate * SWEEP_VBYTES;
        let percent = Decimal::from(fee) * Decimal::ONE_HUNDRED / Decimal::from(amount);
        if percent > max {
            return Some(format!(
                "the fee would be about {fee} sat ({} % of {amount} sat), above max_fee_percent {max} %",
                percent.round_dp(2)
            ));
        }
    }
    None
}

/// The outbox handler: decides with the policy, then withdraws.
pub async fn execute(
    store: &Store,
    config: &Config,
    payload: &Value,
) -> Result<Value, HandlerError> {
    let key = payload["withdrawal"]
        .as_str()
        .ok_or_else(|| HandlerError::permanent("the item names no withdrawal"))?;
    let row = store
        .withdrawal(key)
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            HandlerError::permanent(format!("withdrawal {key} is not in the database"))
        })?;
    if row.status != "planned" && row.status != "requesting" {
        return Ok(output(&row));
    }
    let from = payload["from"].as_str().unwrap_or(&row.provider);
    let provider = provider(config, from)?;
    let now = chrono::Utc::now;
    let fee_rate = fee_rate(config, &row.wallet).await?;
    let balance = match &provider {
        Provider::Hub(hub) => hub.balance().await.map_err(hub_error)?,
        Provider::Lnd(node) => node.onchain_balance().await.map_err(node_error)?,
    };
    if let Some(reason) = policy_skip(payload, balance, fee_rate) {
        let update = WithdrawalUpdate {
            status: "skipped",
            balance_sat: Some(balance),
            fee_rate: Some(fee_rate.to_string()),
            reason: Some(reason),
            ..Default::default()
        };
        store
            .update_withdrawal(key, &update, None, now())
            .await
            .map_err(store_error)?;
        return Ok(output(
            &store
                .withdrawal(key)
                .await
                .map_err(store_error)?
                .expect("just updated"),
        ));
    }
    let keep = payload["keep_sat"].as_u64().unwrap_or(0);
    // The row says the provider is being called, and with what balance, before it is.
    let requesting = WithdrawalUpdate {
        status: "requesting",
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
                    status: "requested",
                    amount_sat: Some(amount),
                    provider_ref: Some(id),
                    next_check_at: follow,
                    ..Default::default()
                }
            }
            Provider::Lnd(node) => {
                let amount = (keep > 0).then(|| balance - keep);
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
                    status: "sent",
                    // Sending everything pays the fee out of the balance.
                    amount_sat: Some(amount.unwrap_or(balance - fee.unwrap_or(0).min(balance))),
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
        // A refusal is final: the row says why, so `satflow withdrawals` does not show it as
        // still in progress.
        Err(e @ HandlerError::Permanent { .. }) => {
            let failed = WithdrawalUpdate {
                status: "failed",
                reason: Some(e.to_string()),
                ..Default::default()
            };
            store
                .update_withdrawal(key, &failed, None, now())
                .await
                .map_err(store_error)?;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    store
        .update_withdrawal(key, &update, None, now())
        .await
        .map_err(store_error)?;
    Ok(output(
        &store
            .withdrawal(key)
            .await
            .map_err(store_error)?
            .expect("just updated"),
    ))
}

/// When a withdrawal in progress is looked at next.
fn next_look(config: &Config, now: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    now + chrono::Duration::from_std(config.engine.follow_every)
        .unwrap_or(chrono::Duration::minutes(5))
}

/// After an attempt whose outcome is unknown: did the withdrawal happen?
pub async fn reconcile(
    store: &Store,
    config: &Config,
    payload: &Value,
) -> Option<Result<Value, HandlerError>> {
    let key = payload["withdrawal"].as_str()?;
    let row = store.withdrawal(key).await.ok()??;
    if row.status != "requesting" {
        // Nothing was sent (`planned`), or the outcome is recorded.
        return (row.status != "planned").then(|| Ok(output(&row)));
    }
    let provider = match provider(config, &row.provider) {
        Ok(p) => p,
        Err(e) => return Some(Err(e)),
    };
    let follow = Some(next_look(config, chrono::Utc::now()));
    let found = match provider {
        // LND's wallet keeps the label: the transaction is found exactly.
        Provider::Lnd(node) => match node.labelled_transaction(key).await {
            Ok(Some((txid, fee))) => Some(WithdrawalUpdate {
                status: "sent",
                amount_sat: row.balance_sat,
                fee_sat: fee,
                txid: Some(txid),
                next_check_at: follow,
                ..Default::default()
            }),
            Ok(None) => None,
            Err(e) => return Some(Err(node_error(e))),
        },
        // The hub has no list of withdrawals; but a withdrawal takes the whole balance, so a
        // balance that dropped under what was seen means it went through (its id is lost). New
        // payments may have raised the balance again meanwhile: then the fresh address having
        // received anything (with an explorer) shows it too.
        Provider::Hub(hub) => {
            let dropped = match hub.balance().await {
                Ok(now_balance) => now_balance < row.balance_sat.unwrap_or(0),
                Err(e) => return Some(Err(hub_error(e))),
            };
            let explorer = config
                .wallets
                .get(&row.wallet)
                .and_then(|w| w.esplora_url.as_ref())
                .map(Esplora::new);
            let received = match (dropped, explorer) {
                (false, Some(explorer)) => match explorer.address_used(&row.address).await {
                    Ok(used) => used,
                    Err(e) => return Some(Err(HandlerError::transient(e.to_string()))),
                },
                _ => false,
            };
            (dropped || received).then(|| WithdrawalUpdate {
                status: "requested",
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
    let update = found?;
    if let Err(e) = store
        .update_withdrawal(key, &update, None, chrono::Utc::now())
        .await
    {
        return Some(Err(store_error(e)));
    }
    tracing::info!(
        withdrawal = key,
        "a withdrawal whose answer was lost was found at the provider"
    );
    store
        .withdrawal(key)
        .await
        .ok()
        .flatten()
        .map(|r| Ok(output(&r)))
}

/// Follows requested and sent withdrawals: the hub's status until a transaction is sent, then
/// the transaction's confirmations through the wallet's explorer. Returns how many were looked at.
pub async fn follow(store: &Store, config: &Config) -> Result<usize, crate::store::StoreError> {
    let now = chrono::Utc::now();
    let later = Some(next_look(config, now));
    let due = store.withdrawals_to_follow(now).await?;
    if due.is_empty() {
        return Ok(0);
    }
    let mailer = config
        .email
        .as_ref()
        .map(|e| Mailer::new(e, config.templates.clone()));
    let alerts = Alerts::new(mailer, config.alerts.clone());
    let env = crate::workflow::expr::environment();
    // One client (one sign-in) per hub for the whole pass.
    let mut hubs: std::collections::HashMap<&str, Option<HubClient>> = Default::default();
    for row in &due {
        let update = match (row.status.as_str(), &row.provider_ref, &row.txid) {
            ("requested", Some(id), None) => {
                let hub = hubs.entry(row.provider.as_str()).or_insert_with(|| {
                    match provider(config, &row.provider) {
                        Ok(Provider::Hub(hub)) => Some(hub),
                        _ => None,
                    }
                });
                let Some(hub) = hub else {
                    // The provider left satflow.yaml: look again later, in case it comes back.
                    let update = WithdrawalUpdate {
                        status: "requested",
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
                        status: "sent",
                        txid: tx,
                        next_check_at: later,
                        ..Default::default()
                    },
                    Ok((status, _)) if status == "Canceled" => WithdrawalUpdate {
                        status: "failed",
                        reason: Some(
                            "the hub canceled the withdrawal; the funds are back in its balance"
                                .into(),
                        ),
                        ..Default::default()
                    },
                    _ => WithdrawalUpdate {
                        status: "requested",
                        next_check_at: later,
                        ..Default::default()
                    },
                }
            }
            ("sent", _, Some(txid)) => {
                let explorer = config
                    .wallets
                    .get(&row.wallet)
                    .and_then(|w| w.esplora_url.as_ref())
                    .map(Esplora::new);
                match explorer {
                    None => WithdrawalUpdate {
                        status: "sent",
                        ..Default::default()
                    },
                    Some(explorer) => match explorer.confirmations(txid).await {
                        Ok(n) if n >= 6 => WithdrawalUpdate {
                            status: "confirmed",
                            confirmations: Some(n as i64),
                            ..Default::default()
                        },
                        Ok(n) => WithdrawalUpdate {
                            status: "sent",
                            confirmations: Some(n as i64),
                            next_check_at: later,
                            ..Default::default()
                        },
                        Err(_) => WithdrawalUpdate {
                            status: "sent",
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
        // What happens after the step is reported by email too: the hub sending, or cancelling.
        let notify = (row.status == "requested" && matches!(update.status, "sent" | "failed"))
            .then(|| {
                let mut event = output(row);
                event["key"] = json!(row.key);
                event["provider"] = json!(row.provider);
                event["wallet"] = json!(row.wallet);
                event["status"] = json!(update.status);
                event["txid"] = json!(update.txid);
                event["reason"] = json!(update.reason);
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

    fn policy(extra: Value) -> Value {
        let mut p = json!({ "min_amount_sat": 100_000, "keep_sat": 0 });
        if let (Some(p), Some(e)) = (p.as_object_mut(), extra.as_object()) {
            p.extend(e.clone());
        }
        p
    }

    #[test]
    fn the_policy_skips_small_balances_and_high_fees_and_says_why() {
        assert_eq!(policy_skip(&policy(json!({})), 250_000, 10), None);
        let small = policy_skip(&policy(json!({})), 90_000, 10).unwrap();
        assert!(
            small.contains("90000 sat is less than the minimum of 100000 sat"),
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
