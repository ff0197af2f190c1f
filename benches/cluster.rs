//! The same load on SQLite with one instance, on PostgreSQL with one, and on PostgreSQL with
//! three release binaries sharing the database, in one run on this machine: signed webhooks
//! acknowledged per second, runs of a one-effect workflow finished per second, and outbox
//! deliveries per second. The load (64 connections) and the HTTP sink run in this process and
//! compete with the instances for the same cores. Prints figures; asserts only that everything
//! arrived. PostgreSQL is the server `SATFLOW_TEST_POSTGRES_URL` names, else
//! `postgres://postgres@127.0.0.1:5432/postgres` (a database of its own per setup, dropped after).
//!   cargo bench --bench cluster [-- N]

use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use satflow::actions::http_post as http;
use satflow::config::PostgresUrl;
use satflow::pocket::webhook;
use satflow::store::{RunStatus, Store, Trigger};
use serde_json::json;
use sqlx::Connection;

const SECRET: &str = "bench-secret";

/// One setup measured: its database and how many instances share it.
struct Setup {
    name: &'static str,
    postgres: bool,
    instances: usize,
}

/// What one setup measured.
struct Figures {
    ingest: f64,
    runs: f64,
    deliveries: f64,
}

fn admin_url() -> String {
    std::env::var("SATFLOW_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

async fn admin() -> sqlx::PgConnection {
    sqlx::PgConnection::connect(&admin_url())
        .await
        .unwrap_or_else(|e| {
            panic!("no PostgreSQL server answers (set SATFLOW_TEST_POSTGRES_URL): {e}")
        })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The rate over the middle of a drain (from 10 % to 90 % of `n` done), so that startup and
/// the last stragglers do not weigh in. `done` is polled every 20 ms.
async fn rate<F, Fut>(n: usize, limit: Duration, mut done: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: Future<Output = usize>,
{
    let start = Instant::now();
    let mut low = None;
    loop {
        let d = done().await;
        let now = Instant::now();
        if low.is_none() && d >= n / 10 {
            low = Some((now, d));
        }
        if d >= n * 9 / 10 {
            let (t, d0) = low.unwrap();
            return (d - d0) as f64 / (now - t).as_secs_f64().max(0.02);
        }
        assert!(
            start.elapsed() < limit,
            "only {d} of {n} done after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn spawn(bin: &Path, dir: &Path, i: usize) -> Child {
    let log = std::fs::File::create(dir.join(format!("i{i}.log"))).unwrap();
    Command::new(bin)
        .args(["run", "-q", "-c", &format!("i{i}.yaml")])
        .current_dir(dir)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

async fn measure(setup: &Setup, n: usize, sink: &str, hits: &AtomicUsize) -> Figures {
    let dir = tempfile::tempdir().unwrap();
    let pg_name = format!("satflow_bench_{}_{}", std::process::id(), setup.instances);
    let database = if setup.postgres {
        let mut conn = admin().await;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {pg_name} WITH (FORCE)"))
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query(&format!("CREATE DATABASE {pg_name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let mut url = url::Url::parse(&admin_url()).unwrap();
        url.set_path(&format!("/{pg_name}"));
        url.to_string()
    } else {
        "sqlite://bench.db".into()
    };
    let store = if setup.postgres {
        Store::open_postgres(&PostgresUrl::new(database.clone()))
            .await
            .unwrap()
    } else {
        Store::open_sqlite(&dir.path().join("bench.db"))
            .await
            .unwrap()
    };
    std::fs::create_dir_all(dir.path().join("workflows")).unwrap();
    std::fs::write(
        dir.path().join("workflows/work.yaml"),
        format!("steps:\n  - id: s1\n    uses: http.post\n    with: {{ url: \"{sink}/run\", json: {{ run: \"{{{{ run.id }}}}\" }} }}\n"),
    )
    .unwrap();
    let mut ports = Vec::new();
    for i in 0..setup.instances {
        let port = free_port();
        ports.push(port);
        std::fs::write(
            dir.path().join(format!("i{i}.yaml")),
            format!(
                "database: \"{database}\"\nlisten: 127.0.0.1:{port}\nalerts: []\n\
                 pocket: {{ base_url: \"http://127.0.0.1:9\", client_id: bench, webhook_secret: {SECRET}, reconcile_every: 1h }}\n"
            ),
        )
        .unwrap();
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_satflow"));
    let mut children: Vec<Child> = (0..setup.instances)
        .map(|i| spawn(bin, dir.path(), i))
        .collect();
    let client = reqwest::Client::new();
    for port in &ports {
        let deadline = Instant::now() + Duration::from_secs(30);
        while client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "instance on port {port} did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // Runs: N queued one after the other, each one HTTP effect; finished (succeeded) per
    // second from the first queued to the last finished (several instances may finish them
    // all while they are still being queued, so no sample of the middle would be left).
    let now = satflow::clock::system_now();
    let start = Instant::now();
    for i in 0..n {
        store
            .queue_run("work", Trigger::Manual, &format!("bench-{i}"), None, now)
            .await
            .unwrap();
    }
    loop {
        let counts = store.run_counts().await.unwrap();
        let count = |status| {
            counts
                .iter()
                .find(|(s, _)| *s == status)
                .map_or(0, |c| c.1 as usize)
        };
        assert_eq!(count(RunStatus::Failed), 0, "runs failed");
        if count(RunStatus::Succeeded) >= n {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "runs not finished after 600 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let runs = n as f64 / start.elapsed().as_secs_f64();

    // Outbox: N HTTP items queued in one transaction; delivered per second.
    hits.store(0, Ordering::Relaxed);
    let items: Vec<_> = (0..n)
        .map(|i| {
            http::item(
                format!("bench/{i}"),
                None,
                &format!("{sink}/item"),
                &[],
                json!({ "i": i }),
                &[],
                Duration::from_secs(10),
            )
            .unwrap()
        })
        .collect();
    store
        .enqueue(&items, satflow::clock::system_now())
        .await
        .unwrap();
    let deliveries = rate(n, Duration::from_secs(600), move || async move {
        hits.load(Ordering::Relaxed)
    })
    .await;
    // The rate is read over the middle 80%: wait for the rest, then every item must have
    // been delivered exactly once.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (pending, dead) = store.outbox_backlog().await.unwrap();
        assert_eq!(dead, 0, "no delivery may fail");
        if pending == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{pending} items still pending");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(hits.load(Ordering::Relaxed), n, "each item delivered once");

    // Webhooks: N signed ones over 64 connections, spread over the instances; acknowledged
    // per second, then every one applied.
    let bodies: Arc<Vec<String>> = Arc::new(
        (0..n)
            .map(|i| {
                format!(
                    r#"{{"event":"exchange.executed","payload":{{"exchange_id":"{i:08x}-0000-4000-a000-00000000be7c","order_id":"0b5e7f7e-0000-4000-a000-000000000001","pair":"btc/eur","type":"buy","cost":100.00,"amount":0.00494000,"rate":20000.00,"fee":1.20,"action":null,"reason":null,"payout":null}}}}"#
                )
            })
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let ports = Arc::new(ports);
    let start = Instant::now();
    let workers: Vec<_> = (0..64)
        .map(|_| {
            let (client, bodies, next, ports) = (
                client.clone(),
                Arc::clone(&bodies),
                Arc::clone(&next),
                Arc::clone(&ports),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { break };
                    let port = ports[i % ports.len()];
                    let r = client
                        .post(format!("http://127.0.0.1:{port}/webhooks/pocket"))
                        .header(
                            "X-Signature-256",
                            webhook::sign(SECRET.as_bytes(), body.as_bytes()),
                        )
                        .header("Content-Type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let ingest = n as f64 / start.elapsed().as_secs_f64();
    loop {
        let (pending, _, failed) = store.inbox_backlog().await.unwrap();
        assert_eq!(failed, 0);
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(store.exchanges(i64::MAX).await.unwrap().len(), n);

    for child in &mut children {
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        child.wait().unwrap();
    }
    store.close().await;
    if setup.postgres {
        let mut conn = admin().await;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {pg_name} WITH (FORCE)"))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    Figures {
        ingest,
        runs,
        deliveries,
    }
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        // Only the outbox items' deliveries are counted (the runs' effects go to /run).
        let app = Router::new().fallback(move |uri: axum::http::Uri| {
            let counter = Arc::clone(&counter);
            async move {
                if uri.path() == "/item" {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                "{\"ok\":true}"
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let setups = [
            Setup {
                name: "SQLite",
                postgres: false,
                instances: 1,
            },
            Setup {
                name: "PostgreSQL",
                postgres: true,
                instances: 1,
            },
            Setup {
                name: "PostgreSQL",
                postgres: true,
                instances: 3,
            },
        ];
        println!(
            "cluster bench: {n} of each, release binaries, {} cores",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        println!(
            "{:<24} {:>16} {:>16} {:>20}",
            "setup", "webhooks acked/s", "runs finished/s", "outbox deliveries/s"
        );
        for setup in &setups {
            let f = measure(setup, n, &sink, &hits).await;
            println!(
                "{:<24} {:>16.0} {:>16.0} {:>20.0}",
                format!(
                    "{}, {} instance{}",
                    setup.name,
                    setup.instances,
                    if setup.instances == 1 { "" } else { "s" }
                ),
                f.ingest,
                f.runs,
                f.deliveries
            );
        }
    });
}
