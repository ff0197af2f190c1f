//! Withdrawals to cold storage through the real binary: the Lightning Peach hub simulator and an
//! LND stand-in move funds to a fresh address of the vault wallet, exactly once even when the
//! daemon is killed between calling the provider and recording its answer; a fee above the
//! workflow's limit skips the period and says why, in the run and in the email.

use std::time::Duration;

use satflow::config::WithdrawProvider;
use satflow::sandbox::{self, Sandbox, SandboxOptions};
use satflow::wallet::WalletKey;
use satflow::withdraw::hub::HubClient;
use serde_json::Value;

use super::esplora::Esplora;
use super::helpers::{Backend, Run, TestApp, eventually, on_both_backends};
use super::lnnode::{self, StandIn};

/// Account 1 of the "abandon … about" test seed.
const VAULT: &str = "zpub6rFR7y4Q2AijF6Gk1bofHLs1d66hKFamhXWdWBup1Em25wfabZqkDqvaieV63fDQFaYmaatCG7jVNUpUiM2hAMo6SAVHcrUpSnHDpNzucB7";
pub(super) const MERCHANT_KEY: &str =
    "0101010101010101010101010101010101010101010101010101010101010101";

pub(super) fn vault_address(index: u32) -> String {
    WalletKey::from_extended(VAULT, None)
        .unwrap()
        .address_at(index, bitcoin::Network::Bitcoin)
        .unwrap()
        .to_string()
}

/// An engine app with the vault wallet, the providers whose YAML `providers` writes (with the
/// files they need), and a `sweep` workflow withdrawing with `policy` then reporting by email.
pub(super) fn with_providers(
    lease: &str,
    esplora: Option<&str>,
    from: &str,
    policy: &str,
    providers: impl FnOnce(&std::path::Path) -> String,
) -> TestApp {
    with_providers_on(Backend::Sqlite, lease, esplora, from, policy, providers)
        .expect("SQLite is always there")
}

/// `with_providers` on `backend`; None when that backend cannot be had here.
pub(super) fn with_providers_on(
    backend: Backend,
    lease: &str,
    esplora: Option<&str>,
    from: &str,
    policy: &str,
    providers: impl FnOnce(&std::path::Path) -> String,
) -> Option<TestApp> {
    let app = TestApp::engine_on(backend)?;
    let config = std::fs::read_to_string(app.path().join("satflow.yaml"))
        .unwrap()
        .replace(
            "engine: { lease: 1s,",
            &format!("engine: {{ follow_every: 200ms, lease: {lease},"),
        );
    let explorer = esplora
        .map(|u| format!(", esplora_url: \"{u}\""))
        .unwrap_or_default();
    let providers = providers(app.path());
    app.write(
        "satflow.yaml",
        &format!("{config}wallets:\n  vault: {{ xpub: {VAULT}{explorer} }}\n{providers}"),
    );
    app.write(
        "workflows/sweep.yaml",
        &format!(
            "steps:\n  - id: sweep\n    uses: withdraw\n    with: {{ from: {from}, to: {{ wallet: vault }}, {policy} }}\n\
             \x20 - uses: email\n    with: {{ template: withdrawal }}\n"
        ),
    );
    let check = app.satflow(&["check"]);
    assert_eq!(check.code, 0, "{check:?}");
    Some(app)
}

pub(super) fn hub_yaml(app_dir: &std::path::Path, sandbox: std::net::SocketAddr) -> String {
    std::fs::write(app_dir.join("hub.key"), MERCHANT_KEY).unwrap();
    format!(
        "prices: {{ peach_url: \"http://{sandbox}\" }}\n\
         withdraw:\n  hub:\n    lightningpeach: {{ base_url: \"http://{sandbox}/hub\", email: stacker@example.com, password: demo-password, key_file: hub.key }}\n"
    )
}

pub(super) fn lnd_yaml(app_dir: &std::path::Path, node: &StandIn) -> String {
    std::fs::write(app_dir.join("tls.cert"), &node.cert_pem).unwrap();
    std::fs::write(app_dir.join("admin.macaroon"), &node.macaroon).unwrap();
    format!(
        "lightning:\n  mynode:\n    lnd: {{ url: \"{}\", macaroon_file: admin.macaroon, tls_cert_file: tls.cert }}\n\
         withdraw:\n  cold:\n    lnd: {{ node: mynode }}\n",
        node.url
    )
}

pub(super) fn withdrawals(app: &TestApp) -> Vec<Value> {
    let run = app.satflow(&["withdrawals", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    doc["withdrawals"].as_array().unwrap().clone()
}

pub(super) fn hub_withdrawals(sandbox: &Sandbox) -> Vec<(String, u64, String, &'static str)> {
    let hub = sandbox.hub.lock().unwrap();
    hub.withdrawals
        .iter()
        .map(|w| (w.id.clone(), w.amount_sat, w.address.clone(), w.status))
        .collect()
}

fn trigger_and_wait(app: &TestApp) -> Run {
    app.satflow(&["trigger", "sweep", "--wait"])
}

async fn the_hub_balance_moves_to_a_fresh_vault_address_and_is_followed_to_confirmation(
    backend: Backend,
) {
    let (addr, sandbox) = sandbox::spawn(SandboxOptions::default()).await;
    let esplora = Esplora::start().await;
    let Some(app) = with_providers_on(
        backend,
        "1s",
        Some(&esplora.url),
        "hub",
        "min_amount_sat: 100000, max_fee_percent: 1",
        |dir| hub_yaml(dir, addr),
    ) else {
        return;
    };
    sandbox.hub.lock().unwrap().balance_sat = 250_000;

    let run = trigger_and_wait(&app);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("\"withdrawn\":true"), "{run:?}");
    let made = hub_withdrawals(&sandbox);
    assert_eq!(made.len(), 1, "{made:?}");
    let (id, amount, address, _) = made[0].clone();
    assert_eq!(amount, 250_000);
    assert_eq!(address, vault_address(0), "the vault's first address");
    assert_eq!(sandbox.hub.lock().unwrap().balance_sat, 0);
    let emails = app.emails().join("\n");
    assert!(
        emails.contains(&format!(
            "Asked for 250000 sat to be sent to {address} (withdrawal {id})"
        )),
        "{emails}"
    );

    // Nothing left: the next period is skipped, and says why.
    let run = trigger_and_wait(&app);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("\"skipped\":true"), "{run:?}");
    assert!(
        run.stdout
            .contains("the balance of 0 sat is less than the minimum of 100000 sat"),
        "{run:?}"
    );
    assert_eq!(hub_withdrawals(&sandbox).len(), 1);

    // The daemon follows the withdrawal: the hub sends it, then the chain buries it.
    let mut daemon = app.spawn(&["run"], "daemon.log");
    let tx = reqwest::Client::new()
        .post(format!(
            "http://{addr}/sandbox/hub/withdrawals/{id}/complete"
        ))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["sent_tx"]
        .as_str()
        .unwrap()
        .to_string();
    eventually(Duration::from_secs(15), "the withdrawal is sent", || {
        withdrawals(&app)
            .iter()
            .any(|w| w["status"] == "sent" && w["txid"] == tx.as_str())
    })
    .await;
    eventually(
        Duration::from_secs(10),
        "the email saying it was sent",
        || {
            app.emails().iter().any(|e| {
                e.contains(&format!(
                    "hub sent 250000 sat to {address} (wallet vault) in transaction {tx}"
                ))
            })
        },
    )
    .await;
    {
        let mut chain = esplora.chain.lock().unwrap();
        chain.tip = 800_005;
        chain.confirmed.insert(tx.clone(), 800_000);
    }
    eventually(
        Duration::from_secs(15),
        "the withdrawal is confirmed",
        || {
            withdrawals(&app)
                .iter()
                .any(|w| w["status"] == "confirmed" && w["confirmations"] == 6)
        },
    )
    .await;
    assert_eq!(super::helpers::terminate(&mut daemon), 0);

    // The skipped period gave no address away: the next withdrawal takes the one it reserved.
    sandbox.hub.lock().unwrap().balance_sat = 120_000;
    let run = trigger_and_wait(&app);
    assert_eq!(run.code, 0, "{run:?}");
    let made = hub_withdrawals(&sandbox);
    assert_eq!(made.len(), 2, "{made:?}");
    assert_eq!(made[1].2, vault_address(1), "no gap after a skipped week");

    // The hub cancels it: the withdrawal failed, and the email says so.
    let mut daemon = app.spawn(&["run"], "daemon2.log");
    reqwest::Client::new()
        .post(format!(
            "http://{addr}/sandbox/hub/withdrawals/{}/cancel",
            made[1].0
        ))
        .send()
        .await
        .unwrap();
    eventually(
        Duration::from_secs(15),
        "the cancellation is reported",
        || {
            app.emails().iter().any(|e| {
                e.contains(&format!(
                    "Withdrawal {} from hub failed: the hub canceled the withdrawal",
                    made[1].0
                ))
            })
        },
    )
    .await;
    assert_eq!(super::helpers::terminate(&mut daemon), 0);
    assert_eq!(withdrawals(&app)[0]["status"], "failed");
}

async fn an_lnd_wallet_is_swept_with_a_label_and_a_high_fee_skips_the_period(backend: Backend) {
    let node = lnnode::lnd().await;
    node.state.lock().unwrap().onchain_sat = 500_000;
    let esplora = Esplora::start().await;
    let Some(app) = with_providers_on(
        backend,
        "1s",
        Some(&esplora.url),
        "cold",
        "min_amount_sat: 50000, max_fee_rate: 20, keep_sat: 100000",
        |dir| lnd_yaml(dir, &node),
    ) else {
        return;
    };

    let run = trigger_and_wait(&app);
    assert_eq!(run.code, 0, "{run:?}");
    let sent = node.state.lock().unwrap().sent.clone();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["dest_addresses"][0], vault_address(0).as_str());
    assert_eq!(sent[0]["amount"], "-400000", "the reserve stays behind");
    let label = sent[0]["label"].as_str().unwrap();
    assert!(
        label.starts_with("sweep/"),
        "labelled with the withdrawal: {label}"
    );
    let rows = withdrawals(&app);
    assert_eq!(rows[0]["status"], "sent");
    assert_eq!(rows[0]["key"], label);
    assert_eq!(rows[0]["txid"], sent[0]["tx_hash"]);
    assert_eq!(
        rows[0]["fee_rate"], "5",
        "Esplora's 4.2 sat/vB estimate, rounded up"
    );
    let emails = app.emails().join("\n");
    assert!(
        emails.contains(&format!("Moved 400000 sat to {}", vault_address(0))),
        "{emails}"
    );
    assert!(
        emails.contains(sent[0]["tx_hash"].as_str().unwrap()),
        "{emails}"
    );

    // Fees spike: the period is skipped, with the reason in the run and the email.
    node.state.lock().unwrap().onchain_sat = 300_000;
    esplora.chain.lock().unwrap().fee_3_blocks = 61.5;
    let run = trigger_and_wait(&app);
    assert_eq!(run.code, 0, "{run:?}");
    let reason = "the network fee is 62 sat/vB, above max_fee_rate 20 sat/vB";
    assert!(run.stdout.contains(reason), "{run:?}");
    assert!(
        app.emails()
            .iter()
            .any(|e| e.contains(&format!("Nothing was moved this time: {reason}"))),
        "{:?}",
        app.emails()
    );
    assert_eq!(
        node.state.lock().unwrap().sent.len(),
        1,
        "nothing sent while fees are high"
    );
}

/// Kills the daemon while the provider's answer is on its way, does `meanwhile`, restarts it,
/// and returns the withdrawal as recorded once the run has finished.
async fn kill_while_the_provider_answers(
    app: &TestApp,
    provider_called: impl Fn() -> bool,
    meanwhile: impl FnOnce(),
) -> Value {
    let mut daemon = app.spawn(&["run"], "daemon.log");
    let queued = app.satflow(&["trigger", "sweep"]);
    assert_eq!(queued.code, 0, "{queued:?}");
    eventually(
        Duration::from_secs(15),
        "the provider is called",
        &provider_called,
    )
    .await;
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    assert!(
        withdrawals(app).iter().all(|w| w["status"] == "requesting"),
        "killed before the answer was recorded: {:?}",
        withdrawals(app)
    );
    meanwhile();
    let mut daemon = app.spawn(&["run"], "daemon2.log");
    eventually(Duration::from_secs(30), "the run finishes", || {
        app.runs().iter().any(|r| r["status"] == "succeeded")
    })
    .await;
    assert_eq!(super::helpers::terminate(&mut daemon), 0);
    withdrawals(app)[0].clone()
}

/// A hub withdrawal whose answer is lost to a SIGKILL; `meanwhile` runs before the restart.
async fn hub_crash(
    backend: Backend,
    meanwhile: impl FnOnce(&Sandbox, &Esplora),
) -> Option<(Value, Vec<(String, u64, String, &'static str)>)> {
    let (addr, sandbox) = sandbox::spawn(SandboxOptions::default()).await;
    let esplora = Esplora::start().await;
    let app = with_providers_on(
        backend,
        "4s",
        Some(&esplora.url),
        "hub",
        "min_amount_sat: 1000",
        |dir| hub_yaml(dir, addr),
    )?;
    {
        let mut hub = sandbox.hub.lock().unwrap();
        hub.balance_sat = 75_000;
        hub.withdraw_delay = Duration::from_millis(2500);
    }
    let row = kill_while_the_provider_answers(
        &app,
        || !hub_withdrawals(&sandbox).is_empty(),
        || meanwhile(&sandbox, &esplora),
    )
    .await;
    Some((row, hub_withdrawals(&sandbox)))
}

async fn a_crash_after_the_hub_withdrew_is_reconciled_without_a_second_withdrawal(
    backend: Backend,
) {
    let Some((row, made)) = hub_crash(backend, |_, _| {}).await else {
        return;
    };
    assert_eq!(made.len(), 1, "exactly one withdrawal");
    assert_eq!(row["status"], "requested", "{row}");
    assert_eq!(row["amount_sat"], 75_000);
    assert!(
        row["reason"]
            .as_str()
            .unwrap()
            .contains("answer to the withdrawal was lost; the hub's balance shows it"),
        "{row}"
    );
}

async fn new_hub_funds_after_a_crash_do_not_hide_the_withdrawal_that_was_made(backend: Backend) {
    // Payments reach the hub while satflow is down, and the hub has sent the withdrawal: the
    // balance is above what was seen, but the fresh address has received the coins.
    let Some((row, made)) = hub_crash(backend, |sandbox, esplora| {
        let mut hub = sandbox.hub.lock().unwrap();
        hub.balance_sat += 90_000;
        esplora
            .chain
            .lock()
            .unwrap()
            .used
            .insert(hub.withdrawals[0].address.clone());
    })
    .await
    else {
        return;
    };
    assert_eq!(made.len(), 1, "no second withdrawal: {made:?}");
    assert_eq!(row["status"], "requested", "{row}");
    assert!(
        row["reason"]
            .as_str()
            .unwrap()
            .contains("the address having received funds"),
        "{row}"
    );
}

async fn a_crash_after_lnd_sent_finds_the_labelled_transaction_on_restart(backend: Backend) {
    let node = lnnode::lnd().await;
    {
        let mut s = node.state.lock().unwrap();
        s.onchain_sat = 200_000;
        s.send_delay = Duration::from_millis(2500);
    }
    let esplora = Esplora::start().await;
    let Some(app) = with_providers_on(
        backend,
        "4s",
        Some(&esplora.url),
        "cold",
        "min_amount_sat: 1000",
        |dir| lnd_yaml(dir, &node),
    ) else {
        return;
    };
    let row = kill_while_the_provider_answers(
        &app,
        || !node.state.lock().unwrap().sent.is_empty(),
        || {},
    )
    .await;
    let sent = node.state.lock().unwrap().sent.clone();
    assert_eq!(sent.len(), 1, "exactly one transaction: {sent:?}");
    assert_eq!(row["status"], "sent", "{row}");
    assert_eq!(row["txid"], sent[0]["tx_hash"]);
    assert_eq!(row["fee_sat"], 705, "the fee the wallet reports");
}

#[tokio::test]
async fn the_hub_client_refreshes_expired_tokens_and_the_simulator_checks_signatures() {
    let (addr, sandbox) = sandbox::spawn(SandboxOptions::default()).await;
    let provider = |password: &str, key: &str| WithdrawProvider::LightningPeach {
        base_url: url::Url::parse(&format!("http://{addr}/hub")).unwrap(),
        email: "stacker@example.com".into(),
        password: password.to_string().into(),
        key: key.parse().unwrap(),
    };
    let hub = HubClient::from_config(&provider("demo-password", MERCHANT_KEY)).unwrap();
    sandbox.hub.lock().unwrap().balance_sat = 5_000;
    assert_eq!(hub.balance().await.unwrap(), 5_000);
    reqwest::Client::new()
        .post(format!("http://{addr}/sandbox/hub/expire-tokens"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        hub.balance().await.unwrap(),
        5_000,
        "a fresh token after expiry"
    );
    // Under the minimum, the hub refuses.
    hub.set_address(&vault_address(3)).await.unwrap();
    sandbox.hub.lock().unwrap().balance_sat = 999;
    let refused = hub.withdraw().await.unwrap_err().to_string();
    assert!(
        refused.contains("less than minimum allowed: 1000"),
        "{refused}"
    );

    // Another key cannot approve an address for this merchant.
    let intruder = HubClient::from_config(&provider("demo-password", &"02".repeat(32))).unwrap();
    let refused = intruder.set_address(&vault_address(4)).await.unwrap_err();
    assert!(
        refused.to_string().contains("invalid signature"),
        "{refused}"
    );
    assert_eq!(
        sandbox.hub.lock().unwrap().bitcoin_address.as_deref(),
        Some(vault_address(3).as_str())
    );
    let wrong = HubClient::from_config(&provider("not-the-password", MERCHANT_KEY)).unwrap();
    let refused = wrong.balance().await.unwrap_err().to_string();
    assert!(refused.contains("invalid email or password"), "{refused}");
}

on_both_backends!(
    the_hub_balance_moves_to_a_fresh_vault_address_and_is_followed_to_confirmation,
    an_lnd_wallet_is_swept_with_a_label_and_a_high_fee_skips_the_period,
    a_crash_after_the_hub_withdrew_is_reconciled_without_a_second_withdrawal,
    new_hub_funds_after_a_crash_do_not_hide_the_withdrawal_that_was_made,
    a_crash_after_lnd_sent_finds_the_labelled_transaction_on_restart,
);
