//! Lightning payouts: time from the executed webhook's arrival to Pocket's answer to the payout
//! PATCH (invoice asked of the node, checked, sent), p50/p99 over 200 exchanges, with the
//! sandbox and a node stand-in on loopback. Prints figures; asserts only that all settled.
//!   cargo bench --bench payout [-- N]

use std::sync::Arc;
use std::time::Duration;

use bitcoin::secp256k1::SecretKey;
use satflow::clock::SystemClock;
use satflow::lightning::signmessage::sign_node_message;
use satflow::pocket::PocketClient;
use satflow::pocket::types::{NewBuyOrder, NewPayout};
use satflow::sandbox::lightning as standin;
use satflow::sandbox::{self, SandboxOptions};
use satflow::store::Store;
use secrecy::SecretString;
use tokio::sync::watch;

const SECRET: &str = "bench-secret";

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (pocket, _sb) = sandbox::spawn(SandboxOptions {
            webhook_url: Some(format!("http://127.0.0.1:{port}/webhooks/pocket")),
            webhook_secret: Some(SECRET.into()),
            ..SandboxOptions::default()
        })
        .await;
        let node = standin::spawn(SecretKey::from_slice(&[21; 32]).unwrap(), "bench-rune").await.unwrap();
        std::fs::create_dir_all(dir.path().join("workflows")).unwrap();
        std::fs::write(
            dir.path().join("satflow.yaml"),
            format!(
                "database: sqlite://bench.db\nlisten: 127.0.0.1:{port}\nalerts: []\n\
                 pocket: {{ base_url: \"http://{pocket}\", client_id: sandbox-client, webhook_secret: {SECRET}, reconcile_every: 1h }}\n\
                 lightning:\n  mynode: {{ cln: {{ url: \"{}\", rune: bench-rune }}, node_pubkey: {} }}\n",
                node.url,
                node.pubkey()
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("workflows/zap.yaml"),
            "steps:\n  - uses: pocket.order\n    with: { currency: eur, fee_rate: 0.012, debitor_iban: DE89370400440532013000, payout: { lightning: mynode } }\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("workflows/payout.yaml"),
            "on: { event: exchange.executed }\nsteps:\n  - uses: pocket.payout\n    with: { node: mynode }\n",
        )
        .unwrap();
        let setup = satflow::cli::load_setup(&dir.path().join("satflow.yaml")).unwrap_or_else(|p| panic!("{p:?}"));

        // The order, as `order setup` makes it.
        let client = PocketClient::with_base(format!("http://{pocket}/").parse().unwrap(), SecretString::from("sandbox-client".to_string()));
        let challenge = client.create_challenge().await.unwrap();
        let message = challenge.message();
        let order = client
            .create_buy_order(&NewBuyOrder {
                active: true,
                fee_rate: "0.012".parse().unwrap(),
                currency: satflow::domain::Currency::Eur,
                debitor_iban: "DE89370400440532013000".parse().unwrap(),
                payout: NewPayout::Lightning {
                    node_pubkey: node.pubkey().to_string(),
                    message: message.clone(),
                    signature: sign_node_message(&node.key, &message),
                    lightning_address: None,
                },
                affiliate_id: None,
            })
            .await
            .unwrap();
        let store = Store::open_sqlite(&dir.path().join("bench.db")).await.unwrap();
        store.save_order("zap", "lightning", &order, satflow::clock::system_now()).await.unwrap();

        let (stop, stopped) = watch::channel(false);
        let daemon = tokio::spawn(satflow::engine::daemon::serve(setup.config, setup.workflows, Arc::new(SystemClock), stopped, None));
        let http = reqwest::Client::new();
        while http.get(format!("http://127.0.0.1:{port}/healthz")).send().await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let mut ids = Vec::new();
        for _ in 0..n {
            let e: serde_json::Value = http
                .post(format!("http://{pocket}/sandbox/orders/{}/payments", order.id))
                .json(&serde_json::json!({ "amount": "25.00" }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            ids.push(e["id"].as_str().unwrap().to_string());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let start = std::time::Instant::now();
        loop {
            let settled = store.exchanges(i64::MAX).await.unwrap().iter().filter(|e| e.state.name() == "settled").count();
            if settled == n {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(120), "only {settled} of {n} settled");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let items = store.outbox_items(i64::MAX).await.unwrap();
        let mut latencies = Vec::new();
        for item in items.iter().filter(|i| i.kind == "pocket.payout") {
            let id = item.payload["exchange_id"].as_str().unwrap();
            let arrived = store.webhook_received_at(id, "exchange.executed").await.unwrap().unwrap();
            let attempts = store.outbox_attempts(item.id).await.unwrap();
            let answered = attempts.iter().find(|a| a.outcome == Some(satflow::store::AttemptOutcome::Done)).and_then(|a| a.finished_at).unwrap();
            latencies.push((answered - arrived).num_milliseconds());
        }
        latencies.sort();
        let pct = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
        println!(
            "payout: {} exchanges; webhook arrival to Pocket's answer to the PATCH: p50 {} ms, p99 {} ms, max {} ms",
            latencies.len(),
            pct(50),
            pct(99),
            latencies.last().unwrap()
        );
        assert_eq!(node.invoices.lock().unwrap().len(), n);
        let _ = stop.send(true);
        let _ = daemon.await;
    });
}
