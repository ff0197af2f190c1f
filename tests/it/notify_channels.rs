//! Notification channels through the real binary: local stand-ins that speak the Telegram Bot
//! API (`/bot<token>/sendMessage`, its 429 with `parameters.retry_after`), ntfy (a topic URL,
//! Title/Priority/Tags headers, a Bearer token) and a Standard Webhooks receiver that checks
//! every signature; and a healthchecks.io stand-in that records pings and `/fail`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::helpers::{TestApp, eventually, terminate};

const TG_TOKEN: &str = "123456:tg-secret-token-ABC";
const NTFY_TOKEN: &str = "tk_ntfy-secret-token";
// The Standard Webhooks example secret (24 bytes of key).
const HOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const HC_UUID: &str = "5d1c0f7e-aaaa-bbbb-cccc-0123456789ab";

/// One request a stand-in received.
#[derive(Debug, Clone)]
struct Seen {
    api: &'static str,
    path: String,
    headers: HeaderMap,
    body: String,
    at: Instant,
    /// What the stand-in answered.
    status: u16,
}

#[derive(Debug, Clone)]
enum Reply {
    /// Telegram's flood control: 429 with `parameters.retry_after`.
    TelegramFlood(u64),
    Status(u16),
    /// A status with `Retry-After: secs` (ntfy's 429).
    RetryAfter(u16, u64),
    /// Answer 200, but only after this long (the sender gives up first: outcome unknown).
    Slow(Duration),
}

#[derive(Default)]
struct Inner {
    seen: Vec<Seen>,
    scripts: BTreeMap<&'static str, VecDeque<Reply>>,
}

#[derive(Clone)]
struct Channels {
    addr: std::net::SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl Channels {
    async fn start() -> Channels {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .fallback(answer)
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Channels { addr, inner }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn script(&self, api: &'static str, replies: impl IntoIterator<Item = Reply>) {
        self.inner
            .lock()
            .unwrap()
            .scripts
            .entry(api)
            .or_default()
            .extend(replies);
    }

    fn seen(&self, api: &str) -> Vec<Seen> {
        let inner = self.inner.lock().unwrap();
        inner
            .seen
            .iter()
            .filter(|s| s.api == api)
            .cloned()
            .collect()
    }
}

/// Which API a request is for, by its path.
fn api_of(path: &str) -> &'static str {
    if path.starts_with("/tg/") {
        "telegram"
    } else if path.starts_with("/ntfy/") {
        "ntfy"
    } else if path.starts_with("/hook") {
        "webhook"
    } else if path.starts_with("/hc/") {
        "healthcheck"
    } else {
        "other"
    }
}

/// What the receiver would compute: `v1,` base64 HMAC-SHA256 of `id.timestamp.body`, keyed by
/// the base64 part of the secret (written here from the specification, apart from satflow's).
fn expected_signature(id: &str, timestamp: &str, body: &str) -> String {
    use bitcoin::base64::Engine;
    use hmac::{Hmac, Mac};
    let b64 = bitcoin::base64::engine::general_purpose::STANDARD;
    let key = b64
        .decode(HOOK_SECRET.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", b64.encode(mac.finalize().into_bytes()))
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> &'h str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

async fn answer(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let api = api_of(&path);
    let body = String::from_utf8_lossy(&body).into_owned();
    // Each API's own refusals first, as the real one would answer.
    let refusal: Option<(u16, String)> = match api {
        "telegram" if path != format!("/tg/bot{TG_TOKEN}/sendMessage") => Some((
            401,
            r#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#.into(),
        )),
        "telegram" => match serde_json::from_str::<serde_json::Value>(&body) {
            Ok(v) if v["chat_id"] == 4242 && v["text"].is_string() => None,
            _ => Some((
                400,
                r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#
                    .into(),
            )),
        },
        "ntfy" if method != Method::POST => Some((405, "{}".into())),
        "ntfy" if header(&headers, "authorization") != format!("Bearer {NTFY_TOKEN}") => Some((
            401,
            r#"{"code":40101,"http":401,"error":"unauthorized"}"#.into(),
        )),
        "webhook" => {
            let signed = expected_signature(
                header(&headers, "webhook-id"),
                header(&headers, "webhook-timestamp"),
                &body,
            );
            let fresh = header(&headers, "webhook-timestamp")
                .parse::<i64>()
                .is_ok_and(|t| (chrono::Utc::now().timestamp() - t).abs() < 300);
            // The header may list several signatures, separated by spaces.
            let matches = header(&headers, "webhook-signature")
                .split(' ')
                .any(|s| s == signed);
            (!(matches && fresh)).then(|| (401, "bad signature".into()))
        }
        "healthcheck" if method != Method::GET => Some((405, "".into())),
        _ => None,
    };
    let scripted = match refusal {
        Some(_) => None,
        None => inner
            .lock()
            .unwrap()
            .scripts
            .get_mut(api)
            .and_then(VecDeque::pop_front),
    };
    let (status, text) = match (refusal, scripted) {
        (Some(r), _) => r,
        (None, Some(Reply::TelegramFlood(secs))) => (
            429,
            format!(
                r#"{{"ok":false,"error_code":429,"description":"Too Many Requests: retry after {secs}","parameters":{{"retry_after":{secs}}}}}"#
            ),
        ),
        (None, Some(Reply::Status(code))) => (code, "{}".into()),
        (None, Some(Reply::RetryAfter(code, secs))) => {
            inner.lock().unwrap().seen.push(Seen {
                api,
                path,
                headers,
                body,
                at: Instant::now(),
                status: code,
            });
            return (
                StatusCode::from_u16(code).unwrap(),
                [("retry-after", secs.to_string())],
                r#"{"code":42901,"http":429,"error":"limit reached: too many requests"}"#,
            )
                .into_response();
        }
        (None, Some(Reply::Slow(d))) => {
            // Recorded on arrival: the sender hangs up before the answer, and the server
            // drops this handler then. Status 0: received, no answer given.
            inner.lock().unwrap().seen.push(Seen {
                api,
                path,
                headers,
                body,
                at: Instant::now(),
                status: 0,
            });
            tokio::time::sleep(d).await;
            return (StatusCode::OK, ok_body(api)).into_response();
        }
        (None, None) => (200, ok_body(api)),
    };
    inner.lock().unwrap().seen.push(Seen {
        api,
        path,
        headers,
        body,
        at: Instant::now(),
        status,
    });
    (StatusCode::from_u16(status).unwrap(), text).into_response()
}

fn ok_body(api: &str) -> String {
    match api {
        "telegram" => {
            r#"{"ok":true,"result":{"message_id":7,"chat":{"id":4242},"text":"…"}}"#.into()
        }
        "ntfy" => {
            r#"{"id":"hwQ2YpKdmg","time":1700000000,"event":"message","topic":"mytopic"}"#.into()
        }
        "healthcheck" => "OK".into(),
        _ => "{}".into(),
    }
}

/// A daemon setup with the three targets and the healthcheck pointing at `channels`.
fn app_with_channels(channels: &Channels, alerts: &str) -> TestApp {
    let app = TestApp::engine();
    app.write("tg.token", TG_TOKEN);
    app.write("ntfy.token", NTFY_TOKEN);
    app.write("hook.secret", HOOK_SECRET);
    let config = std::fs::read_to_string(app.path().join("satflow.yaml")).unwrap();
    app.write(
        "satflow.yaml",
        &format!(
            "{config}notify:\n  phone: {{ ntfy: {{ url: \"{}\", token: \"${{file:ntfy.token}}\", priority: high }} }}\n  \
             team: {{ telegram: {{ bot_token: \"${{file:tg.token}}\", chat_id: 4242, api_url: \"{}\" }} }}\n  \
             ops: {{ webhook: {{ url: \"{}\", secret: \"${{file:hook.secret}}\" }} }}\n\
             healthcheck: {{ url: \"{}\" }}\n{alerts}",
            channels.url("/ntfy/mytopic"),
            channels.url("/tg"),
            channels.url("/hook"),
            channels.url(&format!("/hc/{HC_UUID}")),
        ),
    );
    app
}

/// The messages a stand-in accepted (answered 2xx), keyed by what identifies a message to its
/// receiver: the webhook-id for webhooks, the text for the others.
fn accepted(channels: &Channels, api: &str) -> Vec<String> {
    channels
        .seen(api)
        .into_iter()
        .filter(|s| s.status == 200)
        .map(|s| match api {
            "webhook" => header(&s.headers, "webhook-id").to_string(),
            "telegram" => serde_json::from_str::<serde_json::Value>(&s.body).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string(),
            _ => format!("{} | {}", header(&s.headers, "title"), s.body),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_every_routed_channel_once_across_retries_and_a_429_is_waited_out() {
    let channels = Channels::start().await;
    // Telegram's flood control on the first message, ntfy down once, and a webhook answer that
    // comes too late (the outcome is unknown: it is sent again with the same webhook-id).
    channels.script("telegram", [Reply::TelegramFlood(2)]);
    channels.script("ntfy", [Reply::Status(503)]);
    channels.script("webhook", [Reply::Slow(Duration::from_secs(2))]);
    let app = app_with_channels(
        &channels,
        "alerts:\n  run_failed: [email, phone, team, ops]\n  dead_letter: [phone, team, ops]\n",
    );
    // A step whose POST is refused for good: the item dies (dead_letter) and the run fails
    // (run_failed).
    app.write(
        "workflows/buy.yaml",
        &format!(
            "name: buy\nsteps:\n  - id: s1\n    uses: http.post\n    with:\n      url: {}\n",
            channels.url("/refused")
        ),
    );
    channels.script("other", [Reply::Status(400)]);
    let mut daemon = app.spawn(&["run", "-c", "satflow.yaml"], "daemon.log");
    app.started().await;
    eventually(Duration::from_secs(10), "a healthcheck ping", || {
        channels
            .seen("healthcheck")
            .iter()
            .any(|s| s.path == format!("/hc/{HC_UUID}"))
    })
    .await;
    let run = app.satflow(&["trigger", "buy", "-c", "satflow.yaml"]);
    assert_eq!(run.code, 0, "{run:?}");

    // Two alerts (dead_letter, run_failed) to three channels, and run_failed by email.
    eventually(
        Duration::from_secs(30),
        "both alerts on every channel",
        || {
            ["telegram", "ntfy"]
                .iter()
                .all(|api| accepted(&channels, api).len() >= 2)
                && accepted(&channels, "webhook")
                    .into_iter()
                    .collect::<BTreeSet<_>>()
                    .len()
                    >= 2
                && !app.emails().is_empty()
        },
    )
    .await;
    // Give any duplicate time to show up.
    tokio::time::sleep(Duration::from_secs(2)).await;

    for api in ["telegram", "ntfy"] {
        let got = accepted(&channels, api);
        assert_eq!(got.len(), 2, "{api}: {got:#?}");
        assert_eq!(
            got.iter()
                .filter(|t| t.starts_with("satflow: gave up on http"))
                .count(),
            1,
            "{api}: one dead_letter alert: {got:#?}"
        );
        assert_eq!(
            got.iter()
                .filter(|t| t.starts_with("satflow: workflow buy failed"))
                .count(),
            1,
            "{api}: one run_failed alert: {got:#?}"
        );
    }
    // The webhook receiver saw the late one twice under one id: it applies each id once.
    let hooks = channels.seen("webhook");
    let ids: BTreeSet<String> = hooks
        .iter()
        .map(|s| header(&s.headers, "webhook-id").to_string())
        .collect();
    assert_eq!(ids.len(), 2, "{hooks:#?}");
    assert!(
        hooks.len() >= 3,
        "the late answer was sent again: {hooks:#?}"
    );
    assert!(
        hooks.iter().all(|s| s.status != 401),
        "every signature verified: {hooks:#?}"
    );
    let types: BTreeSet<String> = hooks
        .iter()
        .map(|s| {
            let body: serde_json::Value = serde_json::from_str(&s.body).unwrap();
            assert!(body["timestamp"].is_string(), "{body}");
            assert!(body["data"]["message"].is_string(), "{body}");
            body["type"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        types,
        ["alert.dead_letter", "alert.run_failed"]
            .map(String::from)
            .into()
    );
    assert_eq!(
        app.emails().len(),
        1,
        "run_failed by email, dead_letter not"
    );

    // Telegram's 429 asked for 2 s: the retry of that message came no sooner.
    let tg = channels.seen("telegram");
    let first = &tg[0];
    assert_eq!(first.status, 429);
    let text =
        |s: &Seen| serde_json::from_str::<serde_json::Value>(&s.body).unwrap()["text"].clone();
    let retry = tg[1..]
        .iter()
        .find(|s| text(s) == text(first))
        .expect("the flooded message sent again");
    let waited = retry.at - first.at;
    println!("telegram retry after a 429 asking for 2 s came after {waited:?}");
    assert!(waited >= Duration::from_secs(2), "{waited:?}");

    // ntfy got its headers and token.
    let ntfy = channels.seen("ntfy");
    assert!(ntfy.iter().all(|s| s.path == "/ntfy/mytopic"), "{ntfy:#?}");
    let ok = ntfy.iter().find(|s| s.status == 200).unwrap();
    assert_eq!(header(&ok.headers, "priority"), "4");
    assert!(
        header(&ok.headers, "tags").starts_with("warning,"),
        "{ok:?}"
    );
    assert!(!header(&ok.headers, "title").is_empty(), "{ok:?}");

    // The failed run sent /fail once; liveness pings kept coming.
    eventually(Duration::from_secs(5), "the /fail ping", || {
        channels
            .seen("healthcheck")
            .iter()
            .any(|s| s.path == format!("/hc/{HC_UUID}/fail"))
    })
    .await;
    let fails = channels
        .seen("healthcheck")
        .iter()
        .filter(|s| s.path.ends_with("/fail"))
        .count();
    assert_eq!(fails, 1);

    // No secret in the log, the outbox's rows, or status.
    let outbox = app.satflow(&["outbox", "--json", "--limit", "1000", "-c", "satflow.yaml"]);
    let status = app.satflow(&["status", "-c", "satflow.yaml"]);
    assert_eq!(terminate(&mut daemon), 0);
    let log = std::fs::read_to_string(app.path().join("daemon.log")).unwrap();
    for (what, text) in [
        ("the log", &log),
        ("outbox --json", &outbox.stdout),
        ("status", &status.stdout),
    ] {
        for secret in [TG_TOKEN, NTFY_TOKEN, HOOK_SECRET, HC_UUID, "mytopic"] {
            assert!(!text.contains(secret), "{secret} in {what}: {text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notify_step_sends_its_rendered_message_to_the_named_target() {
    let channels = Channels::start().await;
    // ntfy's rate limit on the first message, asking for 1 s.
    channels.script("ntfy", [Reply::RetryAfter(429, 1)]);
    let app = app_with_channels(&channels, "alerts: []\n");
    app.write(
        "workflows/tell.yaml",
        "name: tell\nsteps:\n\
         - id: phone\n    uses: notify\n    with: { to: phone, title: \"Run {{ run.id }} of {{ workflow.name }}\", message: \"Bought for 100 CHF in Zürich\" }\n\
         - id: team\n    uses: notify\n    with: { to: team, message: \"run {{ run.id }}: done\" }\n\
         - id: ops\n    uses: notify\n    with: { to: ops, title: hello, message: \"{{ steps.phone.id }}\" }\n"
            .replace("\n- id", "\n  - id")
            .as_str(),
    );
    let check = app.satflow(&["check", "-c", "satflow.yaml"]);
    assert_eq!(check.code, 0, "{check:?}");
    let plan = app.satflow(&["plan", "-c", "satflow.yaml"]);
    for text in [&check.stdout, &check.stderr, &plan.stdout, &plan.stderr] {
        for secret in [TG_TOKEN, NTFY_TOKEN, HOOK_SECRET, HC_UUID, "mytopic"] {
            assert!(!text.contains(secret), "{secret} shown: {check:?} {plan:?}");
        }
    }
    let mut daemon = app.spawn(&["run", "-c", "satflow.yaml"], "daemon.log");
    app.started().await;
    let run = app.satflow(&["trigger", "tell", "-c", "satflow.yaml"]);
    assert_eq!(run.code, 0, "{run:?}");
    eventually(Duration::from_secs(20), "a message on each channel", || {
        ["telegram", "ntfy", "webhook"]
            .iter()
            .all(|api| accepted(&channels, api).len() == 1)
    })
    .await;
    let seen = channels.seen("ntfy");
    assert_eq!(seen[0].status, 429);
    let ntfy = seen.iter().find(|s| s.status == 200).unwrap();
    let waited = ntfy.at - seen[0].at;
    println!("ntfy retry after a 429 with Retry-After: 1 came after {waited:?}");
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
    assert_eq!(ntfy.body, "Bought for 100 CHF in Zürich");
    // A title that is not ASCII would be an RFC 2047 word; this one is plain.
    assert_eq!(header(&ntfy.headers, "title"), "Run 1 of tell");
    assert_eq!(accepted(&channels, "telegram"), ["run 1: done"]);
    let hook = &channels.seen("webhook")[0];
    let body: serde_json::Value = serde_json::from_str(&hook.body).unwrap();
    assert_eq!(body["type"], "notify.message");
    // A step's output is the id its receiver sees.
    use satflow::notify::channels::message_id;
    assert_eq!(body["data"]["message"], message_id("run/1/step/phone"));
    assert_eq!(
        header(&hook.headers, "webhook-id"),
        message_id("run/1/step/ops")
    );
    assert_eq!(body["data"]["title"], "hello");
    assert_eq!(terminate(&mut daemon), 0);
}

#[test]
fn check_refuses_unknown_targets_kinds_and_bad_secrets_without_showing_them() {
    let app = TestApp::engine();
    let base = std::fs::read_to_string(app.path().join("satflow.yaml")).unwrap();
    app.write(
        "satflow.yaml",
        &format!(
            "{base}notify:\n  phone: {{ ntfy: {{ url: \"https://ntfy.sh/secret-topic\", priority: loud }} }}\n  \
             ops: {{ webhook: {{ url: \"https://hooks.example.com/x\", secret: plain-secret-value }} }}\n  \
             team: {{ telegram: {{ bot_token: \"123:abc\", chat_id: friends }} }}\n\
             alerts:\n  interrupted: [email, phnoe]\n  dead_leter: [ops]\n"
        ),
    );
    app.write(
        "workflows/w.yaml",
        "name: w\nsteps:\n  - id: n\n    uses: notify\n    with: { to: pager, message: hi }\n",
    );
    let run = app.satflow(&["check", "-c", "satflow.yaml"]);
    assert_ne!(run.code, 0, "{run:?}");
    let out = format!("{}{}", run.stdout, run.stderr);
    for expected in [
        "notify.phone.ntfy.priority: \"loud\" is not an ntfy priority; accepted: 1 to 5",
        "notify.ops.webhook.secret: does not start with `whsec_`",
        "notify.team.telegram.chat_id: \"friends\" is not a chat id",
        "alerts.interrupted: \"phnoe\" is not a notification target; did you mean `phone`? accepted: email, ops, phone, team",
        "alerts: \"dead_leter\" is not a built-in alert; did you mean `dead_letter`?",
        "steps[0].with.to: \"pager\" is not defined under `notify:`",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    for secret in ["plain-secret-value", "secret-topic", "123:abc"] {
        assert!(!out.contains(secret), "{secret} shown:\n{out}");
    }
}
