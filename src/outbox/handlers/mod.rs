//! One handler per outbox kind. Adding an integration means adding its kind here.

pub mod email;
pub mod http;

use std::sync::Arc;

use serde_json::Value;

use super::HandlerError;
use crate::clients::Clients;
use crate::config::Config;
use crate::pocket::{PocketClient, action, payout};
use crate::store::{ItemRow, Store};
use crate::withdraw;

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

    fn config(&self) -> Result<&Config, HandlerError> {
        self.config
            .as_deref()
            .ok_or_else(|| HandlerError::permanent("no configuration to reach the provider"))
    }

    fn pocket(&self) -> Result<&PocketClient, HandlerError> {
        self.pocket.as_ref().ok_or_else(|| {
            HandlerError::permanent(
                "satflow.yaml has no `pocket` section any more, so Pocket cannot be called",
            )
        })
    }

    /// Carries out one item. Returns what the effect produced (a step's output).
    pub async fn handle(&self, item: &ItemRow) -> Result<Value, HandlerError> {
        match item.kind.as_str() {
            http::KIND => http::post(&self.http, item).await,
            crate::notify::email::KIND => match &self.email {
                Some(sender) => sender.send(&item.payload).await,
                None => Err(HandlerError::permanent(
                    "satflow.yaml has no `email` section any more, so this email cannot be sent",
                )),
            },
            action::PATCH_KIND => action::patch(self.pocket()?, &item.payload).await,
            payout::KIND => {
                payout::pay_out(self.pocket()?, self.config()?, &self.clients, &item.payload).await
            }
            withdraw::KIND => {
                let store = self.store.as_ref().ok_or_else(|| {
                    HandlerError::permanent("no database to record the withdrawal in")
                })?;
                withdraw::execute(store, self.config()?, &item.payload).await
            }
            other => Err(HandlerError::permanent(format!(
                "this version of satflow has no handler for outbox items of kind `{other}`"
            ))),
        }
    }

    /// Reads back whether an item whose last attempt has an unknown outcome took effect.
    /// `None`: sending again is safe — HTTP deliveries carry the same idempotency key, emails
    /// the same Message-ID and file name, order patches set the same values.
    #[tracing::instrument(name = "outbox_reconcile", skip_all, fields(item_id = item.id, kind = %item.kind, run_id = item.run_id, step_id = item.step_id.as_deref()))]
    pub async fn reconcile(&self, item: &ItemRow) -> Option<Result<Value, HandlerError>> {
        match item.kind.as_str() {
            payout::KIND => payout::reconcile(self.pocket.as_ref()?, &item.payload).await,
            withdraw::KIND => {
                withdraw::reconcile(self.store.as_ref()?, self.config.as_deref()?, &item.payload)
                    .await
            }
            _ => None,
        }
    }
}
