//! The table of outcomes of every call satflow makes to Lightning nodes (LND over pinned TLS,
//! Core Lightning, LNURL), the Lightning Peach hub, Esplora, Peach and BitPay, and SMTP, driven
//! cell by cell over real connections on loopback: for each call, a server that refuses the
//! connection, one whose accept queue is full (the connection never opens), one that reads the
//! request and never answers, 5xx with JSON and with HTML, 429 with and without `Retry-After`,
//! the provider's documented 4xx, and 2xx bodies that cannot be read. The expected class of each
//! cell is written here, independently of the code; every mismatch is reported at once.
//!
//! Then the daemon itself: a withdrawal whose send is received but never answered in time is
//! reconciled at the provider — one send, its txid kept.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use satflow::config::{InvoiceSource, LightningNode, PriceSource, WithdrawProvider};
use satflow::domain::Currency;
use satflow::lightning::node::Node;
use satflow::outcome::{Call, Class};
use satflow::wallet::esplora::Esplora;
use satflow::withdraw::hub::HubClient;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::esplora::Esplora as EsploraStandIn;
use super::helpers::{TestApp, eventually, terminate};
use super::lnnode;
use super::withdrawals::{hub_withdrawals, hub_yaml, lnd_yaml, with_providers, withdrawals};

/// The clients' timeouts in these tests: long enough for a loaded machine to answer, short
/// enough for the cells that wait them out.
const CONNECT: Duration = Duration::from_secs(2);
const TOTAL: Duration = Duration::from_secs(4);
/// How many cells run at once: TLS handshakes of a debug build are slow on a loaded machine.
const AT_ONCE: usize = 12;
const RETRY_AFTER: Duration = Duration::from_secs(7);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Nothing listens on the port.
    Refused,
    /// The listener's accept queue is full: the connection (and its TLS) never opens.
    ConnectTimeout,
    /// The request is read; no answer ever comes.
    NoAnswer,
    /// 500 with a JSON body whose codes look final.
    Json5xx,
    /// 502 with a proxy's HTML page.
    Html5xx,
    TooManyRetryAfter,
    TooMany,
    /// A documented refusal: status and body.
    Documented(u16, &'static str),
    /// 200 with an HTML page.
    HtmlOk,
    /// 200 with JSON of another shape.
    WrongShapeOk,
}

use Failure::*;

/// Every call, with whether it changes something at the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    LndInvoice,
    LndSign,
    LndGetinfo,
    LndWalletBalance,
    LndChannels,
    LndSend,
    LndTransactions,
    ClnInvoice,
    ClnSign,
    ClnGetinfo,
    LnurlParams,
    LnurlCallback,
    HubSignIn,
    HubBalance,
    HubSetAddress,
    HubWithdraw,
    HubStatus,
    EsploraAddress,
    EsploraTx,
    EsploraTip,
    EsploraFees,
    PeachPrice,
    PeachFees,
    BitpayPrice,
}

use Op::*;

const OPS: [Op; 24] = [
    LndInvoice,
    LndSign,
    LndGetinfo,
    LndWalletBalance,
    LndChannels,
    LndSend,
    LndTransactions,
    ClnInvoice,
    ClnSign,
    ClnGetinfo,
    LnurlParams,
    LnurlCallback,
    HubSignIn,
    HubBalance,
    HubSetAddress,
    HubWithdraw,
    HubStatus,
    EsploraAddress,
    EsploraTx,
    EsploraTip,
    EsploraFees,
    PeachPrice,
    PeachFees,
    BitpayPrice,
];

impl Op {
    fn call(self) -> Call {
        match self {
            LndSend | HubWithdraw => Call::Write,
            _ => Call::Read,
        }
    }

    fn tls(self) -> bool {
        matches!(
            self,
            LndInvoice
                | LndSign
                | LndGetinfo
                | LndWalletBalance
                | LndChannels
                | LndSend
                | LndTransactions
        )
    }

    /// The refusals each provider documents (seed 002 for Peach, seed 003 for the hub, LND's
    /// gRPC gateway codes, clnrest's rune errors, LUD-06's `ERROR` status).
    fn documented(self) -> Vec<Failure> {
        match self {
            LndInvoice | LndSign | LndGetinfo | LndWalletBalance | LndChannels | LndSend
            | LndTransactions => vec![
                Documented(
                    400,
                    r#"{"code":3,"message":"invalid address","details":[]}"#,
                ),
                Documented(
                    403,
                    r#"{"code":7,"message":"permission denied","details":[]}"#,
                ),
                Documented(404, r#"{"code":5,"message":"Not Found","details":[]}"#),
            ],
            ClnInvoice | ClnSign | ClnGetinfo => vec![
                Documented(401, r#"{"code":1501,"message":"Not authorized"}"#),
                Documented(
                    400,
                    r#"{"code":-32602,"message":"label: should be a string"}"#,
                ),
            ],
            LnurlParams | LnurlCallback => vec![
                Documented(404, r#"{"status":"ERROR","reason":"unknown user"}"#),
                Documented(200, r#"{"status":"ERROR","reason":"amount out of range"}"#),
            ],
            HubSignIn | HubBalance | HubSetAddress | HubWithdraw | HubStatus => vec![
                Documented(
                    400,
                    r#"{"error":"invalid signature","code":3,"message":"invalid signature","details":[]}"#,
                ),
                Documented(
                    401,
                    r#"{"error":"token is expired","code":16,"message":"token is expired","details":[]}"#,
                ),
                Documented(
                    404,
                    r#"{"error":"cannot get merchant: not found","code":5,"message":"not found","details":[]}"#,
                ),
            ],
            EsploraAddress | EsploraTx | EsploraTip | EsploraFees => vec![
                Documented(400, "Invalid Bitcoin address"),
                Documented(404, "Transaction not found"),
            ],
            PeachPrice | PeachFees => vec![
                Documented(400, r#"{"error":"BAD_REQUEST"}"#),
                Documented(404, r#"{"error":"NOT_FOUND"}"#),
                Documented(451, r#"{"error":"UNAVAILABLE_FOR_LEGAL_REASONS"}"#),
            ],
            BitpayPrice => vec![Documented(404, r#"{"error":"Currency not supported"}"#)],
        }
    }

    /// The failures this call can meet. Every hub call starts with a sign-in in a fresh client
    /// (each handler run makes one), so a hub that cannot be reached at all is met there.
    fn failures(self) -> Vec<Failure> {
        let mut all = vec![
            NoAnswer,
            Json5xx,
            Html5xx,
            TooManyRetryAfter,
            TooMany,
            HtmlOk,
            WrongShapeOk,
        ];
        if !matches!(self, HubBalance | HubSetAddress | HubWithdraw | HubStatus) {
            all.extend([Refused, ConnectTimeout]);
        }
        all.extend(self.documented());
        all
    }
}

/// The class each cell must have: the contract of DESIGN.md, written out.
fn expected(call: Call, failure: Failure) -> Class {
    match (failure, call) {
        (Refused | ConnectTimeout | Json5xx | Html5xx | TooMany, _) => Class::TRANSIENT,
        (TooManyRetryAfter, _) => Class::Transient {
            retry_after: Some(RETRY_AFTER),
        },
        (NoAnswer, Call::Read) => Class::TRANSIENT,
        (NoAnswer, Call::Write) => Class::Unknown,
        (Documented(..), _) => Class::Permanent,
        (HtmlOk | WrongShapeOk, Call::Read) => Class::Permanent,
        (HtmlOk | WrongShapeOk, Call::Write) => Class::Unknown,
    }
}

/// What a server holds on to for as long as the test runs.
#[allow(dead_code)]
enum Keep {
    Nothing,
    Queue(tokio::net::TcpListener, Vec<tokio::net::TcpStream>),
}

struct Server {
    /// `host:port`.
    addr: String,
    paths: Arc<Mutex<Vec<String>>>,
    _keep: Keep,
}

type Good = Arc<dyn Fn(&str) -> Option<Response> + Send + Sync>;

#[derive(Clone)]
struct Shared {
    failure: Failure,
    good: Good,
    paths: Arc<Mutex<Vec<String>>>,
}

fn answer(failure: Failure) -> Response {
    let json = |status: u16, body: &str| {
        (
            StatusCode::from_u16(status).unwrap(),
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    };
    match failure {
        Json5xx => json(
            500,
            r#"{"code":"invalid_invoice","error":{"code":"already_completed","message":"looks final; the status says otherwise"}}"#,
        ),
        Html5xx => (
            StatusCode::BAD_GATEWAY,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body><h1>502 Bad Gateway</h1>nginx</body></html>",
        )
            .into_response(),
        TooManyRetryAfter => {
            let mut r = json(429, r#"{"error":"TOO_MANY_REQUESTS"}"#);
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
            r
        }
        TooMany => json(429, r#"{"error":"TOO_MANY_REQUESTS"}"#),
        Documented(status, body) => json(status, body),
        HtmlOk => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body>Welcome to the hotel's Wi-Fi</body></html>",
        )
            .into_response(),
        WrongShapeOk => json(200, r#"{"unexpected":true}"#),
        Refused | ConnectTimeout | NoAnswer => unreachable!("answered at the connection"),
    }
}

async fn handle(State(s): State<Shared>, uri: Uri) -> Response {
    let path = match uri.query() {
        Some(q) => format!("{}?{q}", uri.path()),
        None => uri.path().to_string(),
    };
    s.paths.lock().unwrap().push(path.clone());
    if let Some(good) = (s.good)(uri.path()) {
        return good;
    }
    if s.failure == NoAnswer {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    answer(s.failure)
}

/// A listener whose accept queue is full: a new connection's SYN is dropped, so connecting
/// times out before a single byte of the request can go.
async fn full_queue() -> (String, Keep) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    while let Ok(Ok(stream)) = tokio::time::timeout(
        Duration::from_millis(300),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    {
        fillers.push(stream);
        assert!(fillers.len() < 64, "the accept queue never filled");
    }
    (addr.to_string(), Keep::Queue(listener, fillers))
}

async fn serve(failure: Failure, tls: Option<Arc<rustls::ServerConfig>>, good: Good) -> Server {
    let paths: Arc<Mutex<Vec<String>>> = Arc::default();
    match failure {
        Refused => {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            return Server {
                addr: format!("127.0.0.1:{port}"),
                paths,
                _keep: Keep::Nothing,
            };
        }
        ConnectTimeout => {
            let (addr, keep) = full_queue().await;
            return Server {
                addr,
                paths,
                _keep: keep,
            };
        }
        _ => {}
    }
    let app = Router::new().fallback(handle).with_state(Shared {
        failure,
        good,
        paths: Arc::clone(&paths),
    });
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap().to_string();
    match tls {
        Some(config) => {
            let listener = lnnode::TlsListener::new(tcp, config);
            tokio::spawn(async move { axum::serve(listener, app).await });
        }
        None => {
            tokio::spawn(async move { axum::serve(tcp, app).await });
        }
    }
    Server {
        addr,
        paths,
        _keep: Keep::Nothing,
    }
}

fn no_good() -> Good {
    Arc::new(|_| None)
}

fn hub_session(refresh: &'static str) -> Good {
    Arc::new(move |path| {
        path.ends_with("/api/v2/auth/signin").then(|| {
            axum::Json(json!({
                "merchant_id": "m1", "token_type": "Bearer", "refresh_token": refresh,
                "access_token": "a1", "expires_at": 4_102_444_800u64,
            }))
            .into_response()
        })
    })
}

fn hub_provider(addr: &str, dir: &std::path::Path) -> WithdrawProvider {
    std::fs::write(dir.join("hub.key"), super::withdrawals::MERCHANT_KEY).unwrap();
    WithdrawProvider::LightningPeach {
        base_url: url::Url::parse(&format!("http://{addr}/hub")).unwrap(),
        email: "stacker@example.com".into(),
        password: "pw".to_string().into(),
        key: super::withdrawals::MERCHANT_KEY.parse().unwrap(),
    }
}

fn url(text: &str) -> url::Url {
    url::Url::parse(text).unwrap()
}

/// Drives `op` against a server failing with `failure`; the class of its error.
async fn drive(
    op: Op,
    failure: Failure,
    cert_pem: String,
    tls: Arc<rustls::ServerConfig>,
) -> Result<String, (Class, String)> {
    let dir = tempfile::tempdir().unwrap();
    let good = match op {
        HubBalance | HubSetAddress | HubWithdraw | HubStatus => hub_session("r1"),
        _ => no_good(),
    };
    let server = serve(failure, op.tls().then_some(tls), good).await;
    let addr = server.addr.clone();
    // LNURL's callback fails; its parameters come from a server that answers them.
    let params = match op {
        LnurlCallback => {
            let callback = format!("http://{addr}/cb?user=stacker");
            let good: Good = Arc::new(move |_| {
                Some(
                    axum::Json(json!({
                        "tag": "payRequest", "callback": callback, "minSendable": 1000,
                        "maxSendable": 1_000_000_000u64, "metadata": "[[\"text/plain\",\"x\"]]",
                    }))
                    .into_response(),
                )
            });
            Some(serve(WrongShapeOk, None, good).await)
        }
        _ => None,
    };
    let node = |source| {
        Node::from_config_with(
            &LightningNode {
                source,
                node_pubkey: None,
                node_address: None,
            },
            CONNECT,
            TOTAL,
        )
        .unwrap()
    };
    let lnd = || {
        std::fs::write(dir.path().join("tls.cert"), &cert_pem).unwrap();
        std::fs::write(dir.path().join("admin.macaroon"), b"mac").unwrap();
        node(InvoiceSource::Lnd {
            url: url(&format!("https://{addr}")),
            macaroon_file: dir.path().join("admin.macaroon"),
            tls_cert_file: dir.path().join("tls.cert"),
        })
    };
    let cln = || {
        node(InvoiceSource::Cln {
            url: url(&format!("http://{addr}")),
            rune: "rune".to_string().into(),
            tls_cert_file: None,
        })
    };
    let lnurl = |at: &str| node(InvoiceSource::LightningAddress(format!("stacker@{at}")));
    let hub =
        || HubClient::from_config_with(&hub_provider(&addr, dir.path()), CONNECT, TOTAL).unwrap();
    let esplora = || Esplora::with_timeouts(&url(&format!("http://{addr}/api")), CONNECT, TOTAL);
    let timeouts = (CONNECT, TOTAL);
    let hour = Duration::from_secs(3600);
    let done = |v: &dyn std::fmt::Debug| format!("{v:?}");
    let node_class = |e: satflow::lightning::node::NodeError| (e.class(), e.to_string());
    let hub_class = |e: satflow::withdraw::hub::HubError| (e.class(), e.to_string());
    let esplora_class = |e: satflow::wallet::esplora::EsploraError| (e.class(), e.to_string());
    let price_class = |e: satflow::prices::PriceError| (e.class(), e.to_string());
    match op {
        LndInvoice => lnd()
            .invoice(1000, "x", hour)
            .await
            .map(|v| done(&v.bolt11))
            .map_err(node_class),
        LndSign => lnd()
            .sign_message("m")
            .await
            .map(|v| done(&v))
            .map_err(node_class),
        LndGetinfo => lnd().pubkey().await.map(|v| done(&v)).map_err(node_class),
        LndWalletBalance => lnd()
            .onchain_balance()
            .await
            .map(|v| done(&v))
            .map_err(node_class),
        LndChannels => lnd()
            .inbound_msat()
            .await
            .map(|v| done(&v))
            .map_err(node_class),
        LndSend => lnd()
            .send_onchain("bc1qexample", None, 5, "sweep/1")
            .await
            .map(|v| done(&v))
            .map_err(node_class),
        LndTransactions => lnd()
            .labelled_transaction("sweep/1")
            .await
            .map(|v| done(&v))
            .map_err(node_class),
        ClnInvoice => cln()
            .invoice(1000, "x", hour)
            .await
            .map(|v| done(&v.bolt11))
            .map_err(node_class),
        ClnSign => cln()
            .sign_message("m")
            .await
            .map(|v| done(&v))
            .map_err(node_class),
        ClnGetinfo => cln().pubkey().await.map(|v| done(&v)).map_err(node_class),
        LnurlParams => lnurl(&addr)
            .invoice(5000, "x", hour)
            .await
            .map(|v| done(&v.bolt11))
            .map_err(node_class),
        LnurlCallback => lnurl(&params.as_ref().unwrap().addr)
            .invoice(5000, "x", hour)
            .await
            .map(|v| done(&v.bolt11))
            .map_err(node_class),
        HubSignIn | HubBalance => hub().balance().await.map(|v| done(&v)).map_err(hub_class),
        HubSetAddress => hub()
            .set_address("bc1qexample")
            .await
            .map(|v| done(&v))
            .map_err(hub_class),
        HubWithdraw => hub().withdraw().await.map(|v| done(&v)).map_err(hub_class),
        HubStatus => hub()
            .withdrawal("w1")
            .await
            .map(|v| done(&v))
            .map_err(hub_class),
        EsploraAddress => esplora()
            .address_used("bc1qexample")
            .await
            .map(|v| done(&v))
            .map_err(esplora_class),
        EsploraTx => esplora()
            .confirmations("ab12")
            .await
            .map(|v| done(&v))
            .map_err(esplora_class),
        EsploraTip => esplora()
            .tip_height()
            .await
            .map(|v| done(&v))
            .map_err(esplora_class),
        EsploraFees => esplora()
            .fee_rate()
            .await
            .map(|v| done(&v))
            .map_err(esplora_class),
        PeachPrice => satflow::prices::fetch_with(
            &url(&format!("http://{addr}")),
            PriceSource::Peach,
            Currency::Eur,
            hour,
            timeouts,
        )
        .await
        .map(|v| done(&v))
        .map_err(price_class),
        PeachFees => {
            satflow::prices::peach_fee_rate_with(&url(&format!("http://{addr}")), timeouts)
                .await
                .map(|v| done(&v))
                .map_err(price_class)
        }
        BitpayPrice => satflow::prices::fetch_with(
            &url(&format!("http://{addr}")),
            PriceSource::Bitpay,
            Currency::Eur,
            hour,
            timeouts,
        )
        .await
        .map(|v| done(&v))
        .map_err(price_class),
    }
}

fn name(f: Failure) -> String {
    match f {
        Documented(status, body) => format!("{status} {}", &body[..body.len().min(40)]),
        other => format!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_to_nodes_hub_explorers_and_price_sources_has_its_outcome_per_failure() {
    let (cert_pem, tls) = lnnode::self_signed();
    let mut cells = JoinSet::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(AT_ONCE));
    for op in OPS {
        for failure in op.failures() {
            let (cert_pem, tls) = (cert_pem.clone(), Arc::clone(&tls));
            let slots = Arc::clone(&slots);
            cells.spawn(async move {
                let _slot = slots.acquire().await.unwrap();
                (op, failure, drive(op, failure, cert_pem, tls).await)
            });
        }
    }
    let mut table = Vec::new();
    let mut wrong = Vec::new();
    while let Some(cell) = cells.join_next().await {
        let (op, failure, got) = cell.unwrap();
        let want = expected(op.call(), failure);
        let shown = match &got {
            Ok(v) => format!("Ok({v})"),
            Err((class, _)) => format!("{class:?}"),
        };
        table.push(format!("{op:?} × {} -> {shown}", name(failure)));
        match got {
            Err((class, _)) if class == want => {}
            other => wrong.push(format!(
                "{op:?} × {}: expected {want:?}, got {other:?}",
                name(failure)
            )),
        }
    }
    table.sort();
    println!("{}", table.join("\n"));
    assert!(table.len() > 250, "{} cells", table.len());
    assert!(
        wrong.is_empty(),
        "{} cells wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[tokio::test]
async fn data_reaches_the_hub_and_the_explorer_as_one_escaped_path_segment() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = "../../etc/passwd?admin=1#frag";
    let encoded = "..%2F..%2Fetc%2Fpasswd%3Fadmin=1%23frag";
    let explorer_good: Good = Arc::new(|path| {
        Some(
            axum::Json(if path.starts_with("/api/address/") {
                json!({ "chain_stats": { "tx_count": 0 }, "mempool_stats": { "tx_count": 0 } })
            } else {
                json!({ "confirmed": false })
            })
            .into_response(),
        )
    });
    let explorer = serve(WrongShapeOk, None, explorer_good).await;
    let esplora = Esplora::with_timeouts(
        &url(&format!("http://{}/api", explorer.addr)),
        CONNECT,
        TOTAL,
    );
    assert!(!esplora.address_used(hostile).await.unwrap());
    assert_eq!(esplora.confirmations(hostile).await.unwrap(), 0);
    assert_eq!(
        *explorer.paths.lock().unwrap(),
        vec![
            format!("/api/address/{encoded}"),
            format!("/api/tx/{encoded}/status")
        ]
    );
    // A segment a URL would resolve away is refused before anything is sent.
    assert!(esplora.confirmations("..").await.is_err());
    assert_eq!(explorer.paths.lock().unwrap().len(), 2);

    // The hub: a withdrawal id, and a refresh token the hub itself handed out.
    let refreshed = Arc::new(Mutex::new(false));
    let seen = Arc::clone(&refreshed);
    let session = hub_session("r/../../steal?x=1");
    let hub_good: Good = Arc::new(move |path| {
        if let Some(r) = session(path) {
            return Some(r);
        }
        if path.contains("/auth/token/") {
            *seen.lock().unwrap() = true;
            return None;
        }
        // The token is refused until it was refreshed.
        let refreshed = *seen.lock().unwrap();
        refreshed.then(|| {
            axum::Json(json!({ "id": "w", "status": "Pending", "sent_tx": "" })).into_response()
        })
    });
    // The first status call is refused with 401 (the fallback), so the token is refreshed.
    let hub_server = serve(
        Documented(401, r#"{"error":"token is expired"}"#),
        None,
        hub_good,
    )
    .await;
    let hub =
        HubClient::from_config_with(&hub_provider(&hub_server.addr, dir.path()), CONNECT, TOTAL)
            .unwrap();
    let status = hub.withdrawal(hostile).await.unwrap();
    assert_eq!(status.0, "Pending");
    assert!(*refreshed.lock().unwrap());
    let paths = hub_server.paths.lock().unwrap().clone();
    assert!(
        paths.contains(&format!("/hub/api/v2/merchant/withdraw/{encoded}")),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"/hub/api/v2/auth/token/r%2F..%2F..%2Fsteal%3Fx=1".to_string()),
        "{paths:?}"
    );
    assert!(
        paths
            .iter()
            .all(|p| !p.contains("passwd?") && !p.contains("/steal")),
        "{paths:?}"
    );
}

#[tokio::test]
async fn smtp_replies_decide_the_class_4xx_transient_5xx_permanent() {
    use satflow::config::{EmailConfig, EmailTransport};
    use satflow::outbox::HandlerError;
    use satflow::outbox::handlers::email::EmailSender;
    let payload = json!({
        "from": "satflow@example.com", "to": ["me@example.com"], "subject": "s",
        "message_id": "<m1@satflow>", "body": "b",
    });
    let sender = |port: u16| {
        EmailSender::with_timeout(
            &EmailConfig {
                transport: EmailTransport::Smtp(format!("smtp://127.0.0.1:{port}").into()),
                from: "satflow@example.com".parse().unwrap(),
                to: vec!["me@example.com".parse().unwrap()],
            },
            TOTAL,
        )
        .unwrap()
    };
    let transient = |e: &HandlerError| matches!(e, HandlerError::Transient { .. });
    let permanent = |e: &HandlerError| matches!(e, HandlerError::Permanent { .. });
    let mut table = Vec::new();
    for (stage, reply) in [
        ("MAIL", "421 4.3.2 shutting down"),
        ("RCPT", "450 4.2.1 mailbox busy"),
        ("RCPT", "451 4.3.0 try again later"),
        ("RCPT", "452 4.2.2 over quota"),
        ("DATA", "451 4.7.1 greylisted"),
        ("RCPT", "550 5.1.1 no such user"),
        ("RCPT", "553 5.1.3 bad address syntax"),
        ("MAIL", "552 5.3.4 message too big"),
        ("DATA", "554 5.7.1 rejected as spam"),
    ] {
        let sink = super::smtp::SmtpSink::start_failing(stage, reply).await;
        let e = tokio::time::timeout(2 * TOTAL, sender(sink.port).send(&payload))
            .await
            .expect("the sender's own bound")
            .unwrap_err();
        let ok = if reply.starts_with('4') {
            transient(&e)
        } else {
            permanent(&e)
        };
        assert!(ok, "{stage} {reply}: {e:?}");
        assert!(
            e.to_string().contains(&reply[..3]),
            "the code is shown: {e}"
        );
        assert!(sink.messages().is_empty());
        table.push(format!("SMTP {stage} {reply} -> {e:?}"));
    }
    // Nothing listens: transient. A server that never greets: a timeout, transient too.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = sender(port).send(&payload).await.unwrap_err();
    assert!(transient(&e), "refused: {e:?}");
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let e = tokio::time::timeout(2 * TOTAL, sender(port).send(&payload))
        .await
        .expect("the sender's own bound")
        .unwrap_err();
    assert!(transient(&e), "silent: {e:?}");
    // And a server that takes it: delivered.
    let sink = super::smtp::SmtpSink::start().await;
    sender(sink.port).send(&payload).await.unwrap();
    assert_eq!(sink.messages().len(), 1);
    println!("{}", table.join("\n"));
}

/// Waits for the sweep's run to finish and returns the withdrawal as recorded.
async fn finish(app: &TestApp) -> Value {
    eventually(Duration::from_secs(40), "the run finishes", || {
        app.runs()
            .iter()
            .any(|r| r["status"] == "succeeded" || r["status"] == "failed")
    })
    .await;
    let runs = app.runs();
    assert_eq!(runs[0]["status"], "succeeded", "{runs:?}");
    withdrawals(app)[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_lnd_send_received_but_never_answered_in_time_is_reconciled_not_sent_again() {
    let node = lnnode::lnd().await;
    {
        let mut s = node.state.lock().unwrap();
        s.onchain_sat = 200_000;
        // The node sends at once, and its answer would come long after any timeout.
        s.send_delay = Duration::from_secs(3600);
    }
    let esplora = EsploraStandIn::start().await;
    let app = with_providers(
        "4s",
        Some(&esplora.url),
        "cold",
        "min_amount_sat: 1000",
        |dir| lnd_yaml(dir, &node),
    );
    let mut daemon = app.spawn(&["run"], "daemon.log");
    let queued = app.satflow(&["trigger", "sweep"]);
    assert_eq!(queued.code, 0, "{queued:?}");
    let row = finish(&app).await;
    assert_eq!(terminate(&mut daemon), 0);
    let sent = node.state.lock().unwrap().sent.clone();
    assert_eq!(sent.len(), 1, "exactly one transaction: {sent:?}");
    assert_eq!(row["status"], "sent", "{row}");
    assert_eq!(row["txid"], sent[0]["tx_hash"], "the txid is kept");
    assert_eq!(row["fee_sat"], 705);
    let items = app.outbox();
    let item = items.iter().find(|i| i["kind"] == "withdraw").unwrap();
    assert!(
        item["attempts"].as_i64().unwrap() >= 2,
        "the first answer never came: {item}"
    );
    let log = std::fs::read_to_string(app.path().join("daemon.log")).unwrap();
    assert!(log.contains("may have been applied"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_withdrawal_received_but_never_answered_in_time_is_reconciled_not_asked_again() {
    let (addr, sandbox) =
        satflow::sandbox::spawn(satflow::sandbox::SandboxOptions::default()).await;
    let esplora = EsploraStandIn::start().await;
    let app = with_providers(
        "4s",
        Some(&esplora.url),
        "hub",
        "min_amount_sat: 1000",
        |dir| hub_yaml(dir, addr),
    );
    {
        let mut hub = sandbox.hub.lock().unwrap();
        hub.balance_sat = 75_000;
        hub.withdraw_delay = Duration::from_secs(3600);
    }
    let mut daemon = app.spawn(&["run"], "daemon.log");
    let queued = app.satflow(&["trigger", "sweep"]);
    assert_eq!(queued.code, 0, "{queued:?}");
    let row = finish(&app).await;
    assert_eq!(terminate(&mut daemon), 0);
    assert_eq!(hub_withdrawals(&sandbox).len(), 1, "no second withdrawal");
    assert_eq!(row["status"], "requested", "{row}");
    assert_eq!(row["amount_sat"], 75_000);
}
