//! `wallet.address`: reserve the next unused address of a wallet (committed with the step, so
//! two runs never hand out the same one).

use serde_json::json;

use super::read::ActionReader;
use super::{ActionStep, StepCx, StepOutcome};
use crate::source::MapReader;

/// Reserve the next unused address of a wallet.
#[derive(Debug, Clone)]
pub struct WalletAddress {
    pub wallet: String,
}

impl ActionStep for WalletAddress {
    const NAME: &'static str = "wallet.address";
    const OUTPUTS: &'static [&'static str] = &["wallet", "index", "address"];

    fn read(r: &mut ActionReader<'_, '_>, m: &mut MapReader<'_>) -> Option<Self> {
        let wallet = m
            .required("wallet", "name a wallet defined under `wallets:`", r.ctx)
            .and_then(|n| r.reference(n, "wallet", "wallets", &mut r.names.wallets.iter()));
        Some(WalletAddress { wallet: wallet? })
    }

    async fn perform(&self, cx: &StepCx<'_>) -> StepOutcome {
        let Some(wallet) = cx.config.wallets.get(&self.wallet) else {
            return StepOutcome::failed(format!(
                "wallet `{}` is no longer in satflow.yaml",
                self.wallet
            ));
        };
        let used_by = format!(
            "workflow {} run {} step {}",
            cx.run.workflow, cx.run.id, cx.step_id
        );
        match crate::wallet::rotation::next_address(cx.store, &self.wallet, wallet, &used_by).await
        {
            Ok(r) => {
                let output = json!({ "wallet": r.wallet, "index": r.index, "address": r.address });
                let mut outcome = StepOutcome::succeeded(output, Vec::new());
                outcome.reservation = Some(r);
                outcome
            }
            Err(e) => StepOutcome::failed(e),
        }
    }
}
