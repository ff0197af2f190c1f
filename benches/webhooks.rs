//! Signed webhooks into a running daemon: how many are acknowledged per second, the answer
//! latency (p50/p99), and how far processing lags behind. The load comes from this process
//! (64 concurrent connections) and competes with the daemon for the same cores.
//! Prints figures; asserts only that every webhook was stored and processed.
//!   cargo bench --bench webhooks [-- N]

use std::sync::Arc;
use std::time::{Duration, Instant};

use satflow::clock::SystemClock;
use satflow::pocket::webhook;
use satflow::source::{Diagnostics, ProcessEnv};
use tokio::sync::watch;

const SECRET: &str = "bench-secret";

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
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
        let config = satflow::config::load(&config_path, &ProcessEnv, &mut diags).config.expect("valid config");
        let (stop, stopped) = watch::channel(false);
        let daemon = tokio::spawn(satflow::engine::daemon::serve(config, Vec::new(), Arc::new(SystemClock), stopped, None));
        let url = format!("http://127.0.0.1:{port}/webhooks/pocket");
        let client = reqwest::Client::new();
        while client.get(format!("http://127.0.0.1:{port}/healthz")).send().await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let bodies: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    r#"{{"event":"exchange.executed","payload":{{"exchange_id":"{i:08x}-0000-4000-a000-00000000be7c","order_id":"0b5e7f7e-0000-4000-a000-000000000001","pair":"btc/eur","type":"buy","cost":100.00,"amount":0.00494000,"rate":20000.00,"fee":1.20,"action":null,"reason":null,"payout":null}}}}"#
                )
            })
            .collect();
        let bodies = Arc::new(bodies);
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let start = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..64 {
            let (client, url, bodies, next) = (client.clone(), url.clone(), Arc::clone(&bodies), Arc::clone(&next));
            workers.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { break };
                    let t = Instant::now();
                    let r = client
                        .post(&url)
                        .header("X-Signature-256", webhook::sign(SECRET.as_bytes(), body.as_bytes()))
                        .header("Content-Type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                    latencies.push(t.elapsed());
                }
                latencies
            }));
        }
        let mut latencies = Vec::new();
        for w in workers {
            latencies.extend(w.await.unwrap());
        }
        let ingest = start.elapsed();
        latencies.sort();
        let pct = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];

        let store = satflow::store::Store::open_sqlite(&dir.path().join("bench.db")).await.unwrap();
        loop {
            let (pending, _, failed) = store.inbox_backlog().await.unwrap();
            assert_eq!(failed, 0);
            if pending == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let processed = start.elapsed();
        assert_eq!(store.exchanges(i64::MAX).await.unwrap().len(), n);
        println!(
            "webhooks: {n} signed webhooks acknowledged in {:.2} s = {:.0}/s; answer latency p50 {:.1} ms, p99 {:.1} ms",
            ingest.as_secs_f64(),
            n as f64 / ingest.as_secs_f64(),
            pct(50).as_secs_f64() * 1000.0,
            pct(99).as_secs_f64() * 1000.0
        );
        println!(
            "processing finished {:.2} s after the last acknowledgement ({:.0} exchanges applied/s overall)",
            (processed - ingest).as_secs_f64(),
            n as f64 / processed.as_secs_f64()
        );
        let _ = stop.send(true);
        let _ = daemon.await;
    });
}
