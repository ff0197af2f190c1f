//! The table of outcomes of every call to Pocket (src/pocket/outcomes.rs), cell by cell over
//! real HTTP: a local server answers each way Pocket (or a proxy in front of it) can fail, the
//! real client makes each call, and the verdict is compared with the table written below.
//! Then the payout path through the real daemon, with a proxy in front of the sandbox that
//! injects the failures: a 503 with a body, a 429 with `Retry-After`, a channel payout whose
//! first answer was lost, and a transient failure reading the order in `pocket.order`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use satflow::pocket::PocketClient;
use satflow::pocket::client::PocketError;
use satflow::pocket::outcomes::{PocketCall, Verdict};
use satflow::pocket::types::{ExchangePayout, NewBuyOrder, NewPayout, OrderPatch};
use satflow::sandbox::{self, SandboxOptions};
use secrecy::SecretString;
use serde_json::{Value, json};

use super::helpers::{Relay, TestApp, closed_port, eventually, terminate};
use super::lnnode::{self, StandIn};

// ---------------------------------------------------------------------------------------------
// The table, cell by cell

/// What each failure is expected to give, per call, in the order of `PocketCall::ALL`:
/// create challenge, get challenge, create order, get order, patch order, get exchange,
/// patch exchange (invoice), patch exchange (channel). T: transient (T6: not before 6 s),
/// P: permanent (the reason is in the table), U: unknown (reconcile before any retry),
/// D: done (the payout happens), F: fall back to an invoice.
const EXPECTED: &[(&str, &str)] = &[
    ("connection refused", "T T T T T T T T"),
    ("connect timeout (full backlog)", "T T T T T T T T"),
    ("timeout after the request was sent", "T T U T U T U U"),
    ("connection closed after the request", "T T U T U T U U"),
    ("2xx whose body breaks off", "T T U T U T U U"),
    ("500 JSON", "T T T T T T T T"),
    ("503 {code: service_unavailable}", "T T T T T T T T"),
    ("503 {error: {code: already_completed}}", "T T T T T T T T"),
    ("502 HTML", "T T T T T T T T"),
    ("504 empty", "T T T T T T T T"),
    ("408", "T T T T T T T T"),
    ("425", "T T T T T T T T"),
    ("429 without Retry-After", "T T T T T T T T"),
    ("429 Retry-After: 6", "T6 T6 T6 T6 T6 T6 T6 T6"),
    ("503 Retry-After: 6", "T6 T6 T6 T6 T6 T6 T6 T6"),
    ("400 in_progress", "P P P P P P D D"),
    ("400 already_completed", "P P P P P P D D"),
    ("400 {error: {code: in_progress}}", "P P P P P P D D"),
    ("400 {error: {code: already_completed}}", "P P P P P P D D"),
    ("400 invoice_expired", "P P P P P P T P"),
    ("400 invoice_amount", "P P P P P P T P"),
    ("400 invoice_network", "P P P P P P P P"),
    ("400 invalid_invoice", "P P P P P P P P"),
    ("400 unexpected_node_pubkey", "P P P P P P P P"),
    ("400 channel_payout_not_allowed", "P P P P P P P F"),
    ("400 node_address_required", "P P P P P P P P"),
    ("400 connect", "P P P P P P T T"),
    ("400 an undocumented code", "P P P P P P P P"),
    ("400 no body", "P P P P P P P P"),
    ("401", "P P P P P P P P"),
    ("403", "P P P P P P P P"),
    ("404", "P P P P P P P P"),
    ("422", "P P P P P P P P"),
    ("200 malformed body", "P P U P P P D D"),
];

/// How the scenario server answers, chosen by the first path segment.
fn canned(scenario: &str) -> Option<Response> {
    let json_body = |status: u16, body: Value| {
        (
            StatusCode::from_u16(status).unwrap(),
            [("content-type", "application/json")],
            body.to_string(),
        )
            .into_response()
    };
    let code = |status: u16, code: &str| {
        json_body(
            status,
            json!({ "code": code, "message": format!("the server says {code}") }),
        )
    };
    let empty = |status: u16| StatusCode::from_u16(status).unwrap().into_response();
    Some(match scenario {
        "s500json" => code(500, "internal_error"),
        "s503json" => code(503, "service_unavailable"),
        "s503nested" => json_body(
            503,
            json!({ "error": { "code": "already_completed", "message": "paid" } }),
        ),
        "s502html" => (
            StatusCode::BAD_GATEWAY,
            [("content-type", "text/html")],
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
        )
            .into_response(),
        "s504" => empty(504),
        "s408" => empty(408),
        "s425" => empty(425),
        "s429" => code(429, "rate_limited"),
        "s429ra" => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "6")],
            "slow down",
        )
            .into_response(),
        "s503ra" => (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "6"), ("content-type", "application/json")],
            r#"{"code":"maintenance"}"#,
        )
            .into_response(),
        "s429date" => {
            let at = chrono::Utc::now() + chrono::Duration::seconds(30);
            let date = at.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
            (StatusCode::TOO_MANY_REQUESTS, [("retry-after", date)], "").into_response()
        }
        "nested-in_progress" => json_body(400, json!({ "error": { "code": "in_progress" } })),
        "nested-already_completed" => json_body(
            400,
            json!({ "error": { "code": "already_completed", "message": "the payout is done" } }),
        ),
        "s400" => empty(400),
        "s401" => empty(401),
        "s403" => json_body(403, json!({ "message": "forbidden" })),
        "s404" => code(404, "not_found"),
        "s422" => code(422, "unprocessable"),
        "malformed" => (
            StatusCode::OK,
            [("content-type", "text/html")],
            "<html>welcome to the captive portal</html>",
        )
            .into_response(),
        other => match other.strip_prefix("code-") {
            Some(c) => code(400, c),
            None => return None,
        },
    })
}

#[derive(Clone, Default)]
struct Recorder {
    /// Every request's method and raw path and query, as received.
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

async fn scenario_server() -> (String, Recorder) {
    let recorder = Recorder::default();
    let app = Router::new().fallback(answer).with_state(recorder.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), recorder)
}

async fn answer(State(recorder): State<Recorder>, request: Request) -> Response {
    let uri = request.uri().clone();
    recorder.seen.lock().unwrap().push((
        request.method().to_string(),
        uri.path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
    ));
    // The whole request is read before anything is decided: the call has been sent.
    let _ = axum::body::to_bytes(request.into_body(), 1 << 20).await;
    let scenario = uri
        .path()
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("");
    if scenario == "hang" {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    canned(scenario).unwrap_or_else(|| StatusCode::IM_A_TEAPOT.into_response())
}

/// A listener that reads each request's head, writes `answer` (if any) and closes the
/// connection: with none, the request was sent and nothing came back; with a partial 200, the
/// answer broke off.
async fn raw_server(answer: Option<&'static [u8]>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut read = Vec::new();
                while !read.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => read.extend_from_slice(&buf[..n]),
                    }
                }
                // Let the body (sent right after the head) arrive too.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = socket.try_read(&mut buf);
                if let Some(bytes) = answer {
                    let _ = socket.write_all(bytes).await;
                    let _ = socket.flush().await;
                }
                drop(socket);
            });
        }
    });
    format!("http://{addr}")
}

/// A 200 that promises 200 bytes and sends a few.
const CUT_200: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"id\":\"x\",\"tok";

/// A listener whose accept queue is full: a new connection's SYN is dropped, so connecting
/// times out before a byte of the request is sent. Returns the address and the sockets that
/// fill the queue (kept open for the test's duration).
async fn full_backlog() -> (String, Vec<std::net::TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    // The kernel queues backlog + 1 connections; a few more make sure.
    for _ in 0..3 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => fillers.push(s),
            Err(_) => break,
        }
    }
    // The listener must stay alive but never accept.
    std::mem::forget(listener);
    (format!("http://{addr}"), fillers)
}

fn client(base: &str) -> PocketClient {
    PocketClient::with_timeouts(
        format!("{base}/").parse().unwrap(),
        SecretString::from("outcome-client".to_string()),
        Duration::from_millis(300),
        Duration::from_millis(1000),
    )
}

fn sample_order() -> NewBuyOrder {
    NewBuyOrder {
        active: true,
        fee_rate: "0.015".parse().unwrap(),
        currency: satflow::domain::Currency::Eur,
        debitor_iban: "DE89370400440532013000".parse().unwrap(),
        payout: NewPayout::Address {
            bitcoin_address: "bc1q5a7uxjq6z5l2wguzu77rzmzk6tyx24yvq5r4fj".into(),
            message: "I confirm my bitcoin wallet. [qf3GFbmi]".into(),
            signature: "IDoGQ1yyj257K5c/eroZcn1zWg1QULuqo/ALqjkRFEfZE8CA8ANp0+IZ2KpQz2PUhn+ryUy4JWI7J+VbYz/aXOM=".into(),
        },
        affiliate_id: None,
    }
}

/// Makes `call` and returns its error (a success is a failure of the test).
async fn fail(client: &PocketClient, call: PocketCall) -> Result<PocketError, String> {
    let outcome = match call {
        PocketCall::CreateChallenge => client.create_challenge().await.map(|_| ()),
        PocketCall::GetChallenge => client.get_challenge("ch-1").await.map(|_| ()),
        PocketCall::CreateOrder => client.create_buy_order(&sample_order()).await.map(|_| ()),
        PocketCall::GetOrder => client.get_order("ord-1").await.map(|_| ()),
        PocketCall::PatchOrder => {
            let patch = OrderPatch {
                active: Some(false),
                fee_rate: None,
            };
            client.patch_order("ord-1", &patch).await.map(|_| ())
        }
        PocketCall::GetExchange => client.get_exchange("ex-1").await.map(|_| ()),
        PocketCall::PatchExchangeInvoice => client
            .patch_exchange("ex-1", &ExchangePayout::Invoice("lnbc1invoice".into()))
            .await
            .map(|_| ()),
        PocketCall::PatchExchangeChannel => client
            .patch_exchange(
                "ex-1",
                &ExchangePayout::Channel(
                    "02765a281bd188e80a89e6ea5092dcb8ebaaa5c5da341e64327e3fadbadcbc686c@127.0.0.1:9735"
                        .into(),
                ),
            )
            .await
            .map(|_| ()),
    };
    match outcome {
        Ok(()) => Err(format!("{call}: succeeded")),
        Err(e) if e.call() != call => Err(format!("{call}: the error names {}", e.call())),
        Err(e) => Ok(e),
    }
}

fn letter(verdict: Verdict) -> String {
    match verdict {
        Verdict::Transient { retry_after: None } => "T".into(),
        Verdict::Transient {
            retry_after: Some(d),
        } => format!("T{}", d.as_secs()),
        Verdict::Permanent(_) => "P".into(),
        Verdict::Unknown => "U".into(),
        Verdict::Done => "D".into(),
        Verdict::FallBackToInvoice => "F".into(),
    }
}

/// One row: every call against `base`, concurrently.
async fn row(base: &str) -> (String, Vec<PocketError>) {
    let client = Arc::new(client(base));
    let mut set = tokio::task::JoinSet::new();
    for (i, call) in PocketCall::ALL.into_iter().enumerate() {
        let client = Arc::clone(&client);
        set.spawn(async move { (i, fail(&client, call).await) });
    }
    let mut cells: Vec<Option<Result<PocketError, String>>> =
        (0..PocketCall::ALL.len()).map(|_| None).collect();
    while let Some(done) = set.join_next().await {
        let (i, result) = done.unwrap();
        cells[i] = Some(result);
    }
    let mut letters = Vec::new();
    let mut errors = Vec::new();
    for cell in cells {
        match cell.unwrap() {
            Ok(e) => {
                letters.push(letter(e.verdict()));
                errors.push(e);
            }
            Err(what) => letters.push(format!("!({what})")),
        }
    }
    (letters.join(" "), errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_and_every_failure_has_the_outcome_the_table_says() {
    let (server, _recorder) = scenario_server().await;
    let closing = raw_server(None).await;
    let cut = raw_server(Some(CUT_200)).await;
    let (backlog, _fillers) = full_backlog().await;
    let refused = format!("http://127.0.0.1:{}", closed_port());
    let codes = [
        "in_progress",
        "already_completed",
        "invoice_expired",
        "invoice_amount",
        "invoice_network",
        "invalid_invoice",
        "unexpected_node_pubkey",
        "channel_payout_not_allowed",
        "node_address_required",
        "connect",
    ];
    let mut bases: Vec<(String, String)> = vec![
        ("connection refused".into(), refused),
        ("connect timeout (full backlog)".into(), backlog),
        (
            "timeout after the request was sent".into(),
            format!("{server}/hang"),
        ),
        ("connection closed after the request".into(), closing),
        ("2xx whose body breaks off".into(), cut),
        ("500 JSON".into(), format!("{server}/s500json")),
        (
            "503 {code: service_unavailable}".into(),
            format!("{server}/s503json"),
        ),
        (
            "503 {error: {code: already_completed}}".into(),
            format!("{server}/s503nested"),
        ),
        ("502 HTML".into(), format!("{server}/s502html")),
        ("504 empty".into(), format!("{server}/s504")),
        ("408".into(), format!("{server}/s408")),
        ("425".into(), format!("{server}/s425")),
        ("429 without Retry-After".into(), format!("{server}/s429")),
        ("429 Retry-After: 6".into(), format!("{server}/s429ra")),
        ("503 Retry-After: 6".into(), format!("{server}/s503ra")),
    ];
    for c in &codes[..2] {
        bases.push((format!("400 {c}"), format!("{server}/code-{c}")));
    }
    for c in &codes[..2] {
        bases.push((
            format!("400 {{error: {{code: {c}}}}}"),
            format!("{server}/nested-{c}"),
        ));
    }
    for c in &codes[2..] {
        bases.push((format!("400 {c}"), format!("{server}/code-{c}")));
    }
    bases.extend([
        (
            "400 an undocumented code".into(),
            format!("{server}/code-something_new"),
        ),
        ("400 no body".into(), format!("{server}/s400")),
        ("401".into(), format!("{server}/s401")),
        ("403".into(), format!("{server}/s403")),
        ("404".into(), format!("{server}/s404")),
        ("422".into(), format!("{server}/s422")),
        ("200 malformed body".into(), format!("{server}/malformed")),
    ]);

    let mut actual = Vec::new();
    let mut all_errors = Vec::new();
    for (name, base) in &bases {
        let started = std::time::Instant::now();
        let (letters, errors) = row(base).await;
        if name.starts_with("connect timeout") {
            // Not refused: connecting waited for the client's connect timeout (300 ms).
            assert!(
                started.elapsed() >= Duration::from_millis(250),
                "{:?}",
                started.elapsed()
            );
        }
        actual.push((name.clone(), letters));
        all_errors.extend(errors);
    }
    let render = |rows: &[(String, String)]| {
        rows.iter()
            .map(|(name, letters)| format!("{name:<42} {letters}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let expected: Vec<(String, String)> = EXPECTED
        .iter()
        .map(|(n, l)| (n.to_string(), l.to_string()))
        .collect();
    println!("{}", render(&actual));
    assert_eq!(render(&actual), render(&expected));

    // Each refusal says why, and no message carries the client id.
    for e in &all_errors {
        let text = e.to_string();
        assert!(!text.contains("outcome-client"), "{text}");
        if let Verdict::Permanent(reason) = e.verdict() {
            assert!(!reason.is_empty());
            let handler = e.handler_error().to_string();
            assert!(handler.contains(reason), "{handler}");
        }
    }
    // A proxy's HTML page is cut short in messages.
    assert!(
        all_errors
            .iter()
            .any(|e| e.status() == Some(502) && e.to_string().contains("502 Bad Gateway"))
    );
}

#[tokio::test]
async fn retry_after_as_an_http_date_is_honoured() {
    let (server, _) = scenario_server().await;
    let client = client(&format!("{server}/s429date"));
    let e = fail(&client, PocketCall::PatchOrder).await.unwrap();
    match e.verdict() {
        Verdict::Transient {
            retry_after: Some(d),
        } => assert!(
            (Duration::from_secs(25)..=Duration::from_secs(31)).contains(&d),
            "{d:?}"
        ),
        other => panic!("{other:?}"),
    }
    // The outbox gets it.
    match e.handler_error() {
        satflow::outbox::HandlerError::Transient {
            retry_after: Some(d),
            http_status: Some(429),
            ..
        } => assert!(d >= Duration::from_secs(25), "{d:?}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn ids_from_data_stay_one_path_segment() {
    let (server, recorder) = scenario_server().await;
    let client = client(&format!("{server}/s404"));
    for id in [
        "../../../etc/passwd",
        "abc?admin=1#frag",
        "a b%2Fc",
        "ümlaut/..",
    ] {
        let _ = client.get_exchange(id).await;
        let _ = client.get_order(id).await;
        let _ = client.get_challenge(id).await;
        let _ = client
            .patch_exchange(id, &ExchangePayout::Invoice("lnbc1".into()))
            .await;
    }
    let seen = recorder.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 16, "{seen:?}");
    for (method, path) in &seen {
        assert!(!path.contains('?'), "{method} {path}: a query was added");
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        assert_eq!(segments.len(), 4, "{method} {path}: {segments:?}");
        assert_eq!(segments[0], "s404");
        assert_eq!(segments[1], "v1");
        assert!(
            ["exchanges", "orders", "challenges"].contains(&segments[2]),
            "{path}"
        );
    }
    let paths: Vec<&str> = seen.iter().map(|(_, p)| p.as_str()).collect();
    assert!(
        paths.contains(&"/s404/v1/exchanges/..%2F..%2F..%2Fetc%2Fpasswd"),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"/s404/v1/orders/abc%3Fadmin=1%23frag"),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"/s404/v1/challenges/a%20b%252Fc"),
        "{paths:?}"
    );

    // An id that URL rules would resolve is not sent at all.
    for id in ["..", ".", ""] {
        let e = client.get_exchange(id).await.unwrap_err();
        assert!(matches!(e.verdict(), Verdict::Permanent(_)), "{id}: {e}");
    }
    assert_eq!(recorder.seen.lock().unwrap().len(), 16);
}

// ---------------------------------------------------------------------------------------------
// The payout path through the daemon

const SECRET: &str = "outcomes-webhook-secret";

#[derive(Clone)]
enum Fault {
    /// Answer this; the sandbox never sees the request.
    Answer {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    },
    /// Let the sandbox handle the request, then answer this instead of its answer (the
    /// effect happened, the answer was lost).
    AfterForward { status: u16, body: String },
    /// Let the sandbox handle the request, then never answer (the client times out after
    /// sending: the outcome is unknown).
    ForwardThenHang,
}

struct Rule {
    method: Method,
    path_contains: String,
    remaining: usize,
    fault: Fault,
}

/// What went through the proxy: method, path, the status it answered.
type Seen = Arc<Mutex<Vec<(String, String, u16)>>>;

#[derive(Clone)]
struct Proxy {
    origin: String,
    rules: Arc<Mutex<Vec<Rule>>>,
    seen: Seen,
    http: reqwest::Client,
}

impl Proxy {
    async fn spawn(origin: String) -> (String, Proxy) {
        let proxy = Proxy {
            origin,
            rules: Arc::default(),
            seen: Arc::default(),
            http: reqwest::Client::new(),
        };
        let app = Router::new().fallback(relay).with_state(proxy.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}"), proxy)
    }

    fn inject(&self, method: Method, path_contains: &str, times: usize, fault: Fault) {
        self.rules.lock().unwrap().push(Rule {
            method,
            path_contains: path_contains.into(),
            remaining: times,
            fault,
        });
    }

    fn seen(&self, method: &str, path_contains: &str) -> Vec<u16> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, p, _)| m == method && p.contains(path_contains))
            .map(|(_, _, s)| *s)
            .collect()
    }
}

async fn relay(State(proxy): State<Proxy>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let headers = request.headers().clone();
    let body = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let fault = {
        let mut rules = proxy.rules.lock().unwrap();
        rules
            .iter_mut()
            .find(|r| r.method == method && path.contains(&r.path_contains) && r.remaining > 0)
            .map(|r| {
                r.remaining -= 1;
                r.fault.clone()
            })
    };
    let record = |status: u16| {
        proxy
            .seen
            .lock()
            .unwrap()
            .push((method.to_string(), path.clone(), status));
    };
    if let Some(Fault::Answer {
        status,
        headers,
        body,
    }) = &fault
    {
        record(*status);
        let mut response = (StatusCode::from_u16(*status).unwrap(), body.clone()).into_response();
        for (name, value) in headers {
            response.headers_mut().insert(*name, value.parse().unwrap());
        }
        return response;
    }
    let forwarded = forward(&proxy, &method, &path, &headers, body).await;
    match fault {
        Some(Fault::AfterForward { status, body }) => {
            record(status);
            return (StatusCode::from_u16(status).unwrap(), body).into_response();
        }
        Some(Fault::ForwardThenHang) => {
            record(0);
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        _ => {}
    }
    let (status, content_type, body) = forwarded;
    record(status);
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", content_type)],
        body,
    )
        .into_response()
}

async fn forward(
    proxy: &Proxy,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: axum::body::Bytes,
) -> (u16, String, Vec<u8>) {
    let mut request = proxy
        .http
        .request(method.clone(), format!("{}{path}", proxy.origin))
        .body(body.to_vec());
    for name in ["authorization", "content-type"] {
        if let Some(v) = headers.get(name) {
            request = request.header(name, v.to_str().unwrap());
        }
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    (
        status,
        content_type,
        response.bytes().await.unwrap().to_vec(),
    )
}

struct Setup {
    app: TestApp,
    sandbox: String,
    proxy: Proxy,
    node: StandIn,
    relay: Relay,
    daemon: Option<std::process::Child>,
}

impl Setup {
    /// A sandbox behind a fault proxy, an LND stand-in whose key satflow reads from the node,
    /// a Lightning order workflow `zap` and a payout workflow.
    async fn new(payout_with: &str, channel: bool) -> Setup {
        // The daemon binds port 0: the sandbox's webhooks wait in the relay until it is up.
        let relay = Relay::start().await;
        let (addr, _sb) = sandbox::spawn(SandboxOptions {
            webhook_url: Some(format!("{}/webhooks/pocket", relay.url)),
            webhook_secret: Some(SECRET.into()),
            retry_base: Duration::from_millis(200),
            ..SandboxOptions::default()
        })
        .await;
        let sandbox = format!("http://{addr}");
        let (proxy_url, proxy) = Proxy::spawn(sandbox.clone()).await;
        let node = lnnode::lnd().await;
        let app = TestApp::empty();
        app.write("tls.cert", &node.cert_pem);
        std::fs::write(app.path().join("invoice.macaroon"), &node.macaroon).unwrap();
        let mut lightning = format!(
            "    lnd: {{ url: \"{}\", macaroon_file: invoice.macaroon, tls_cert_file: tls.cert }}\n",
            node.url
        );
        if channel {
            node.state.lock().unwrap().inbound_msat = 0;
            lightning += &format!("    node_address: \"{}@127.0.0.1:9735\"\n", node.pubkey());
        }
        app.write(
            "satflow.yaml",
            &format!(
                "database: sqlite://satflow.db\nlisten: 127.0.0.1:0\n\
                 pocket: {{ base_url: \"{proxy_url}\", client_id: sandbox-client, webhook_secret: {SECRET}, reconcile_every: 1s }}\n\
                 email: {{ dir: mail, from: satflow@example.com, to: me@example.com }}\n\
                 outbox: {{ base_delay: 100ms, max_delay: 500ms, max_attempts: 5 }}\n\
                 lightning:\n  mynode:\n{lightning}"
            ),
        );
        app.write(
            "workflows/zap.yaml",
            "steps:\n  - id: order\n    uses: pocket.order\n    with: { currency: chf, fee_rate: 0.012, debitor_iban: CH9300762011623852957, payout: { lightning: mynode } }\n",
        );
        app.write(
            "workflows/lightning-payout.yaml",
            &format!("on: {{ event: exchange.executed }}\nsteps:\n  - id: payout\n    uses: pocket.payout\n    with: {{ {payout_with} }}\n"),
        );
        Setup {
            app,
            sandbox,
            proxy,
            node,
            relay,
            daemon: None,
        }
    }

    /// `order setup zap` (the node signs); returns the order id.
    fn set_up(&self) -> String {
        let setup = self.app.satflow(&["order", "setup", "zap"]);
        assert_eq!(setup.code, 0, "{setup:?}");
        setup
            .stdout
            .split_whitespace()
            .skip_while(|w| *w != "order")
            .nth(1)
            .unwrap()
            .to_string()
    }

    async fn start(&mut self) {
        self.daemon = Some(self.app.spawn(&["run"], "daemon.log"));
        let listen = self.app.started().await;
        self.relay.point_to(&format!("http://{listen}"));
        let url = format!("http://{listen}/healthz");
        let start = std::time::Instant::now();
        while reqwest::get(&url)
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
        {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the daemon did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn control(&self, path: &str, body: Value) -> Value {
        let r = reqwest::Client::new()
            .post(format!("{}/{path}", self.sandbox))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap()
    }

    async fn pay(&self, order_id: &str) -> String {
        let e = self
            .control(
                &format!("sandbox/orders/{order_id}/payments"),
                json!({ "amount": "100.00" }),
            )
            .await;
        e["id"].as_str().unwrap().to_string()
    }

    async fn exchange_at_pocket(&self, id: &str) -> Value {
        reqwest::Client::new()
            .get(format!("{}/v1/exchanges/{id}", self.sandbox))
            .header("Authorization", "client_id sandbox-client")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The next payout item (one not in `known`), once it is no longer pending. Exchanges are
    /// paid one at a time here, so the next item is the last exchange's.
    async fn next_item(&self, known: &mut Vec<i64>) -> Value {
        let mut found = Value::Null;
        eventually(Duration::from_secs(25), "the payout item to finish", || {
            found = self
                .app
                .outbox()
                .into_iter()
                .find(|i| {
                    i["kind"] == "pocket.payout"
                        && i["status"] != "pending"
                        && !known.contains(&i["id"].as_i64().unwrap())
                })
                .unwrap_or(Value::Null);
            !found.is_null()
        })
        .await;
        known.push(found["id"].as_i64().unwrap());
        found
    }

    fn stop(mut self) {
        if let Some(mut d) = self.daemon.take() {
            assert_eq!(terminate(&mut d), 0);
        }
    }
}

fn html_502() -> String {
    "<html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>".into()
}

fn seconds_between(earlier: &Value, later: &Value) -> f64 {
    let at = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
            .unwrap()
            .to_utc()
    };
    (at(later) - at(earlier)).as_seconds_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_answers_on_the_payout_path_are_retried_until_the_payout_is_done() {
    let mut s = Setup::new("node: mynode", false).await;
    let order = s.set_up();
    s.start().await;
    let mut known = Vec::new();

    // A 503 with a JSON body, then a proxy's 502 page: both transient, then Pocket takes it.
    s.proxy.inject(
        Method::PATCH,
        "/v1/exchanges/",
        1,
        Fault::Answer {
            status: 503,
            headers: vec![("content-type", "application/json".into())],
            body: r#"{"code":"service_unavailable","message":"try again later"}"#.into(),
        },
    );
    s.proxy.inject(
        Method::PATCH,
        "/v1/exchanges/",
        1,
        Fault::Answer {
            status: 502,
            headers: vec![("content-type", "text/html".into())],
            body: html_502(),
        },
    );
    let id = s.pay(&order).await;
    let item = s.next_item(&mut known).await;
    assert_eq!(item["status"], "done", "{item:#}");
    assert_eq!(item["attempts"], 3, "{item:#}");
    let history = item["history"].as_array().unwrap();
    assert_eq!(history[0]["http_status"], 503, "{item:#}");
    assert_eq!(history[1]["http_status"], 502, "{item:#}");
    assert!(
        s.exchange_at_pocket(&id).await["payout"]["invoice"]
            .as_str()
            .is_some_and(|i| i.starts_with("lnbc"))
    );
    assert_eq!(s.proxy.seen("PATCH", &id), vec![503, 502, 200]);
    // A fresh invoice for every attempt.
    assert_eq!(s.node.state.lock().unwrap().invoices.len(), 3);

    // A 429 asking for 2 s: the next attempt waits at least that long (the outbox's own
    // backoff here is 100 ms).
    s.proxy.inject(
        Method::PATCH,
        "/v1/exchanges/",
        1,
        Fault::Answer {
            status: 429,
            headers: vec![("retry-after", "2".into())],
            body: String::new(),
        },
    );
    let id = s.pay(&order).await;
    let item = s.next_item(&mut known).await;
    assert_eq!(item["status"], "done", "{item:#}");
    assert_eq!(s.proxy.seen("PATCH", &id), vec![429, 200]);
    let history = item["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{item:#}");
    assert_eq!(history[0]["http_status"], 429, "{item:#}");
    let waited = seconds_between(&history[0]["finished_at"], &history[1]["started_at"]);
    assert!(waited >= 1.95, "retried after {waited} s: {item:#}");

    // Pocket takes the invoice but its answer never comes: after the client's timeout the
    // outcome is unknown, and the next attempt reads the exchange back instead of patching
    // again.
    s.proxy
        .inject(Method::PATCH, "/v1/exchanges/", 1, Fault::ForwardThenHang);
    let id = s.pay(&order).await;
    let item = s.next_item(&mut known).await;
    assert_eq!(item["status"], "done", "{item:#}");
    let history = item["history"].as_array().unwrap();
    assert_eq!(history[0]["outcome"], "unknown", "{item:#}");
    assert_eq!(s.proxy.seen("PATCH", &id), vec![0], "one patch only");
    assert!(
        !s.proxy
            .seen("GET", &format!("/v1/exchanges/{id}"))
            .is_empty()
    );

    let runs = s.app.runs();
    let payouts: Vec<&Value> = runs
        .iter()
        .filter(|r| r["workflow"] == "lightning-payout")
        .collect();
    assert_eq!(payouts.len(), 3);
    assert!(
        payouts.iter().all(|r| r["status"] == "succeeded"),
        "{payouts:#?}"
    );
    assert!(
        !s.app.emails().iter().any(|m| m.contains("gave up")),
        "no dead letter"
    );
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_payout_whose_answer_was_lost_is_done_when_pocket_says_so() {
    let mut s = Setup::new("node: mynode, channel_fallback: true", true).await;
    let order = s.set_up();
    s.start().await;
    let mut known = Vec::new();

    // Pocket settles the channel payout, but the answer is lost behind a 502: the retry is
    // answered `already_completed`, which means done.
    s.proxy.inject(
        Method::PATCH,
        "/v1/exchanges/",
        1,
        Fault::AfterForward {
            status: 502,
            body: html_502(),
        },
    );
    let id = s.pay(&order).await;
    let item = s.next_item(&mut known).await;
    assert_eq!(item["status"], "done", "{item:#}");
    assert_eq!(s.proxy.seen("PATCH", &id), vec![502, 400]);
    assert_eq!(s.exchange_at_pocket(&id).await["payout"]["type"], "channel");

    // Pocket is still opening the channel when the retry comes: `in_progress`, done too.
    s.control("sandbox/payouts/hold", json!({ "hold": true }))
        .await;
    s.proxy.inject(
        Method::PATCH,
        "/v1/exchanges/",
        1,
        Fault::AfterForward {
            status: 503,
            body: r#"{"code":"service_unavailable"}"#.into(),
        },
    );
    let id = s.pay(&order).await;
    let item = s.next_item(&mut known).await;
    assert_eq!(item["status"], "done", "{item:#}");
    assert_eq!(s.proxy.seen("PATCH", &id), vec![503, 400]);
    let runs = s.app.runs();
    let run = runs.iter().find(|r| r["id"] == item["run_id"]).unwrap();
    assert_eq!(run["status"], "succeeded", "{run:#}");
    assert_eq!(run["steps"][0]["output"]["method"], "channel", "{run:#}");
    assert!(node_invoices_empty(&s.node), "no invoice was needed");
    assert!(!s.app.emails().iter().any(|m| m.contains("gave up")));
    s.stop();
}

fn node_invoices_empty(node: &StandIn) -> bool {
    node.state.lock().unwrap().invoices.is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_the_order_retries_a_transient_failure_within_the_run() {
    let s = Setup::new("node: mynode", false).await;
    let order = s.set_up();

    // Two 503s, then the order: the run succeeds, and the attempts are on record.
    s.proxy.inject(
        Method::GET,
        &format!("/v1/orders/{order}"),
        2,
        Fault::Answer {
            status: 503,
            headers: vec![("retry-after", "1".into())],
            body: r#"{"error":{"code":"service_unavailable"}}"#.into(),
        },
    );
    let run = s.app.satflow(&["trigger", "zap", "--wait"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        s.proxy.seen("GET", &format!("/v1/orders/{order}")),
        vec![503, 503, 200]
    );
    let runs = s.app.runs();
    let zap = runs.iter().find(|r| r["workflow"] == "zap").unwrap();
    assert_eq!(zap["status"], "succeeded", "{zap:#}");
    let output = &zap["steps"][0]["output"];
    assert_eq!(output["read_attempts"], 3, "{zap:#}");
    assert_eq!(
        output["read_failures"].as_array().unwrap().len(),
        2,
        "{zap:#}"
    );
    let show = s.app.satflow(&["runs", "show", &zap["id"].to_string()]);
    assert!(show.stdout.contains("read_attempts"), "{show:?}");

    // A patch of the order answered 429 with `Retry-After: 2`: the outbox waits that long.
    s.app.write(
        "workflows/zap.yaml",
        "steps:\n  - id: order\n    uses: pocket.order\n    with: { currency: chf, fee_rate: 0.013, debitor_iban: CH9300762011623852957, payout: { lightning: mynode } }\n",
    );
    s.proxy.inject(
        Method::PATCH,
        &format!("/v1/orders/{order}"),
        1,
        Fault::Answer {
            status: 429,
            headers: vec![("retry-after", "2".into())],
            body: r#"{"code":"rate_limited"}"#.into(),
        },
    );
    let run = s.app.satflow(&["trigger", "zap", "--wait"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        s.proxy.seen("PATCH", &format!("/v1/orders/{order}")),
        vec![429, 200]
    );
    let items = s.app.outbox();
    let patch = items
        .iter()
        .find(|i| i["kind"] == "pocket.order.patch")
        .unwrap();
    assert_eq!(patch["status"], "done", "{patch:#}");
    let history = patch["history"].as_array().unwrap();
    assert_eq!(history[0]["http_status"], 429, "{patch:#}");
    let waited = seconds_between(&history[0]["finished_at"], &history[1]["started_at"]);
    assert!(waited >= 1.95, "retried after {waited} s: {patch:#}");

    // Pocket stays down: the run fails after a bounded number of attempts, each on record.
    s.proxy.inject(
        Method::GET,
        &format!("/v1/orders/{order}"),
        100,
        Fault::Answer {
            status: 503,
            headers: vec![],
            body: "<html>down</html>".into(),
        },
    );
    let reads_before = s.proxy.seen("GET", &format!("/v1/orders/{order}")).len();
    let started = std::time::Instant::now();
    let run = s.app.satflow(&["trigger", "zap", "--wait"]);
    assert_ne!(run.code, 0, "{run:?}");
    let elapsed = started.elapsed();
    let runs = s.app.runs();
    let failed = runs
        .iter()
        .find(|r| r["workflow"] == "zap" && r["status"] == "failed")
        .unwrap();
    let error = failed["steps"][0]["error"].as_str().unwrap();
    assert!(error.contains("after 4 attempts"), "{error}");
    assert!(error.matches("attempt ").count() >= 4, "{error}");
    println!("a read failing 4 times held the run for {elapsed:?}");
    assert_eq!(
        s.proxy.seen("GET", &format!("/v1/orders/{order}")).len(),
        reads_before + 4
    );
}
