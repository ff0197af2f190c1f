//! Outbox deliveries per second to a local HTTP sink: N items queued at once, drained by one
//! dispatcher, on this machine's cores. Prints figures; asserts nothing but that all arrived.
//!   cargo bench --bench outbox [-- N]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use satflow::actions::http_post as http;
use satflow::clock::SystemClock;
use satflow::config::OutboxConfig;
use satflow::notify::email::Alerts;
use satflow::outbox::{Dispatcher, Handlers};
use satflow::store::Store;
use serde_json::json;
use tokio::sync::Notify;

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
        let store = Store::open_sqlite(&dir.path().join("bench.db")).await.unwrap();
        let items: Vec<_> = (0..n)
            .map(|i| http::item(format!("bench/{i}"), None, &url, &[], json!({ "i": i }), &[], Duration::from_secs(10)).expect("an http payload is JSON"))
            .collect();
        store.enqueue(&items, satflow::clock::system_now()).await.unwrap();

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
        println!(
            "outbox: {n} HTTP deliveries in {:.2} s = {:.0} deliveries/s (claim, POST, record; SQLite WAL on disk)",
            elapsed.as_secs_f64(),
            n as f64 / elapsed.as_secs_f64()
        );
    });
}
