//! Exchanges and their events: every observation (a webhook, a read-back) is applied in one
//! transaction — the event recorded once per body, the state only moving forward along Pocket's
//! lifecycle, and the runs, emails and used addresses it causes written with it.
//!
//! It must never decide a state from anything but the observation it is given, nor move a
//! state back: a late `interrupted` after `executed` is recorded and changes no state.

use super::db::{self, DbRow, Tx};
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::outbox::{NewItem, insert_items};
use super::{Store, StoreError, from_millis};
use crate::pocket::types::{Exchange, ExchangeState};

/// How far along an exchange is (see [`ExchangeState::rank`]): interrupted < executed <
/// settled = refunded. Settled and refunded are both final.
pub fn rank(state: ExchangeState) -> u8 {
    state.rank()
}

pub fn is_final(state: ExchangeState) -> bool {
    state.is_final()
}

fn parse_state(s: &str) -> Result<ExchangeState, StoreError> {
    ExchangeState::ALL
        .into_iter()
        .find(|state| state.name() == s)
        .ok_or_else(|| StoreError::Corrupt(format!("an exchange in the unknown state {s:?}")))
}

#[derive(Debug, Clone)]
pub struct ExchangeRow {
    pub id: String,
    pub order_id: Option<String>,
    pub state: ExchangeState,
    /// The exchange as last accepted.
    pub exchange: Exchange,
    pub first_seen_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub next_check_at: Option<DateTime<Utc>>,
    pub check_count: i64,
    /// Confirmations of the on-chain payout, when followed through an explorer.
    pub confirmations: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct EventRow {
    pub event: String,
    pub source: String,
    pub recorded_at: DateTime<Utc>,
    pub payload: Value,
}

/// A run an observation starts: `workflow` for the exchange's `event` (unique per exchange
/// and event, so a second observation of the same stage starts nothing).
#[derive(Debug, Clone)]
pub struct NewRun {
    pub workflow: String,
    pub event: String,
    /// The run's `event`, stored as given: the serialized `exchanges::ExchangeEvent` (the store
    /// sits below the exchanges and takes it as plain JSON).
    pub context: Value,
}

/// An address Pocket paid to, to be marked used with the observation.
#[derive(Debug, Clone)]
pub struct UsedAddress {
    pub wallet: String,
    pub index: u32,
    pub address: String,
    pub used_by: String,
}

/// What an observation leads to, decided by the caller from what the store saw.
#[derive(Debug, Default)]
pub struct Effects {
    /// `(workflow, event context)`: runs to queue, keyed by exchange and the observed event.
    pub runs: Vec<(String, Value)>,
    /// Runs keyed by the stage they are for (an observation may stand for several stages).
    pub stage_runs: Vec<NewRun>,
    pub items: Vec<NewItem>,
    pub used_address: Option<UsedAddress>,
}

/// What the store saw while applying an observation, for the caller to decide its effects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// The state before, if the exchange was known.
    pub previous: Option<ExchangeState>,
    /// The state after.
    pub state: ExchangeState,
    /// The exchange reached a state it was not in before.
    pub transitioned: bool,
    /// This `(exchange, event, body)` had not been recorded before.
    pub new_event: bool,
}

/// What applying an observation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The exchange reached a state it was not in before.
    pub transitioned: bool,
    /// This `(exchange, event, body)` had not been recorded before.
    pub new_event: bool,
    /// The state after.
    pub state: ExchangeState,
}

/// One observation of an exchange.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// `webhook` or `reconcile`.
    pub source: &'a str,
    /// The event name as received (a webhook's) or derived (a read-back's).
    pub event: &'a str,
    /// The state this observation stands for: a known webhook event's, or the fields' for a
    /// read-back and for an event satflow does not know.
    pub state: ExchangeState,
    pub exchange: &'a Exchange,
    /// The inbox row to mark processed in the same transaction.
    pub inbox_id: Option<i64>,
    /// When to read the exchange back next, if it is not final.
    pub next_check: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, order_id, state, raw_json, first_seen_at, updated_at, next_check_at, check_count, confirmations";

fn exchange_row(row: &DbRow) -> Result<ExchangeRow, StoreError> {
    let raw: String = row.try_get("raw_json")?;
    let state: String = row.try_get("state")?;
    Ok(ExchangeRow {
        id: row.try_get("id")?,
        order_id: row.try_get("order_id")?,
        state: parse_state(&state)?,
        exchange: serde_json::from_str(&raw)
            .map_err(|e| StoreError::Corrupt(format!("exchange {raw}: {e}")))?,
        first_seen_at: from_millis(row.try_get("first_seen_at")?),
        updated_at: from_millis(row.try_get("updated_at")?),
        next_check_at: row
            .try_get::<Option<i64>, _>("next_check_at")?
            .map(from_millis),
        check_count: row.try_get("check_count")?,
        confirmations: row.try_get("confirmations")?,
    })
}

/// Money as stored: the decimal's exact text.
fn text(d: Option<rust_decimal::Decimal>) -> Option<String> {
    d.map(|d| d.to_string())
}

impl Store {
    /// Applies one read-back-like observation of `exchange` under the name `event`, its state
    /// derived from its fields. See [`Store::apply_observation`].
    #[allow(clippy::too_many_arguments)]
    pub async fn apply_exchange(
        &self,
        source: &str,
        event: &str,
        exchange: &Exchange,
        inbox_id: Option<i64>,
        next_check: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        decide: impl FnOnce(Option<ExchangeState>, bool) -> Effects,
    ) -> Result<Applied, StoreError> {
        let observation = Observation {
            source,
            event,
            state: exchange.state(),
            exchange,
            inbox_id,
            next_check,
        };
        self.apply_observation(&observation, now, |seen| {
            decide(seen.previous, seen.transitioned)
        })
        .await
    }

    /// Applies one observation in one transaction: the event is recorded once per
    /// `(exchange, event, body)`; the exchange moves to the observed state only if that is
    /// further along (or the same state, whose details are then refreshed); `decide` gets what
    /// was seen and returns the effects, written in the same transaction.
    pub async fn apply_observation(
        &self,
        o: &Observation<'_>,
        now: DateTime<Utc>,
        decide: impl FnOnce(&Seen) -> Effects,
    ) -> Result<Applied, StoreError> {
        let mut tx = self.begin_write().await?;
        let applied = apply_in(&mut tx, o, now, decide).await?;
        tx.commit().await?;
        Ok(applied)
    }

    /// Applies observations in one transaction, in the order given, each exactly as
    /// [`Store::apply_observation`] would (each `decide` sees what the ones before it wrote):
    /// the first ones or, on an error, none. One commit for many is what lets a burst of
    /// webhooks be applied at the disk's pace rather than at one transaction each.
    ///
    /// Returns what the first `n` did; the rest were not applied (the caller gives them to the
    /// next batch). The batch is cut short, after at least one, when another writer of this
    /// process is waiting: a webhook waiting to be stored must not wait for a whole batch.
    pub async fn apply_observations<'a>(
        &self,
        batch: Vec<(Observation<'a>, Decide<'a>)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Applied>, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut applied = Vec::with_capacity(batch.len());
        for (o, decide) in batch {
            if !applied.is_empty() && tx.wanted() {
                break;
            }
            applied.push(apply_in(&mut tx, &o, now, decide).await?);
        }
        tx.commit().await?;
        Ok(applied)
    }

    pub async fn exchanges(&self, limit: i64) -> Result<Vec<ExchangeRow>, StoreError> {
        let rows = db::query(&format!(
            "SELECT {COLUMNS} FROM exchanges ORDER BY updated_at DESC LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(exchange_row).collect()
    }

    pub async fn exchange(&self, id: &str) -> Result<Option<ExchangeRow>, StoreError> {
        let row = db::query(&format!("SELECT {COLUMNS} FROM exchanges WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(exchange_row).transpose()
    }

    pub async fn exchange_events(&self, id: &str) -> Result<Vec<EventRow>, StoreError> {
        let rows = db::query(
            "SELECT event, source, recorded_at, payload FROM exchange_events WHERE exchange_id = $1 ORDER BY recorded_at, event, body_hash",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let payload: String = r.try_get("payload")?;
                Ok(EventRow {
                    event: r.try_get("event")?,
                    source: r.try_get("source")?,
                    recorded_at: from_millis(r.try_get("recorded_at")?),
                    payload: serde_json::from_str(&payload).unwrap_or(Value::Null),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Exchanges that are not final and due to be read back from Pocket.
    pub async fn exchanges_to_check(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<ExchangeRow>, StoreError> {
        let rows = db::query(&format!(
            "SELECT {COLUMNS} FROM exchanges WHERE next_check_at IS NOT NULL AND next_check_at <= $1
             ORDER BY next_check_at LIMIT $2"
        ))
        .bind(now.timestamp_millis())
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(exchange_row).collect()
    }

    /// When to read an exchange back next (after a read that changed nothing).
    pub async fn schedule_check(&self, id: &str, next: DateTime<Utc>) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        db::query(
            "UPDATE exchanges SET next_check_at = $1, check_count = check_count + 1
             WHERE id = $2 AND next_check_at IS NOT NULL",
        )
        .bind(next.timestamp_millis())
        .bind(id)
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Settled exchanges whose payout transaction is due to be looked up.
    pub async fn payouts_to_confirm(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<ExchangeRow>, StoreError> {
        let rows = db::query(&format!(
            "SELECT {COLUMNS} FROM exchanges WHERE confirm_next_at IS NOT NULL AND confirm_next_at <= $1
             ORDER BY confirm_next_at LIMIT $2"
        ))
        .bind(now.timestamp_millis())
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(exchange_row).collect()
    }

    /// Records a payout's depth; `next` is when to look again (none: deep enough, or no explorer).
    pub async fn set_confirmations(
        &self,
        id: &str,
        confirmations: Option<i64>,
        next: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        db::query("UPDATE exchanges SET confirmations = COALESCE($1, confirmations), confirm_next_at = $2 WHERE id = $3")
            .bind(confirmations)
            .bind(next.map(|t| t.timestamp_millis()))
            .bind(id)
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// How many exchanges of `order_id` are settled (to find the expected payout address).
    pub async fn settled_count(&self, order_id: &str) -> Result<i64, StoreError> {
        Ok(db::query_scalar(
            "SELECT COUNT(*) FROM exchanges WHERE order_id = $1 AND state = 'settled'",
        )
        .bind(order_id)
        .fetch_one(self.pool())
        .await?)
    }
}

/// What an observation leads to, decided from what was seen (see [`Store::apply_observations`]).
pub type Decide<'a> = Box<dyn FnOnce(&Seen) -> Effects + Send + 'a>;

/// One observation applied inside `tx` (see [`Store::apply_observation`]).
async fn apply_in(
    tx: &mut Tx,
    o: &Observation<'_>,
    now: DateTime<Utc>,
    decide: impl FnOnce(&Seen) -> Effects,
) -> Result<Applied, StoreError> {
    let now_ms = now.timestamp_millis();
    let exchange = o.exchange;
    let raw = serde_json::to_string(exchange).map_err(|e| {
        StoreError::Corrupt(format!("exchange {} cannot be written: {e}", exchange.id))
    })?;
    let body_hash = crate::pocket::webhook::body_hash(raw.as_bytes());
    let previous: Option<String> = db::query_scalar("SELECT state FROM exchanges WHERE id = $1")
        .bind(&exchange.id)
        .fetch_optional(&mut *tx)
        .await?;
    let previous = previous.as_deref().map(parse_state).transpose()?;
    let new_event = db::query(
        "INSERT INTO exchange_events (exchange_id, event, body_hash, source, recorded_at, payload)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (exchange_id, event, body_hash) DO NOTHING",
    )
    .bind(&exchange.id)
    .bind(o.event)
    .bind(&body_hash)
    .bind(o.source)
    .bind(now_ms)
    .bind(&raw)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    let transitioned = previous.is_none_or(|p| o.state.rank() > p.rank());
    // The same state seen again with a different body (a second action, a payout that
    // was confirmed) refreshes what is shown; it never changes the state.
    let refresh = new_event && previous == Some(o.state);
    let state = if transitioned {
        o.state
    } else {
        previous.unwrap_or(o.state)
    };
    // As received (a JSON null reads as none of them).
    let payout = exchange.payout.as_ref().map(|p| p.as_json().to_string());
    let reason = exchange.reason.as_ref().map(|r| r.as_json().to_string());
    let action = exchange.action.as_ref().map(|a| a.as_json().to_string());
    // An on-chain payout is followed to its confirmations, where an explorer is configured.
    let confirm_next = (o.state == ExchangeState::Settled
        && exchange
            .payout
            .as_ref()
            .is_some_and(|p| p.txid.is_some() && p.bitcoin_address.is_some()))
    .then_some(now_ms);
    if transitioned {
        let next = if o.state.is_final() {
            None
        } else {
            o.next_check.map(|t| t.timestamp_millis())
        };
        db::query(
            "INSERT INTO exchanges (id, order_id, state, pair, cost, amount, rate, fee, payout_json, reason_json, action_json,
                                    raw_json, first_seen_at, updated_at, next_check_at, confirm_next_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, $14, $15)
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, order_id = COALESCE(excluded.order_id, exchanges.order_id),
                 pair = COALESCE(excluded.pair, exchanges.pair), cost = COALESCE(excluded.cost, exchanges.cost),
                 amount = COALESCE(excluded.amount, exchanges.amount), rate = COALESCE(excluded.rate, exchanges.rate),
                 fee = COALESCE(excluded.fee, exchanges.fee), payout_json = excluded.payout_json,
                 reason_json = excluded.reason_json, action_json = excluded.action_json,
                 raw_json = excluded.raw_json, updated_at = excluded.updated_at,
                 next_check_at = excluded.next_check_at, check_count = 0,
                 confirm_next_at = COALESCE(excluded.confirm_next_at, exchanges.confirm_next_at)",
        )
        .bind(&exchange.id)
        .bind(&exchange.order_id)
        .bind(o.state.name())
        .bind(&exchange.pair)
        .bind(text(exchange.cost))
        .bind(text(exchange.amount))
        .bind(text(exchange.rate))
        .bind(text(exchange.fee))
        .bind(&payout)
        .bind(&reason)
        .bind(&action)
        .bind(&raw)
        .bind(now_ms)
        .bind(next)
        .bind(confirm_next)
        .execute(&mut *tx)
        .await?;
    } else if refresh {
        db::query(
            "UPDATE exchanges SET order_id = COALESCE($2, order_id), pair = COALESCE($3, pair),
                 cost = COALESCE($4, cost), amount = COALESCE($5, amount), rate = COALESCE($6, rate),
                 fee = COALESCE($7, fee), payout_json = COALESCE($8, payout_json), reason_json = $9,
                 action_json = $10, raw_json = $11, updated_at = $12,
                 confirm_next_at = COALESCE(confirm_next_at, $13)
             WHERE id = $1",
        )
        .bind(&exchange.id)
        .bind(&exchange.order_id)
        .bind(&exchange.pair)
        .bind(text(exchange.cost))
        .bind(text(exchange.amount))
        .bind(text(exchange.rate))
        .bind(text(exchange.fee))
        .bind(&payout)
        .bind(&reason)
        .bind(&action)
        .bind(&raw)
        .bind(now_ms)
        .bind(confirm_next)
        .execute(&mut *tx)
        .await?;
    }
    let seen = Seen {
        previous,
        state,
        transitioned,
        new_event,
    };
    let effects = decide(&seen);
    let runs = effects
        .runs
        .iter()
        .map(|(workflow, context)| (workflow.as_str(), o.event, context))
        .chain(
            effects
                .stage_runs
                .iter()
                .map(|r| (r.workflow.as_str(), r.event.as_str(), &r.context)),
        );
    for (workflow, event, context) in runs {
        db::query(
            "INSERT INTO runs (workflow, trigger, trigger_key, event_json, status, created_at)
             VALUES ($1, 'event', $2, $3, 'queued', $4)
             ON CONFLICT (workflow, trigger, trigger_key) DO NOTHING",
        )
        .bind(workflow)
        .bind(format!("{}/{event}", exchange.id))
        .bind(context.to_string())
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
    }
    insert_items(tx, &effects.items, now).await?;
    if let Some(used) = &effects.used_address {
        super::wallets::mark_used(
            tx,
            &used.wallet,
            used.index,
            &used.address,
            &used.used_by,
            now,
        )
        .await?;
    }
    if let Some(id) = o.inbox_id {
        db::query("UPDATE webhook_inbox SET status = 'processed', processed_at = $1 WHERE id = $2")
            .bind(now_ms)
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    Ok(Applied {
        transitioned,
        new_event,
        state,
    })
}
