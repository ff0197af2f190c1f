//! Exchanges in motion: webhooks from the inbox and read-backs from Pocket, applied to the
//! exchange state machine exactly once, each transition starting the workflows that listen for
//! it and sending the built-in alerts (interrupted, refunded, a payout outside the wallet).
//!
//! Pocket has no endpoint that lists exchanges: every exchange satflow ever saw that is not final
//! is read back on an interval, which is what saves the user when their webhook endpoint was down.
//! Nothing here answers Pocket or sends anything itself: effects are outbox items and runs.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bitcoin::bip32::{ChildNumber, DerivationPath};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use crate::config::{Alert, Config};
use crate::engine::clock::Clock;
use crate::notify::email::Alerts;
use crate::pocket::PocketClient;
use crate::pocket::types::{Exchange, ExchangeState};
use crate::store::{Applied, Effects, Store, StoreError, is_final};
use crate::wallet::address_at_path;
use crate::wallet::esplora::Esplora;
use crate::workflow::{EventKind, Workflow};

/// The longest wait between two read-backs of an exchange.
const MAX_CHECK_INTERVAL: Duration = Duration::from_secs(6 * 3600);

/// Confirmations after which a payout is no longer followed.
const DEEP_ENOUGH: u64 = 6;

/// How many addresses past the expected one a payout address is looked for.
const ADDRESS_WINDOW: u32 = 20;

pub struct Processor {
    pub store: Store,
    pub config: Arc<Config>,
    pub workflows: Vec<Workflow>,
    pub client: Option<PocketClient>,
    pub alerts: Alerts,
    pub env: minijinja::Environment<'static>,
    pub clock: Arc<dyn Clock>,
    /// Notified when a webhook was stored.
    pub wake: Arc<Notify>,
    pub wake_runner: Arc<Notify>,
    pub wake_outbox: Arc<Notify>,
    /// The explorer of each workflow's payout wallet, where one is configured.
    pub explorers: HashMap<String, Esplora>,
    /// The wallet each workflow's order pays out to.
    pub payout_wallets: HashMap<String, String>,
}

impl Processor {
    /// Runs until `shutdown`: processes the inbox as webhooks arrive and reads back exchanges
    /// that are due.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let every = self.reconcile_every();
        let mut next_reconcile = tokio::time::Instant::now();
        while !*shutdown.borrow() {
            match self.process_inbox().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(err) => crate::engine::logs::store_error(&self.store, "webhook inbox", &err),
            }
            if tokio::time::Instant::now() >= next_reconcile {
                if let Err(err) = self.reconcile_once().await {
                    crate::engine::logs::store_error(&self.store, "reconciliation", &err);
                }
                if let Err(err) = self.follow_payouts().await {
                    crate::engine::logs::store_error(&self.store, "payout confirmations", &err);
                }
                next_reconcile = tokio::time::Instant::now() + every.min(Duration::from_secs(60));
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep_until(next_reconcile) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    fn reconcile_every(&self) -> Duration {
        self.config
            .pocket
            .as_ref()
            .map_or(Duration::from_secs(600), |p| p.reconcile_every)
    }

    /// Applies the stored webhooks, oldest first; returns how many.
    pub async fn process_inbox(&self) -> Result<usize, StoreError> {
        let pending = self.store.pending_webhooks(64).await?;
        for row in &pending {
            let parsed: Result<(String, Exchange), String> =
                serde_json::from_slice::<Value>(&row.body)
                    .map_err(|e| e.to_string())
                    .and_then(|v| {
                        let event = v["event"].as_str().unwrap_or_default().to_string();
                        serde_json::from_value::<Exchange>(v["payload"].clone())
                            .map(|e| (event, e))
                            .map_err(|e| e.to_string())
                    });
            match parsed {
                Ok((event, exchange)) => {
                    if !EventKind::ALL.iter().any(|k| k.name() == event) {
                        tracing::warn!(%event, exchange = %exchange.id, "a webhook event satflow does not know; its exchange is applied by its fields");
                    }
                    self.observe("webhook", &event, &exchange, Some(row.id))
                        .await?;
                }
                Err(e) => {
                    tracing::error!(id = row.id, error = %e, "a stored webhook cannot be read");
                    self.store
                        .webhook_failed(row.id, &e, self.clock.now())
                        .await?;
                }
            }
        }
        Ok(pending.len())
    }

    /// Reads back every exchange that is due and applies what changed; returns how many were read.
    pub async fn reconcile_once(&self) -> Result<usize, StoreError> {
        let Some(client) = &self.client else {
            return Ok(0);
        };
        let now = self.clock.now();
        let due = self.store.exchanges_to_check(now, 50).await?;
        for row in &due {
            let backoff = self
                .reconcile_every()
                .saturating_mul(2u32.saturating_pow(row.check_count.clamp(0, 16) as u32));
            let next = now
                + chrono::Duration::from_std(backoff.min(MAX_CHECK_INTERVAL))
                    .unwrap_or(chrono::Duration::hours(6));
            match client.get_exchange(&row.id).await {
                Ok(exchange) => {
                    let event = format!("exchange.{}", exchange.state().name());
                    let applied = self.observe("reconcile", &event, &exchange, None).await?;
                    if applied.transitioned {
                        tracing::info!(exchange = %row.id, state = exchange.state().name(), "reconciliation found a transition the webhooks did not bring");
                    } else {
                        self.store.schedule_check(&row.id, next).await?;
                    }
                }
                Err(err) => {
                    tracing::warn!(exchange = %row.id, %err, "cannot read the exchange back; trying again later");
                    self.store.schedule_check(&row.id, next).await?;
                }
            }
        }
        Ok(due.len())
    }

    /// Looks up the depth of settled payouts through their wallet's explorer; returns how many
    /// were looked up.
    pub async fn follow_payouts(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let later = now
            + chrono::Duration::from_std(self.reconcile_every())
                .unwrap_or(chrono::Duration::minutes(10));
        let due = self.store.payouts_to_confirm(now, 50).await?;
        for row in &due {
            let explorer = match &row.order_id {
                Some(order) => self
                    .store
                    .order_by_id(order)
                    .await?
                    .and_then(|o| self.explorers.get(&o.workflow)),
                None => None,
            };
            let txid = row
                .exchange
                .payout
                .as_ref()
                .and_then(|p| p["txid"].as_str());
            let (Some(explorer), Some(txid)) = (explorer, txid) else {
                // No explorer for this wallet: nothing to follow.
                self.store.set_confirmations(&row.id, None, None).await?;
                continue;
            };
            match explorer.confirmations(txid).await {
                Ok(n) => {
                    let deep = n >= DEEP_ENOUGH;
                    self.store
                        .set_confirmations(&row.id, Some(n as i64), (!deep).then_some(later))
                        .await?;
                    if deep {
                        tracing::info!(exchange = %row.id, %txid, confirmations = n, "payout is deep enough");
                    }
                }
                Err(err) => {
                    tracing::warn!(exchange = %row.id, %err, "cannot follow the payout now");
                    self.store
                        .set_confirmations(&row.id, None, Some(later))
                        .await?;
                }
            }
        }
        Ok(due.len())
    }

    /// The market price next to a freshly executed exchange's rate: the details for the
    /// `rate_off_market` alert when they are further apart than `prices.sanity_percent`. An
    /// exchange that executed longer ago than `prices.max_age` is not compared (the market price
    /// of then is not known), and a price that cannot be had is only logged: the check must never
    /// hold up the exchange itself.
    async fn rate_check(
        &self,
        exchange: &Exchange,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<Value> {
        let prices = &self.config.prices;
        let allowed = prices.sanity_percent?;
        if !self.alerts.enabled(Alert::RateOffMarket) {
            return None;
        }
        let rate = exchange.rate.filter(|r| *r > Decimal::ZERO)?;
        let executed = exchange.executed_on?;
        if (now - executed)
            .to_std()
            .is_ok_and(|age| age > prices.max_age)
        {
            return None;
        }
        let currency = exchange
            .pair
            .as_deref()
            .and_then(|p| p.split('/').nth(1))
            .and_then(|c| c.parse::<crate::domain::Currency>().ok())?;
        let quote = match crate::prices::quote(
            &self.store,
            &self.config,
            prices.source,
            currency,
            prices.max_age,
            now,
        )
        .await
        {
            Ok(q) => q,
            Err(err) => {
                tracing::warn!(exchange = %exchange.id, %err, "cannot compare the exchange's rate with the market price");
                return None;
            }
        };
        // Checked: a rate too far off to compute (or a zero price) counts as far off.
        let deviation = rate
            .checked_sub(quote.price)
            .and_then(|d| d.abs().checked_mul(Decimal::ONE_HUNDRED))
            .and_then(|d| d.checked_div(quote.price))
            .map_or(Decimal::MAX, |d| d.round_dp(2));
        (deviation > allowed).then(|| {
            tracing::warn!(exchange = %exchange.id, %rate, market = %quote.price, %deviation, "exchange rate far from the market price");
            json!({
                "market_price": quote.price.to_string(),
                "deviation_percent": deviation.to_string(),
                "sanity_percent": allowed.to_string(),
                "source": crate::prices::source_name(quote.source),
                "fetched_at": quote.fetched_at.to_rfc3339(),
            })
        })
    }

    /// Applies one observation of an exchange, with everything it causes, in one transaction.
    pub async fn observe(
        &self,
        source: &str,
        event: &str,
        exchange: &Exchange,
        inbox_id: Option<i64>,
    ) -> Result<Applied, StoreError> {
        let now = self.clock.now();
        let state = exchange.state();
        // Read before the transaction: the order (its workflow, its xpub) and the payout check.
        let order = match &exchange.order_id {
            Some(id) => self.store.order_by_id(id).await?,
            None => None,
        };
        let (mismatch, paid_index) = if state == ExchangeState::Settled {
            self.payout_check(exchange, order.as_ref()).await?
        } else {
            (None, None)
        };
        let context = event_context(event, exchange, order.as_ref().map(|o| o.workflow.as_str()));
        let off_market = match state {
            ExchangeState::Executed | ExchangeState::Settled => {
                self.rate_check(exchange, now).await
            }
            _ => None,
        };
        let next_check = (!is_final(state)).then(|| {
            now + chrono::Duration::from_std(self.reconcile_every())
                .unwrap_or(chrono::Duration::minutes(10))
        });
        let kind = EventKind::ALL
            .into_iter()
            .find(|k| k.name() == format!("exchange.{}", state.name()));
        let applied = self
            .store
            .apply_exchange(
                source,
                event,
                exchange,
                inbox_id,
                next_check,
                now,
                |_previous, transitioned| {
                    let mut effects = Effects::default();
                    if !transitioned {
                        return effects;
                    }
                    if let Some(kind) = kind {
                        for w in self.workflows.iter().filter(|w| w.events.contains(&kind)) {
                            effects.runs.push((w.name.clone(), context.clone()));
                        }
                    }
                    let alert = match state {
                        ExchangeState::Interrupted => Some(Alert::Interrupted),
                        ExchangeState::Refunded => Some(Alert::Refunded),
                        _ => None,
                    };
                    let ctx = json!({ "event": context });
                    effects.items.extend(
                        alert.and_then(|a| self.alerts.item(&self.env, a, &exchange.id, &ctx)),
                    );
                    if let Some(details) = &off_market {
                        let mut ctx = json!({ "event": context });
                        if let (Some(event), Some(details)) =
                            (ctx["event"].as_object_mut(), details.as_object())
                        {
                            event.extend(details.clone());
                        }
                        effects.items.extend(self.alerts.item(
                            &self.env,
                            Alert::RateOffMarket,
                            &exchange.id,
                            &ctx,
                        ));
                    }
                    if let Some(mismatch) = &mismatch {
                        let mut ctx = json!({ "event": context });
                        ctx["event"]["address"] = json!(mismatch.address);
                        ctx["event"]["expected"] = json!(mismatch.expected);
                        effects.items.extend(self.alerts.item(
                            &self.env,
                            Alert::PayoutMismatch,
                            &exchange.id,
                            &ctx,
                        ));
                    }
                    effects
                },
            )
            .await?;
        if applied.transitioned
            && let (Some(index), Some(order)) = (paid_index, &order)
            && let Some(wallet) = self.payout_wallets.get(&order.workflow)
            && let Some(address) = exchange
                .payout
                .as_ref()
                .and_then(|p| p["bitcoin_address"].as_str())
        {
            // The address Pocket paid to is used: `satflow addresses` shows it, and no
            // reservation can hand it out.
            let by = format!("Pocket exchange {}", exchange.id);
            self.store
                .mark_address_used(wallet, index, address, &by, now)
                .await?;
        }
        if applied.transitioned {
            tracing::info!(exchange = %exchange.id, state = state.name(), source, "exchange moved");
            self.wake_runner.notify_one();
            self.wake_outbox.notify_one();
        } else if applied.new_event {
            tracing::info!(exchange = %exchange.id, event, source, "event recorded; the exchange was already further along");
        }
        if let Some(m) = &mismatch {
            tracing::error!(exchange = %exchange.id, address = %m.address, "payout to an address outside the order's wallet");
        }
        Ok(applied)
    }

    /// A settled on-chain payout must go to an address of the order's own wallet: the order's
    /// address, or (with an xpub) an address near where the rotation should be. Returns the
    /// mismatch, if any, and the index the payout went to (xpub orders).
    async fn payout_check(
        &self,
        exchange: &Exchange,
        order: Option<&crate::store::OrderRow>,
    ) -> Result<(Option<Mismatch>, Option<u32>), StoreError> {
        let (Some(order), Some(payout)) = (order, &exchange.payout) else {
            return Ok((None, None));
        };
        let Some(address) = payout["bitcoin_address"].as_str() else {
            return Ok((None, None)); // a Lightning payout
        };
        let method = &order.order.payout_method;
        let network = self
            .config
            .wallets
            .values()
            .next()
            .map_or(bitcoin::Network::Bitcoin, |w| w.network);
        match (
            method["extended_public_key"].as_str(),
            method["derivation_path"].as_str(),
        ) {
            (Some(xpub), Some(path)) => {
                let Ok(path) = DerivationPath::from_str(path) else {
                    return Ok((None, None));
                };
                let children: Vec<ChildNumber> = path.into_iter().copied().collect();
                let Some((ChildNumber::Normal { index: start }, chain)) = children.split_last()
                else {
                    return Ok((None, None));
                };
                let chain = DerivationPath::from(chain.to_vec());
                let settled = self.store.settled_count(&order.id).await?.max(0) as u32;
                let last = start.saturating_add(settled).saturating_add(ADDRESS_WINDOW);
                let found = (0..=last).find(|i| {
                    address_at_path(
                        xpub,
                        &chain.child(ChildNumber::Normal { index: *i }),
                        network,
                    )
                    .is_ok_and(|a| a.to_string() == address)
                });
                let mismatch = found.is_none().then(|| Mismatch {
                    address: address.to_string(),
                    expected: format!(
                        "the first {} addresses of the order's extended public key",
                        last + 1
                    ),
                });
                Ok((mismatch, found))
            }
            _ => {
                let own = method["bitcoin_address"].as_str().unwrap_or_default();
                let mismatch = (own != address).then(|| Mismatch {
                    address: address.to_string(),
                    expected: own.to_string(),
                });
                Ok((mismatch, None))
            }
        }
    }
}

struct Mismatch {
    address: String,
    expected: String,
}

/// What workflows and alert emails see as `event`.
pub fn event_context(event: &str, exchange: &Exchange, workflow: Option<&str>) -> Value {
    let reason_code = exchange.reason.as_ref().and_then(|r| r["code"].as_str());
    let action_code = exchange.action.as_ref().and_then(|a| a["code"].as_str());
    let currency = exchange
        .pair
        .as_deref()
        .and_then(|p| p.split('/').nth(1))
        .unwrap_or("");
    json!({
        "name": event,
        "exchange_id": exchange.id,
        "order_id": exchange.order_id,
        "state": exchange.state().name(),
        "workflow": workflow,
        "pair": exchange.pair,
        "currency": currency.to_uppercase(),
        "cost": exchange.cost.map(|d| d.to_string()),
        "amount": exchange.amount.map(|d| d.to_string()),
        "rate": exchange.rate.map(|d| d.to_string()),
        "fee": exchange.fee.map(|d| d.to_string()),
        "action": exchange.action,
        "action_text": action_code.map(action_text),
        "reason": exchange.reason,
        "reason_text": reason_code.map(reason_text),
        "payout": exchange.payout,
        "txid": exchange.payout.as_ref().and_then(|p| p["txid"].as_str()),
        "exchange": serde_json::to_value(exchange).unwrap_or(Value::Null),
    })
}

/// A refund or failure reason in plain words; unknown codes are shown as received.
pub fn reason_text(code: &str) -> String {
    match code {
        "threshold_exceeded" => {
            "the payment is above the amount Pocket accepts without further identification".into()
        }
        "order_inactive" => "the order was paused (inactive) when the payment arrived".into(),
        "companies_unsupported" => {
            "the payment came from a company account; Pocket only serves private persons".into()
        }
        "country_unsupported" => "the payment came from a country Pocket does not serve".into(),
        "other_risk_detected" => "Pocket's risk checks stopped the payment".into(),
        "customer_requested" => "you asked Pocket for the refund".into(),
        "account_not_matching" => "the paying bank account is not the order's debitor IBAN".into(),
        "payout_expired" => {
            "the bitcoin could not be paid out in time (for Lightning: no usable invoice)".into()
        }
        "no_route" => "no Lightning route to your node was found".into(),
        "invoice_expired" => "the Lightning invoice expired before it was paid".into(),
        "error" => "the Lightning payout failed".into(),
        other => format!("Pocket gave the reason \"{other}\", which satflow does not know"),
    }
}

/// What Pocket asks for when it interrupts an exchange.
pub fn action_text(code: &str) -> String {
    match code {
        "identify" | "identification_required" => "identify yourself to Pocket".into(),
        other => format!("Pocket asks for \"{other}\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EmailConfig, EmailTransport};
    use crate::notify::email::Mailer;

    fn alerts() -> Alerts {
        let config = EmailConfig {
            transport: EmailTransport::Dir("mail".into()),
            from: "satflow@example.com".parse().unwrap(),
            to: vec!["me@example.com".parse().unwrap()],
        };
        Alerts::new(
            Some(Mailer::new(&config, Default::default())),
            Alert::ALL.into_iter().collect(),
        )
    }

    fn exchange(json: &str) -> Exchange {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn an_interrupted_alert_says_what_pocket_needs_and_where() {
        let env = crate::workflow::expr::environment();
        for (payload, needle) in [
            (
                r#"{"exchange_id":"x1","order_id":"o","pair":"btc/chf","cost":100.00,"action":{"code":"identify","url":"https://app.pocketbitcoin.com/onboarding"},"reason":{"code":"identification_required"}}"#,
                "Where: https://app.pocketbitcoin.com/onboarding",
            ),
            (
                r#"{"exchange_id":"x1","order_id":"o","pair":"btc/eur","cost":100.00,"action":{"code":"identification_required","identification_id":"7bf967b5"}}"#,
                "Identification: 7bf967b5",
            ),
        ] {
            let ctx =
                json!({ "event": event_context("exchange.interrupted", &exchange(payload), None) });
            let item = alerts()
                .item(&env, Alert::Interrupted, "x1", &ctx)
                .expect("rendered");
            let body = item.payload["body"].as_str().unwrap();
            assert!(body.contains(needle), "{body}");
            assert!(body.contains("identify yourself to Pocket"), "{body}");
            assert_eq!(item.key, "alert/interrupted/x1");
        }
    }

    #[test]
    fn a_refund_alert_names_the_reason_in_plain_words_or_verbatim() {
        let env = crate::workflow::expr::environment();
        for code in [
            "threshold_exceeded",
            "order_inactive",
            "companies_unsupported",
            "country_unsupported",
            "other_risk_detected",
            "customer_requested",
            "account_not_matching",
            "payout_expired",
            "brand_new_code",
        ] {
            let e = exchange(&format!(
                r#"{{"id":"x2","order_id":"o","pair":"btc/eur","cost":50,"reason":{{"code":"{code}"}}}}"#
            ));
            let ctx = json!({ "event": event_context("exchange.refunded", &e, None) });
            let body = alerts()
                .item(&env, Alert::Refunded, "x2", &ctx)
                .unwrap()
                .payload["body"]
                .as_str()
                .unwrap()
                .to_string();
            assert!(body.contains(&reason_text(code)), "{code}: {body}");
            assert!(body.contains(code), "{code}: {body}");
        }
        assert!(reason_text("brand_new_code").contains("\"brand_new_code\""));
    }
}
