//! What every outbox handler may use (the clients, the configuration, the store), and the
//! effects the outbox itself sends (alert emails). The registry of kinds lives with the
//! actions (`crate::actions::effects`), which the dispatcher reaches through [`Registry`].

pub mod email;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;

use super::HandlerError;
use crate::clients::Clients;
use crate::config::Config;
use crate::pocket::PocketClient;
use crate::store::{ItemRow, Store};

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

/// A future a [`Registry`] returns: boxed, so the dispatcher can hold the registry as a trait
/// object.
pub type HandlerFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The kinds the dispatcher can carry out: one [`Effect`](super::Effect) per kind. Built by the
/// engine (`crate::actions::effects::Effects`) and handed to the dispatcher, so that the outbox
/// does not import the actions whose effects it carries.
pub trait Registry: Send + Sync {
    /// Carries out one item. Returns what the effect produced (a step's output).
    fn handle<'a>(
        &'a self,
        h: &'a Handlers,
        item: &'a ItemRow,
    ) -> HandlerFuture<'a, Result<Value, HandlerError>>;

    /// Reads back whether an item whose last attempt has an unknown outcome took effect.
    /// `None`: sending again is safe.
    fn reconcile<'a>(
        &'a self,
        h: &'a Handlers,
        item: &'a ItemRow,
    ) -> HandlerFuture<'a, Option<Result<Value, HandlerError>>>;
}
