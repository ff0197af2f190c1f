//! The sandbox: Pocket's API as the reference describes it, with Pocket's checks, plus a control
//! API under `/sandbox/…` that plays the bank and Pocket's back office (a payment arrives, an
//! exchange is interrupted before it executes, the buyer identifies and it executes, it is
//! refunded or settled), with webhooks signed and retried like Pocket's.
//!
//! It is for tests, the demo and users rehearsing their workflows; it keeps everything in
//! memory (and, for `satflow sandbox`, in a state file rewritten after every change, so a
//! restart does not orphan the user's order) and must never be pointed at by a configuration
//! that moves real money.

pub mod hub;
pub mod lightning;
mod state;

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State as AxumState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use bitcoin::Network;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::domain::Currency;
use crate::lightning::signmessage;
use crate::pocket::webhook;
use state::{Payout, Refusal};

pub use state::{creditor_reference, random_uuid};

#[derive(Clone)]
pub struct SandboxOptions {
    pub client_id: String,
    /// Where webhooks go (`http://…/webhooks/pocket`); none: they are only recorded.
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<String>,
    pub network: Network,
    /// The first retry of a failed delivery comes after this, then the delay doubles (Pocket
    /// waits 5 minutes; the sandbox is faster so rehearsals do not take hours).
    pub retry_base: Duration,
    pub max_attempts: u32,
    /// The Lightning Peach hub merchant account the simulator accepts.
    pub hub_email: String,
    pub hub_password: String,
    /// The time exchanges execute at (the demo's clock jumps ahead; real time otherwise).
    pub clock: Arc<dyn crate::clock::Clock>,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            client_id: "sandbox-client".into(),
            webhook_url: None,
            webhook_secret: None,
            network: Network::Bitcoin,
            retry_base: Duration::from_secs(1),
            max_attempts: 8,
            hub_email: "stacker@example.com".into(),
            hub_password: "demo-password".into(),
            clock: Arc::new(crate::clock::SystemClock),
        }
    }
}

/// One webhook event and what became of it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Delivery {
    pub event: String,
    pub exchange_id: String,
    pub correlation_id: String,
    /// `(retry count, HTTP status or error)` per attempt.
    pub attempts: Vec<(u32, String)>,
    pub delivered: bool,
    pub withheld: bool,
}

pub struct Sandbox {
    options: SandboxOptions,
    state: Mutex<state::State>,
    deliveries: Mutex<Vec<Delivery>>,
    withhold: std::sync::atomic::AtomicBool,
    /// Lightning payouts stay "in progress" until settled through the control API.
    hold_payouts: std::sync::atomic::AtomicBool,
    pub hub: hub::Shared,
    /// Peach's fee estimates (sat/vB), as `/v1/estimateFees` serves them.
    fees: Mutex<Value>,
    http: reqwest::Client,
    /// Where the state is kept between runs (`Sandbox::persisted`); none: memory only.
    state_file: Option<std::path::PathBuf>,
    /// Serialises writes of the state file, so the newest state is the one that stays.
    saving: Mutex<()>,
}

impl Sandbox {
    pub fn new(options: SandboxOptions) -> Arc<Sandbox> {
        let hub = hub::Hub::new(&options.hub_email, &options.hub_password, options.network);
        Arc::new(Sandbox {
            state: Mutex::new(state::State::new(options.network)),
            options,
            deliveries: Mutex::new(Vec::new()),
            withhold: std::sync::atomic::AtomicBool::new(false),
            hold_payouts: std::sync::atomic::AtomicBool::new(false),
            hub: Arc::new(Mutex::new(hub)),
            fees: Mutex::new(
                json!({ "fastestFee": 12, "halfHourFee": 8, "hourFee": 6, "economyFee": 3, "minimumFee": 1 }),
            ),
            http: reqwest::Client::builder()
                .user_agent("Pocket-Webhook/1.0")
                .timeout(Duration::from_secs(10))
                .build()
                .expect("the HTTP client's settings are valid"),
            state_file: None,
            saving: Mutex::new(()),
        })
    }

    /// A sandbox whose state (challenges, orders, exchanges, prices, the hub) lives in `file`:
    /// loaded now when the file exists, rewritten atomically after every change.
    pub fn persisted(
        options: SandboxOptions,
        file: &std::path::Path,
    ) -> Result<Arc<Sandbox>, String> {
        let fresh = Sandbox::new(options);
        let mut sandbox = Arc::into_inner(fresh).expect("not shared yet");
        sandbox.state_file = Some(file.to_path_buf());
        match std::fs::read(file) {
            Ok(bytes) => {
                let doc: Value = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("{}: not a sandbox state file: {e}", file.display()))?;
                sandbox
                    .state
                    .lock()
                    .expect("state lock")
                    .restore(&doc["pocket"])
                    .map_err(|e| format!("{}: {e}", file.display()))?;
                restore_hub(&mut sandbox.hub.lock().expect("hub lock"), &doc["hub"])
                    .map_err(|e| format!("{}: hub: {e}", file.display()))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot read {}: {e}", file.display())),
        }
        Ok(Arc::new(sandbox))
    }

    /// Counts of what the state holds: (orders, exchanges), for the start-up line.
    pub fn held(&self) -> (usize, usize) {
        let state = self.state.lock().expect("state lock");
        (state.orders.len(), state.exchanges.len())
    }

    /// Writes the state file (a temporary file, synced, then renamed over the old one: a crash
    /// leaves the old state or the new, never half of one).
    fn save(&self) -> std::io::Result<()> {
        let Some(file) = &self.state_file else {
            return Ok(());
        };
        let _one_at_a_time = self.saving.lock().expect("saving lock");
        let doc = json!({
            "pocket": self.state.lock().expect("state lock").to_json(),
            "hub": hub_json(&self.hub.lock().expect("hub lock")),
        });
        let tmp = file.with_extension("json.tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut f, doc.to_string().as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, file)
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries.lock().expect("deliveries lock").clone()
    }

    /// Sends `event` for an exchange the way Pocket does: signed, and retried with a doubling
    /// delay until a 2xx answer or the attempt limit.
    fn emit(self: &Arc<Self>, event: &str, exchange: &Value) {
        let mut payload = exchange.clone();
        if let Some(id) = payload.as_object_mut().and_then(|o| o.remove("id")) {
            payload["exchange_id"] = id;
        }
        let body = json!({ "event": event, "payload": payload }).to_string();
        let withheld = self.withhold.load(std::sync::atomic::Ordering::Relaxed);
        let index = {
            let mut deliveries = self.deliveries.lock().expect("deliveries lock");
            deliveries.push(Delivery {
                event: event.to_string(),
                exchange_id: payload["exchange_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                correlation_id: random_uuid(),
                attempts: Vec::new(),
                delivered: false,
                withheld,
            });
            deliveries.len() - 1
        };
        let Some(url) = self.options.webhook_url.clone().filter(|_| !withheld) else {
            return;
        };
        let me = Arc::clone(self);
        tokio::spawn(async move {
            for retry in 0..me.options.max_attempts {
                if retry > 0 {
                    tokio::time::sleep(me.options.retry_base * 2u32.pow(retry - 1)).await;
                }
                let correlation = me.deliveries.lock().expect("deliveries lock")[index]
                    .correlation_id
                    .clone();
                let mut request = me
                    .http
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .header("X-Correlation-Id", correlation)
                    .header("X-Retry-Count", retry.to_string())
                    .body(body.clone());
                if let Some(secret) = &me.options.webhook_secret {
                    request = request.header(
                        "X-Signature-256",
                        webhook::sign(secret.as_bytes(), body.as_bytes()),
                    );
                }
                let outcome = match request.send().await {
                    Ok(r) => (r.status().is_success(), r.status().as_u16().to_string()),
                    Err(e) => (false, e.to_string()),
                };
                let mut deliveries = me.deliveries.lock().expect("deliveries lock");
                deliveries[index].attempts.push((retry, outcome.1));
                if outcome.0 {
                    deliveries[index].delivered = true;
                    return;
                }
            }
        });
    }
}

/// Serves the sandbox on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    sandbox: Arc<Sandbox>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(sandbox))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Starts the sandbox on a free loopback port, for tests; returns its address.
pub async fn spawn(options: SandboxOptions) -> (SocketAddr, Arc<Sandbox>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("bound address");
    let sandbox = Sandbox::new(options);
    let served = Arc::clone(&sandbox);
    tokio::spawn(async move { serve(listener, served, std::future::pending()).await });
    (addr, sandbox)
}

pub fn router(sandbox: Arc<Sandbox>) -> Router {
    Router::new()
        .route("/v1/challenges", post(create_challenge))
        .route("/v1/challenges/{id}", get(get_challenge))
        .route("/v1/orders", post(create_order))
        .route("/v1/orders/{id}", get(get_order).patch(patch_order))
        .route(
            "/v1/exchanges/{id}",
            get(get_exchange).patch(patch_exchange),
        )
        .route("/sandbox/orders/{id}/payments", post(pay))
        .route("/sandbox/exchanges/{id}/interrupt", post(interrupt))
        .route("/sandbox/exchanges/{id}/identify", post(identify))
        .route("/sandbox/exchanges/{id}/refund", post(refund))
        .route("/sandbox/exchanges/{id}/settle", post(settle))
        .route("/sandbox/challenges/{id}/expire", post(expire_challenge))
        .route("/sandbox/price", put(set_price))
        .route("/sandbox/webhooks", get(list_deliveries))
        .route("/sandbox/webhooks/withhold", post(withhold))
        .route("/sandbox/payouts/hold", post(hold_payouts))
        .route("/sandbox/fees", put(set_fees))
        .route("/v1/estimateFees", get(estimate_fees))
        .route("/v1/market/price/{pair}", get(market_price))
        .route("/v1/market/prices", get(market_prices))
        .route("/rates/BTC/{code}", get(bitpay_rate))
        .with_state(Arc::clone(&sandbox))
        .merge(hub::router(Arc::clone(&sandbox.hub)))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&sandbox),
            save_after_change,
        ))
}

/// After every request that may change something (anything but GET), the state file is
/// rewritten before the answer goes out: what the client was told is what a restart finds.
async fn save_after_change(
    AxumState(s): Shared,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let changes = request.method() != axum::http::Method::GET;
    let response = next.run(request).await;
    if changes && let Err(e) = s.save() {
        tracing::error!(error = %e, "the sandbox cannot write its state file");
    }
    response
}

/// The hub's memory as JSON (sessions included, so a signed-in client stays signed in).
fn hub_json(hub: &hub::Hub) -> Value {
    json!({
        "merchant_id": hub.merchant_id,
        "balance_sat": hub.balance_sat,
        "merchant_pubkey": hub.merchant_pubkey.map(|k| k.to_string()),
        "user_pubkeys": hub.user_pubkeys.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
        "bitcoin_address": hub.bitcoin_address,
        "access": hub.access,
        "refresh": hub.refresh,
        "withdrawals": hub.withdrawals.iter().map(|w| json!({
            "id": w.id,
            "amount_sat": w.amount_sat,
            "address": w.address,
            "status": w.status,
            "tx": w.tx,
            "created_at": w.created_at,
            "withdrawn_at": w.withdrawn_at,
        })).collect::<Vec<_>>(),
    })
}

fn restore_hub(hub: &mut hub::Hub, doc: &Value) -> Result<(), String> {
    use bitcoin::secp256k1::PublicKey;
    let key = |v: &Value| {
        v.as_str()
            .and_then(|k| PublicKey::from_str(k).ok())
            .ok_or_else(|| format!("{v} is not a public key"))
    };
    if let Some(id) = doc["merchant_id"].as_str() {
        hub.merchant_id = id.to_string();
    }
    hub.balance_sat = doc["balance_sat"].as_u64().unwrap_or(0);
    hub.merchant_pubkey = match &doc["merchant_pubkey"] {
        Value::Null => None,
        v => Some(key(v)?),
    };
    hub.user_pubkeys = doc["user_pubkeys"]
        .as_array()
        .into_iter()
        .flatten()
        .map(key)
        .collect::<Result<_, _>>()?;
    hub.bitcoin_address = doc["bitcoin_address"].as_str().map(str::to_string);
    hub.access = serde_json::from_value(doc["access"].clone()).unwrap_or_default();
    hub.refresh = serde_json::from_value(doc["refresh"].clone()).unwrap_or_default();
    let mut withdrawals = Vec::new();
    for w in doc["withdrawals"].as_array().into_iter().flatten() {
        // The hub's statuses are a closed set of static names.
        let status = match w["status"].as_str() {
            Some("Pending") => "Pending",
            Some("Processing") => "Processing",
            Some("Withdrawn") => "Withdrawn",
            Some("Canceled") => "Canceled",
            other => return Err(format!("withdrawal status {other:?} is not the hub's")),
        };
        let text = |k: &str| w[k].as_str().unwrap_or_default().to_string();
        withdrawals.push(hub::Withdrawal {
            id: text("id"),
            amount_sat: w["amount_sat"].as_u64().unwrap_or(0),
            address: text("address"),
            status,
            tx: text("tx"),
            created_at: text("created_at"),
            withdrawn_at: w["withdrawn_at"].as_str().map(str::to_string),
        });
    }
    hub.withdrawals = withdrawals;
    Ok(())
}

type Shared = AxumState<Arc<Sandbox>>;

fn refuse(r: Refusal) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        Json(json!({ "code": r.code, "message": r.message })),
    )
        .into_response()
}

/// Pocket's only authentication: `Authorization: client_id <id>`.
fn authorised(sandbox: &Sandbox, headers: &HeaderMap) -> Result<(), Refusal> {
    let expected = format!("client_id {}", sandbox.options.client_id);
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        Some(given) if given == expected => Ok(()),
        _ => Err(Refusal {
            status: 401,
            code: "unauthorized",
            message: "unknown client id".into(),
        }),
    }
}

fn parse_body(body: &str) -> Result<Value, Refusal> {
    serde_json::from_str(body).map_err(|e| Refusal {
        status: 400,
        code: "invalid_json",
        message: format!("the body is not JSON: {e}"),
    })
}

async fn create_challenge(AxumState(s): Shared, headers: HeaderMap) -> Response {
    if let Err(r) = authorised(&s, &headers) {
        return refuse(r);
    }
    let challenge = s
        .state
        .lock()
        .expect("state lock")
        .create_challenge(crate::clock::system_now());
    (StatusCode::CREATED, Json(challenge)).into_response()
}

async fn get_challenge(
    AxumState(s): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = authorised(&s, &headers) {
        return refuse(r);
    }
    match s.state.lock().expect("state lock").challenges.get(&id) {
        Some(c) => Json(c.clone()).into_response(),
        None => refuse(Refusal::not_found("challenge", &id)),
    }
}

async fn create_order(AxumState(s): Shared, headers: HeaderMap, body: String) -> Response {
    let body = match authorised(&s, &headers).and_then(|()| parse_body(&body)) {
        Ok(b) => b,
        Err(r) => return refuse(r),
    };
    match s
        .state
        .lock()
        .expect("state lock")
        .create_order(&body, crate::clock::system_now())
    {
        Ok(order) => (StatusCode::CREATED, Json(order)).into_response(),
        Err(r) => refuse(r),
    }
}

async fn get_order(AxumState(s): Shared, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = authorised(&s, &headers) {
        return refuse(r);
    }
    match s.state.lock().expect("state lock").orders.get(&id) {
        Some(o) => Json(o.json.clone()).into_response(),
        None => refuse(Refusal::not_found("order", &id)),
    }
}

async fn patch_order(
    AxumState(s): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: String,
) -> Response {
    let body = match authorised(&s, &headers).and_then(|()| parse_body(&body)) {
        Ok(b) => b,
        Err(r) => return refuse(r),
    };
    match s.state.lock().expect("state lock").patch_order(&id, &body) {
        Ok(order) => Json(order).into_response(),
        Err(r) => refuse(r),
    }
}

async fn get_exchange(
    AxumState(s): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = authorised(&s, &headers) {
        return refuse(r);
    }
    match s.state.lock().expect("state lock").exchanges.get(&id) {
        Some(e) => Json(e.json.clone()).into_response(),
        None => refuse(Refusal::not_found("exchange", &id)),
    }
}

/// Pays out an exchange of a Lightning order, after the checks Pocket makes on the invoice or
/// the node address; a valid patch settles the exchange.
async fn patch_exchange(
    AxumState(s): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: String,
) -> Response {
    let body = match authorised(&s, &headers).and_then(|()| parse_body(&body)) {
        Ok(b) => b,
        Err(r) => return refuse(r),
    };
    let hold = s.hold_payouts.load(std::sync::atomic::Ordering::Relaxed);
    let (exchange, settled) = {
        let mut state = s.state.lock().expect("state lock");
        match lightning_payout(&mut state, &id, &body, hold) {
            Ok(result) => result,
            Err(r) => return refuse(r),
        }
    };
    if settled {
        s.emit("exchange.settled", &exchange);
    }
    Json(exchange).into_response()
}

/// Returns the exchange and whether it settled (a held payout is only in progress).
fn lightning_payout(
    state: &mut state::State,
    id: &str,
    body: &Value,
    hold: bool,
) -> Result<(Value, bool), Refusal> {
    let bad = |code: &'static str, message: String| Refusal {
        status: 400,
        code,
        message,
    };
    let exchange = state
        .exchanges
        .get(id)
        .ok_or_else(|| Refusal::not_found("exchange", id))?;
    let order = state
        .orders
        .get(&exchange.order_id)
        .ok_or_else(|| Refusal::not_found("order", &exchange.order_id))?;
    let Payout::Lightning { node_pubkey } = order.payout else {
        return Err(bad(
            "not_lightning",
            format!("exchange {id} belongs to an on-chain order; it settles by itself"),
        ));
    };
    if state.payouts_in_progress.contains_key(id) {
        return Err(bad(
            "in_progress",
            "the payout is already in progress".into(),
        ));
    }
    match exchange.state() {
        crate::pocket::types::ExchangeState::Settled => {
            return Err(bad(
                "already_completed",
                "the payout is already completed".into(),
            ));
        }
        crate::pocket::types::ExchangeState::Executed => {}
        other => {
            return Err(bad(
                "invalid_state",
                format!("exchange {id} is {}", other.name()),
            ));
        }
    }
    // Pocket pays the exchange's whole amount.
    let amount_msat = crate::domain::Btc::from_str(&exchange.json["amount"].to_string())
        .map(|b| Decimal::from(b.msat()))
        .unwrap_or_default();
    let payout = if let Some(invoice) = body["invoice"].as_str() {
        let parsed = lightning_invoice::Bolt11Invoice::from_str(invoice)
            .map_err(|e| bad("invalid_invoice", format!("invoice not valid: {e}")))?;
        let expected_network = match state.network {
            Network::Bitcoin => lightning_invoice::Currency::Bitcoin,
            Network::Testnet | Network::Testnet4 => lightning_invoice::Currency::BitcoinTestnet,
            Network::Signet => lightning_invoice::Currency::Signet,
            Network::Regtest => lightning_invoice::Currency::Regtest,
        };
        if parsed.currency() != expected_network {
            return Err(bad(
                "invoice_network",
                "Invoice for wrong bitcoin network.".into(),
            ));
        }
        if parsed.amount_milli_satoshis().map(Decimal::from) != Some(amount_msat) {
            return Err(bad(
                "invoice_amount",
                format!("Invoice contains no or wrong amount: expected {amount_msat} msat"),
            ));
        }
        let now = crate::clock::system_since_epoch();
        if parsed.would_expire(now) {
            return Err(bad("invoice_expired", "The invoice is expired.".into()));
        }
        if parsed.get_payee_pub_key() != node_pubkey {
            return Err(bad(
                "unexpected_node_pubkey",
                "Invoice from the wrong lightning node.".into(),
            ));
        }
        json!({ "type": "invoice", "invoice": invoice, "amount": exchange.json["amount"], "fee": 0 })
    } else if let Some(address) = body["node_address"].as_str() {
        let Some((key, host)) = address.split_once('@') else {
            return Err(bad(
                "node_address_required",
                "Unable to resolve the lightning node address. Please provide the node_address and try again.".into(),
            ));
        };
        if bitcoin::secp256k1::PublicKey::from_str(key).ok() != Some(node_pubkey) {
            return Err(bad(
                "unexpected_node_pubkey",
                "Unexpected node pubkey in provided node_address.".into(),
            ));
        }
        if host
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .is_none_or(|p| p == 0)
        {
            return Err(bad(
                "connect",
                "Unable to connect to the lightning node.".into(),
            ));
        }
        json!({ "type": "channel", "node_address": address, "amount": exchange.json["amount"], "fee": 0 })
    } else {
        return Err(bad(
            "invalid_request",
            "write {\"invoice\": …} or {\"node_address\": …}".into(),
        ));
    };
    let exchange = state.exchanges.get_mut(id).expect("checked above");
    if hold {
        let json = exchange.json.clone();
        state.payouts_in_progress.insert(id.to_string(), payout);
        return Ok((json, false));
    }
    exchange.json["payout"] = payout;
    Ok((exchange.json.clone(), true))
}

#[derive(serde::Deserialize)]
struct PaymentBody {
    /// The amount the bank transfers, in the order's currency (a number or a string).
    amount: Value,
    /// Pocket holds the exchange before executing it and asks the buyer to identify:
    /// `identify` (an action with a URL, as in Pocket's Postman collection) or
    /// `identification_required` (with an id, as in the walkthrough).
    #[serde(default)]
    interrupt: Option<String>,
}

async fn pay(
    AxumState(s): Shared,
    Path(id): Path<String>,
    Json(body): Json<PaymentBody>,
) -> Response {
    let amount = match &body.amount {
        Value::Number(n) => Decimal::from_str_exact(&n.to_string()).ok(),
        Value::String(t) => Decimal::from_str_exact(t).ok(),
        _ => None,
    };
    let Some(amount) = amount else {
        return refuse(Refusal {
            status: 400,
            code: "amount",
            message: "amount must be a decimal number, e.g. 100.00".into(),
        });
    };
    let result = s.state.lock().expect("state lock").pay(
        &id,
        amount,
        s.options.clock.now(),
        body.interrupt.as_deref(),
    );
    match result {
        Ok(exchange) => {
            let event = if !exchange["action"].is_null() {
                "exchange.interrupted"
            } else if exchange["reason"].is_null() {
                "exchange.executed"
            } else {
                "exchange.refunded"
            };
            s.emit(event, &exchange);
            (StatusCode::CREATED, Json(exchange)).into_response()
        }
        Err(r) => refuse(r),
    }
}

#[derive(serde::Deserialize, Default)]
struct InterruptBody {
    /// `identify` (an action with a URL) or `identification_required` (with an id).
    #[serde(default)]
    variant: Option<String>,
}

async fn interrupt(
    AxumState(s): Shared,
    Path(id): Path<String>,
    body: Option<Json<InterruptBody>>,
) -> Response {
    let variant = body
        .and_then(|b| b.0.variant)
        .unwrap_or_else(|| "identify".into());
    let result = s.state.lock().expect("state lock").interrupt(&id, &variant);
    match result {
        Ok(exchange) => {
            s.emit("exchange.interrupted", &exchange);
            Json(exchange).into_response()
        }
        Err(r) => refuse(r),
    }
}

/// The buyer identified with Pocket: the interrupted exchange executes (webhook
/// `exchange.executed`), and settles later like any other.
async fn identify(AxumState(s): Shared, Path(id): Path<String>) -> Response {
    let result = s
        .state
        .lock()
        .expect("state lock")
        .identify(&id, s.options.clock.now());
    match result {
        Ok(exchange) => {
            s.emit("exchange.executed", &exchange);
            Json(exchange).into_response()
        }
        Err(r) => refuse(r),
    }
}

#[derive(serde::Deserialize)]
struct RefundBody {
    reason: String,
}

async fn refund(
    AxumState(s): Shared,
    Path(id): Path<String>,
    Json(body): Json<RefundBody>,
) -> Response {
    let result = s
        .state
        .lock()
        .expect("state lock")
        .refund(&id, &body.reason);
    match result {
        Ok(exchange) => {
            s.emit("exchange.refunded", &exchange);
            Json(exchange).into_response()
        }
        Err(r) => refuse(r),
    }
}

async fn settle(AxumState(s): Shared, Path(id): Path<String>) -> Response {
    let result = s
        .state
        .lock()
        .expect("state lock")
        .settle(&id, s.options.clock.now());
    match result {
        Ok(exchange) => {
            s.emit("exchange.settled", &exchange);
            Json(exchange).into_response()
        }
        Err(r) => refuse(r),
    }
}

async fn expire_challenge(AxumState(s): Shared, Path(id): Path<String>) -> Response {
    let mut state = s.state.lock().expect("state lock");
    match state.challenges.get_mut(&id) {
        Some(c) => {
            c.expires_on = crate::clock::system_now() - chrono::Duration::seconds(1);
            Json(c.clone()).into_response()
        }
        None => refuse(Refusal::not_found("challenge", &id)),
    }
}

#[derive(serde::Deserialize)]
struct PriceBody {
    currency: String,
    price: Value,
}

async fn set_price(AxumState(s): Shared, Json(body): Json<PriceBody>) -> Response {
    let currency = Currency::from_str(&body.currency);
    let price = Decimal::from_str_exact(body.price.to_string().trim_matches('"'))
        .ok()
        .filter(|p| *p > Decimal::ZERO);
    match (currency, price) {
        (Ok(c), Some(p)) => {
            s.state.lock().expect("state lock").prices.insert(c, p);
            Json(json!({ "currency": c.code(), "price": crate::pocket::types::number(p) }))
                .into_response()
        }
        _ => refuse(Refusal {
            status: 400,
            code: "price",
            message: "write {\"currency\": \"eur\"|\"chf\"|\"gbp\", \"price\": 60000}".into(),
        }),
    }
}

async fn list_deliveries(AxumState(s): Shared) -> Response {
    Json(json!({ "deliveries": s.deliveries() })).into_response()
}

#[derive(serde::Deserialize)]
struct WithholdBody {
    withhold: bool,
}

/// Stops (or resumes) sending webhooks: events are still recorded. For rehearsing a webhook
/// endpoint that is down.
async fn withhold(AxumState(s): Shared, Json(body): Json<WithholdBody>) -> Response {
    s.withhold
        .store(body.withhold, std::sync::atomic::Ordering::Relaxed);
    Json(json!({ "withhold": body.withhold })).into_response()
}

/// Peach's public fee estimates (sat/vB).
async fn estimate_fees(AxumState(s): Shared) -> Response {
    Json(s.fees.lock().expect("fees lock").clone()).into_response()
}

/// Sets the fee estimates: `{"halfHourFee": 40, …}` (the fields given replace those served).
async fn set_fees(AxumState(s): Shared, Json(body): Json<Value>) -> Response {
    let mut fees = s.fees.lock().expect("fees lock");
    if let (Some(fees), Some(given)) = (fees.as_object_mut(), body.as_object()) {
        for (k, v) in given {
            fees.insert(k.clone(), v.clone());
        }
    }
    Json(fees.clone()).into_response()
}

/// Peach's public price of a pair such as `BTCEUR`.
async fn market_price(AxumState(s): Shared, Path(pair): Path<String>) -> Response {
    let currency = pair
        .strip_prefix("BTC")
        .and_then(|c| Currency::from_str(c).ok());
    let Some(currency) = currency else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "NOT_FOUND", "message": format!("unknown pair {pair}") })),
        )
            .into_response();
    };
    let price = s.state.lock().expect("state lock").prices[&currency];
    Json(json!({ "pair": pair, "price": crate::pocket::types::number(price), "date": crate::clock::system_now().to_rfc3339() })).into_response()
}

/// BitPay's public rate of bitcoin in a currency, at the same sandbox price.
async fn bitpay_rate(AxumState(s): Shared, Path(code): Path<String>) -> Response {
    let Ok(currency) = Currency::from_str(&code) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("unknown currency {code}") })),
        )
            .into_response();
    };
    let price = s.state.lock().expect("state lock").prices[&currency];
    Json(json!({ "data": { "code": code.to_uppercase(), "name": code, "rate": crate::pocket::types::number(price) } }))
        .into_response()
}

async fn market_prices(AxumState(s): Shared) -> Response {
    let state = s.state.lock().expect("state lock");
    let prices: serde_json::Map<String, Value> = state
        .prices
        .iter()
        .map(|(c, p)| (c.code().to_uppercase(), crate::pocket::types::number(*p)))
        .collect();
    Json(Value::Object(prices)).into_response()
}

#[derive(serde::Deserialize)]
struct HoldBody {
    hold: bool,
}

/// Makes valid Lightning patches stay in progress (answering `in_progress` to another patch)
/// until the exchange is settled through the control API; or stops doing so.
async fn hold_payouts(AxumState(s): Shared, Json(body): Json<HoldBody>) -> Response {
    s.hold_payouts
        .store(body.hold, std::sync::atomic::Ordering::Relaxed);
    Json(json!({ "hold": body.hold })).into_response()
}

/// Signs a node message as the sandbox's Lightning stand-ins do (re-exported for tests).
pub fn sign_as_node(key: &bitcoin::secp256k1::SecretKey, message: &str) -> String {
    signmessage::sign_node_message(key, message)
}
