//! The rate and latency figures of `scripts/bench.sh`, measured in one process so they are
//! comparable: the disk's raw durable-insert rate, then satflow's webhook ingest and exchange
//! apply rates, its outbox delivery rate, the webhook acknowledgement latency under a constant
//! (open-loop) load, and the cold start of a real binary to `/healthz` 200.
//!
//! Prints human lines and `FIGURE <key> <value>` lines for the script; asserts only that every
//! webhook and delivery arrived. It must never be read as a pass/fail test: figures depend on
//! the machine and on whatever else runs on it.
//!   cargo bench --bench footprint -- [raw|webhooks|outbox|latency|all] [n=5000] [rate=1000] [secs=10]
//!   cargo bench --bench footprint -- coldstart bin=PATH [runs=5]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use satflow::actions::http_post as http;
use satflow::clock::SystemClock;
use satflow::config::OutboxConfig;
use satflow::notify::email::Alerts;
use satflow::outbox::{Dispatcher, Handlers};
use satflow::pocket::webhook;
use satflow::source::{Diagnostics, ProcessEnv};
use satflow::store::Store;
use serde_json::json;
use sqlx::{ConnectOptions, Connection};
use tokio::sync::{Notify, watch};

const SECRET: &str = "bench-secret";

struct Args {
    what: String,
    n: usize,
    rate: u64,
    secs: u64,
    runs: usize,
    bin: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        what: "all".into(),
        n: 5000,
        rate: 1000,
        secs: 10,
        runs: 5,
        bin: None,
    };
    // `cargo bench` passes `--bench`; anything that is not ours is ignored.
    for arg in std::env::args().skip(1) {
        match arg.split_once('=') {
            Some(("n", v)) => a.n = v.parse().expect("n=<count>"),
            Some(("rate", v)) => a.rate = v.parse().expect("rate=<per second>"),
            Some(("secs", v)) => a.secs = v.parse().expect("secs=<seconds>"),
            Some(("runs", v)) => a.runs = v.parse().expect("runs=<count>"),
            Some(("bin", v)) => a.bin = Some(v.to_string()),
            None if !arg.starts_with('-') => a.what = arg,
            _ => {}
        }
    }
    a
}

fn figure(key: &str, value: f64) {
    println!("FIGURE {key} {value:.1}");
}

/// The daemon's own runtime shape (two workers), apart from the load generator's.
fn daemon_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn main() {
    let a = args();
    let all = a.what == "all";
    if all || a.what == "raw" {
        raw(a.n);
    }
    if all || a.what == "webhooks" {
        webhooks(a.n);
    }
    if all || a.what == "outbox" {
        outbox(a.n);
    }
    if all || a.what == "latency" {
        latency(a.rate, a.secs);
    }
    if a.what == "coldstart" {
        coldstart(a.bin.as_deref().expect("coldstart needs bin=PATH"), a.runs);
    }
}

/// One row per transaction on a `synchronous=FULL` WAL database: one fsync per insert, the
/// disk's durable commit rate that every satflow rate is compared with. Measurement SQL, not
/// satflow's: it lives here rather than in src/store because it is only ever a yardstick.
fn raw(n: usize) {
    daemon_runtime().block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("raw.db"))
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
            .connect()
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
            .execute(&mut conn)
            .await
            .unwrap();
        let body = "x".repeat(400);
        let start = Instant::now();
        for i in 0..n as i64 {
            sqlx::query("INSERT INTO t (id, body) VALUES ($1, $2)")
                .bind(i)
                .bind(&body)
                .execute(&mut conn)
                .await
                .unwrap();
        }
        let elapsed = start.elapsed();
        let _ = conn.close().await;
        let rate = n as f64 / elapsed.as_secs_f64();
        println!(
            "raw sqlite: {n} single-row durable transactions in {:.2} s = {rate:.0}/s",
            elapsed.as_secs_f64()
        );
        figure("raw_insert_per_s", rate);
    });
}

/// A daemon with Pocket webhooks and no workflows, on its own runtime; the returned guard
/// stops it.
struct Daemon {
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    port: u16,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Daemon {
    fn start() -> Daemon {
        let rt = daemon_runtime();
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config_path = dir.path().join("satflow.yaml");
        std::fs::write(
            &config_path,
            format!(
                "database: sqlite://bench.db\nlisten: 127.0.0.1:{port}\nalerts: []\n\
                 pocket: {{ base_url: \"http://127.0.0.1:9\", client_id: bench, webhook_secret: {SECRET}, reconcile_every: 1h }}\n"
            ),
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("workflows")).unwrap();
        let mut diags = Diagnostics::default();
        let config = satflow::config::load(&config_path, &ProcessEnv, &mut diags)
            .config
            .expect("valid config");
        let (stop, stopped) = watch::channel(false);
        let task = rt.spawn(async move {
            let _ = satflow::engine::daemon::serve(
                config,
                Vec::new(),
                Arc::new(SystemClock),
                stopped,
                None,
            )
            .await;
        });
        let d = Daemon {
            rt,
            dir,
            port,
            stop,
            task: Some(task),
        };
        let health = format!("http://127.0.0.1:{port}/healthz");
        d.rt.block_on(async {
            let client = reqwest::Client::new();
            while client.get(&health).send().await.is_err() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        d
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/webhooks/pocket", self.port)
    }

    /// Waits until every stored webhook is applied; `n` exchanges must exist then.
    async fn drained(dir: &std::path::Path, n: usize) {
        let store = Store::open_sqlite(&dir.join("bench.db")).await.unwrap();
        loop {
            let (pending, _, failed) = store.inbox_backlog().await.unwrap();
            assert_eq!(failed, 0, "no webhook may fail");
            if pending == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(store.exchanges(i64::MAX).await.unwrap().len(), n);
        store.close().await;
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = self.rt.block_on(task);
        }
    }
}

fn body(i: usize) -> String {
    format!(
        r#"{{"event":"exchange.executed","payload":{{"exchange_id":"{i:08x}-0000-4000-a000-00000000be7c","order_id":"0b5e7f7e-0000-4000-a000-000000000001","pair":"btc/eur","type":"buy","cost":100.00,"amount":0.00494000,"rate":20000.00,"fee":1.20,"action":null,"reason":null,"payout":null}}}}"#
    )
}

/// A load generator's runtime, on threads of its own so it does not queue behind the daemon's
/// tasks (the cores are still shared).
fn load_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// `n` signed webhooks from 64 connections as fast as they are answered (closed loop: the
/// ingest ceiling), then until every one is applied to its exchange.
fn webhooks(n: usize) {
    let daemon = Daemon::start();
    let url = daemon.url();
    let dir = daemon.dir.path().to_path_buf();
    load_runtime().block_on(async move {
        let client = reqwest::Client::new();
        let bodies: Arc<Vec<String>> = Arc::new((0..n).map(body).collect());
        let next = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..64 {
            let (client, url, bodies, next) = (client.clone(), url.clone(), Arc::clone(&bodies), Arc::clone(&next));
            workers.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { break };
                    let r = client
                        .post(&url)
                        .header("X-Signature-256", webhook::sign(SECRET.as_bytes(), body.as_bytes()))
                        .header("Content-Type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                }
            }));
        }
        for w in workers {
            w.await.unwrap();
        }
        let ingest = start.elapsed();
        Daemon::drained(&dir, n).await;
        let processed = start.elapsed();
        let ingest_rate = n as f64 / ingest.as_secs_f64();
        let apply_rate = n as f64 / processed.as_secs_f64();
        println!(
            "webhooks: {n} acknowledged in {:.2} s = {ingest_rate:.0}/s; all applied {:.2} s later = {apply_rate:.0} exchanges applied/s overall",
            ingest.as_secs_f64(),
            (processed - ingest).as_secs_f64()
        );
        figure("webhook_ingest_per_s", ingest_rate);
        figure("exchange_apply_per_s", apply_rate);
    });
    drop(daemon);
}

/// `n` HTTP items queued at once and drained by one dispatcher to a local sink.
fn outbox(n: usize) {
    daemon_runtime().block_on(async move {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        let app = Router::new().fallback(move || {
            let counter = Arc::clone(&counter);
            async move {
                counter.fetch_add(1, Ordering::Relaxed);
                "{\"ok\":true}"
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("bench.db"))
            .await
            .unwrap();
        let items: Vec<_> = (0..n)
            .map(|i| {
                http::item(
                    format!("bench/{i}"),
                    None,
                    &url,
                    &[],
                    json!({ "i": i }),
                    &[],
                    Duration::from_secs(10),
                )
                .expect("an http payload is JSON")
            })
            .collect();
        store
            .enqueue(&items, satflow::clock::system_now())
            .await
            .unwrap();
        let dispatcher = Arc::new(Dispatcher {
            store: store.clone(),
            handlers: Handlers::new(None, None, None, None),
            effects: Arc::new(satflow::actions::effects::Effects),
            clock: Arc::new(SystemClock),
            config: OutboxConfig::default(),
            lease: chrono::Duration::seconds(30),
            owner: "bench".into(),
            alerts: Alerts::new(None, Default::default()),
            env: satflow::workflow::expr::environment(),
            wake: Arc::new(Notify::new()),
            wake_runner: Arc::new(Notify::new()),
            heartbeat: Default::default(),
        });
        let start = Instant::now();
        while dispatcher.run_once().await.unwrap() > 0 {}
        let elapsed = start.elapsed();
        let (pending, dead) = store.outbox_backlog().await.unwrap();
        assert_eq!((pending, dead), (0, 0));
        assert_eq!(hits.load(Ordering::Relaxed), n);
        let rate = n as f64 / elapsed.as_secs_f64();
        println!(
            "outbox: {n} HTTP deliveries in {:.2} s = {rate:.0}/s",
            elapsed.as_secs_f64()
        );
        figure("outbox_delivery_per_s", rate);
    });
}

/// Signed webhooks at a constant `rate` for `secs` seconds, open loop: request i is due at
/// start + i/rate whatever happened to the earlier ones, and its latency counts from when it was
/// due (a late send is latency too), so a slow daemon cannot slow the load down and hide.
fn latency(rate: u64, secs: u64) {
    let daemon = Daemon::start();
    let url = daemon.url();
    let total = (rate * secs) as usize;
    load_runtime().block_on(async move {
        // Enough idle keep-alive connections that sends never wait for a connect.
        let client = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();
        let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
        let start = tokio::time::Instant::now() + Duration::from_millis(50);
        let mut tasks = Vec::with_capacity(total);
        for i in 0..total {
            let due = start + interval * i as u32;
            tokio::time::sleep_until(due).await;
            let (client, url, body) = (client.clone(), url.clone(), body(1_000_000 + i));
            tasks.push(tokio::spawn(async move {
                let r = client
                    .post(&url)
                    .header("X-Signature-256", webhook::sign(SECRET.as_bytes(), body.as_bytes()))
                    .header("Content-Type", "application/json")
                    .body(body)
                    .send()
                    .await;
                let ok = matches!(&r, Ok(r) if r.status() == 200);
                (due.elapsed(), ok)
            }));
        }
        let sent = start.elapsed();
        let mut latencies = Vec::with_capacity(total);
        let mut failed = 0;
        for t in tasks {
            let (l, ok) = t.await.unwrap();
            if !ok {
                failed += 1;
            }
            latencies.push(l);
        }
        latencies.sort();
        let pct = |p: f64| latencies[((latencies.len() as f64 * p / 100.0) as usize).min(latencies.len() - 1)].as_secs_f64() * 1000.0;
        println!(
            "ack latency at a constant {rate}/s for {secs} s ({total} webhooks, sent over {:.2} s, {failed} not 200): p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
            sent.as_secs_f64(),
            pct(50.0),
            pct(90.0),
            pct(99.0),
            pct(99.9),
            pct(100.0)
        );
        figure("ack_p50_ms", pct(50.0));
        figure("ack_p99_ms", pct(99.0));
        figure("ack_p999_ms", pct(99.9));
        figure("ack_max_ms", pct(100.0));
        figure("ack_failed", failed as f64);
    });
    drop(daemon);
}

/// The real binary started `runs` times on a fresh setup each time: milliseconds from spawn to
/// the first `/healthz` 200.
fn coldstart(bin: &str, runs: usize) {
    let rt = load_runtime();
    let mut times = Vec::new();
    for _ in 0..runs {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("satflow.yaml");
        std::fs::write(
            &config,
            format!("database: sqlite://cold.db\nlisten: 127.0.0.1:{port}\nalerts: []\n"),
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("workflows")).unwrap();
        let health = format!("http://127.0.0.1:{port}/healthz");
        let start = Instant::now();
        let mut child = std::process::Command::new(bin)
            .args(["run", "-q", "-c"])
            .arg(&config)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the binary starts");
        let took = rt.block_on(async {
            let client = reqwest::Client::new();
            loop {
                if let Ok(r) = client.get(&health).send().await
                    && r.status() == 200
                {
                    return start.elapsed();
                }
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "no /healthz 200 within 20 s"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        times.push(took.as_secs_f64() * 1000.0);
        // SIGTERM, the way a service manager stops it.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let _ = child.wait();
    }
    times.sort_by(f64::total_cmp);
    println!(
        "cold start to /healthz 200 over {runs} runs: min {:.1} ms, median {:.1} ms, max {:.1} ms",
        times[0],
        times[times.len() / 2],
        times[times.len() - 1]
    );
    figure("coldstart_median_ms", times[times.len() / 2]);
    figure("coldstart_max_ms", times[times.len() - 1]);
}
