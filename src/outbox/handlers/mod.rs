//! One handler per outbox kind. Adding an integration means adding its kind here.

pub mod email;
pub mod http;

use serde_json::Value;

use super::HandlerError;
use crate::pocket::{PocketClient, action};
use crate::store::ItemRow;

pub struct Handlers {
    pub http: reqwest::Client,
    pub email: Option<email::EmailSender>,
    pub pocket: Option<PocketClient>,
}

impl Handlers {
    pub fn new(email: Option<email::EmailSender>, pocket: Option<PocketClient>) -> Self {
        let http = reqwest::Client::builder()
            .user_agent(concat!("satflow/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .expect("the HTTP client's settings are valid");
        Handlers {
            http,
            email,
            pocket,
        }
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
            action::PATCH_KIND => match &self.pocket {
                Some(client) => action::patch(client, &item.payload).await,
                None => Err(HandlerError::permanent(
                    "satflow.yaml has no `pocket` section any more, so the order cannot be patched",
                )),
            },
            other => Err(HandlerError::permanent(format!(
                "this version of satflow has no handler for outbox items of kind `{other}`"
            ))),
        }
    }

    /// Reads back whether an item whose last attempt has an unknown outcome took effect.
    /// `None`: the kind cannot tell, and sending again is safe because the receiver sees the
    /// same idempotency key (HTTP) or the same Message-ID and file name (email). Kinds whose
    /// provider can be asked (a Pocket exchange, a withdrawal) answer here.
    pub async fn reconcile(&self, _item: &ItemRow) -> Option<Result<Value, HandlerError>> {
        None
    }
}
