//! Pocket's webhooks through the running daemon: verification, the inbox, the exchange state
//! machine (every out-of-order pair), alert emails over SMTP, reconciliation and the payout
//! check.

use std::time::Duration;

use satflow::pocket::webhook;
use satflow::sandbox::{self, SandboxOptions};
use serde_json::{Value, json};

use super::helpers::{
    Backend, Relay, TestApp, eventually, nothing_in_flight, on_both_backends, sandbox_post,
    terminate,
};
use super::pocket::TestWallet;
use super::sink::Sink;
use super::smtp::SmtpSink;

pub const SECRET: &str = "96eb2c74343a6d58590ea4a06ab13d24da4affc4";

pub struct Daemon {
    pub app: TestApp,
    pub child: std::process::Child,
    pub smtp: SmtpSink,
    pub url: String,
}

impl Daemon {
    /// A daemon whose Pocket is `pocket_url`, emailing a loopback SMTP server; `workflows` are
    /// written as given. `listen_port` 0 (what the tests pass) lets the daemon pick a free
    /// port; `url` is the address it reported.
    pub async fn start(
        pocket_url: &str,
        listen_port: u16,
        extra: &str,
        workflows: &[(&str, &str)],
    ) -> Daemon {
        Daemon::start_on(Backend::Sqlite, pocket_url, listen_port, extra, workflows)
            .await
            .expect("SQLite is always there")
    }

    /// `start` on `backend`; None when that backend cannot be had here.
    pub async fn start_on(
        backend: Backend,
        pocket_url: &str,
        listen_port: u16,
        extra: &str,
        workflows: &[(&str, &str)],
    ) -> Option<Daemon> {
        let app = TestApp::empty_on(backend)?;
        let smtp = SmtpSink::start().await;
        app.write(
            "satflow.yaml",
            &format!(
                "database: sqlite://satflow.db\nlisten: 127.0.0.1:{listen_port}\n\
                 pocket: {{ base_url: \"{pocket_url}\", client_id: sandbox-client, webhook_secret: \"{SECRET}\", reconcile_every: 1s }}\n\
                 email: {{ smtp_url: \"smtp://127.0.0.1:{}\", from: satflow@example.com, to: me@example.com }}\n\
                 engine: {{ lease: 2s }}\noutbox: {{ base_delay: 100ms, max_delay: 1s }}\n{extra}",
                smtp.port
            ),
        );
        std::fs::create_dir_all(app.path().join("workflows")).unwrap();
        for (name, text) in workflows {
            app.write(&format!("workflows/{name}.yaml"), text);
        }
        let check = app.satflow(&["check"]);
        assert_eq!(check.code, 0, "{check:?}");
        let child = app.spawn(&["run"], "daemon.log");
        let url = format!("http://{}", app.started().await);
        let start = std::time::Instant::now();
        while reqwest::get(format!("{url}/healthz"))
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
        Some(Daemon {
            app,
            child,
            smtp,
            url,
        })
    }

    pub async fn post(&self, body: &[u8], signature: Option<&str>) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .post(format!("{}/webhooks/pocket", self.url))
            .header("Content-Type", "application/json")
            .header("X-Correlation-Id", "c0ffee00-0000-4000-a000-000000000000")
            .header("X-Retry-Count", "0")
            .body(body.to_vec());
        if let Some(s) = signature {
            request = request.header("X-Signature-256", s);
        }
        let r = request.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Sends `event` for `payload` signed like Pocket.
    pub async fn send(&self, event: &str, payload: Value) -> (u16, Value) {
        let body = json!({ "event": event, "payload": payload }).to_string();
        self.post(
            body.as_bytes(),
            Some(&webhook::sign(SECRET.as_bytes(), body.as_bytes())),
        )
        .await
    }

    pub fn exchange(&self, id: &str) -> Option<Value> {
        let run = self.app.satflow(&["exchanges", "show", &uid(id), "--json"]);
        (run.code == 0)
            .then(|| serde_json::from_str::<Value>(&run.stdout).unwrap()["exchanges"][0].clone())
    }

    pub fn stop(mut self) {
        assert_eq!(terminate(&mut self.child), 0);
    }
}

/// Pocket's ids are UUIDs (anything else is refused at the edge): a test's readable name
/// becomes a UUID of its own; a UUID stays as it is.
pub fn uid(name: &str) -> String {
    if satflow::pocket::types::is_uuid(name) {
        return name.to_string();
    }
    let h = webhook::body_hash(name.as_bytes());
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// The order id of exchanges whose order satflow does not know.
pub const UNKNOWN_ORDER: &str = "0b5e7f7e-0000-4000-a000-000000000001";

/// An exchange payload in state `state`, as Pocket's webhooks carry it; `id` is a name or a UUID.
pub fn payload(id: &str, state: &str) -> Value {
    // Written as text, as Pocket sends it: `100.00` keeps its two decimals.
    let mut p: Value = serde_json::from_str(
        r#"{"order_id": "0b5e7f7e-0000-4000-a000-000000000001", "fee_rate": 0.012, "pair": "btc/eur", "type": "buy",
            "cost": 100.00, "executed_on": "2027-01-04T09:00:00.000Z", "amount": 0.12345678, "rate": 801.00,
            "fee": 1.20, "action": null, "reason": null, "payout": null, "welcomeReward": null}"#,
    )
    .unwrap();
    p["exchange_id"] = json!(uid(id));
    match state {
        "settled" => {
            p["payout"] = json!({ "txid": "ab", "outpoint": 1, "bitcoin_address": "bc1q5a7uxjq6z5l2wguzu77rzmzk6tyx24yvq5r4fj", "fee": 0.00000190, "amount": 0.12345488 })
        }
        "interrupted" => {
            p["action"] =
                json!({ "code": "identify", "url": "https://app.pocketbitcoin.com/onboarding" })
        }
        "refunded" => p["reason"] = json!({ "code": "account_not_matching" }),
        _ => {}
    }
    p
}

async fn webhooks_are_verified_before_anything_else_and_stored_once(backend: Backend) {
    let Some(d) = Daemon::start_on(backend, "http://127.0.0.1:9", 0, "", &[]).await else {
        return;
    };
    // The documented test vector: a valid signature over a body satflow does not understand.
    let vector = br#"{"val":123,"val1":123456}"#;
    let good = "sha256=89cc7396704998f25bd0019bdc2ec30de78ff0c89add39685b30df608ba2a8d6";
    assert_eq!(d.post(vector, None).await.0, 401, "missing signature");
    assert_eq!(
        d.post(vector, Some(&good.replace("89cc", "89cd"))).await.0,
        401,
        "wrong signature"
    );
    assert_eq!(
        d.post(vector, Some(&good[..good.len() - 4])).await.0,
        401,
        "truncated signature"
    );
    assert_eq!(
        d.post(vector, Some(good)).await,
        (200, json!({ "status": "stored" })),
        "stored, flagged"
    );
    assert_eq!(
        d.post(vector, Some(&good["sha256=".len()..])).await.0,
        200,
        "without the sha256= prefix"
    );

    let big = json!({ "event": "exchange.executed", "payload": { "pad": "x".repeat(70 * 1024) } })
        .to_string();
    assert_eq!(
        d.post(
            big.as_bytes(),
            Some(&webhook::sign(SECRET.as_bytes(), big.as_bytes()))
        )
        .await
        .0,
        413
    );
    let broken = b"{\"event\": \"exchange.exec";
    assert_eq!(
        d.post(broken, Some(&webhook::sign(SECRET.as_bytes(), broken)))
            .await
            .0,
        400
    );

    assert_eq!(
        d.send("exchange.executed", payload("e-1", "executed"))
            .await,
        (200, json!({ "status": "stored" }))
    );
    assert_eq!(
        d.send("exchange.executed", payload("e-1", "executed"))
            .await,
        (200, json!({ "status": "duplicate" }))
    );
    eventually(
        Duration::from_secs(10),
        "the exchange to be processed",
        || d.exchange("e-1").is_some(),
    )
    .await;
    let e = d.exchange("e-1").unwrap();
    assert_eq!(e["state"], "executed");
    assert_eq!(e["amount"], "0.12345678", "money compared exactly");
    assert_eq!(e["cost"], "100.00");
    assert_eq!(e["events"].as_array().unwrap().len(), 1);

    // An unknown event name is stored and logged; the exchange follows its fields.
    assert_eq!(
        d.send("exchange.payout_scheduled", payload("e-2", "executed"))
            .await
            .0,
        200
    );
    eventually(
        Duration::from_secs(10),
        "the unknown event to be recorded",
        || {
            d.exchange("e-2")
                .is_some_and(|e| e["events"][0]["event"] == "exchange.payout_scheduled")
        },
    )
    .await;

    // The unrecognized payload raised one alert, however often it came.
    eventually(Duration::from_secs(10), "the alert email", || {
        d.smtp.messages().len() == 1
    })
    .await;
    assert!(
        d.smtp.messages()[0].contains("does not understand"),
        "{:?}",
        d.smtp.messages()
    );
    let health: Value = reqwest::get(format!("{}/healthz", d.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        health["webhooks"]["unrecognized"], 2,
        "both deliveries kept: {health}"
    );
    // Everything applied and sent: a second alert would be in the sink by now.
    nothing_in_flight(&d.app, &d.url).await;
    assert_eq!(d.smtp.messages().len(), 1);
    d.stop();
}

async fn every_out_of_order_pair_ends_in_the_furthest_state(backend: Backend) {
    let Some(d) = Daemon::start_on(backend, "http://127.0.0.1:9", 0, "alerts: []\n", &[]).await
    else {
        return;
    };
    let states = ["executed", "interrupted", "settled", "refunded"];
    // Pocket's lifecycle: interrupted comes before executed; settled and refunded are final.
    let rank = |s: &str| match s {
        "interrupted" => 0,
        "executed" => 1,
        _ => 2,
    };
    let mut expected = Vec::new();
    for a in states {
        for b in states {
            if a == b {
                continue;
            }
            let id = format!("pair-{a}-{b}");
            assert_eq!(
                d.send(&format!("exchange.{a}"), payload(&id, a)).await.0,
                200
            );
            assert_eq!(
                d.send(&format!("exchange.{b}"), payload(&id, b)).await.0,
                200
            );
            // The later event wins only if it is further along; of two final states, the first stays.
            let end = if rank(b) > rank(a) { b } else { a };
            expected.push((id, end));
        }
    }
    eventually(Duration::from_secs(15), "all pairs processed", || {
        expected.iter().all(|(id, _)| {
            d.exchange(id)
                .is_some_and(|e| e["events"].as_array().unwrap().len() == 2)
        })
    })
    .await;
    for (id, end) in &expected {
        assert_eq!(d.exchange(id).unwrap()["state"], *end, "{id}");
    }
    d.stop();
}

async fn interrupted_and_refunded_exchanges_email_once_and_start_event_workflows(backend: Backend) {
    let sink = Sink::start().await;
    let workflow = format!(
        "on: {{ event: [exchange.interrupted, exchange.refunded] }}\nsteps:\n  - uses: http.post\n    with: {{ url: \"{}\", json: {{ id: \"{{{{ event.exchange_id }}}}\", what: \"{{{{ event.name }}}}\" }} }}\n",
        sink.url("/event")
    );
    let Some(d) = Daemon::start_on(
        backend,
        "http://127.0.0.1:9",
        0,
        "",
        &[("listen", &workflow)],
    )
    .await
    else {
        return;
    };
    for _ in 0..3 {
        d.send("exchange.interrupted", payload("x-int", "interrupted"))
            .await;
        d.send("exchange.refunded", payload("x-ref", "refunded"))
            .await;
    }
    eventually(Duration::from_secs(15), "two alert emails", || {
        d.smtp.messages().len() >= 2
    })
    .await;
    nothing_in_flight(&d.app, &d.url).await;
    let mail = d.smtp.messages();
    assert_eq!(
        mail.len(),
        2,
        "one email per event, however often the webhook came: {mail:#?}"
    );
    let interrupted = mail.iter().find(|m| m.contains(&uid("x-int"))).unwrap();
    assert!(
        interrupted.contains("https://app.pocketbitcoin.com/onboarding"),
        "{interrupted}"
    );
    let refunded = mail.iter().find(|m| m.contains(&uid("x-ref"))).unwrap();
    assert!(
        refunded.contains("the paying bank account is not the order's debitor IBAN"),
        "{refunded}"
    );
    assert!(refunded.contains("account_not_matching"), "{refunded}");

    eventually(
        Duration::from_secs(10),
        "the event workflow's two runs",
        || sink.received().len() == 2,
    )
    .await;
    let bodies: Vec<String> = sink.received().iter().map(|r| r.body.clone()).collect();
    assert!(
        bodies
            .iter()
            .any(|b| b.contains(&uid("x-int")) && b.contains("exchange.interrupted")),
        "{bodies:?}"
    );
    assert!(
        bodies
            .iter()
            .any(|b| b.contains(&uid("x-ref")) && b.contains("exchange.refunded")),
        "{bodies:?}"
    );
    d.stop();
}

async fn reconciliation_finds_what_withheld_webhooks_missed_and_payouts_are_checked(
    backend: Backend,
) {
    // The daemon binds port 0: the sandbox's webhooks wait in the relay until it is up.
    let relay = Relay::start().await;
    let (addr, _sb) = sandbox::spawn(SandboxOptions {
        webhook_url: Some(format!("{}/webhooks/pocket", relay.url)),
        webhook_secret: Some(SECRET.into()),
        retry_base: Duration::from_millis(200),
        ..SandboxOptions::default()
    })
    .await;
    let wallet = TestWallet::new();
    let esplora = super::esplora::Esplora::start().await;
    {
        let mut chain = esplora.chain.lock().unwrap();
        chain.tip = 800_005;
        chain.default_height = Some(800_000);
    }
    let pocket = format!("http://{addr}");
    let Some(d) = Daemon::start_on(backend,
        &pocket,
        0,
        &format!("wallets:\n  cold: {{ xpub: {}, esplora_url: \"{}\" }}\n", wallet.zpub, esplora.url),
        &[(
            "dca",
            "steps:\n  - uses: pocket.order\n    with: { currency: eur, fee_rate: 0.015, debitor_iban: DE89370400440532013000, payout: { wallet: cold } }\n",
        )],
    )
    .await
    else {
        return;
    };
    relay.point_to(&d.url);
    let setup = d.app.set_up_order("dca", &wallet.key(0));
    assert_eq!(setup.code, 0, "{setup:?}");
    let order_id = setup.stdout.split_whitespace().nth(2).unwrap().to_string();

    let control = |path: String, body: Value| sandbox_post(&pocket, path, body);
    let first = control(
        format!("sandbox/orders/{order_id}/payments"),
        json!({ "amount": 100 }),
    )
    .await;
    let id = first["id"].as_str().unwrap().to_string();
    eventually(Duration::from_secs(10), "the executed webhook", || {
        d.exchange(&id).is_some()
    })
    .await;
    let status: Value = serde_json::from_str(&d.app.satflow(&["status", "--json"]).stdout).unwrap();
    assert_eq!(
        status["unsettled_exchanges"][0]["id"],
        id.as_str(),
        "{status:#}"
    );

    // The endpoint "goes down": Pocket settles, no webhook arrives, reconciliation finds it.
    control(
        "sandbox/webhooks/withhold".into(),
        json!({ "withhold": true }),
    )
    .await;
    control(format!("sandbox/exchanges/{id}/settle"), json!({})).await;
    eventually(
        Duration::from_secs(15),
        "reconciliation to find the settlement",
        || d.exchange(&id).is_some_and(|e| e["state"] == "settled"),
    )
    .await;
    let e = d.exchange(&id).unwrap();
    assert_eq!(e["payout"]["bitcoin_address"], wallet.address(0));
    let status: Value = serde_json::from_str(&d.app.satflow(&["status", "--json"]).stdout).unwrap();
    assert!(
        status["unsettled_exchanges"].as_array().unwrap().is_empty(),
        "{status:#}"
    );
    assert!(
        e["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|ev| ev["event"] == "exchange.settled" && ev["source"] == "reconcile"),
        "{e:#}"
    );
    // The address Pocket paid to is known as used.
    let addresses: Value = serde_json::from_str(
        &d.app
            .satflow(&["addresses", "cold", "--json", "--count", "2"])
            .stdout,
    )
    .unwrap();
    assert_eq!(addresses["addresses"][0]["state"], "used", "{addresses:#}");
    assert!(
        addresses["addresses"][0]["used_by"]
            .as_str()
            .unwrap()
            .contains(&id),
        "{addresses:#}"
    );
    // The payout is followed through the wallet's explorer: tip 800005, mined at 800000.
    eventually(
        Duration::from_secs(10),
        "the payout's confirmations",
        || d.exchange(&id).is_some_and(|e| e["confirmations"] == 6),
    )
    .await;

    // A payout to an address that is not the order's raises the urgent alert; a good one does not.
    control(
        "sandbox/webhooks/withhold".into(),
        json!({ "withhold": false }),
    )
    .await;
    let mut forged = payload("x-forged", "settled");
    forged["order_id"] = json!(order_id);
    forged["payout"]["bitcoin_address"] = json!("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq");
    d.send("exchange.settled", forged).await;
    eventually(Duration::from_secs(10), "the payout alert", || {
        d.smtp.messages().iter().any(|m| {
            m.contains("URGENT") && m.contains("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq")
        })
    })
    .await;
    assert_eq!(
        d.smtp
            .messages()
            .iter()
            .filter(|m| m.contains("URGENT"))
            .count(),
        1,
        "{:#?}",
        d.smtp.messages()
    );
    d.stop();
}

async fn an_exchange_far_from_the_market_price_raises_one_alert(backend: Backend) {
    let (market, _sb) = satflow::sandbox::spawn(Default::default()).await;
    let r = reqwest::Client::new()
        .put(format!("http://{market}/sandbox/price"))
        .json(&json!({ "currency": "eur", "price": "800" }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let Some(d) = Daemon::start_on(
        backend,
        "http://127.0.0.1:9",
        0,
        &format!("prices: {{ peach_url: \"http://{market}\", sanity_percent: 5 }}\n"),
        &[],
    )
    .await
    else {
        return;
    };
    let now = chrono::Utc::now().to_rfc3339();
    let mut fair = payload("x-fair", "executed");
    fair["executed_on"] = json!(now);
    let mut odd = payload("x-odd", "executed");
    odd["executed_on"] = json!(now);
    odd["rate"] = json!(1000);
    for _ in 0..2 {
        d.send("exchange.executed", fair.clone()).await;
        d.send("exchange.executed", odd.clone()).await;
    }
    let mut settled = payload("x-odd", "settled");
    settled["executed_on"] = json!(now);
    settled["rate"] = json!(1000);
    d.send("exchange.settled", settled).await;
    eventually(Duration::from_secs(15), "the rate alert", || {
        !d.smtp.messages().is_empty()
    })
    .await;
    nothing_in_flight(&d.app, &d.url).await;
    let mail = d.smtp.messages();
    assert_eq!(
        mail.len(),
        1,
        "one alert, for the odd exchange only: {mail:#?}"
    );
    assert!(mail[0].contains(&uid("x-odd")), "{}", mail[0]);
    // A subject with a UUID is long enough to be folded (RFC 5322): read it unfolded.
    let unfolded = mail[0].replace("\r\n ", " ").replace("\n ", " ");
    assert!(
        unfolded.contains(&format!(
            "exchange {} executed 25 % away from the market",
            uid("x-odd")
        )) && mail[0].contains("was 800 EUR/BTC"),
        "{}",
        mail[0]
    );
    assert!(d.exchange("x-fair").is_some() && d.exchange("x-odd").is_some());
    d.stop();
}

on_both_backends!(
    webhooks_are_verified_before_anything_else_and_stored_once,
    every_out_of_order_pair_ends_in_the_furthest_state,
    interrupted_and_refunded_exchanges_email_once_and_start_event_workflows,
    reconciliation_finds_what_withheld_webhooks_missed_and_payouts_are_checked,
    an_exchange_far_from_the_market_price_raises_one_alert,
);
