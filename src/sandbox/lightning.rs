//! A Lightning node stand-in speaking Core Lightning's `clnrest` (invoice, signmessage,
//! getinfo) on loopback, signing real BOLT11 invoices with a throwaway key. For the demo and
//! the benchmarks, which must run with no node and no network.
//!
//! It must never be configured as a real node: it holds its key in memory and pays nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use lightning_invoice::{Currency, InvoiceBuilder, PaymentSecret};
use serde_json::{Value, json};

use crate::lightning::signmessage::sign_node_message;

/// A BOLT11 invoice for `msat`, made now and valid for `expiry`, signed by `key`.
pub fn sign_invoice(
    key: &SecretKey,
    currency: Currency,
    msat: u64,
    description: &str,
    expiry: Duration,
) -> String {
    let secp = Secp256k1::new();
    // A payment hash unique to the invoice; nothing is ever paid to it.
    let preimage: [u8; 32] = bitcoin::hashes::sha256::Hash::hash(
        format!(
            "{description}{msat}{:?}",
            crate::clock::system_since_epoch()
        )
        .as_bytes(),
    )
    .to_byte_array();
    InvoiceBuilder::new(currency)
        .description(description.to_string())
        .payment_hash(bitcoin::hashes::sha256::Hash::hash(&preimage))
        .payment_secret(PaymentSecret(preimage))
        .current_timestamp()
        .expiry_time(expiry)
        .min_final_cltv_expiry_delta(144)
        .amount_milli_satoshis(msat)
        .build_signed(|hash| secp.sign_ecdsa_recoverable(hash, key))
        .expect("a complete invoice")
        .to_string()
}

pub struct StandIn {
    pub url: String,
    pub key: SecretKey,
    pub rune: String,
    /// Every invoice it made, in order.
    pub invoices: Arc<Mutex<Vec<String>>>,
}

impl StandIn {
    pub fn pubkey(&self) -> PublicKey {
        PublicKey::from_secret_key(&Secp256k1::new(), &self.key)
    }
}

#[derive(Clone)]
struct Shared {
    key: SecretKey,
    rune: String,
    invoices: Arc<Mutex<Vec<String>>>,
}

/// Starts the stand-in on a free loopback port.
pub async fn spawn(key: SecretKey, rune: &str) -> std::io::Result<StandIn> {
    spawn_on(
        tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        key,
        rune,
    )
}

/// Starts the stand-in on `listener` (`satflow sandbox` gives it a fixed port).
pub fn spawn_on(
    listener: tokio::net::TcpListener,
    key: SecretKey,
    rune: &str,
) -> std::io::Result<StandIn> {
    let invoices: Arc<Mutex<Vec<String>>> = Arc::default();
    let shared = Shared {
        key,
        rune: rune.to_string(),
        invoices: Arc::clone(&invoices),
    };
    let app = Router::new()
        .route("/v1/getinfo", post(getinfo))
        .route("/v1/invoice", post(invoice))
        .route("/v1/signmessage", post(signmessage))
        .with_state(shared);
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(StandIn {
        url,
        key,
        rune: rune.to_string(),
        invoices,
    })
}

fn authorised(shared: &Shared, headers: &HeaderMap) -> bool {
    headers.get("rune").and_then(|v| v.to_str().ok()) == Some(shared.rune.as_str())
}

fn denied() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({ "code": 1501, "message": "Not authorized" })),
    )
        .into_response()
}

async fn getinfo(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if !authorised(&s, &headers) {
        return denied();
    }
    Json(json!({ "id": PublicKey::from_secret_key(&Secp256k1::new(), &s.key).to_string(), "alias": "satflow stand-in" })).into_response()
}

async fn invoice(State(s): State<Shared>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if !authorised(&s, &headers) {
        return denied();
    }
    let msat = body["amount_msat"].as_u64().unwrap_or(0);
    let description = body["description"].as_str().unwrap_or("satflow");
    let expiry = Duration::from_secs(body["expiry"].as_u64().unwrap_or(3600));
    let bolt11 = sign_invoice(&s.key, Currency::Bitcoin, msat, description, expiry);
    s.invoices
        .lock()
        .expect("invoices lock")
        .push(bolt11.clone());
    Json(json!({ "bolt11": bolt11, "payment_hash": "", "expires_at": 0 })).into_response()
}

async fn signmessage(
    State(s): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if !authorised(&s, &headers) {
        return denied();
    }
    let zbase = sign_node_message(&s.key, body["message"].as_str().unwrap_or_default());
    Json(json!({ "zbase": zbase })).into_response()
}
