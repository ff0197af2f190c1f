//! The missed purchase over the real daemon, its clock moved with `SATFLOW_TEST_NOW`: a week
//! whose payment arrived raises nothing, a cost off by more than the tolerance raises one
//! `cost_mismatch`, a missed week one `missed_purchase`, each by email to the SMTP stand-in and
//! exactly once across restarts.

use std::process::{Child, Command};
use std::time::Duration;

use satflow::pocket::types::{Exchange, Order};
use satflow::store::{Effects, Store};
use serde_json::{Value, json};

use super::helpers::{TestApp, closed_port, eventually, listening, terminate};
use super::smtp::{Mime, SmtpSink};

const WORKFLOW: &str = r#"name: weekly-dca
on:
  schedule: { cron: "0 9 1 1 *", timezone: UTC, catch_up: skip }
steps:
  - id: order
    uses: pocket.order
    with:
      currency: chf
      fee_rate: "0.015"
      debitor_iban: CH9300762011623852957
      payout: { wallet: cold }
      expect: { every: 1w, amount: 100 CHF, grace: 3d, tolerance: 1% }
"#;

fn setup(smtp: &SmtpSink) -> TestApp {
    let app = TestApp::empty();
    app.write(
        "satflow.yaml",
        &format!(
            "database: sqlite://satflow.db\nlisten: 127.0.0.1:0\n\
             pocket: {{ base_url: \"http://127.0.0.1:{}\", client_id: c, webhook_secret: s, reconcile_every: 1d }}\n\
             email: {{ smtp_url: \"smtp://127.0.0.1:{}\", from: satflow@example.com, to: me@example.com }}\n\
             wallets:\n  cold: {{ xpub: zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs }}\n\
             engine: {{ lease: 1s, shutdown_grace: 5s }}\noutbox: {{ base_delay: 100ms, max_delay: 1s }}\n",
            closed_port(),
            smtp.port
        ),
    );
    app.write("workflows/weekly-dca.yaml", WORKFLOW);
    app
}

/// `satflow run` with its clock starting at `now`.
fn daemon_at(app: &TestApp, now: &str, log: &str) -> Child {
    let file = std::fs::File::create(app.path().join(log)).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_satflow"));
    cmd.arg("run")
        .current_dir(app.path())
        .env_clear()
        .env("SATFLOW_TEST_NOW", now)
        .stdout(file.try_clone().unwrap())
        .stderr(file);
    for name in ["PATH", "HOME"] {
        if let Some(v) = std::env::var_os(name) {
            cmd.env(name, v);
        }
    }
    cmd.spawn().unwrap()
}

/// Starts the daemon at `now`, lets it make its first passes, and stops it.
async fn pass_at(app: &TestApp, now: &str, log: &str) {
    let mut child = daemon_at(app, now, log);
    let addr = listening(&app.path().join(log)).await;
    let url = format!("http://{addr}/healthz");
    let start = std::time::Instant::now();
    while reqwest::get(&url)
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(start.elapsed() < Duration::from_secs(60), "never healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The checker runs at the scheduler's first pass; give the outbox time to send.
    tokio::time::sleep(Duration::from_secs(3)).await;
    terminate(&mut child);
}

async fn exchange(store: &Store, id: &str, executed: &str, cost: &str) {
    let exchange: Exchange = serde_json::from_value(json!({
        "id": id, "order_id": "order-w", "fee_rate": 0.015, "pair": "btc/chf", "type": "buy",
        "cost": cost, "executed_on": executed, "amount": "0.0017", "rate": "57000", "fee": "1.5",
        "payout": { "txid": format!("{:0>64}", id.len()), "bitcoin_address": "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
                    "fee": "0.000002", "amount": "0.001698" },
    }))
    .unwrap();
    store
        .apply_exchange(
            "reconcile",
            "exchange.executed",
            &exchange,
            None,
            None,
            chrono::Utc::now(),
            |_, _| Effects::default(),
        )
        .await
        .unwrap();
}

fn subjects(smtp: &SmtpSink) -> Vec<String> {
    smtp.messages()
        .iter()
        .filter_map(|m| Mime::parse(m).header("Subject").map(String::from))
        .collect()
}

fn status(app: &TestApp) -> Value {
    let run = app.satflow(&["status", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    serde_json::from_str(&run.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_week_and_a_cost_off_raise_one_alert_each_across_restarts() {
    let smtp = SmtpSink::start().await;
    let app = setup(&smtp);
    let check = app.satflow(&["check"]);
    assert_eq!(check.code, 0, "{check:?}");
    // The order was created on Monday 30 Nov: weeks run from Mondays 00:00 UTC.
    let store = Store::open_sqlite(&app.path().join("satflow.db"))
        .await
        .unwrap();
    let order: Order = serde_json::from_value(json!({
        "id": "order-w", "active": true, "fee_rate": 0.015,
        "payment_method": { "currency": "chf" }, "payout_method": { "bitcoin_address": "x" },
    }))
    .unwrap();
    store
        .save_order(
            "weekly-dca",
            "xpub",
            &order,
            "2026-11-30T00:00:00Z".parse().unwrap(),
        )
        .await
        .unwrap();
    // Week 1 paid 100 CHF; week 2 paid, but 95 CHF; week 3 nothing.
    exchange(&store, "ex-1", "2026-12-01T10:00:00Z", "100").await;
    exchange(&store, "ex-22", "2026-12-08T10:00:00Z", "95").await;
    store.close().await;

    // 16 Dec: week 1 is past its grace and was paid (no alert); week 2's cost is off.
    pass_at(&app, "2026-12-16T12:00:00Z", "daemon1.log").await;
    eventually(Duration::from_secs(20), "the cost_mismatch email", || {
        subjects(&smtp).len() == 1
    })
    .await;
    let first = subjects(&smtp);
    assert!(
        first[0].contains("exchange ex-22 of weekly-dca cost 95"),
        "{first:?}"
    );
    let doc = status(&app);
    assert_eq!(doc["expect_alerts"].as_array().unwrap().len(), 1, "{doc}");

    // 24 Dec, after a restart: week 3 (from Monday 14 Dec) is past its grace with no payment.
    pass_at(&app, "2026-12-24T12:00:00Z", "daemon2.log").await;
    eventually(Duration::from_secs(20), "the missed_purchase email", || {
        subjects(&smtp).len() == 2
    })
    .await;
    let bodies: Vec<String> = smtp
        .messages()
        .iter()
        .filter_map(|m| Mime::parse(m).text("text/plain"))
        .collect();
    let missed = bodies
        .iter()
        .find(|m| m.contains("no purchase arrived for weekly-dca since"))
        .unwrap_or_else(|| panic!("{bodies:?}"));
    assert!(
        missed.contains(
            "no purchase arrived for weekly-dca since Monday 14 Dec: check the standing order at your bank"
        ),
        "{missed}"
    );

    // Restarted again, an hour later: nothing new, nothing twice.
    pass_at(&app, "2026-12-24T13:00:00Z", "daemon3.log").await;
    assert_eq!(subjects(&smtp).len(), 2, "{:?}", subjects(&smtp));
    let doc = status(&app);
    let alerts = doc["expect_alerts"].as_array().unwrap();
    let kinds: Vec<&str> = alerts.iter().map(|a| a["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.len(), 2, "{doc}");
    assert!(kinds.contains(&"missed_purchase") && kinds.contains(&"cost_mismatch"));
    let text = app.satflow(&["status"]);
    assert!(
        text.stdout
            .contains("weekly-dca: expects 100 CHF every 1w (grace 3d, tolerance 1 %)"),
        "{text:?}"
    );
    let plan = app.satflow(&["plan"]);
    assert!(plan.stdout.contains("expects 100 CHF every 1w"), "{plan:?}");
}

#[test]
fn expect_is_refused_with_the_field_and_what_is_accepted() {
    let smtp_port = closed_port();
    let app = TestApp::empty();
    app.write(
        "satflow.yaml",
        &format!(
            "database: sqlite://satflow.db\n\
             pocket: {{ base_url: \"http://127.0.0.1:{smtp_port}\", client_id: c, webhook_secret: s }}\n\
             email: {{ dir: mail, from: satflow@example.com, to: me@example.com }}\n\
             wallets:\n  cold: {{ xpub: zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs }}\n"
        ),
    );
    for (expect, wanted) in [
        (
            "{ every: 1w, amount: 100 EUR }",
            "the amount is in EUR, but the order is paid in CHF",
        ),
        (
            "{ every: weekly, amount: 100 CHF }",
            "expect.every: \"weekly\" is not a duration",
        ),
        ("{ amount: 100 CHF }", "say when your bank sends"),
        (
            "{ every: 1w, cron: \"0 9 * * MON\", amount: 100 CHF }",
            "write either every: or cron:, not both",
        ),
        (
            "{ every: 1w, amount: 100 CHF, tolerance: 200% }",
            "is not a percentage",
        ),
        (
            "{ cron: \"0 9 * * MON\", zone: Mars/Base, amount: 100 CHF }",
            "is not an IANA time zone",
        ),
        (
            "{ every: 1w, amount: 100 CHF, grace: soon }",
            "expect.grace:",
        ),
        ("{ every: 1w, amount: 100 CHF, when: now }", "when"),
        // A list where a value goes: refused, never a panic, and the unknown key still reported.
        ("{ every: [1w], amount: 100 CHF, when: now }", "when"),
        ("{ cron: [x], amount: [100 CHF] }", "expect.cron"),
        ("[1w]", "expect: expected a mapping"),
    ] {
        app.write(
            "workflows/weekly-dca.yaml",
            &WORKFLOW.replace(
                "{ every: 1w, amount: 100 CHF, grace: 3d, tolerance: 1% }",
                expect,
            ),
        );
        let run = app.satflow(&["check"]);
        assert_eq!(run.code, 1, "{expect}: {run:?}");
        assert!(
            run.stdout.contains(wanted),
            "{expect}: wanted {wanted}: {}",
            run.stdout
        );
    }
    app.write(
        "workflows/weekly-dca.yaml",
        &WORKFLOW.replace(
            "{ every: 1w, amount: 100 CHF, grace: 3d, tolerance: 1% }",
            "{ cron: \"0 9 * * MON\", zone: Europe/Zurich, amount: CHF 100 }",
        ),
    );
    let run = app.satflow(&["check"]);
    assert_eq!(run.code, 0, "{run:?}");
}
