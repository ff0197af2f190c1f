//! The contract of an outbox kind: its name, its typed payload, how an item is carried out, and
//! how an attempt whose outcome is unknown is reconciled.
//!
//! Rows carry the payload as JSON; it is decoded into `Payload` once, here, and a handler only
//! ever sees the typed value. A payload's JSON shape is a stored format: rows written by earlier
//! versions must still decode, so a field is never renamed and a new one comes with a default.

use std::future::Future;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{HandlerError, Handlers};
use crate::store::{ItemRow, NewItem};

pub trait Effect {
    /// The `kind` of its outbox rows.
    const KIND: &'static str;
    type Payload: Serialize + DeserializeOwned + Send + Sync;

    /// Carries out one item. Returns what the effect produced (a waiting step's output).
    fn handle(
        h: &Handlers,
        item: &ItemRow,
        payload: Self::Payload,
    ) -> impl Future<Output = Result<Value, HandlerError>> + Send;

    /// After an attempt whose outcome is unknown: `Some` when the effect is found to have
    /// happened (or cannot be), `None` when sending again is safe.
    fn reconcile(
        _h: &Handlers,
        _payload: Self::Payload,
    ) -> impl Future<Output = Option<Result<Value, HandlerError>>> + Send {
        async { None }
    }

    /// What an item whose payload cannot be read becomes.
    fn unreadable(
        _h: &Handlers,
        _item: &ItemRow,
        error: serde_json::Error,
    ) -> impl Future<Output = HandlerError> + Send {
        async move {
            HandlerError::permanent(format!("the {} item cannot be read: {error}", Self::KIND))
        }
    }

    /// The payload of a stored row.
    fn decode(payload: &Value) -> Result<Self::Payload, serde_json::Error> {
        <Self::Payload as Deserialize>::deserialize(payload)
    }

    /// The outbox item that carries `payload`.
    fn item(
        key: String,
        run: Option<(i64, String)>,
        payload: &Self::Payload,
    ) -> Result<NewItem, serde_json::Error> {
        Ok(NewItem {
            kind: Self::KIND.into(),
            key,
            payload: serde_json::to_value(payload)?,
            run,
        })
    }
}
