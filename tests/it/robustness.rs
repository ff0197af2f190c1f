//! The daemon against a hostile world, through the real binary: writes that fail for want of
//! room and come back, a database locked by another process, a report over absurd stored
//! amounts. Each test says what it found out, and `/healthz` must tell the truth throughout.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use satflow::pocket::webhook;
use serde_json::{Value, json};

use super::helpers::{TestApp, eventually, terminate};
use super::sink::Sink;

const SECRET: &str = "robustness-webhook-secret";

/// A daemon with Pocket's webhooks (Pocket itself unreachable: nothing here reads back) and a
/// workflow that posts every executed exchange to `sink`.
fn app(sink: &Sink) -> TestApp {
    let app = TestApp::empty();
    app.write(
        "satflow.yaml",
        &format!(
            "database: sqlite://satflow.db\nlisten: 127.0.0.1:0\n\
             pocket: {{ base_url: \"http://127.0.0.1:9\", client_id: c, webhook_secret: {SECRET}, reconcile_every: 1h }}\n\
             email: {{ dir: mail, from: satflow@example.com, to: me@example.com }}\n\
             engine: {{ lease: 2s }}\noutbox: {{ base_delay: 100ms, max_delay: 1s }}\n"
        ),
    );
    app.write(
        "workflows/tell.yaml",
        &format!(
            "on: {{ event: exchange.executed }}\nsteps:\n  - uses: http.post\n    with: {{ url: \"{}\", json: {{ id: \"{{{{ event.exchange_id }}}}\" }} }}\n",
            sink.url("/executed")
        ),
    );
    let check = app.satflow(&["check"]);
    assert_eq!(check.code, 0, "{check:?}");
    app
}

/// Exchange ids in Pocket's shape (UUIDs): other ids are refused at the webhook edge.
const BEFORE: &str = "0be40000-0000-4000-8000-000000000001";
const AFTER: &str = "0af7e000-0000-4000-8000-000000000002";
const NORMAL: &str = "0a000000-0000-4000-8000-000000000003";
const POISON_PREFIX: &str = "0b000000-0000-4000-8000";
const FIRST_POISON: &str = "0b000000-0000-4000-8000-000000000000";

/// An executed exchange, as Pocket's webhook carries it; `padding` makes its body bigger.
fn executed(id: &str, padding: usize) -> Vec<u8> {
    let payload = json!({
        "exchange_id": id, "order_id": "64decab6-4129-4fe7-9f6e-1db68283f5ce", "fee_rate": 0.012, "pair": "btc/eur", "type": "buy",
        "cost": 100.0, "executed_on": "2027-01-04T09:00:00.000Z", "amount": 0.00494, "rate": 20000.0,
        "fee": 1.2, "action": null, "reason": null, "payout": null, "note": "x".repeat(padding),
    });
    json!({ "event": "exchange.executed", "payload": payload })
        .to_string()
        .into_bytes()
}

async fn post_webhook(app: &TestApp, body: &[u8]) -> u16 {
    reqwest::Client::new()
        .post(format!("http://{}/webhooks/pocket", app.listen()))
        .header("Content-Type", "application/json")
        .header("X-Signature-256", webhook::sign(SECRET.as_bytes(), body))
        .body(body.to_vec())
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

async fn health(app: &TestApp) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(format!("http://{}/healthz", app.listen()))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn wait_healthy(app: &TestApp, limit: Duration) -> Value {
    app.started().await;
    let start = Instant::now();
    loop {
        if let Ok(r) = reqwest::get(format!("http://{}/healthz", app.listen())).await {
            let status = r.status();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            if status == 200 {
                return body;
            }
            assert!(
                start.elapsed() < limit,
                "the daemon is not healthy after {limit:?}: {body:#}"
            );
        }
        assert!(start.elapsed() < limit, "the daemon does not answer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn failing(body: &Value) -> Vec<String> {
    body["failing"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `prlimit` (util-linux) can change the file size limit of a process of ours.
fn prlimit_available() -> bool {
    Command::new("prlimit")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Sets the file size limit (soft; the hard limit stays unlimited) of process `pid`.
fn limit_file_size(pid: u32, limit: &str) {
    let status = Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--fsize={limit}:unlimited"),
        ])
        .status()
        .unwrap();
    assert!(status.success(), "prlimit {limit} failed");
}

/// `satflow run`, started by a shell that ignores SIGXFSZ first: a write beyond the file size
/// limit then fails with EFBIG, as a write to a full disk fails with ENOSPC, instead of
/// killing the process. (An ignored signal stays ignored across `exec`.)
fn spawn_ignoring_sigxfsz(app: &TestApp) -> Child {
    let log = std::fs::File::create(app.path().join("daemon.log")).unwrap();
    Command::new("sh")
        .args([
            "-c",
            "trap '' XFSZ; exec \"$0\" run",
            env!("CARGO_BIN_EXE_satflow"),
        ])
        .current_dir(app.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn file_len(app: &TestApp, name: &str) -> u64 {
    std::fs::metadata(app.path().join(name)).map_or(0, |m| m.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_writes_failed_for_want_of_room_the_daemon_recovers_by_itself() {
    if !prlimit_available() {
        println!(
            "skipped: `prlimit` (util-linux) is not installed, so no write can be made to fail for want of room without root"
        );
        return;
    }
    let sink = Sink::start().await;
    let app = app(&sink);
    let mut daemon = spawn_ignoring_sigxfsz(&app);
    wait_healthy(&app, Duration::from_secs(10)).await;
    assert_eq!(post_webhook(&app, &executed(BEFORE, 0)).await, 200);
    eventually(Duration::from_secs(15), "the first exchange's run", || {
        sink.received().iter().any(|r| r.body.contains(BEFORE))
    })
    .await;

    // No file of the daemon may grow any more: the database's next pages have nowhere to go.
    let room = ["satflow.db", "satflow.db-wal", "daemon.log"]
        .iter()
        .map(|f| file_len(&app, f))
        .max()
        .unwrap();
    limit_file_size(daemon.id(), &room.to_string());
    let mut refused = 0;
    for i in 0..200 {
        let status = post_webhook(
            &app,
            &executed(&format!("0f000000-0000-4000-8000-{i:012}"), 40_000),
        )
        .await;
        if status == 503 {
            refused += 1;
            if refused >= 5 {
                break;
            }
        }
    }
    assert!(
        refused >= 5,
        "webhooks are answered 503 while nothing can be written"
    );
    // Past the one-second reuse of the last probe write.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = health(&app).await;
    assert_eq!(status, 503, "{body:#}");
    assert!(failing(&body).contains(&"database".to_string()), "{body:#}");

    // Room again: within seconds a webhook is stored, processed, and its run posts.
    limit_file_size(daemon.id(), "unlimited");
    let freed = Instant::now();
    let after = executed(AFTER, 0);
    loop {
        let status = post_webhook(&app, &after).await;
        if status == 200 {
            break;
        }
        assert!(
            freed.elapsed() < Duration::from_secs(10),
            "webhooks are still answered {status} {:?} after room came back",
            freed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "a webhook was stored {:?} after room came back",
        freed.elapsed()
    );
    eventually(
        Duration::from_secs(20),
        "the run of the exchange sent after the recovery",
        || sink.received().iter().any(|r| r.body.contains(AFTER)),
    )
    .await;
    let body = wait_healthy(&app, Duration::from_secs(30)).await;
    assert_eq!(body["status"], "ok");
    assert_eq!(terminate(&mut daemon), 0);
    let log = std::fs::read_to_string(app.path().join("daemon.log")).unwrap();
    assert!(
        !log.contains("non-zero transaction depth"),
        "a connection was reused dirty:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_names_a_database_locked_by_another_process_and_answers_at_once() {
    use sqlx::{ConnectOptions, Connection};
    let sink = Sink::start().await;
    let app = app(&sink);
    let mut daemon = app.spawn(&["run"], "daemon.log");
    let body = wait_healthy(&app, Duration::from_secs(10)).await;
    for part in ["database", "scheduler", "runner", "dispatcher", "inbox"] {
        assert_eq!(body["checks"][part]["ok"], true, "{part}: {body:#}");
    }

    let mut other = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(app.path().join("satflow.db"))
        .connect()
        .await
        .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut other)
        .await
        .unwrap();
    // Past the one-second reuse of the last probe write.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let asked = Instant::now();
    let (status, body) = health(&app).await;
    let took = asked.elapsed();
    assert_eq!(status, 503, "{body:#}");
    assert_eq!(failing(&body), ["database"], "{body:#}");
    assert!(
        body["checks"]["database"]["error"]
            .as_str()
            .unwrap()
            .contains("locked"),
        "{body:#}"
    );
    // Not a speed target: only that the answer does not wait the writers' 10 s busy timeout.
    assert!(took < Duration::from_secs(5), "/healthz took {took:?}");
    println!("/healthz answered 503 in {took:?} with the database locked");

    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    other.close().await.unwrap();
    wait_healthy(&app, Duration::from_secs(15)).await;
    assert_eq!(terminate(&mut daemon), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_amount_never_stops_the_daemon_and_report_warns_instead_of_panicking() {
    let sink = Sink::start().await;
    let app = app(&sink);
    let mut daemon = app.spawn(&["run"], "daemon.log");
    wait_healthy(&app, Duration::from_secs(10)).await;
    let poison = |id: &str| {
        let mut doc: Value = serde_json::from_slice(&executed(id, 0)).unwrap();
        doc["payload"]["amount"] = serde_json::from_str("10000000000000000000000000000").unwrap();
        doc.to_string().into_bytes()
    };
    // Several: their sums once overflowed `report`.
    for i in 0..3 {
        let status = post_webhook(&app, &poison(&format!("{POISON_PREFIX}-{i:012}"))).await;
        assert_eq!(
            status, 200,
            "a signed webhook is answered, whatever it holds"
        );
    }
    assert_eq!(post_webhook(&app, &executed(NORMAL, 0)).await, 200);
    eventually(Duration::from_secs(15), "the normal exchange's run", || {
        sink.received().iter().any(|r| r.body.contains(NORMAL))
    })
    .await;
    let body = wait_healthy(&app, Duration::from_secs(10)).await;
    assert_eq!(body["status"], "ok");

    for args in [&["report"][..], &["report", "--csv"]] {
        let report = app.satflow(args);
        assert_eq!(report.code, 0, "{args:?}: {report:?}");
        assert!(
            !report.stdout.contains(POISON_PREFIX),
            "{args:?}: {report:?}"
        );
        assert!(report.stdout.contains(NORMAL), "{args:?}: {report:?}");
    }
    // Unless the webhook edge refused the poison already, the report says what it left out.
    let report = app.satflow(&["report", "--json"]);
    assert_eq!(report.code, 0, "{report:?}");
    let json: Value = serde_json::from_str(&report.stdout).unwrap();
    let entries = json["entries"].as_array().unwrap();
    assert!(entries.iter().all(|e| e["reference"] == NORMAL), "{json:#}");
    let stored = app
        .satflow(&["exchanges", "show", FIRST_POISON, "--json"])
        .code
        == 0;
    if stored {
        let warnings = json["warnings"].as_array().unwrap();
        assert!(
            warnings
                .iter()
                .any(|w| w.as_str().unwrap().contains(FIRST_POISON)),
            "{json:#}"
        );
    }
    assert_eq!(terminate(&mut daemon), 0);
    let log = std::fs::read_to_string(app.path().join("daemon.log")).unwrap();
    assert!(!log.contains("panicked"), "{log}");
}
