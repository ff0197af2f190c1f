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

use crate::clock::Clock;
use crate::config::{Alert, Config};
use crate::notify::email::Alerts;
use crate::pocket::PocketClient;
use crate::pocket::types::{Exchange, ExchangeState};
use crate::store::{
    Applied, Decide, Effects, NewRun, Observation, Seen, Store, StoreError, UsedAddress,
};
use crate::wallet::address_at_path;
use crate::wallet::chain::ChainSource;

mod event;

pub use event::{EventKind, ExchangeEvent, action_key, action_text, reason_text};

/// The longest wait between two read-backs of an exchange.
const MAX_CHECK_INTERVAL: Duration = Duration::from_secs(6 * 3600);

/// Confirmations after which a payout is no longer followed.
const DEEP_ENOUGH: u64 = 6;

/// How many stored webhooks one pass of the inbox reads, and applies in one transaction at
/// most: enough that a burst is applied at many per commit, few enough that the transaction
/// holds the write lock for milliseconds, not longer (webhook acknowledgements wait for it).
const INBOX_BATCH: i64 = 64;

/// How many addresses past the expected one a payout address is looked for.
const ADDRESS_WINDOW: u32 = 20;

/// Why `pocket.refresh` could not apply a read-back.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("cannot read the exchange back from Pocket: {error} ({})", attempts.join("; "))]
    Read {
        error: String,
        attempts: Vec<String>,
    },
    #[error("Pocket's answer is refused: {0}")]
    Refused(String),
    #[error("the database: {0}")]
    Store(#[from] StoreError),
}

/// Which workflows an exchange event starts (by their names, in the order they are started).
pub trait Listeners: Send + Sync {
    fn starting(
        &self,
        kind: EventKind,
        context: &Value,
        order_payout: Option<&str>,
        env: &minijinja::Environment<'_>,
    ) -> Vec<String>;
}

pub struct Processor {
    pub store: Store,
    pub config: Arc<Config>,
    /// Who starts runs on an event: the engine's workflows, asked through [`Listeners`] so that
    /// this state machine does not depend on how workflows are read.
    pub workflows: Box<dyn Listeners>,
    pub client: Option<PocketClient>,
    pub alerts: Alerts,
    pub env: minijinja::Environment<'static>,
    pub clock: Arc<dyn Clock>,
    /// Notified when a webhook was stored.
    pub wake: Arc<Notify>,
    pub wake_runner: Arc<Notify>,
    pub wake_outbox: Arc<Notify>,
    /// The explorer of each workflow's payout wallet, where one is configured.
    pub explorers: HashMap<String, ChainSource>,
    /// The wallet each workflow's order pays out to.
    pub payout_wallets: HashMap<String, String>,
}

impl Processor {
    /// Runs until `shutdown`: processes the inbox as webhooks arrive and reads back exchanges
    /// that are due.
    /// Read-backs run on one instance at a time: the one holding the reconciler's job lease.
    pub async fn run(
        self: Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
        jobs: crate::instance::Jobs,
    ) {
        let every = self.reconcile_every();
        let mut next_reconcile = tokio::time::Instant::now();
        while !*shutdown.borrow() {
            match self.process_inbox().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(err) => crate::logs::store_error(&self.store, "webhook inbox", &err),
            }
            let pass = every.min(Duration::from_secs(60));
            if tokio::time::Instant::now() >= next_reconcile
                && jobs.hold(crate::instance::RECONCILER, pass).await
            {
                if let Err(err) = self.reconcile_once().await {
                    crate::logs::store_error(&self.store, "reconciliation", &err);
                }
                if let Err(err) = self.follow_payouts().await {
                    crate::logs::store_error(&self.store, "payout confirmations", &err);
                }
                next_reconcile = tokio::time::Instant::now() + pass;
            } else if tokio::time::Instant::now() >= next_reconcile {
                next_reconcile = tokio::time::Instant::now() + pass;
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

    /// Applies the stored webhooks, oldest first, many to a transaction; returns how many.
    ///
    /// A batch is applied exactly as one webhook after the other would be (in the order they
    /// were stored, each seeing what the earlier ones wrote), with one commit: each row is
    /// marked processed in the transaction of its effects, so a crash leaves every row either
    /// applied with all it caused or pending. The only thing read before the transaction that
    /// an earlier row of the same batch could change is an order's count of settled exchanges
    /// (the payout check): a second settle of one order starts the next batch.
    pub async fn process_inbox(&self) -> Result<usize, StoreError> {
        let pending = self.store.pending_webhooks(INBOX_BATCH).await?;
        let mut readable = Vec::with_capacity(pending.len());
        for row in &pending {
            let parsed: Result<(String, Exchange), String> =
                serde_json::from_slice::<Value>(&row.body)
                    .map_err(|e| e.to_string())
                    .and_then(|v| {
                        let event = v["event"].as_str().unwrap_or_default().to_string();
                        serde_json::from_value::<Exchange>(v["payload"].clone())
                            .map_err(|e| e.to_string())
                            .and_then(|e| e.check().map(|()| (event, e)).map_err(|e| e.to_string()))
                    });
            match parsed {
                Ok((event, exchange)) => {
                    if !EventKind::ALL.iter().any(|k| k.name() == event) {
                        tracing::warn!(%event, exchange = %exchange.id, "a webhook event satflow does not know; its exchange is applied by its fields");
                    }
                    readable.push((row.id, event, exchange));
                }
                Err(e) => {
                    tracing::error!(id = row.id, error = %e, "a stored webhook cannot be read");
                    self.store
                        .webhook_failed(row.id, &e, self.clock.now())
                        .await?;
                }
            }
        }
        let mut rest = readable.as_slice();
        while !rest.is_empty() {
            let now = self.clock.now();
            let mut batch = Vec::with_capacity(rest.len());
            let mut settling = std::collections::HashSet::new();
            for (id, event, exchange) in rest {
                let state = webhook_state("webhook", event, exchange);
                let p = self
                    .prepare("webhook", event, state, exchange, Some(*id), now)
                    .await?;
                if let Some(order) = p.counts_settled_of()
                    && !settling.insert(order.to_owned())
                {
                    break;
                }
                batch.push(p);
            }
            let observations = batch
                .iter()
                .map(|p| {
                    let decide: Decide<'_> = Box::new(move |seen| self.effects(p, seen));
                    (p.observation(), decide)
                })
                .collect();
            let applied = self.store.apply_observations(observations, now).await?;
            for (p, applied) in batch.iter().zip(&applied) {
                self.applied(p, applied);
            }
            // What a cut-short batch left is prepared again (the ones applied may have changed
            // what it reads).
            rest = &rest[applied.len()..];
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
                Ok(exchange)
                    if !exchange.id.eq_ignore_ascii_case(&row.id) || exchange.check().is_err() =>
                {
                    // An answer that is not this exchange, or not a sane one, changes nothing.
                    let problem = exchange
                        .check()
                        .err()
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| {
                            format!("Pocket answered with exchange {}", exchange.id)
                        });
                    tracing::error!(exchange = %row.id, %problem, "a read-back refused; trying again later");
                    self.store.schedule_check(&row.id, next).await?;
                }
                Ok(mut exchange) => {
                    // The id as satflow knows it (Pocket may write its case differently).
                    exchange.id.clone_from(&row.id);
                    // A read-back names no state: it is derived from the fields.
                    let state = exchange.state();
                    let applied = self
                        .observe_as("reconcile", state.event(), state, &exchange, None)
                        .await?;
                    if applied.transitioned {
                        tracing::info!(exchange = %row.id, state = state.name(), "reconciliation found a transition the webhooks did not bring");
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

    /// Reads exchange `id` back from Pocket now (transient failures retried within the call as
    /// `patience` allows, as the order keeper does) and applies it exactly as the reconciler
    /// applies a read-back: `pocket.refresh`. The state machine is this processor's.
    pub async fn refresh(
        &self,
        client: &PocketClient,
        id: &str,
        patience: &crate::pocket::outcomes::Patience,
    ) -> Result<Applied, RefreshError> {
        let (read, attempts) = client.get_exchange_patiently(id, patience).await;
        let mut exchange = read.map_err(|e| RefreshError::Read {
            error: e.to_string(),
            attempts,
        })?;
        if !exchange.id.eq_ignore_ascii_case(id) {
            return Err(RefreshError::Refused(format!(
                "Pocket answered with exchange {} for {id}",
                exchange.id
            )));
        }
        exchange
            .check()
            .map_err(|e| RefreshError::Refused(e.to_string()))?;
        exchange.id = id.to_string();
        let state = exchange.state();
        Ok(self
            .observe_as("reconcile", state.event(), state, &exchange, None)
            .await?)
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
            let txid = row.exchange.payout.as_ref().and_then(|p| p.txid.as_deref());
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
            &prices.sources,
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
    ///
    /// A webhook's event name is authoritative for the state it stands for; a read-back (and
    /// an event satflow does not know) stands for the state its fields show. The state only
    /// moves forward, but every stage an exchange is learned to have been through starts its
    /// workflows and alerts exactly once, whatever order the observations arrive in: a settle
    /// that arrives first also stands for the execution, and a late `interrupted` is still
    /// reported (marked late). That makes the effects of a history independent of its order.
    pub async fn observe(
        &self,
        source: &str,
        event: &str,
        exchange: &Exchange,
        inbox_id: Option<i64>,
    ) -> Result<Applied, StoreError> {
        let state = webhook_state(source, event, exchange);
        self.observe_as(source, event, state, exchange, inbox_id)
            .await
    }

    /// [`Processor::observe`] with the state the observation stands for already decided.
    pub async fn observe_as(
        &self,
        source: &str,
        event: &str,
        state: ExchangeState,
        exchange: &Exchange,
        inbox_id: Option<i64>,
    ) -> Result<Applied, StoreError> {
        let now = self.clock.now();
        let p = self
            .prepare(source, event, state, exchange, inbox_id, now)
            .await?;
        let applied = self
            .store
            .apply_observation(&p.observation(), now, |seen| self.effects(&p, seen))
            .await?;
        self.applied(&p, &applied);
        Ok(applied)
    }

    /// Everything an observation needs that is read outside its transaction: the order (its
    /// workflow, its xpub), the payout check and the market price.
    async fn prepare<'e>(
        &self,
        source: &'e str,
        event: &'e str,
        state: ExchangeState,
        exchange: &'e Exchange,
        inbox_id: Option<i64>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Prepared<'e>, StoreError> {
        let order = match &exchange.order_id {
            Some(id) => self.store.order_by_id(id).await?,
            None => None,
        };
        let (mismatch, paid_index) = if state == ExchangeState::Settled {
            self.payout_check(exchange, order.as_ref()).await?
        } else {
            (None, None)
        };
        let stages: Vec<ExchangeState> = std::iter::once(state)
            .chain(state.implies().iter().copied())
            .collect();
        let off_market = if stages
            .iter()
            .any(|s| matches!(s, ExchangeState::Executed | ExchangeState::Settled))
        {
            self.rate_check(exchange, now).await
        } else {
            None
        };
        let next_check = (!state.is_final()).then(|| {
            now + chrono::Duration::from_std(self.reconcile_every())
                .unwrap_or(chrono::Duration::minutes(10))
        });
        let used_address = match (paid_index, &order) {
            (Some(index), Some(order)) => self
                .payout_wallets
                .get(&order.workflow)
                .zip(
                    exchange
                        .payout
                        .as_ref()
                        .and_then(|p| p.bitcoin_address.as_deref()),
                )
                .map(|(wallet, address)| UsedAddress {
                    wallet: wallet.clone(),
                    index,
                    address: address.to_string(),
                    // The address Pocket paid to is used: `satflow addresses` shows it, and
                    // no reservation can hand it out.
                    used_by: format!("Pocket exchange {}", exchange.id),
                }),
            _ => None,
        };
        Ok(Prepared {
            source,
            event,
            state,
            exchange,
            inbox_id,
            order,
            stages,
            off_market,
            mismatch,
            next_check,
            used_address,
        })
    }

    /// The runs and alerts of an observation, from what the store saw while applying it.
    fn effects(&self, p: &Prepared<'_>, seen: &Seen) -> Effects {
        let mut effects = Effects::default();
        if !seen.new_event {
            return effects;
        }
        let exchange = p.exchange;
        let workflow = p.order.as_ref().map(|o| o.workflow.as_str());
        effects.used_address = p.used_address.clone();
        for stage in &p.stages {
            let context =
                ExchangeEvent::new(stage.event(), *stage, seen.state, exchange, workflow).to_json();
            if let Some(kind) = EventKind::ALL
                .into_iter()
                .find(|k| k.name() == stage.event())
            {
                for name in self.workflows.starting(
                    kind,
                    &context,
                    p.order.as_ref().map(|o| o.payout_kind.as_str()),
                    &self.env,
                ) {
                    effects.stage_runs.push(NewRun {
                        workflow: name,
                        event: stage.event().to_string(),
                        context: context.clone(),
                    });
                }
            }
            let ctx = json!({ "event": context });
            let alert = match stage {
                // A second interrupted with a new action is a new alert; the same action
                // again is not.
                ExchangeState::Interrupted => Some((
                    Alert::Interrupted,
                    format!("{}/{}", exchange.id, action_key(exchange)),
                )),
                ExchangeState::Refunded => Some((Alert::Refunded, exchange.id.clone())),
                _ => None,
            };
            effects
                .items
                .extend(alert.and_then(|(a, key)| self.alerts.item(&self.env, a, &key, &ctx)));
        }
        let context =
            ExchangeEvent::new(p.event, p.state, seen.state, exchange, workflow).to_json();
        if let Some(details) = &p.off_market {
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
        if let Some(mismatch) = &p.mismatch {
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
    }

    /// Logs what an applied observation did and wakes whoever its effects are for.
    fn applied(&self, p: &Prepared<'_>, applied: &Applied) {
        let (exchange, source, event) = (&p.exchange.id, p.source, p.event);
        if applied.transitioned {
            tracing::info!(%exchange, state = applied.state.name(), source, "exchange moved");
        } else if applied.new_event {
            tracing::info!(%exchange, event, source, state = applied.state.name(), "event recorded; the exchange stays where it is");
        }
        if applied.new_event {
            self.wake_runner.notify_one();
            self.wake_outbox.notify_one();
        }
        if let Some(m) = &p.mismatch {
            tracing::error!(%exchange, address = %m.address, "payout to an address outside the order's wallet");
        }
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
        let Some(address) = payout.bitcoin_address.as_deref() else {
            return Ok((None, None)); // a Lightning payout
        };
        let method = &order.order.payout_method;
        // The network of the wallet this order pays out to (a test-network wallet listed
        // first must not make mainnet payouts look foreign).
        let network = self
            .payout_wallets
            .get(&order.workflow)
            .and_then(|wallet| self.config.wallets.get(wallet))
            .map_or_else(|| network_of(address), |w| w.network);
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

/// An observation with what was read for it before its transaction (see `Processor::prepare`).
struct Prepared<'e> {
    source: &'e str,
    event: &'e str,
    state: ExchangeState,
    exchange: &'e Exchange,
    inbox_id: Option<i64>,
    order: Option<crate::store::OrderRow>,
    stages: Vec<ExchangeState>,
    off_market: Option<Value>,
    mismatch: Option<Mismatch>,
    next_check: Option<chrono::DateTime<chrono::Utc>>,
    used_address: Option<UsedAddress>,
}

impl Prepared<'_> {
    fn observation(&self) -> Observation<'_> {
        Observation {
            source: self.source,
            event: self.event,
            state: self.state,
            exchange: self.exchange,
            inbox_id: self.inbox_id,
            next_check: self.next_check,
        }
    }

    /// A settle whose payout check counts the order's settled exchanges: it must not share a
    /// transaction with another settle of the same order, whose count it would not see.
    fn counts_settled_of(&self) -> Option<&str> {
        (self.state == ExchangeState::Settled)
            .then_some(self.exchange.order_id.as_deref())
            .flatten()
    }
}

/// The state an observation stands for: a known webhook event's, else the one its fields show.
fn webhook_state(source: &str, event: &str, exchange: &Exchange) -> ExchangeState {
    ExchangeState::of_event(event)
        .filter(|_| source == "webhook")
        .unwrap_or_else(|| exchange.state())
}

/// The network an address is for, when no wallet says it.
fn network_of(address: &str) -> bitcoin::Network {
    match address.parse::<bitcoin::Address<bitcoin::address::NetworkUnchecked>>() {
        Ok(a) if a.is_valid_for_network(bitcoin::Network::Bitcoin) => bitcoin::Network::Bitcoin,
        Ok(a) if a.is_valid_for_network(bitcoin::Network::Regtest) => bitcoin::Network::Regtest,
        Ok(a) if a.is_valid_for_network(bitcoin::Network::Signet) => bitcoin::Network::Signet,
        _ => bitcoin::Network::Bitcoin,
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
        let env = crate::expr::environment();
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
            let ctx = json!({ "event": ExchangeEvent::new("exchange.interrupted", ExchangeState::Interrupted, ExchangeState::Interrupted, &exchange(payload), None) });
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
        let env = crate::expr::environment();
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
            let ctx = json!({ "event": ExchangeEvent::new("exchange.refunded", ExchangeState::Refunded, ExchangeState::Refunded, &e, None) });
            let body = alerts()
                .item(&env, Alert::Refunded, "x2", &ctx)
                .unwrap()
                .payload["body"]
                .as_str()
                .unwrap()
                .to_string();
            assert!(body.contains(&reason_text(&code.into())), "{code}: {body}");
            assert!(body.contains(code), "{code}: {body}");
        }
        assert!(reason_text(&"brand_new_code".into()).contains("\"brand_new_code\""));
    }

    /// The exchange state machine as a property: a realistic history of one exchange (a path
    /// of Pocket's lifecycle, each stage delivered as a webhook, perhaps retried, perhaps also
    /// read back) ends in the same state, with the same workflows started once each and the
    /// same alerts once each, whatever order its observations arrive in.
    mod property {
        use std::sync::Arc;

        use proptest::prelude::*;

        use super::*;
        use crate::clock::{Clock, ManualClock};

        /// The stages of a history, as Pocket produces them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Stage {
            /// Interrupted, in the shape of Pocket's Postman collection (action and reason).
            Interrupted,
            /// A second interruption with a new action (the walkthrough's shape).
            InterruptedAgain,
            Executed,
            Settled,
            Refunded,
        }

        /// The paths through the lifecycle.
        const PATHS: &[&[Stage]] = {
            use Stage::*;
            &[
                &[Executed],
                &[Executed, Settled],
                &[Interrupted],
                &[Interrupted, Executed],
                &[Interrupted, Executed, Settled],
                &[Interrupted, Settled],
                &[Interrupted, Refunded],
                &[Interrupted, InterruptedAgain, Executed, Settled],
                &[Interrupted, InterruptedAgain, Refunded],
            ]
        };

        #[derive(Debug, Clone)]
        struct Delivery {
            stage: Stage,
            /// A read-back (state from the fields) rather than a webhook.
            read_back: bool,
        }

        fn body(id: &str, stage: Stage, path: &[Stage]) -> Exchange {
            serde_json::from_value(payload(id, stage, path)).unwrap()
        }

        /// The webhook payload of `stage`, as Pocket writes it.
        fn payload(id: &str, stage: Stage, path: &[Stage]) -> Value {
            let interrupted_before = path.contains(&Stage::Interrupted);
            let mut v = json!({
                "exchange_id": id, "order_id": "64decab6-4129-4fe7-9f6e-1db68283f5ce",
                "fee_rate": 0.012, "pair": "btc/eur", "type": "buy", "cost": 100.00,
                "executed_on": null, "amount": null, "rate": null, "fee": null,
                "action": null, "reason": null, "payout": null,
            });
            let executed = |v: &mut Value| {
                v["executed_on"] = json!("2022-12-07T15:32:59.211Z");
                v["amount"] = serde_json::from_str("0.00494000").unwrap();
                v["rate"] = serde_json::from_str("20000.00").unwrap();
                v["fee"] = serde_json::from_str("1.20").unwrap();
            };
            match stage {
                Stage::Interrupted => {
                    v["action"] = json!({"code": "identify", "url": "https://app.pocketbitcoin.com/onboarding"});
                    v["reason"] = json!({"code": "identification_required"});
                }
                Stage::InterruptedAgain => {
                    v["action"] = json!({"code": "identification_required", "identification_id": "7bf967b5-3d34-4cd6-936c-6631811401d2"});
                }
                Stage::Executed => executed(&mut v),
                Stage::Settled => {
                    executed(&mut v);
                    v["payout"] = json!({"txid": "c01c7a0fd270aa3876119098c0e2d51687a795efab99787e214d8a93ab9f8342", "outpoint": 1,
                        "bitcoin_address": "bc1q5a7uxjq6z5l2wguzu77rzmzk6tyx24yvq5r4fj", "fee": 0.00000190, "amount": 0.00049381});
                    // Interrupted -> settled: the old action is still there.
                    if interrupted_before && !path.contains(&Stage::Executed) {
                        v["action"] = json!({"code": "identify", "url": "https://app.pocketbitcoin.com/onboarding"});
                    }
                }
                Stage::Refunded => v["reason"] = json!({"code": "threshold_exceeded"}),
            }
            v
        }

        fn event(stage: Stage) -> &'static str {
            match stage {
                Stage::Interrupted | Stage::InterruptedAgain => "exchange.interrupted",
                Stage::Executed => "exchange.executed",
                Stage::Settled => "exchange.settled",
                Stage::Refunded => "exchange.refunded",
            }
        }

        /// A path, its deliveries (each stage's webhook, 0–2 retries, maybe a read-back) and an
        /// order of arrival (a random key per delivery).
        fn history() -> impl Strategy<Value = (usize, Vec<Delivery>, Vec<u32>)> {
            (0..PATHS.len())
                .prop_flat_map(|p| {
                    let stages = PATHS[p].len();
                    (
                        Just(p),
                        proptest::collection::vec((0usize..3, any::<bool>()), stages),
                    )
                })
                .prop_map(|(p, extras)| {
                    let mut deliveries = Vec::new();
                    for (stage, (retries, read_back)) in PATHS[p].iter().zip(extras) {
                        for _ in 0..=retries {
                            deliveries.push(Delivery {
                                stage: *stage,
                                read_back: false,
                            });
                        }
                        if read_back {
                            deliveries.push(Delivery {
                                stage: *stage,
                                read_back: true,
                            });
                        }
                    }
                    (p, deliveries)
                })
                .prop_flat_map(|(p, deliveries)| {
                    let n = deliveries.len();
                    (
                        Just(p),
                        Just(deliveries),
                        proptest::collection::vec(any::<u32>(), n),
                    )
                })
        }

        pub(super) struct World {
            pub processor: Processor,
            pub clock: Arc<ManualClock>,
            _dir: tempfile::TempDir,
        }

        pub(super) async fn world() -> World {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(
                dir.path().join("satflow.yaml"),
                "database: sqlite://satflow.db\nemail: { dir: mail, from: satflow@example.com, to: me@example.com }\n",
            )
            .unwrap();
            let mut diags = crate::source::Diagnostics::default();
            let loaded = crate::config::load(
                &dir.path().join("satflow.yaml"),
                &crate::source::ProcessEnv,
                &mut diags,
            );
            let config = loaded.config.unwrap_or_else(|| panic!("{diags:?}"));
            let store = Store::open(&config.database).await.unwrap();
            let workflows = EventKind::ALL
                .into_iter()
                .map(|kind| crate::workflow::Workflow {
                    name: format!("on-{}", kind.name()),
                    path: dir.path().join("w.yaml"),
                    schedule: None,
                    events: vec![kind],
                    exchanges: Default::default(),
                    steps: Vec::new(),
                })
                .collect::<Vec<_>>();
            let email = config.email.as_ref().unwrap();
            let alerts = Alerts::new(
                Some(Mailer::new(email, Default::default())),
                Alert::ALL.into_iter().collect(),
            );
            let clock = Arc::new(ManualClock::new(
                chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            ));
            let processor = Processor {
                store,
                config: Arc::new(config),
                workflows: Box::new(workflows),
                client: None,
                alerts,
                env: crate::expr::environment(),
                clock: Arc::clone(&clock) as Arc<dyn Clock>,
                wake: Default::default(),
                wake_runner: Default::default(),
                wake_outbox: Default::default(),
                explorers: HashMap::new(),
                payout_wallets: HashMap::new(),
            };
            World {
                processor,
                clock,
                _dir: dir,
            }
        }

        /// What a history left for exchange `id`: its state, the runs (workflow, key) and the
        /// alert emails (key), with the id taken out so two exchanges can be compared.
        async fn outcome(
            p: &Processor,
            id: &str,
        ) -> (ExchangeState, Vec<(String, String)>, Vec<String>) {
            let state = p
                .store
                .exchange(id)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("no exchange {id}"))
                .state;
            let mut runs: Vec<(String, String)> = p
                .store
                .recent_runs(10_000)
                .await
                .unwrap()
                .into_iter()
                .filter(|r| r.trigger_key.starts_with(id))
                .map(|r| (r.workflow, r.trigger_key.replacen(id, "ID", 1)))
                .collect();
            runs.sort();
            let mut alerts: Vec<String> = p
                .store
                .outbox_items(10_000)
                .await
                .unwrap()
                .into_iter()
                .filter(|i| i.key.contains(id))
                .map(|i| i.key.replacen(id, "ID", 1))
                .collect();
            alerts.sort();
            (state, runs, alerts)
        }

        async fn deliver(p: &Processor, id: &str, path: &[Stage], deliveries: &[&Delivery]) {
            for d in deliveries {
                let exchange = body(id, d.stage, path);
                if d.read_back {
                    let state = exchange.state();
                    p.observe("reconcile", state.event(), &exchange, None)
                        .await
                        .unwrap();
                } else {
                    p.observe("webhook", event(d.stage), &exchange, None)
                        .await
                        .unwrap();
                }
            }
        }

        /// A batch that commits early because another writer waits for its turn
        /// (`Tx::wanted`) loses nothing and repeats nothing: the next transaction applies the
        /// rest, and every exchange ends as its webhooks applied one at a time leave it.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_batch_cut_short_for_a_waiting_writer_applies_the_rest_exactly_once() {
            use crate::store::NewWebhook;
            let w = world().await;
            let p = &w.processor;
            let path: &[Stage] = &[
                Stage::Interrupted,
                Stage::InterruptedAgain,
                Stage::Executed,
                Stage::Settled,
            ];
            let ids: Vec<String> = (0..15)
                .map(|i| format!("c0ffee{i:02}-5ee5-4501-a4cf-4e3788732b7a"))
                .collect();
            // Stage by stage, the exchanges interleaved, each of its own order: 60 rows, one
            // batch unless a waiting writer cuts it.
            let mut webhooks = Vec::new();
            for stage in path {
                for (i, id) in ids.iter().enumerate() {
                    let mut exchange = payload(id, *stage, path);
                    exchange["order_id"] = json!(format!("{i:08x}-4129-4fe7-9f6e-1db68283f5ce"));
                    let body = json!({ "event": event(*stage), "payload": exchange });
                    webhooks.push(NewWebhook {
                        correlation_id: None,
                        retry_count: None,
                        event: Some(event(*stage).into()),
                        exchange_id: Some(id.clone()),
                        body: serde_json::to_vec(&body).unwrap(),
                        recognized: true,
                        alert: None,
                        alert_kind: None,
                    });
                }
            }
            let total = webhooks.len() as i64;
            p.store
                .store_webhooks(&webhooks, w.clock.now())
                .await
                .unwrap();
            // A writer that keeps asking for its turn, and reads how far the inbox is each time
            // it had one.
            let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let nagger = {
                let store = p.store.clone();
                let done = Arc::clone(&done);
                let now = w.clock.now();
                tokio::spawn(async move {
                    let mut seen = std::collections::BTreeSet::new();
                    while !done.load(std::sync::atomic::Ordering::Relaxed) {
                        store.schedule_check("nobody", now).await.unwrap();
                        seen.insert(store.inbox_backlog().await.unwrap().0);
                    }
                    seen
                })
            };
            while p.store.inbox_backlog().await.unwrap().0 > 0 {
                p.process_inbox().await.unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            let seen = nagger.await.unwrap();
            assert!(
                seen.iter().any(|&pending| pending > 0 && pending < total),
                "the waiting writer got a turn inside the batch (pending counts seen: {seen:?})"
            );
            // Every exchange ends as the same webhooks applied one at a time leave it.
            let reference = "a2d75998-5ee5-4501-a4cf-4e3788732b7a";
            let in_order: Vec<Delivery> = path
                .iter()
                .map(|&stage| Delivery {
                    stage,
                    read_back: false,
                })
                .collect();
            deliver(p, reference, path, &in_order.iter().collect::<Vec<_>>()).await;
            let expected = outcome(p, reference).await;
            assert_eq!(expected.0, ExchangeState::Settled);
            for id in &ids {
                assert_eq!(outcome(p, id).await, expected, "exchange {id}");
            }
        }

        /// How many cases the property runs (printed by the test).
        const CASES: u32 = 64;

        #[test]
        fn the_outcome_of_a_history_does_not_depend_on_its_order() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
                cases: CASES,
                // A failing case is printed (and can be pinned as a test); no file is written.
                failure_persistence: None,
                ..ProptestConfig::default()
            });
            let ran = std::cell::Cell::new(0u32);
            let result = runner.run(&history(), |(p, deliveries, keys)| {
                ran.set(ran.get() + 1);
                let path = PATHS[p];
                runtime.block_on(async {
                    let w = world().await;
                    let in_order: Vec<&Delivery> = deliveries.iter().collect();
                    let mut shuffled: Vec<(u32, &Delivery)> =
                        keys.iter().copied().zip(deliveries.iter()).collect();
                    shuffled.sort_by_key(|(k, _)| *k);
                    let shuffled: Vec<&Delivery> = shuffled.into_iter().map(|(_, d)| d).collect();
                    let a = "a2d75998-5ee5-4501-a4cf-4e3788732b7a";
                    let b = "b2d75998-5ee5-4501-a4cf-4e3788732b7b";
                    deliver(&w.processor, a, path, &in_order).await;
                    deliver(&w.processor, b, path, &shuffled).await;
                    let expected = outcome(&w.processor, a).await;
                    let got = outcome(&w.processor, b).await;
                    prop_assert_eq!(&got, &expected, "path {:?}, arrival {:?}", path, shuffled);
                    // And what it is, written out: the last stage's state; each stage's
                    // workflow once (a settle stands for the execution too); one alert per
                    // interruption's action and per refund.
                    let last = *path.last().unwrap();
                    let state = match last {
                        Stage::Interrupted | Stage::InterruptedAgain => ExchangeState::Interrupted,
                        Stage::Executed => ExchangeState::Executed,
                        Stage::Settled => ExchangeState::Settled,
                        Stage::Refunded => ExchangeState::Refunded,
                    };
                    prop_assert_eq!(got.0, state);
                    let mut workflows: Vec<&str> = path
                        .iter()
                        .map(|s| event(*s))
                        .chain(
                            path.contains(&Stage::Settled)
                                .then_some("exchange.executed"),
                        )
                        .collect();
                    workflows.sort();
                    workflows.dedup();
                    let started: Vec<&str> = got
                        .1
                        .iter()
                        .map(|(w, _)| w.strip_prefix("on-").unwrap())
                        .collect();
                    let mut started_sorted = started.clone();
                    started_sorted.sort();
                    prop_assert_eq!(started_sorted, workflows);
                    let interruptions = path
                        .iter()
                        .filter(|s| matches!(s, Stage::Interrupted | Stage::InterruptedAgain))
                        .count();
                    let refunds = usize::from(path.contains(&Stage::Refunded));
                    prop_assert_eq!(
                        got.2
                            .iter()
                            .filter(|k| k.starts_with("alert/interrupted/"))
                            .count(),
                        interruptions
                    );
                    prop_assert_eq!(
                        got.2
                            .iter()
                            .filter(|k| k.starts_with("alert/refunded/"))
                            .count(),
                        refunds
                    );
                    Ok(())
                })
            });
            println!(
                "exchange state machine property: {} cases (configured {CASES})",
                ran.get()
            );
            if let Err(e) = result {
                panic!("{e}");
            }
        }
    }

    async fn emails(p: &Processor) -> Vec<crate::store::ItemRow> {
        let items = p.store.outbox_items(10_000).await.unwrap();
        items
            .into_iter()
            .filter(|i| i.key.starts_with("alert/unrecognized_webhook/"))
            .collect()
    }

    /// A storm of unrecognized webhooks: the newest are kept, old ones pruned, one alert
    /// email, and when the hour is over one summary with the count.
    #[tokio::test]
    async fn a_storm_of_unrecognized_webhooks_is_pruned_and_summarised_once_an_hour() {
        use crate::store::{KEEP_UNRECOGNIZED, NewWebhook};
        let w = property::world().await;
        let p = &w.processor;
        let webhook = |i: usize| {
            let body = format!("{{\"nonsense\": {i}}}").into_bytes();
            let ctx = json!({ "event": { "event": null, "received_at": "now", "reason": "the body has no `event` name", "body": "…" } });
            NewWebhook {
                correlation_id: None,
                retry_count: None,
                event: None,
                exchange_id: None,
                alert: p.alerts.item(
                    &p.env,
                    Alert::UnrecognizedWebhook,
                    &format!("storm-{i}"),
                    &ctx,
                ),
                alert_kind: Some(Alert::UnrecognizedWebhook.name().into()),
                body,
                recognized: false,
            }
        };
        let t0 = w.clock.now();
        let batch: Vec<NewWebhook> = (0..300).map(webhook).collect();
        p.store.store_webhooks(&batch, t0).await.unwrap();
        let (_, kept, _) = p.store.inbox_backlog().await.unwrap();
        assert_eq!(kept, KEEP_UNRECOGNIZED, "the newest are kept");
        assert_eq!(emails(p).await.len(), 1);
        assert_eq!(
            p.alerts
                .summarise_due(&p.store, &p.env, p.clock.now())
                .await
                .unwrap(),
            0,
            "the hour is not over"
        );
        w.clock.advance(chrono::Duration::minutes(61));
        assert_eq!(
            p.alerts
                .summarise_due(&p.store, &p.env, p.clock.now())
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            p.alerts
                .summarise_due(&p.store, &p.env, p.clock.now())
                .await
                .unwrap(),
            0,
            "once"
        );
        let mail = emails(p).await;
        assert_eq!(mail.len(), 2);
        let summary = mail.iter().find(|i| i.key.contains("/summary/")).unwrap();
        let subject = summary.payload["subject"].as_str().unwrap();
        assert!(
            subject.contains("299 more unrecognized_webhook alerts"),
            "{subject}"
        );
        // A month later, what is left of the storm is pruned by the next one that arrives.
        w.clock.advance(chrono::Duration::days(31));
        p.store
            .store_webhooks(&[webhook(1000)], w.clock.now())
            .await
            .unwrap();
        let (_, kept, _) = p.store.inbox_backlog().await.unwrap();
        assert_eq!(kept, 1);
    }
}
