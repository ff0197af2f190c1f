//! An Esplora stand-in on loopback: a chain tip, confirmed transactions and used addresses,
//! set by the test.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use serde_json::{Value, json};

#[derive(Default)]
pub struct Chain {
    pub tip: u64,
    /// Block heights of confirmed transactions; any other txid is in the mempool.
    pub confirmed: HashMap<String, u64>,
    /// Every transaction is confirmed at this height, unless listed above.
    pub default_height: Option<u64>,
    pub used: HashSet<String>,
    /// Esplora's fee estimate for confirmation within 3 blocks (sat/vB); mempool.space's own
    /// `v1/fees/recommended` is not served, so satflow falls back to this.
    pub fee_3_blocks: f64,
}

#[derive(Clone)]
pub struct Esplora {
    pub url: String,
    pub chain: Arc<Mutex<Chain>>,
}

impl Esplora {
    pub async fn start() -> Esplora {
        let chain = Arc::new(Mutex::new(Chain {
            fee_3_blocks: 4.2,
            ..Chain::default()
        }));
        let app = Router::new()
            .route("/api/blocks/tip/height", get(tip))
            .route("/api/tx/{txid}/status", get(status))
            .route("/api/address/{address}", get(address))
            .route("/api/fee-estimates", get(fee_estimates))
            .with_state(Arc::clone(&chain));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/api", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Esplora { url, chain }
    }
}

type Shared = State<Arc<Mutex<Chain>>>;

async fn tip(State(chain): Shared) -> String {
    chain.lock().unwrap().tip.to_string()
}

async fn status(State(chain): Shared, Path(txid): Path<String>) -> axum::Json<Value> {
    let chain = chain.lock().unwrap();
    axum::Json(
        match chain.confirmed.get(&txid).copied().or(chain.default_height) {
            Some(height) => {
                json!({ "confirmed": true, "block_height": height, "block_hash": "00", "block_time": 0 })
            }
            None => json!({ "confirmed": false }),
        },
    )
}

async fn address(State(chain): Shared, Path(address): Path<String>) -> axum::Json<Value> {
    let used = u64::from(chain.lock().unwrap().used.contains(&address));
    axum::Json(json!({
        "address": address,
        "chain_stats": { "tx_count": used, "funded_txo_sum": 0 },
        "mempool_stats": { "tx_count": 0, "funded_txo_sum": 0 },
    }))
}

async fn fee_estimates(State(chain): Shared) -> axum::Json<Value> {
    let rate = chain.lock().unwrap().fee_3_blocks;
    axum::Json(json!({ "1": rate * 2.0, "3": rate, "6": rate / 2.0 }))
}
