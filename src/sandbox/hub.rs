//! The Lightning Peach hub, simulated (the hosted service is gone): the merchant API of seed 003
//! that satflow's `lightningpeach` withdrawal provider uses — sign-in and token refresh, merchant
//! setup with a signed bitcoin address, balance, withdrawal of the whole balance (at least
//! 1000 sat), and a withdrawal's status — with the checks the seed documents. Served under
//! `/hub` by the sandbox, with control calls under `/sandbox/hub/…`.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bitcoin::hex::FromHex;
use bitcoin::secp256k1::{Message, PublicKey, Secp256k1, ecdsa::Signature};
use bitcoin::{Address, Network};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::state::random_uuid;

/// The smallest withdrawal the hub makes.
pub const MIN_WITHDRAWAL_SAT: u64 = 1000;

#[derive(Debug, Clone)]
pub struct Withdrawal {
    pub id: String,
    pub amount_sat: u64,
    pub address: String,
    pub status: &'static str,
    pub tx: String,
    pub created_at: String,
    pub withdrawn_at: Option<String>,
}

pub struct Hub {
    pub email: String,
    pub password: String,
    pub merchant_id: String,
    pub network: Network,
    pub balance_sat: u64,
    /// The merchant key: the first one registered. Every later setup must be signed with it.
    pub merchant_pubkey: Option<PublicKey>,
    /// Keys registered through `user/pubkey/add`.
    pub user_pubkeys: Vec<PublicKey>,
    pub bitcoin_address: Option<String>,
    /// Access token → still valid.
    pub access: HashMap<String, bool>,
    /// Refresh token → already used.
    pub refresh: HashMap<String, bool>,
    pub withdrawals: Vec<Withdrawal>,
    /// How long the withdraw call takes to answer (after it has taken effect).
    pub withdraw_delay: Duration,
}

impl Hub {
    pub fn new(email: &str, password: &str, network: Network) -> Hub {
        Hub {
            email: email.into(),
            password: password.into(),
            merchant_id: random_uuid().replace('-', "")[..24].to_string(),
            network,
            balance_sat: 0,
            merchant_pubkey: None,
            user_pubkeys: Vec::new(),
            bitcoin_address: None,
            access: HashMap::new(),
            refresh: HashMap::new(),
            withdrawals: Vec::new(),
            withdraw_delay: Duration::ZERO,
        }
    }

    fn tokens(&mut self) -> Value {
        let access = random_uuid().replace('-', "");
        let refresh = random_uuid().replace('-', "");
        self.access.insert(access.clone(), true);
        self.refresh.insert(refresh.clone(), false);
        let expires = crate::clock::system_now().timestamp() + 3600;
        json!({
            "merchant_id": self.merchant_id,
            "token_type": "Bearer",
            "refresh_token": refresh,
            "access_token": access,
            "expires_at": expires,
        })
    }
}

pub type Shared = Arc<Mutex<Hub>>;

/// The hub's uniform error body.
fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({ "error": message, "code": 2, "message": message, "details": [] })),
    )
        .into_response()
}

/// The refusal of a call without a valid access token, if it has none.
fn unauthorized(hub: &Hub, headers: &HeaderMap) -> Option<Response> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match token.and_then(|t| hub.access.get(t)) {
        Some(true) => None,
        Some(false) => Some(error(StatusCode::UNAUTHORIZED, "token is expired")),
        None => Some(error(StatusCode::UNAUTHORIZED, "token not found")),
    }
}

pub fn router(hub: Shared) -> Router {
    Router::new()
        .route("/hub/api/v2/auth/signin", post(signin))
        .route("/hub/api/v2/auth/token/{refresh}", post(refresh))
        .route("/hub/api/v2/user/pubkey/add", post(add_pubkey))
        .route("/hub/api/v2/merchant", post(merchant_setup))
        .route("/hub/api/v2/merchant/balance", get(balance))
        .route("/hub/api/v2/merchant/withdraw", post(withdraw))
        .route("/hub/api/v2/merchant/withdraw/{id}", get(withdrawal))
        .route("/sandbox/hub/credit", post(credit))
        .route("/sandbox/hub/withdrawals/{id}/complete", post(complete))
        .route("/sandbox/hub/withdrawals/{id}/cancel", post(cancel))
        .route("/sandbox/hub/expire-tokens", post(expire_tokens))
        .route("/sandbox/hub/slow", post(slow))
        .route("/sandbox/hub", get(summary))
        .with_state(hub)
}

async fn signin(State(hub): State<Shared>, Json(body): Json<Value>) -> Response {
    let mut hub = hub.lock().expect("hub lock");
    if body["email"].as_str() != Some(hub.email.as_str())
        || body["password"].as_str() != Some(hub.password.as_str())
    {
        return error(StatusCode::BAD_REQUEST, "invalid email or password");
    }
    Json(hub.tokens()).into_response()
}

async fn refresh(State(hub): State<Shared>, Path(token): Path<String>) -> Response {
    let mut hub = hub.lock().expect("hub lock");
    match hub.refresh.get(&token).copied() {
        None => error(StatusCode::BAD_REQUEST, "token not found"),
        Some(true) => error(StatusCode::BAD_REQUEST, "token already used"),
        Some(false) => {
            hub.refresh.insert(token, true);
            Json(hub.tokens()).into_response()
        }
    }
}

async fn add_pubkey(
    State(hub): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut hub = hub.lock().expect("hub lock");
    if let Some(r) = unauthorized(&hub, &headers) {
        return r;
    }
    match body["pub_key"]
        .as_str()
        .and_then(|k| PublicKey::from_str(k).ok())
    {
        Some(key) => {
            if !hub.user_pubkeys.contains(&key) {
                hub.user_pubkeys.push(key);
            }
            hub.merchant_pubkey.get_or_insert(key);
            StatusCode::OK.into_response()
        }
        None => error(StatusCode::BAD_REQUEST, "invalid public key"),
    }
}

/// Merchant setup: the bitcoin address withdrawals go to, approved by a signature of
/// `merchant_id + bitcoin_address` (SHA-256, ECDSA secp256k1, DER hex) by the merchant key.
async fn merchant_setup(
    State(hub): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut hub = hub.lock().expect("hub lock");
    if let Some(r) = unauthorized(&hub, &headers) {
        return r;
    }
    if body["merchant_id"].as_str() != Some(hub.merchant_id.as_str()) {
        return error(
            StatusCode::BAD_REQUEST,
            "merchant_id does not match the signed-in merchant",
        );
    }
    for field in [
        "notification_url",
        "notification_url_for_on_chain_payment",
        "notification_url_for_forward_payment",
    ] {
        if body[field].as_str().is_none() {
            return error(StatusCode::BAD_REQUEST, &format!("{field} is mandatory"));
        }
    }
    let address = body["bitcoin_address"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let network = hub.network;
    if Address::from_str(&address)
        .ok()
        .and_then(|a| a.require_network(network).ok())
        .is_none()
    {
        return error(StatusCode::BAD_REQUEST, "invalid BTC address");
    }
    let Some(key) = body["merchant_pubkey"]
        .as_str()
        .and_then(|k| PublicKey::from_str(k).ok())
    else {
        return error(StatusCode::BAD_REQUEST, "merchant_pubkey is mandatory");
    };
    // The signature must correspond to the merchant key provided on setup, whatever key the
    // request names.
    let key = hub.merchant_pubkey.unwrap_or(key);
    let digest: [u8; 32] =
        Sha256::digest(format!("{}{address}", hub.merchant_id).as_bytes()).into();
    let signature = body["approve_address_signature"]
        .as_str()
        .and_then(|h| Vec::<u8>::from_hex(h).ok())
        .and_then(|der| Signature::from_der(&der).ok());
    let valid = signature.is_some_and(|s| {
        Secp256k1::verification_only()
            .verify_ecdsa(&Message::from_digest(digest), &s, &key)
            .is_ok()
    });
    if !valid {
        return error(StatusCode::BAD_REQUEST, "invalid signature");
    }
    hub.merchant_pubkey = Some(key);
    hub.bitcoin_address = Some(address);
    Json(json!({ "id": hub.merchant_id, "timestamp": crate::clock::system_now().timestamp().to_string() }))
        .into_response()
}

async fn balance(State(hub): State<Shared>, headers: HeaderMap) -> Response {
    let hub = hub.lock().expect("hub lock");
    if let Some(r) = unauthorized(&hub, &headers) {
        return r;
    }
    Json(json!({ "balance": hub.balance_sat.to_string() })).into_response()
}

/// Withdraws the whole balance to the merchant's address.
async fn withdraw(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    let (answer, delay) = {
        let mut hub = shared.lock().expect("hub lock");
        if let Some(r) = unauthorized(&hub, &headers) {
            return r;
        }
        let Some(address) = hub.bitcoin_address.clone() else {
            return error(
                StatusCode::BAD_REQUEST,
                "merchant has no bitcoin address: set it up first",
            );
        };
        if hub.balance_sat < MIN_WITHDRAWAL_SAT {
            let message = format!(
                "amount to withdraw: {} is less than minimum allowed: {MIN_WITHDRAWAL_SAT}",
                hub.balance_sat
            );
            return error(StatusCode::BAD_REQUEST, &message);
        }
        let w = Withdrawal {
            id: (hub.withdrawals.len() + 3441).to_string(),
            amount_sat: hub.balance_sat,
            address,
            status: "Pending",
            tx: String::new(),
            created_at: crate::clock::system_now().to_rfc3339(),
            withdrawn_at: None,
        };
        hub.balance_sat = 0;
        let answer = json!({ "id": w.id, "tx": "", "amount": w.amount_sat.to_string() });
        hub.withdrawals.push(w);
        (answer, hub.withdraw_delay)
    };
    // The withdrawal is made; the answer may be slow to come back (for crash tests).
    tokio::time::sleep(delay).await;
    Json(answer).into_response()
}

fn withdrawal_json(hub: &Hub, w: &Withdrawal) -> Value {
    json!({
        "id": w.id,
        "merchant_id": hub.merchant_id,
        "sent_amount": w.amount_sat.to_string(),
        "sent_tx": w.tx,
        "btc_address": w.address,
        "status": w.status,
        "withdrawn_at": w.withdrawn_at,
        "created_at": w.created_at,
    })
}

async fn withdrawal(
    State(hub): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let hub = hub.lock().expect("hub lock");
    if let Some(r) = unauthorized(&hub, &headers) {
        return r;
    }
    match hub.withdrawals.iter().find(|w| w.id == id) {
        Some(w) => Json(withdrawal_json(&hub, w)).into_response(),
        None => error(StatusCode::NOT_FOUND, "withdraw not found"),
    }
}

async fn credit(State(hub): State<Shared>, Json(body): Json<Value>) -> Response {
    let mut hub = hub.lock().expect("hub lock");
    hub.balance_sat += body["sat"].as_u64().unwrap_or(0);
    Json(json!({ "balance": hub.balance_sat })).into_response()
}

async fn complete(State(hub): State<Shared>, Path(id): Path<String>) -> Response {
    let mut hub = hub.lock().expect("hub lock");
    let tx = super::state::random_uuid().replace('-', "")
        + &super::state::random_uuid().replace('-', "");
    match hub.withdrawals.iter_mut().find(|w| w.id == id) {
        Some(w) => {
            w.status = "Withdrawn";
            w.tx = tx;
            w.withdrawn_at = Some(crate::clock::system_now().to_rfc3339());
            let w = w.clone();
            Json(withdrawal_json(&hub, &w)).into_response()
        }
        None => error(StatusCode::NOT_FOUND, "withdraw not found"),
    }
}

async fn cancel(State(hub): State<Shared>, Path(id): Path<String>) -> Response {
    let mut hub = hub.lock().expect("hub lock");
    let Some(pos) = hub.withdrawals.iter().position(|w| w.id == id) else {
        return error(StatusCode::NOT_FOUND, "withdraw not found");
    };
    hub.withdrawals[pos].status = "Canceled";
    hub.balance_sat += hub.withdrawals[pos].amount_sat;
    let w = hub.withdrawals[pos].clone();
    Json(withdrawal_json(&hub, &w)).into_response()
}

async fn expire_tokens(State(hub): State<Shared>) -> Response {
    let mut hub = hub.lock().expect("hub lock");
    for valid in hub.access.values_mut() {
        *valid = false;
    }
    StatusCode::OK.into_response()
}

async fn slow(State(hub): State<Shared>, Json(body): Json<Value>) -> Response {
    hub.lock().expect("hub lock").withdraw_delay =
        Duration::from_millis(body["ms"].as_u64().unwrap_or(0));
    StatusCode::OK.into_response()
}

async fn summary(State(hub): State<Shared>) -> Response {
    let hub = hub.lock().expect("hub lock");
    Json(json!({
        "merchant_id": hub.merchant_id,
        "balance": hub.balance_sat,
        "bitcoin_address": hub.bitcoin_address,
        "withdrawals": hub.withdrawals.iter().map(|w| withdrawal_json(&hub, w)).collect::<Vec<_>>(),
    }))
    .into_response()
}
