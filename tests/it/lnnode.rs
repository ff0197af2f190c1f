//! Lightning stand-ins on loopback: an LND REST node over HTTPS with its own self-signed
//! certificate (satflow must pin it), a Core Lightning `clnrest`, and an LNURL-pay server. Each
//! signs real BOLT11 invoices with its own node key through the lightning-invoice builder, and
//! can be told to hand out a bad one.

use bitcoin::hex::DisplayHex;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use lightning_invoice::Currency;
use satflow::lightning::signmessage::sign_node_message;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::pocket::invoice;

/// What the node's next invoices look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Good,
    WrongAmount,
    WrongNetwork,
    WrongPayee,
    Expired,
}

pub struct NodeState {
    pub key: SecretKey,
    pub mode: Mode,
    /// Receivable over the node's channels, msat.
    pub inbound_msat: u64,
    pub invoices: Vec<String>,
    /// LND's on-chain wallet: its confirmed balance and the transactions it sent.
    pub onchain_sat: u64,
    pub sent: Vec<Value>,
    /// How long `POST /v1/transactions` takes to answer (after it has sent).
    pub send_delay: Duration,
}

#[derive(Clone)]
pub struct StandIn {
    pub url: String,
    pub state: Arc<Mutex<NodeState>>,
    /// LND: the PEM of its tls.cert and the macaroon (raw bytes) it wants.
    pub cert_pem: String,
    pub macaroon: Vec<u8>,
}

impl StandIn {
    pub fn pubkey(&self) -> PublicKey {
        PublicKey::from_secret_key(&Secp256k1::new(), &self.state.lock().unwrap().key)
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
    }
}

fn new_state(seed: u8) -> Arc<Mutex<NodeState>> {
    Arc::new(Mutex::new(NodeState {
        key: SecretKey::from_slice(&[seed; 32]).unwrap(),
        mode: Mode::Good,
        inbound_msat: u64::MAX,
        invoices: Vec::new(),
        onchain_sat: 0,
        sent: Vec::new(),
        send_delay: Duration::ZERO,
    }))
}

/// An invoice as the node would make it now, bent by its mode.
fn make_invoice(state: &Arc<Mutex<NodeState>>, msat: u64) -> String {
    let mut s = state.lock().unwrap();
    let stranger = SecretKey::from_slice(&[0x42; 32]).unwrap();
    let hour = Duration::from_secs(3600);
    let now = SystemTime::now();
    let pr = match s.mode {
        Mode::Good => invoice(&s.key, Currency::Bitcoin, msat, now, hour),
        Mode::WrongAmount => invoice(&s.key, Currency::Bitcoin, msat + 1000, now, hour),
        Mode::WrongNetwork => invoice(&s.key, Currency::Regtest, msat, now, hour),
        Mode::WrongPayee => invoice(&stranger, Currency::Bitcoin, msat, now, hour),
        Mode::Expired => invoice(&s.key, Currency::Bitcoin, msat, now - 2 * hour, hour),
    };
    s.invoices.push(pr.clone());
    pr
}

/// A TLS listener for axum, with the stand-in's certificate.
pub struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl TlsListener {
    pub fn new(tcp: tokio::net::TcpListener, config: Arc<rustls::ServerConfig>) -> TlsListener {
        TlsListener {
            tcp,
            acceptor: tokio_rustls::TlsAcceptor::from(config),
        }
    }
}

/// A fresh self-signed certificate for `localhost` and `127.0.0.1`: its PEM (the node's
/// `tls.cert`) and a server configuration presenting it.
pub fn self_signed() -> (String, Arc<rustls::ServerConfig>) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert_pem = certified.cert.pem();
    let cert_der = certified.cert.der().clone();
    let key_der =
        rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert_der], key_der)
        .unwrap();
    (cert_pem, Arc::new(config))
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// LND's REST API over HTTPS with a fresh self-signed certificate.
pub async fn lnd() -> StandIn {
    let (cert_pem, config) = self_signed();
    let state = new_state(9);
    let macaroon = b"\x02\x01\x03lnd-macaroon-for-tests".to_vec();
    let hex = macaroon.to_lower_hex_string();
    let app = Router::new()
        .route("/v1/getinfo", get(lnd_getinfo))
        .route("/v1/invoices", post(lnd_invoice))
        .route("/v1/signmessage", post(lnd_sign))
        .route("/v1/balance/channels", get(lnd_channels))
        .route("/v1/balance/blockchain", get(lnd_wallet_balance))
        .route("/v1/transactions", post(lnd_send).get(lnd_transactions))
        .with_state((Arc::clone(&state), hex));
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", tcp.local_addr().unwrap());
    let listener = TlsListener::new(tcp, config);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    StandIn {
        url,
        state,
        cert_pem,
        macaroon,
    }
}

type Lnd = State<(Arc<Mutex<NodeState>>, String)>;

fn macaroon_ok(headers: &HeaderMap, hex: &str) -> bool {
    headers
        .get("grpc-metadata-macaroon")
        .and_then(|v| v.to_str().ok())
        == Some(hex)
}

fn denied() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({ "code": 2, "message": "verification failed: signature mismatch" })),
    )
        .into_response()
}

async fn lnd_getinfo(State((state, hex)): Lnd, headers: HeaderMap) -> Response {
    if !macaroon_ok(&headers, &hex) {
        return denied();
    }
    let key = state.lock().unwrap().key;
    Json(json!({ "identity_pubkey": PublicKey::from_secret_key(&Secp256k1::new(), &key).to_string(), "alias": "stand-in" })).into_response()
}

async fn lnd_invoice(
    State((state, hex)): Lnd,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if !macaroon_ok(&headers, &hex) {
        return denied();
    }
    let msat: u64 = body["value_msat"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let pr = make_invoice(&state, msat);
    Json(json!({ "r_hash": "AA==", "payment_request": pr, "add_index": "1" })).into_response()
}

async fn lnd_sign(
    State((state, hex)): Lnd,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    use bitcoin::base64::Engine;
    if !macaroon_ok(&headers, &hex) {
        return denied();
    }
    let msg = bitcoin::base64::engine::general_purpose::STANDARD
        .decode(body["msg"].as_str().unwrap_or_default())
        .unwrap();
    let key = state.lock().unwrap().key;
    Json(json!({ "signature": sign_node_message(&key, &String::from_utf8(msg).unwrap()) }))
        .into_response()
}

async fn lnd_channels(State((state, hex)): Lnd, headers: HeaderMap) -> Response {
    if !macaroon_ok(&headers, &hex) {
        return denied();
    }
    let inbound = state.lock().unwrap().inbound_msat;
    Json(json!({ "remote_balance": { "sat": (inbound / 1000).to_string(), "msat": inbound.to_string() } })).into_response()
}

async fn lnd_wallet_balance(State((state, hex)): Lnd, headers: HeaderMap) -> Response {
    if !macaroon_ok(&headers, &hex) {
        return denied();
    }
    let sat = state.lock().unwrap().onchain_sat;
    Json(json!({ "total_balance": sat.to_string(), "confirmed_balance": sat.to_string(), "unconfirmed_balance": "0" })).into_response()
}

/// `SendCoins`: an amount or the whole balance (`send_all`), with a label.
async fn lnd_send(
    State((state, hex)): Lnd,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if !macaroon_ok(&headers, &hex) {
        return denied();
    }
    let delay = {
        let mut s = state.lock().unwrap();
        let rate: u64 = body["sat_per_vbyte"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        let fee = rate * 141;
        let amount = if body["send_all"] == json!(true) {
            s.onchain_sat.saturating_sub(fee)
        } else {
            body["amount"]
                .as_str()
                .and_then(|a| a.parse().ok())
                .unwrap_or(0)
        };
        if body["addr"].as_str().is_none_or(str::is_empty)
            || amount + fee > s.onchain_sat
            || amount == 0
        {
            return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({ "code": 2, "message": "insufficient funds available to construct transaction" }))).into_response();
        }
        s.onchain_sat -= amount + fee;
        let txid = hex_of(&Sha256::digest(
            format!("{}{}", s.sent.len(), body).as_bytes(),
        ));
        s.sent.push(json!({
            "tx_hash": txid, "amount": format!("-{amount}"), "total_fees": fee.to_string(),
            "dest_addresses": [body["addr"]], "label": body["label"], "num_confirmations": 0,
        }));
        s.send_delay
    };
    // The coins are sent; the answer may be slow to come back (for crash tests).
    tokio::time::sleep(delay).await;
    let txid = state.lock().unwrap().sent.last().unwrap()["tx_hash"].clone();
    Json(json!({ "txid": txid })).into_response()
}

async fn lnd_transactions(State((state, hex)): Lnd, headers: HeaderMap) -> Response {
    if !macaroon_ok(&headers, &hex) {
        return denied();
    }
    Json(json!({ "transactions": state.lock().unwrap().sent })).into_response()
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.to_lower_hex_string()
}

fn cln_app(state: &Arc<Mutex<NodeState>>, rune: &str) -> Router {
    Router::new()
        .route("/v1/getinfo", post(cln_getinfo))
        .route("/v1/invoice", post(cln_invoice))
        .route("/v1/signmessage", post(cln_sign))
        .with_state((Arc::clone(state), rune.to_string()))
}

/// Core Lightning's `clnrest` (plain HTTP on loopback), wanting `rune`.
pub async fn cln(rune: &str) -> StandIn {
    let state = new_state(10);
    let app = cln_app(&state, rune);
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", tcp.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(tcp, app).await.unwrap() });
    StandIn {
        url,
        state,
        cert_pem: String::new(),
        macaroon: Vec::new(),
    }
}

/// Certificates shaped like the ones clnrest generates in the node's network folder: a CA
/// (`ca.pem`, "cln Root CA") that signs the server's certificate (`server.pem`) for the names
/// `cln`, `localhost` and 127.0.0.1.
pub struct ClnCerts {
    pub ca_pem: String,
    pub server_pem: String,
    pub config: Arc<rustls::ServerConfig>,
}

pub fn clnrest_certs() -> ClnCerts {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "cln Root CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let mut server_params =
        CertificateParams::new(vec!["cln".into(), "localhost".into(), "127.0.0.1".into()]).unwrap();
    server_params
        .distinguished_name
        .push(DnType::CommonName, "cln");
    let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![server_cert.der().clone()], key_der)
        .unwrap();
    ClnCerts {
        ca_pem: ca_cert.pem(),
        server_pem: server_cert.pem(),
        config: Arc::new(config),
    }
}

/// clnrest as it ships: HTTPS with the certificates of `certs`, wanting `rune`.
pub async fn cln_tls(rune: &str, certs: &ClnCerts) -> StandIn {
    let state = new_state(12);
    let app = cln_app(&state, rune);
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", tcp.local_addr().unwrap());
    let listener = TlsListener::new(tcp, Arc::clone(&certs.config));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    StandIn {
        url,
        state,
        cert_pem: certs.ca_pem.clone(),
        macaroon: Vec::new(),
    }
}

fn rune_ok(headers: &HeaderMap, rune: &str) -> bool {
    headers.get("rune").and_then(|v| v.to_str().ok()) == Some(rune)
}

async fn cln_getinfo(State((state, rune)): Lnd, headers: HeaderMap) -> Response {
    if !rune_ok(&headers, &rune) {
        return denied();
    }
    let key = state.lock().unwrap().key;
    Json(json!({ "id": PublicKey::from_secret_key(&Secp256k1::new(), &key).to_string() }))
        .into_response()
}

async fn cln_invoice(
    State((state, rune)): Lnd,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if !rune_ok(&headers, &rune) {
        return denied();
    }
    assert!(body["label"].is_string(), "clnrest needs a label");
    let pr = make_invoice(&state, body["amount_msat"].as_u64().unwrap_or(0));
    Json(json!({ "bolt11": pr, "payment_hash": "00", "expires_at": 0 })).into_response()
}

async fn cln_sign(
    State((state, rune)): Lnd,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if !rune_ok(&headers, &rune) {
        return denied();
    }
    let key = state.lock().unwrap().key;
    let zbase = sign_node_message(&key, body["message"].as_str().unwrap_or_default());
    Json(json!({ "signature": "00", "recid": "00", "zbase": zbase })).into_response()
}

/// How an LNURL-pay server makes its invoices.
#[derive(Debug, Clone, Copy)]
pub struct LnurlStyle {
    /// The invoices' description hash commits to the metadata (as LUD-06 once asked); when
    /// not, they carry a plain description, as widely used providers do.
    pub commits_to_metadata: bool,
    pub expiry: Duration,
    /// How many of the first invoices are handed out already 3/5 through their validity (a
    /// provider's cache of stale invoices): less than half of it is left.
    pub stale_first: usize,
}

/// An LNURL-pay server for `user@127.0.0.1:PORT`: invoices carry the hash of its metadata.
pub async fn lnurl(user: &'static str) -> (StandIn, String) {
    lnurl_with(
        user,
        LnurlStyle {
            commits_to_metadata: true,
            expiry: Duration::from_secs(3600),
            stale_first: 0,
        },
    )
    .await
}

/// An LNURL-pay server whose invoices are made as `style` says.
pub async fn lnurl_with(user: &'static str, style: LnurlStyle) -> (StandIn, String) {
    let state = new_state(11);
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let app = Router::new()
        .route("/.well-known/lnurlp/{user}", get(lnurl_params))
        .route("/lnurl/callback", get(lnurl_callback))
        .with_state(((Arc::clone(&state), addr.to_string()), style));
    tokio::spawn(async move { axum::serve(tcp, app).await.unwrap() });
    let stand_in = StandIn {
        url: format!("http://{addr}"),
        state,
        cert_pem: String::new(),
        macaroon: Vec::new(),
    };
    (stand_in, format!("{user}@{addr}"))
}

const METADATA: &str =
    r#"[["text/plain","Sats for stacker"],["text/identifier","stacker@example"]]"#;

type Lnurl = State<((Arc<Mutex<NodeState>>, String), LnurlStyle)>;

async fn lnurl_params(State(((_, addr), _)): Lnurl, Path(user): Path<String>) -> Json<Value> {
    if user != "stacker" {
        return Json(json!({ "status": "ERROR", "reason": "unknown user" }));
    }
    Json(json!({
        "tag": "payRequest",
        "callback": format!("http://{addr}/lnurl/callback?user={user}"),
        "minSendable": 1000,
        "maxSendable": 10_000_000_000u64,
        "metadata": METADATA,
    }))
}

async fn lnurl_callback(
    State(((state, _), style)): Lnurl,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Json<Value> {
    let msat: u64 = q.get("amount").and_then(|a| a.parse().ok()).unwrap_or(0);
    let mut s = state.lock().unwrap();
    let hash =
        bitcoin::hashes::sha256::Hash::from_byte_array(Sha256::digest(METADATA.as_bytes()).into());
    let secp = Secp256k1::new();
    let builder = lightning_invoice::InvoiceBuilder::new(Currency::Bitcoin);
    let builder = if style.commits_to_metadata {
        builder.description_hash(hash)
    } else {
        builder.description("Sats for stacker".into())
    };
    let builder = builder
        .payment_hash(bitcoin::hashes::sha256::Hash::from_byte_array([1; 32]))
        .payment_secret(lightning_invoice::PaymentSecret([2; 32]));
    let builder = if s.invoices.len() < style.stale_first {
        let made = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .saturating_sub(style.expiry * 3 / 5);
        builder.duration_since_epoch(made)
    } else {
        builder.current_timestamp()
    };
    let pr = builder
        .expiry_time(style.expiry)
        .min_final_cltv_expiry_delta(144)
        .amount_milli_satoshis(msat)
        .build_signed(|h| secp.sign_ecdsa_recoverable(h, &s.key))
        .unwrap()
        .to_string();
    s.invoices.push(pr.clone());
    Json(json!({ "pr": pr, "routes": [] }))
}
