//! The registry of outbox kinds: one [`Effect`] per kind, each with its typed payload. Adding an
//! integration means one line in `effects!` below. The dispatcher reaches it through
//! [`Registry`], so the outbox never imports the actions; nothing here performs a call itself.

use serde_json::Value;

use super::http_post::HttpEffect;
use super::pocket_order::OrderPatchEffect;
use super::pocket_payout::PayoutEffect;
use super::withdraw::WithdrawEffect;
use crate::notify::channels::{FanoutEffect, NtfyEffect, TelegramEffect, WebhookEffect};
use crate::outbox::handlers::email::EmailEffect;
use crate::outbox::handlers::{HandlerFuture, Registry};
use crate::outbox::{Effect, HandlerError, Handlers};
use crate::store::ItemRow;

/// Decodes the item's payload for `E` and carries it out.
async fn handle<E: Effect>(h: &Handlers, item: &ItemRow) -> Result<Value, HandlerError> {
    match E::decode(&item.payload) {
        Ok(payload) => E::handle(h, item, payload).await,
        Err(e) => Err(E::unreadable(h, item, e).await),
    }
}

/// Decodes the item's payload for `E` and reconciles it; an unreadable payload has nothing to
/// look up (the handler refuses it).
async fn reconcile<E: Effect>(h: &Handlers, item: &ItemRow) -> Option<Result<Value, HandlerError>> {
    let payload = E::decode(&item.payload).ok()?;
    E::reconcile(h, payload).await
}

/// Every kind this version handles, as the dispatcher's [`Registry`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Effects;

macro_rules! effects {
    ($($effect:ty),* $(,)?) => {
        /// Every kind this version handles.
        pub const KINDS: &[&str] = &[$(<$effect as Effect>::KIND),*];

        /// Carries out one item. Returns what the effect produced (a step's output).
        pub async fn handle_item(h: &Handlers, item: &ItemRow) -> Result<Value, HandlerError> {
            $(if item.kind == <$effect as Effect>::KIND {
                return handle::<$effect>(h, item).await;
            })*
            Err(HandlerError::permanent(format!(
                "this version of satflow has no handler for outbox items of kind `{}`",
                item.kind
            )))
        }

        /// Reads back whether an item whose last attempt has an unknown outcome took effect.
        /// `None`: sending again is safe — HTTP deliveries carry the same idempotency key,
        /// emails the same Message-ID and file name, order patches set the same values.
        #[tracing::instrument(name = "outbox_reconcile", skip_all, fields(item_id = item.id, kind = %item.kind, run_id = item.run_id, step_id = item.step_id.as_deref()))]
        pub async fn reconcile_item(h: &Handlers, item: &ItemRow) -> Option<Result<Value, HandlerError>> {
            $(if item.kind == <$effect as Effect>::KIND {
                return reconcile::<$effect>(h, item).await;
            })*
            None
        }
    };
}

// The registration of every outbox kind.
effects! {
    HttpEffect,
    EmailEffect,
    OrderPatchEffect,
    PayoutEffect,
    WithdrawEffect,
    FanoutEffect,
    NtfyEffect,
    TelegramEffect,
    WebhookEffect,
}

impl Registry for Effects {
    fn handle<'a>(
        &'a self,
        h: &'a Handlers,
        item: &'a ItemRow,
    ) -> HandlerFuture<'a, Result<Value, HandlerError>> {
        Box::pin(handle_item(h, item))
    }

    fn reconcile<'a>(
        &'a self,
        h: &'a Handlers,
        item: &'a ItemRow,
    ) -> HandlerFuture<'a, Option<Result<Value, HandlerError>>> {
        Box::pin(reconcile_item(h, item))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_registered_once_under_the_names_stored_rows_carry() {
        assert_eq!(
            KINDS,
            [
                "http",
                "email",
                "pocket.order.patch",
                "pocket.payout",
                "withdraw",
                "notify.fanout",
                "notify.ntfy",
                "notify.telegram",
                "notify.webhook"
            ]
        );
    }
}
