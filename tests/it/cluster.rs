//! Three instances on one database, through the real binary: signed webhooks spread over all
//! three, a workflow scheduled every second and a workflow each webhook starts, both with
//! effects against a local sink that records idempotency keys, while a random instance is
//! SIGKILLed and restarted over and over. Afterwards every acknowledged webhook is stored and
//! started its run, every expected effect arrived, and none was applied twice (two keys for one
//! fire or one webhook); a resend under the same key is the contract (the sink deduplicates it)
//! and is counted, not refused.
//!
//! The database is SQLite (three processes on one file); `SATFLOW_TEST_POSTGRES_URL` has no
//! effect here until the PostgreSQL backend lands.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use satflow::pocket::webhook;
use serde_json::{Value, json};

use super::helpers::{TestApp, closed_port, listening, terminate};
use super::sink::Sink;
use super::webhooks::{SECRET, payload, uid};

const INSTANCES: usize = 3;
const KILLS: usize = 100;

/// xorshift64: reproducible from the printed seed.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// The instances' current addresses (`None` while one is down).
type Addresses = Arc<Mutex<Vec<Option<String>>>>;

fn setup(sink: &Sink) -> TestApp {
    let app = TestApp::empty();
    // Read-backs go nowhere (a closed port): settled exchanges are final and never read back.
    let config = format!(
        "database: sqlite://satflow.db\nlisten: 127.0.0.1:0\n\
         pocket: {{ base_url: \"http://127.0.0.1:{}\", client_id: sandbox-client, webhook_secret: \"{SECRET}\", reconcile_every: 1s }}\n\
         alerts: []\n\
         engine: {{ lease: 1s, shutdown_grace: 5s }}\n\
         outbox: {{ base_delay: 100ms, max_delay: 1s, max_attempts: 50 }}\n",
        closed_port()
    );
    app.write("satflow.yaml", &config);
    for i in 0..INSTANCES {
        app.write(&format!("i{i}.yaml"), &config);
    }
    app.write(
        "workflows/tick.yaml",
        &format!(
            "on:\n  schedule: {{ cron: \"* * * * * *\", catch_up: skip }}\nsteps:\n  - id: s1\n    uses: http.post\n    with: {{ url: \"{}\", json: {{ fire: \"{{{{ run.key }}}}\" }} }}\n",
            sink.url("/tick")
        ),
    );
    app.write(
        "workflows/settled.yaml",
        &format!(
            "on: {{ event: [exchange.settled] }}\nsteps:\n  - id: s1\n    uses: http.post\n    with: {{ url: \"{0}\", json: {{ id: \"{{{{ event.exchange_id }}}}\" }} }}\n  - id: s2\n    uses: http.post\n    with: {{ url: \"{0}\", json: {{ id: \"{{{{ event.exchange_id }}}}\" }} }}\n",
            sink.url("/settled")
        ),
    );
    let check = app.satflow(&["check"]);
    assert_eq!(check.code, 0, "{check:?}");
    app
}

fn spawn(app: &TestApp, i: usize) -> std::process::Child {
    app.spawn(&["run", "-c", &format!("i{i}.yaml")], &format!("i{i}.log"))
}

/// Sends settled webhooks for `n0, n1, …` to a random live instance, each again (to another
/// instance, as Pocket retries) until one acknowledges it; returns the names acknowledged.
async fn send_webhooks(
    addresses: Addresses,
    stop: Arc<std::sync::atomic::AtomicBool>,
    mut seed: u64,
) -> Vec<String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut acked = Vec::new();
    let mut n = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let name = format!("n{n}");
        n += 1;
        let body = json!({ "event": "exchange.settled", "payload": payload(&name, "settled") })
            .to_string();
        let signature = webhook::sign(SECRET.as_bytes(), body.as_bytes());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(Instant::now() < deadline, "no instance took webhook {name}");
            let live: Vec<String> = addresses
                .lock()
                .unwrap()
                .iter()
                .flatten()
                .cloned()
                .collect();
            let Some(addr) = live.get(next(&mut seed) as usize % live.len().max(1)) else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let sent = client
                .post(format!("http://{addr}/webhooks/pocket"))
                .header("Content-Type", "application/json")
                .header("X-Signature-256", &signature)
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(r) if r.status() == 200 => break,
                // Killed mid-request, or not up yet: the sender tries again elsewhere.
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        acked.push(name);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    acked
}

/// `runs --json` of every run, parsed.
fn all_runs(app: &TestApp) -> Vec<Value> {
    let run = app.satflow(&["runs", "--json", "--limit", "100000"]);
    assert_eq!(run.code, 0, "{run:?}");
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    doc["runs"].as_array().unwrap().clone()
}

/// Waits until the inbox and the outbox are empty and every run has finished.
async fn settle(app: &TestApp, base: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let health: Option<Value> = match reqwest::get(format!("{base}/healthz")).await {
            Ok(r) => r.json().await.ok(),
            Err(_) => None,
        };
        let idle = health
            .as_ref()
            .is_some_and(|h| h["webhooks"]["pending"] == 0 && h["outbox"]["pending"] == 0)
            && all_runs(app)
                .iter()
                .all(|r| r["status"] == "succeeded" || r["status"] == "failed");
        if idle {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the instances did not settle: {health:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_killed_at_random_lose_nothing_and_double_nothing() {
    let sink = Sink::start().await;
    // Effects take a while, so kills land while deliveries are in flight.
    sink.set_delay(Duration::from_millis(50));
    let app = setup(&sink);
    let started = Instant::now();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("seed {seed}");

    let mut children = Vec::new();
    for i in 0..INSTANCES {
        children.push(spawn(&app, i));
    }
    let addresses: Addresses = Arc::new(Mutex::new(vec![None; INSTANCES]));
    for i in 0..INSTANCES {
        let addr = listening(&app.path().join(format!("i{i}.log"))).await;
        addresses.lock().unwrap()[i] = Some(addr);
    }
    // Each instance sees the others alive.
    let first = addresses.lock().unwrap()[0].clone().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let health: Value = reqwest::get(format!("http://{first}/healthz"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if health["instances"].as_array().map(Vec::len) == Some(INSTANCES) {
            assert!(health["instance"].is_string(), "{health}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "healthz does not show three instances: {health}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = tokio::spawn(send_webhooks(
        Arc::clone(&addresses),
        Arc::clone(&stop),
        next(&mut seed),
    ));
    for _ in 0..KILLS {
        let victim = next(&mut seed) as usize % INSTANCES;
        tokio::time::sleep(Duration::from_millis(100 + next(&mut seed) % 500)).await;
        addresses.lock().unwrap()[victim] = None;
        children[victim].kill().unwrap();
        children[victim].wait().unwrap();
        children[victim] = spawn(&app, victim);
        let addr = listening(&app.path().join(format!("i{victim}.log"))).await;
        addresses.lock().unwrap()[victim] = Some(addr);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = sender.await.unwrap();
    let kill_phase = started.elapsed();
    let last: Vec<String> = addresses
        .lock()
        .unwrap()
        .iter()
        .flatten()
        .cloned()
        .collect();
    let base = format!("http://{}", last[0]);
    settle(&app, &base, Duration::from_secs(90)).await;
    // A tick may fire between the settled check and the stop; stopping gracefully finishes it.
    for child in &mut children {
        assert_eq!(terminate(child), 0);
    }
    let status = app.satflow(&["status", "--json"]);
    let status: Value = serde_json::from_str(&status.stdout).unwrap();
    // Stopped instances are no longer shown alive at once; killed ones until their heartbeat
    // is older than the limit.
    let shown: Vec<&str> = status["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["listen"].as_str().unwrap())
        .collect();
    assert!(
        last.iter().all(|addr| !shown.contains(&addr.as_str())),
        "a stopped instance is still shown alive: {shown:?} {last:?}"
    );

    let runs = all_runs(&app);
    let unfinished: Vec<&Value> = runs.iter().filter(|r| r["status"] != "succeeded").collect();
    assert!(unfinished.is_empty(), "runs not succeeded: {unfinished:#?}");
    let received = sink.received();
    // What each delivered key stands for: the fire time, or the exchange.
    let mut deliveries: BTreeMap<String, usize> = BTreeMap::new();
    let mut keys_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in &received {
        *deliveries.entry(r.key.clone()).or_default() += 1;
        let body: Value = serde_json::from_str(&r.body).unwrap();
        let step = r.key.rsplit('/').next().unwrap();
        let what = match r.path.as_str() {
            "/tick" => format!("fire {}", body["fire"].as_str().unwrap()),
            _ => format!("exchange {} {step}", body["id"].as_str().unwrap()),
        };
        keys_of.entry(what).or_default().insert(r.key.clone());
    }
    let mut expected = BTreeSet::new();
    let mut ticks = BTreeMap::<String, usize>::new();
    let mut events = BTreeMap::<String, usize>::new();
    for run in &runs {
        let id = &run["id"];
        let key = run["trigger_key"]
            .as_str()
            .or_else(|| run["key"].as_str())
            .unwrap_or_default()
            .to_string();
        match run["workflow"].as_str().unwrap() {
            "tick" => {
                expected.insert(format!("run/{id}/step/s1"));
                *ticks.entry(key).or_default() += 1;
            }
            "settled" => {
                expected.insert(format!("run/{id}/step/s1"));
                expected.insert(format!("run/{id}/step/s2"));
                *events.entry(key).or_default() += 1;
            }
            other => panic!("a run of {other}"),
        }
    }
    let lost: Vec<&String> = expected
        .iter()
        .filter(|k| !deliveries.contains_key(*k))
        .collect();
    let stray: Vec<&String> = deliveries
        .keys()
        .filter(|k| !expected.contains(*k))
        .collect();
    let doubled: Vec<(&String, &BTreeSet<String>)> =
        keys_of.iter().filter(|(_, keys)| keys.len() > 1).collect();
    let resent: usize = deliveries.values().map(|n| n - 1).sum();
    let missing_runs: Vec<&String> = acked
        .iter()
        .filter(|name| {
            !events
                .keys()
                .any(|k| k.starts_with(&uid(name)) && k.ends_with("exchange.settled"))
        })
        .collect();
    println!(
        "cluster (sqlite, {INSTANCES} instances): {KILLS} kills in {:.0} s; events {} acknowledged, {} event runs, {} fires run; effects {} expected, {} delivered ({} resent under the same key); lost {}, doubled {}, runs missing {}",
        kill_phase.as_secs_f64(),
        acked.len(),
        events.len(),
        ticks.len(),
        expected.len(),
        deliveries.len(),
        resent,
        lost.len(),
        doubled.len(),
        missing_runs.len(),
    );
    assert!(!acked.is_empty() && !ticks.is_empty());
    assert!(
        missing_runs.is_empty(),
        "acknowledged webhooks that started no run: {missing_runs:?}"
    );
    assert_eq!(
        events.len(),
        acked.len(),
        "one run per acknowledged webhook"
    );
    assert!(
        ticks.values().chain(events.values()).all(|n| *n == 1),
        "a fire or a webhook started two runs"
    );
    // Every second between the first fire and the last has its run: no fire was lost while
    // instances died (one is always up, and a fire noticed late is still run).
    let fires: Vec<chrono::DateTime<chrono::Utc>> = ticks
        .keys()
        .map(|k| chrono::DateTime::parse_from_rfc3339(k).unwrap().to_utc())
        .collect();
    let gaps: Vec<_> = fires
        .windows(2)
        .filter(|w| w[1] - w[0] != chrono::Duration::seconds(1))
        .collect();
    assert!(gaps.is_empty(), "fires missing between: {gaps:?}");
    assert!(lost.is_empty(), "effects that never arrived: {lost:?}");
    assert!(stray.is_empty(), "effects of no run: {stray:?}");
    assert!(doubled.is_empty(), "effects applied twice: {doubled:?}");
}
