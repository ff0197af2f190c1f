//! The registry of outbox kinds: one [`Effect`] per kind, each with its typed payload. Adding an
//! integration means one line in `effects!` below.

pub mod email;
pub mod http;

use std::sync::Arc;

use serde_json::Value;

use super::{Effect, HandlerError};
use crate::actions::http_post::HttpEffect;
use crate::actions::pocket_order::OrderPatchEffect;
use crate::actions::pocket_payout::PayoutEffect;
use crate::actions::withdraw::WithdrawEffect;
use crate::clients::Clients;
use crate::config::Config;
use crate::pocket::PocketClient;
use crate::store::{ItemRow, Store};
use email::EmailEffect;

pub struct Handlers {
    pub http: reqwest::Client,
    pub email: Option<email::EmailSender>,
    pub pocket: Option<PocketClient>,
    /// For handlers that reach the user's own services (Lightning nodes).
    pub config: Option<Arc<Config>>,
    /// For handlers whose progress is recorded beside the item (withdrawals).
    pub store: Option<Store>,
    /// The clients the daemon built at start (the Lightning nodes, read once).
    pub clients: Arc<Clients>,
}

impl Handlers {
    pub fn new(
        email: Option<email::EmailSender>,
        pocket: Option<PocketClient>,
        config: Option<Arc<Config>>,
        store: Option<Store>,
    ) -> Self {
        let clients = Arc::new(Clients::none());
        Handlers {
            http: clients.http.clone(),
            email,
            pocket,
            config,
            store,
            clients,
        }
    }

    /// With the clients the daemon built at start: their shared HTTP client, their Pocket
    /// client and their nodes.
    pub fn with_clients(mut self, clients: Arc<Clients>) -> Self {
        self.http = clients.http.clone();
        if let Some(pocket) = &clients.pocket {
            self.pocket = Some(pocket.clone());
        }
        self.clients = clients;
        self
    }

    pub fn config(&self) -> Result<&Config, HandlerError> {
        self.config
            .as_deref()
            .ok_or_else(|| HandlerError::permanent("no configuration to reach the provider"))
    }

    pub fn pocket(&self) -> Result<&PocketClient, HandlerError> {
        self.pocket.as_ref().ok_or_else(|| {
            HandlerError::permanent(
                "satflow.yaml has no `pocket` section any more, so Pocket cannot be called",
            )
        })
    }
}

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

macro_rules! effects {
    ($($effect:ty),* $(,)?) => {
        /// Every kind this version handles.
        pub const KINDS: &[&str] = &[$(<$effect as Effect>::KIND),*];

        impl Handlers {
            /// Carries out one item. Returns what the effect produced (a step's output).
            pub async fn handle(&self, item: &ItemRow) -> Result<Value, HandlerError> {
                $(if item.kind == <$effect as Effect>::KIND {
                    return handle::<$effect>(self, item).await;
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
            pub async fn reconcile(&self, item: &ItemRow) -> Option<Result<Value, HandlerError>> {
                $(if item.kind == <$effect as Effect>::KIND {
                    return reconcile::<$effect>(self, item).await;
                })*
                None
            }
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
                "withdraw"
            ]
        );
    }
}
