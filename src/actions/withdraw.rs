//! `withdraw`: move a custodial balance (the Lightning Peach hub, an LND node's on-chain wallet)
//! to cold storage, exactly once per workflow and scheduled period, under a fee policy.
//!
//! The step reserves the destination and plans the withdrawal (its row and its address commit
//! with the step); its effect, a `withdraw` item carrying the whole policy ([`Item`]), is carried
//! out by `crate::withdraw` (the providers' calls, the policy, the reconciliation). The step's
//! output is the withdrawal row as `withdraw::output` shows it.

use rust_decimal::Decimal;
use serde_json::Value;

use super::read::ActionReader;
use super::{ActionStep, StepCx, StepOutcome};
use crate::outbox::{Effect, HandlerError, Handlers};
use crate::source::MapReader;
use crate::source::reader::unsigned;
use crate::store::{ItemRow, NewWithdrawal, Store};
use crate::wallet::rotation::next_address;
use crate::withdraw::{self as provider, Item};

/// Move a custodial balance to cold storage, under a fee policy.
#[derive(Debug, Clone)]
pub struct Withdraw {
    pub from: String,
    pub to_wallet: String,
    pub min_amount_sat: u64,
    pub max_fee_percent: Option<Decimal>,
    pub max_fee_rate: Option<Decimal>,
    pub keep_sat: u64,
    pub max_per_day_sat: Option<u64>,
}

impl ActionStep for Withdraw {
    const NAME: &'static str = "withdraw";
    const OUTPUTS: &'static [&'static str] = &[
        "withdrawn",
        "skipped",
        "reason",
        "amount_sat",
        "fee_sat",
        "address",
        "txid",
        "withdrawal_id",
    ];

    fn read(r: &mut ActionReader<'_, '_>, m: &mut MapReader<'_>) -> Option<Self> {
        let from = m
            .required(
                "from",
                "name a provider defined under `withdraw:`",
                r.ctx,
            )
            .and_then(|n| r.reference(n, "from", "withdraw", &mut r.names.providers.iter()));
        let to_wallet = m
            .required("to", "write to: { wallet: NAME }", r.ctx)
            .and_then(|n| {
                let mut t = MapReader::new(n, r.field("to"), r.ctx)?;
                let w = t
                    .required("wallet", "name a wallet defined under `wallets:`", r.ctx)
                    .and_then(|w| {
                        r.reference(w, "to.wallet", "wallets", &mut r.names.wallets.iter())
                    });
                t.finish(r.ctx);
                w
            });
        let min_node = m.required(
            "min_amount_sat",
            "write the smallest balance worth moving, in satoshis, e.g. min_amount_sat: 100000",
            r.ctx,
        );
        let min_amount_sat =
            min_node.and_then(|n| unsigned(n, &r.field("min_amount_sat"), r.ctx));
        let max_fee_percent = m.get("max_fee_percent").and_then(|n| {
            r.decimal(
                n,
                "max_fee_percent",
                Decimal::ZERO,
                Decimal::ONE_HUNDRED,
                "0 to 100 (percent of the amount)",
            )
        });
        let max_fee_rate = m.get("max_fee_rate").and_then(|n| {
            r.decimal(
                n,
                "max_fee_rate",
                Decimal::ONE,
                Decimal::from(10_000),
                "1 to 10000 (sat/vB)",
            )
        });
        let keep_sat = match m.get("keep_sat") {
            Some(n) => {
                let keep = unsigned(n, &r.field("keep_sat"), r.ctx)?;
                if keep > 0
                    && from
                        .as_ref()
                        .is_some_and(|f| r.names.hub_providers.contains(f))
                {
                    r.ctx.error(
                        n.pos,
                        format!("{}: the Lightning Peach hub withdraws its whole balance, so nothing can be kept behind; remove keep_sat or withdraw from an `lnd` provider", r.field("keep_sat")),
                    );
                }
                keep
            }
            None => 0,
        };
        let max_per_day_sat = match m.get("max_per_day_sat") {
            Some(n) => match unsigned(n, &r.field("max_per_day_sat"), r.ctx)? {
                0 => {
                    r.ctx.error(
                        n.pos,
                        format!("{}: 0 would refuse every withdrawal; write a positive number of satoshis, or leave it out for no daily cap", r.field("max_per_day_sat")),
                    );
                    return None;
                }
                max => Some(max),
            },
            None => None,
        };
        if let (Some(min), Some(n)) = (min_amount_sat, min_node)
            && min < 1000
        {
            // The hub refuses withdrawals under 1000 sat (seed 003); say so now rather than weekly.
            r.ctx.error(
                n.pos,
                format!("{}.min_amount_sat: {min} is below 1000 sat, the smallest withdrawal a provider accepts; write at least 1000", r.prefix),
            );
        }
        Some(Withdraw {
            from: from?,
            to_wallet: to_wallet?,
            min_amount_sat: min_amount_sat?,
            max_fee_percent,
            max_fee_rate,
            keep_sat,
            max_per_day_sat,
        })
    }

    /// Reserves the destination and plans the withdrawal; the outbox does the rest.
    async fn perform(&self, cx: &StepCx<'_>) -> StepOutcome {
        let Some(wallet) = cx.config.wallets.get(&self.to_wallet) else {
            return StepOutcome::failed(format!(
                "wallet `{}` is no longer in satflow.yaml",
                self.to_wallet
            ));
        };
        if !cx.config.withdraw.contains_key(&self.from) {
            return StepOutcome::failed(format!("withdraw.{} is no longer in satflow.yaml", self.from));
        }
        // One withdrawal per workflow and scheduled period (or manual trigger).
        let withdrawal_key = format!("{}/{}", cx.run.workflow, cx.run.trigger_key);
        let reused = match cx.store
            .skipped_withdrawal_address(&cx.run.workflow, &self.to_wallet)
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
                cx.store,
                &self.to_wallet,
                wallet,
                &format!("withdrawal {withdrawal_key}"),
            )
            .await
            {
                Ok(r) => (r.address.clone(), r.index, Some(r)),
                Err(e) => return StepOutcome::failed(e),
            },
        };
        let item = Item {
            withdrawal: withdrawal_key.clone(),
            from: self.from.clone(),
            min_amount_sat: self.min_amount_sat,
            max_fee_percent: self.max_fee_percent,
            max_fee_rate: self.max_fee_rate,
            keep_sat: self.keep_sat,
            max_per_day_sat: self.max_per_day_sat,
        };
        let item = match WithdrawEffect::item(cx.key(), cx.waiter(), &item) {
            Ok(item) => item,
            Err(e) => return StepOutcome::failed(format!("cannot write the withdrawal: {e}")),
        };
        let mut outcome = StepOutcome::waiting(item);
        outcome.withdrawal = Some(NewWithdrawal {
            key: withdrawal_key,
            workflow: cx.run.workflow.clone(),
            provider: self.from.clone(),
            wallet: self.to_wallet.clone(),
            address,
            address_index: index,
        });
        outcome.reservation = reservation;
        outcome
    }
}

/// The outbox side: decides with the policy, then withdraws (see `crate::withdraw`).
pub struct WithdrawEffect;

impl Effect for WithdrawEffect {
    const KIND: &'static str = provider::KIND;
    type Payload = Item;

    async fn handle(h: &Handlers, _item: &ItemRow, item: Item) -> Result<Value, HandlerError> {
        provider::execute(store(h)?, h.config()?, &h.clients, &item).await
    }

    async fn reconcile(h: &Handlers, item: Item) -> Option<Result<Value, HandlerError>> {
        provider::reconcile(h.store.as_ref()?, h.config.as_deref()?, &h.clients, &item).await
    }

    async fn unreadable(h: &Handlers, item: &ItemRow, error: serde_json::Error) -> HandlerError {
        let e = HandlerError::permanent(format!(
            "the withdrawal's policy cannot be read: {error}; nothing was moved"
        ));
        match &h.store {
            Some(store) => provider::refuse(store, &item.payload, e).await,
            None => e,
        }
    }
}

fn store(h: &Handlers) -> Result<&Store, HandlerError> {
    h.store
        .as_ref()
        .ok_or_else(|| HandlerError::permanent("no database to record the withdrawal in"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;
    use serde_json::json;

    #[test]
    fn a_payload_in_todays_shape_decodes_and_is_written_back_the_same() {
        let stored = json!({
            "withdrawal": "sweep/2027-W01", "from": "hub", "min_amount_sat": 100_000,
            "keep_sat": 0, "max_fee_percent": "1.5", "max_fee_rate": null,
        });
        let item = WithdrawEffect::decode(&stored).unwrap();
        assert_eq!(item.withdrawal, "sweep/2027-W01");
        assert_eq!(item.max_fee_percent, Some(Decimal::new(15, 1)));
        assert_eq!(item.max_fee_rate, None);
        let written = WithdrawEffect::item("k".into(), None, &item).unwrap();
        assert_eq!(written.kind, "withdraw");
        assert_eq!(written.payload, stored);
    }
}
