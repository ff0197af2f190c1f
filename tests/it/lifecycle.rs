//! Pocket's exchange lifecycle through the running daemon: an exchange interrupted before it
//! executes, then identified, executed and settled (or settled with the old action still
//! there), late and second interruptions, Pocket's documented payloads, and the webhook edge
//! under a storm of bodies satflow must refuse.

use std::time::Duration;

use satflow::pocket::webhook;
use satflow::sandbox::{self, SandboxOptions};
use serde_json::{Value, json};

use super::helpers::{Backend, Relay, eventually, nothing_in_flight, on_both_backends};
use super::pocket::TestWallet;
use super::sink::Sink;
use super::webhooks::{Daemon, SECRET, UNKNOWN_ORDER, payload};

/// A workflow that posts each `event` it starts on to the sink.
fn listener(sink: &Sink, events: &str) -> String {
    format!(
        "on: {{ event: [{events}] }}\nsteps:\n  - uses: http.post\n    with: {{ url: \"{}\", json: {{ id: \"{{{{ event.exchange_id }}}}\", what: \"{{{{ event.name }}}}\" }} }}\n",
        sink.url("/event")
    )
}

struct Setup {
    d: Daemon,
    pocket: String,
    order_id: String,
    wallet: TestWallet,
    sink: Sink,
    _sandbox: std::sync::Arc<sandbox::Sandbox>,
    _relay: Relay,
}

/// The sandbox, a daemon with an xpub order set up, and a workflow listening for executed and
/// settled exchanges.
async fn setup(backend: Backend) -> Option<Setup> {
    // The daemon binds port 0: the sandbox's webhooks wait in the relay until it is up.
    let relay = Relay::start().await;
    let (addr, sb) = sandbox::spawn(SandboxOptions {
        webhook_url: Some(format!("{}/webhooks/pocket", relay.url)),
        webhook_secret: Some(SECRET.into()),
        retry_base: Duration::from_millis(200),
        ..SandboxOptions::default()
    })
    .await;
    let wallet = TestWallet::new();
    let sink = Sink::start().await;
    let pocket = format!("http://{addr}");
    let d = Daemon::start_on(
        backend,
        &pocket,
        0,
        &format!("wallets:\n  cold: {{ xpub: {} }}\n", wallet.zpub),
        &[
            (
                "dca",
                "steps:\n  - uses: pocket.order\n    with: { currency: eur, fee_rate: 0.015, debitor_iban: DE89370400440532013000, payout: { wallet: cold } }\n",
            ),
            (
                "listen",
                &listener(&sink, "exchange.executed, exchange.settled"),
            ),
        ],
    )
    .await?;
    relay.point_to(&d.url);
    let setup = d.app.set_up_order("dca", &wallet.key(0));
    assert_eq!(setup.code, 0, "{setup:?}");
    let order_id = setup.stdout.split_whitespace().nth(2).unwrap().to_string();
    Some(Setup {
        d,
        pocket,
        order_id,
        wallet,
        sink,
        _sandbox: sb,
        _relay: relay,
    })
}

impl Setup {
    async fn control(&self, path: &str, body: Value) -> Value {
        let r = reqwest::Client::new()
            .post(format!("{}/{path}", self.pocket))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap()
    }

    fn state(&self, id: &str) -> Option<String> {
        self.d
            .exchange(id)
            .map(|e| e["state"].as_str().unwrap_or_default().to_string())
    }

    async fn wait_state(&self, id: &str, state: &str) {
        eventually(
            Duration::from_secs(15),
            &format!("exchange {id} to be {state}"),
            || self.state(id).as_deref() == Some(state),
        )
        .await;
    }

    fn status(&self) -> Value {
        serde_json::from_str(&self.d.app.satflow(&["status", "--json"]).stdout).unwrap()
    }

    fn unsettled(&self) -> Vec<String> {
        self.status()["unsettled_exchanges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    }

    fn report(&self) -> Value {
        let run = self.d.app.satflow(&["report", "--json"]);
        assert_eq!(run.code, 0, "{run:?}");
        serde_json::from_str(&run.stdout).unwrap()
    }

    /// The sink's posts for `id`: the event names, sorted.
    fn posted(&self, id: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .sink
            .received()
            .iter()
            .filter(|r| r.body.contains(id))
            .map(|r| {
                serde_json::from_str::<Value>(&r.body).unwrap()["what"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        names.sort();
        names
    }

    fn address_used_by(&self, index: usize) -> Option<String> {
        let doc: Value = serde_json::from_str(
            &self
                .d
                .app
                .satflow(&["addresses", "cold", "--json", "--count", "3"])
                .stdout,
        )
        .unwrap();
        let a = &doc["addresses"][index];
        (a["state"] == "used").then(|| a["used_by"].as_str().unwrap_or_default().to_string())
    }
}

async fn an_interrupted_exchange_is_identified_then_executed_once_and_settled(backend: Backend) {
    let Some(s) = setup(backend).await else {
        return;
    };
    // Pocket holds the payment before executing it: nothing is bought yet.
    let e = s
        .control(
            &format!("sandbox/orders/{}/payments", s.order_id),
            json!({ "amount": 2000, "interrupt": "identify" }),
        )
        .await;
    let id = e["id"].as_str().unwrap().to_string();
    assert!(e["executed_on"].is_null() && e["amount"].is_null() && e["rate"].is_null());
    s.wait_state(&id, "interrupted").await;
    eventually(Duration::from_secs(10), "the interrupted alert", || {
        s.d.smtp
            .messages()
            .iter()
            .any(|m| m.contains(&id) && m.contains("https://app.pocketbitcoin.com/onboarding"))
    })
    .await;
    assert_eq!(s.unsettled(), std::slice::from_ref(&id));
    let report = s.report();
    assert_eq!(
        report["totals"]["currencies"]["eur"]["buys"]
            .as_i64()
            .unwrap_or(0),
        0,
        "nothing bought while interrupted: {report}"
    );

    // The buyer identifies: the same exchange executes, and its workflow runs.
    let executed = s
        .control(&format!("sandbox/exchanges/{id}/identify"), json!({}))
        .await;
    assert!(executed["amount"].is_number(), "{executed}");
    s.wait_state(&id, "executed").await;
    eventually(Duration::from_secs(10), "the executed workflow", || {
        s.posted(&id) == ["exchange.executed"]
    })
    .await;
    assert_eq!(s.unsettled(), std::slice::from_ref(&id));

    s.control(&format!("sandbox/exchanges/{id}/settle"), json!({}))
        .await;
    s.wait_state(&id, "settled").await;
    eventually(Duration::from_secs(10), "the settled workflow", || {
        s.posted(&id).len() == 2
    })
    .await;
    assert!(s.unsettled().is_empty(), "{}", s.status());
    let report = s.report();
    assert_eq!(report["totals"]["currencies"]["eur"]["buys"], 1, "{report}");
    let used = s.address_used_by(0).expect("the paid address is used");
    assert!(used.contains(&id), "{used}");
    let x = s.d.exchange(&id).unwrap();
    assert_eq!(x["payout"]["bitcoin_address"], s.wallet.address(0));

    // A late or retried interrupted changes nothing: recorded, the state stays.
    let mut late = payload(&id, "interrupted");
    late["order_id"] = json!(s.order_id);
    late["executed_on"] = Value::Null;
    late["amount"] = Value::Null;
    late["rate"] = Value::Null;
    late["fee"] = Value::Null;
    late["reason"] = json!({ "code": "identification_required" });
    assert_eq!(s.d.send("exchange.interrupted", late).await.0, 200);
    eventually(Duration::from_secs(10), "the late event recorded", || {
        s.d.exchange(&id).is_some_and(|e| {
            e["events"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|ev| ev["event"] == "exchange.interrupted")
                .count()
                == 2
        })
    })
    .await;
    nothing_in_flight(&s.d.app, &s.d.url).await;
    assert_eq!(s.state(&id).as_deref(), Some("settled"));
    assert_eq!(
        s.posted(&id),
        ["exchange.executed", "exchange.settled"],
        "each workflow exactly once"
    );
    assert!(s.unsettled().is_empty());
    assert_eq!(s.report()["totals"]["currencies"]["eur"]["buys"], 1);
    s.d.stop();
}

async fn an_interrupted_exchange_settled_with_its_old_action_is_settled_by_read_back(
    backend: Backend,
) {
    let Some(s) = setup(backend).await else {
        return;
    };
    let e = s
        .control(
            &format!("sandbox/orders/{}/payments", s.order_id),
            json!({ "amount": 500, "interrupt": "identify" }),
        )
        .await;
    let id = e["id"].as_str().unwrap().to_string();
    s.wait_state(&id, "interrupted").await;
    // No webhook this time: reconciliation reads the exchange back, with a payout and the
    // old action (and reason) still there.
    s.control("sandbox/webhooks/withhold", json!({ "withhold": true }))
        .await;
    let settled = s
        .control(&format!("sandbox/exchanges/{id}/settle"), json!({}))
        .await;
    assert!(settled["action"].is_object() && settled["payout"].is_object());
    s.wait_state(&id, "settled").await;
    let x = s.d.exchange(&id).unwrap();
    assert_eq!(x["action"]["code"], "identify", "kept as received: {x}");
    assert!(
        x["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|ev| ev["event"] == "exchange.settled" && ev["source"] == "reconcile"),
        "{x}"
    );
    // A settle stands for the execution: the executed workflow runs once too.
    eventually(Duration::from_secs(10), "both workflows", || {
        s.posted(&id) == ["exchange.executed", "exchange.settled"]
    })
    .await;
    assert!(s.unsettled().is_empty());
    assert_eq!(s.report()["totals"]["currencies"]["eur"]["buys"], 1);
    assert!(s.address_used_by(0).is_some_and(|u| u.contains(&id)));
    s.d.stop();
}

/// A fixture, signed and posted as it is (its bytes, tabs and all).
async fn post_fixture(d: &Daemon, body: &str) -> (u16, Value) {
    d.post(
        body.as_bytes(),
        Some(&webhook::sign(SECRET.as_bytes(), body.as_bytes())),
    )
    .await
}

/// An exchange object of the documents (`id`) in a webhook envelope (`exchange_id`).
fn as_webhook(event: &str, exchange: &str) -> String {
    let mut payload: Value = serde_json::from_str(exchange).unwrap();
    let id = payload.as_object_mut().unwrap().remove("id").unwrap();
    payload["exchange_id"] = id;
    json!({ "event": event, "payload": payload }).to_string()
}

async fn pocket_documented_payloads_drive_the_lifecycle_and_a_new_action_is_alerted(
    backend: Backend,
) {
    let sink = Sink::start().await;
    let Some(d) = Daemon::start_on(
        backend,
        "http://127.0.0.1:9",
        0,
        "",
        &[(
            "listen",
            &listener(&sink, "exchange.executed, exchange.interrupted"),
        )],
    )
    .await
    else {
        return;
    };
    let id = "a2d75998-5ee5-4501-a4cf-4e3788732b7a";
    let interrupted = include_str!("../fixtures/pocket/interrupted_webhook.json");
    assert_eq!(post_fixture(&d, interrupted).await.1["status"], "stored");
    assert_eq!(
        post_fixture(&d, interrupted).await.1["status"],
        "duplicate",
        "an exact retry is absorbed"
    );
    eventually(Duration::from_secs(10), "interrupted", || {
        d.exchange(id).is_some_and(|e| e["state"] == "interrupted")
    })
    .await;
    // Pocket's Postman shape: a new action (identify, with a URL) is recorded and alerted.
    let postman = as_webhook(
        "exchange.interrupted",
        include_str!("../fixtures/pocket/interrupted_exchange_postman.json"),
    );
    assert_eq!(post_fixture(&d, &postman).await.1["status"], "stored");
    eventually(Duration::from_secs(10), "two interrupted alerts", || {
        d.smtp
            .messages()
            .iter()
            .filter(|m| m.contains("Pocket needs you"))
            .count()
            == 2
    })
    .await;
    let mail = d.smtp.messages();
    assert!(
        mail.iter()
            .any(|m| m.contains("7bf967b5-3d34-4cd6-936c-6631811401d2"))
    );
    assert!(
        mail.iter()
            .any(|m| m.contains("https://app.pocketbitcoin.com/onboarding"))
    );

    // Executed (with its welcomeReward and affiliate), settled, then a late refund.
    let executed = include_str!("../fixtures/pocket/executed_webhook_welcome_reward.json");
    assert_eq!(post_fixture(&d, executed).await.0, 200);
    eventually(Duration::from_secs(10), "executed", || {
        d.exchange(id).is_some_and(|e| e["state"] == "executed")
    })
    .await;
    let e = d.exchange(id).unwrap();
    assert_eq!(e["amount"], "0.00494000");
    assert_eq!(e["rate"], "20000.00");
    assert_eq!(e["fee"], "1.20");
    let settled = as_webhook(
        "exchange.settled",
        include_str!("../fixtures/pocket/settled_exchange.json"),
    );
    assert_eq!(post_fixture(&d, &settled).await.0, 200);
    eventually(Duration::from_secs(10), "settled", || {
        d.exchange(id).is_some_and(|e| e["state"] == "settled")
    })
    .await;
    let refunded = include_str!("../fixtures/pocket/refunded_webhook.json");
    assert_eq!(post_fixture(&d, refunded).await.0, 200);
    eventually(Duration::from_secs(10), "every event recorded", || {
        d.exchange(id)
            .is_some_and(|e| e["events"].as_array().unwrap().len() == 5)
    })
    .await;
    let e = d.exchange(id).unwrap();
    assert_eq!(e["state"], "settled", "settled is final: {e:#}");
    assert_eq!(e["payout"]["amount"].to_string(), "0.00049381");
    eventually(Duration::from_secs(10), "the workflows", || {
        sink.received().len() >= 2
    })
    .await;
    nothing_in_flight(&d.app, &d.url).await;
    let mut posted: Vec<String> = sink
        .received()
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.body).unwrap()["what"].to_string())
        .collect();
    posted.sort();
    assert_eq!(
        posted,
        ["\"exchange.executed\"", "\"exchange.interrupted\""],
        "each workflow once for the exchange"
    );
    d.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_refused_webhooks_is_kept_bounded_and_alerted_once_with_a_count() {
    let d = Daemon::start("http://127.0.0.1:9", 0, "", &[]).await;
    let d = std::sync::Arc::new(d);
    // 500 distinct, correctly signed bodies satflow must not act on: ids that are not
    // Pocket's (paths, queries), absurd amounts, no event at all.
    let bodies: Vec<String> = (0..500)
        .map(|i| {
            let mut p = payload(&format!("storm-{i}"), "executed");
            p["order_id"] = json!(UNKNOWN_ORDER);
            match i % 5 {
                0 => p["exchange_id"] = json!(format!("../../../etc/passwd{i}")),
                1 => p["exchange_id"] = json!(format!("abc?admin=1#frag{i}")),
                2 => p["amount"] = serde_json::from_str("10000000000000000000000000000").unwrap(),
                3 => p["amount"] = json!(-(i as i64)),
                _ => return json!({ "nonsense": i }).to_string(),
            }
            json!({ "event": "exchange.executed", "payload": p }).to_string()
        })
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in bodies.chunks(50) {
        let chunk = chunk.to_vec();
        let d = std::sync::Arc::clone(&d);
        tasks.spawn(async move {
            for body in chunk {
                let (status, answer) = d
                    .post(
                        body.as_bytes(),
                        Some(&webhook::sign(SECRET.as_bytes(), body.as_bytes())),
                    )
                    .await;
                assert_eq!(
                    (status, &answer["status"]),
                    (200, &json!("stored")),
                    "{body}"
                );
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    eventually(Duration::from_secs(10), "the first alert", || {
        !d.smtp.messages().is_empty()
    })
    .await;
    nothing_in_flight(&d.app, &d.url).await;
    let mail = d.smtp.messages();
    assert_eq!(mail.len(), 1, "one alert email for the storm");
    assert!(
        mail[0].contains("does not understand") && mail[0].contains("Why:"),
        "{}",
        mail[0]
    );

    let status: Value = serde_json::from_str(&d.app.satflow(&["status", "--json"]).stdout).unwrap();
    let kept = status["webhooks"]["unrecognized_kept"].as_i64().unwrap();
    assert!(
        (1..=satflow::store::KEEP_UNRECOGNIZED).contains(&kept),
        "{kept} unrecognized bodies kept"
    );
    assert_eq!(
        status["alerts_held_back"],
        json!([{ "kind": "unrecognized_webhook", "count": 499 }]),
        "the other 499 are counted for the hour's summary"
    );
    // Nothing of it reached the state machine.
    let exchanges: Value =
        serde_json::from_str(&d.app.satflow(&["exchanges", "--json"]).stdout).unwrap();
    assert_eq!(exchanges["exchanges"], json!([]), "{exchanges}");
    let size = std::fs::metadata(d.app.path().join("satflow.db"))
        .unwrap()
        .len();
    println!("storm of 500: {kept} bodies kept, database file {size} bytes");
    let d = std::sync::Arc::into_inner(d).unwrap();
    d.stop();
}

on_both_backends!(
    an_interrupted_exchange_is_identified_then_executed_once_and_settled,
    an_interrupted_exchange_settled_with_its_old_action_is_settled_by_read_back,
    pocket_documented_payloads_drive_the_lifecycle_and_a_new_action_is_alerted,
);
