//! Address rotation through the real binary: reservations never repeat (two daemons, restarts),
//! addresses used on chain are skipped, and an explorer that cannot be asked stops the step.

use std::collections::BTreeSet;
use std::time::Duration;

use satflow::wallet::WalletKey;
use serde_json::Value;

use super::esplora::Esplora;
use super::helpers::{TestApp, closed_port, eventually, terminate};

/// Account 1 of the "abandon … about" test seed.
const VAULT: &str = "zpub6rFR7y4Q2AijF6Gk1bofHLs1d66hKFamhXWdWBup1Em25wfabZqkDqvaieV63fDQFaYmaatCG7jVNUpUiM2hAMo6SAVHcrUpSnHDpNzucB7";

fn app(esplora: Option<&str>) -> TestApp {
    let app = TestApp::engine();
    let config = std::fs::read_to_string(app.path().join("satflow.yaml")).unwrap();
    let explorer = esplora
        .map(|u| format!(", esplora_url: \"{u}\""))
        .unwrap_or_default();
    app.write(
        "satflow.yaml",
        &format!("{config}wallets:\n  vault: {{ xpub: {VAULT}{explorer} }}\n"),
    );
    app.write(
        "workflows/reserve.yaml",
        "steps:\n  - id: next\n    uses: wallet.address\n    with: { wallet: vault }\n",
    );
    app
}

fn reserved(app: &TestApp) -> Vec<(u64, String)> {
    app.runs()
        .iter()
        .filter(|r| r["status"] == "succeeded")
        .map(|r| {
            let out = &r["steps"][0]["output"];
            (
                out["index"].as_u64().unwrap(),
                out["address"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn derived(index: u32) -> String {
    WalletKey::from_extended(VAULT, None)
        .unwrap()
        .address_at(index, bitcoin::Network::Bitcoin)
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_never_hand_out_the_same_address_and_the_index_survives_restarts() {
    let app = app(None);
    for _ in 0..20 {
        assert_eq!(app.satflow(&["trigger", "reserve"]).code, 0);
    }
    // Both bind port 0, so each gets a port of its own.
    let second = std::fs::read_to_string(app.path().join("satflow.yaml")).unwrap();
    app.write("second.yaml", &second);
    let mut a = app.spawn(&["run", "-c", "satflow.yaml"], "a.log");
    let mut b = app.spawn(&["run", "-c", "second.yaml"], "b.log");
    eventually(Duration::from_secs(20), "20 reservations", || {
        reserved(&app).len() == 20
    })
    .await;
    assert_eq!(terminate(&mut a), 0);
    assert_eq!(terminate(&mut b), 0);
    let got = reserved(&app);
    let indices: BTreeSet<u64> = got.iter().map(|(i, _)| *i).collect();
    let addresses: BTreeSet<&String> = got.iter().map(|(_, a)| a).collect();
    assert_eq!(indices, (0..20).collect(), "every index once: {got:?}");
    assert_eq!(addresses.len(), 20);
    for (i, a) in &got {
        assert_eq!(
            *a,
            derived(*i as u32),
            "the address at index {i} is the wallet's"
        );
    }

    // After a restart the cursor continues where it was.
    let run = app.satflow(&["trigger", "reserve", "--wait"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("\"index\":20"), "{run:?}");

    let list = app.satflow(&["addresses", "vault", "--json", "--count", "3"]);
    let doc: Value = serde_json::from_str(&list.stdout).unwrap();
    let rows = doc["addresses"].as_array().unwrap();
    assert_eq!(rows.len(), 21, "every handed-out address is listed");
    assert_eq!(
        rows[0]["address"],
        derived(0).as_str(),
        "the first address, as a hardware wallet shows it"
    );
    assert_eq!(rows[0]["state"], "reserved");
    assert!(
        rows[0]["used_by"]
            .as_str()
            .unwrap()
            .contains("workflow reserve"),
        "{}",
        rows[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_used_on_chain_are_skipped_and_an_unreachable_explorer_stops_the_step() {
    let esplora = Esplora::start().await;
    {
        let mut chain = esplora.chain.lock().unwrap();
        for i in 0..3 {
            chain.used.insert(derived(i));
        }
    }
    let app = app(Some(&esplora.url));
    let run = app.satflow(&["trigger", "reserve", "--wait"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("\"index\":3"),
        "the three used addresses are passed over: {run:?}"
    );

    let scan = app.satflow(&["addresses", "vault", "--scan", "--json", "--count", "5"]);
    assert_eq!(scan.code, 0, "{scan:?}");
    assert!(scan.stderr.contains("scanned 5 addresses"), "{scan:?}");
    let doc: Value = serde_json::from_str(&scan.stdout).unwrap();
    let states: Vec<&str> = doc["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["used", "used", "used", "reserved", "fresh"]);

    // The explorer is gone: no address rather than one that might be used.
    let closed = format!("http://127.0.0.1:{}/api", closed_port());
    let config = std::fs::read_to_string(app.path().join("satflow.yaml"))
        .unwrap()
        .replace(&esplora.url, &closed);
    app.write("satflow.yaml", &config);
    let run = app.satflow(&["trigger", "reserve", "--wait"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stdout
            .contains("not handing out an address that might be used"),
        "{run:?}"
    );
}
