//! `satflow order setup` as a new user runs it: against the sandbox, in two steps or with the
//! prompt, with a signature made by a test key, refused locally when the proof is wrong.

use satflow::lightning::signmessage::sign_node_message;
use satflow::sandbox::{self, SandboxOptions};
use satflow::wallet::proof::sign_message;

use super::helpers::TestApp;
use super::pocket::{TestWallet, node_key, node_pubkey};

/// A setup whose Pocket is a sandbox; `dca` pays out to the test wallet, `zap` to a node.
async fn app() -> (TestApp, TestWallet) {
    let (addr, _sb) = sandbox::spawn(SandboxOptions::default()).await;
    let wallet = TestWallet::new();
    let app = TestApp::empty();
    app.write(
        "satflow.yaml",
        &format!(
            "database: sqlite://satflow.db\npocket: {{ base_url: \"http://{addr}\", client_id: sandbox-client }}\n\
             alerts: []\nwallets:\n  cold: {{ xpub: {} }}\n\
             lightning:\n  mynode: {{ lightning_address: me@example.com, node_pubkey: {} }}\n",
            wallet.zpub,
            node_pubkey()
        ),
    );
    app.write(
        "workflows/dca.yaml",
        "on: { schedule: { cron: \"0 9 * * MON\" } }\nsteps:\n  - id: order\n    uses: pocket.order\n    with:\n      currency: eur\n      fee_rate: \"0.015\"\n      debitor_iban: DE89370400440532013000\n      payout: { wallet: cold }\n",
    );
    app.write(
        "workflows/zap.yaml",
        "steps:\n  - uses: pocket.order\n    with: { currency: chf, fee_rate: 0.012, debitor_iban: CH9300762011623852957, payout: { lightning: mynode } }\n",
    );
    (app, wallet)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_step_setup_keeps_its_challenge_until_a_good_signature_creates_the_order() {
    let (app, wallet) = app().await;
    let first = app.satflow(&["order", "setup", "dca", "--message-only"]);
    assert_eq!(first.code, 0, "{first:?}");
    let message = first.stdout.trim_end().to_string();
    assert!(
        message.starts_with("I confirm my bitcoin wallet. ["),
        "{first:?}"
    );
    assert_eq!(
        first.stdout.lines().count(),
        1,
        "the message alone on stdout"
    );
    let again = app.satflow(&["order", "setup", "dca", "--message-only"]);
    assert_eq!(
        again.stdout.trim_end(),
        message,
        "the pending challenge is reused"
    );

    // Signed by the wrong key: refused here, before Pocket sees it, and the challenge stays.
    let wrong = sign_message(&wallet.key(1), &message);
    let refused = app.satflow(&["order", "setup", "dca", "--signature", &wrong]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains(&format!(
            "does not prove that you control {}",
            wallet.address(0)
        )),
        "{refused:?}"
    );
    assert_eq!(
        app.satflow(&["order", "setup", "dca", "--message-only"])
            .stdout
            .trim_end(),
        message
    );

    let good = sign_message(&wallet.key(0), &message);
    let done = app.satflow(&[
        "order",
        "setup",
        "dca",
        "--signature",
        &good,
        "--png",
        "pay.png",
    ]);
    assert_eq!(done.code, 0, "{done:?}");
    assert!(
        done.stdout.contains("is set up for workflow dca"),
        "{done:?}"
    );
    assert!(
        done.stdout.contains("CH94 0077 8214 7683 0200 2"),
        "{done:?}"
    );
    assert!(done.stdout.contains("RF"), "{done:?}");
    assert!(
        done.stdout.contains('▀') || done.stdout.contains('▄'),
        "a QR code in the terminal: {done:?}"
    );
    let png = std::fs::read(app.path().join("pay.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    let twice = app.satflow(&["order", "setup", "dca"]);
    assert_eq!(twice.code, 1, "{twice:?}");
    assert!(
        twice.stderr.contains("already has Pocket order"),
        "{twice:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prompt_reads_the_signature_and_lightning_orders_are_proven_by_the_node() {
    let (app, wallet) = app().await;
    // Interactive: the message is shown, the signature pasted. The message is only known once
    // shown, so the test asks for it first (the challenge is then reused by the prompt).
    let message = app
        .satflow(&["order", "setup", "dca", "--message-only"])
        .stdout
        .trim_end()
        .to_string();
    let prompt = app.satflow_with_input(
        &["order", "setup", "dca"],
        &format!("{}\n", sign_message(&wallet.key(0), &message)),
    );
    assert_eq!(prompt.code, 0, "{prompt:?}");
    assert!(prompt.stdout.contains("Sparrow"), "{prompt:?}");
    assert!(prompt.stdout.contains(&wallet.address(0)), "{prompt:?}");

    let message = app
        .satflow(&["order", "setup", "zap", "--message-only"])
        .stdout
        .trim_end()
        .to_string();
    let bad = app.satflow(&[
        "order",
        "setup",
        "zap",
        "--signature",
        &sign_message(&wallet.key(0), &message),
    ]);
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(
        bad.stderr
            .contains(&format!("does not come from node {}", node_pubkey())),
        "{bad:?}"
    );
    let good = app.satflow(&[
        "order",
        "setup",
        "zap",
        "--signature",
        &sign_node_message(&node_key(), &message),
    ]);
    assert_eq!(good.code, 0, "{good:?}");
    // CHF orders get Pocket's Swiss QR-bill as their QR code.
    assert!(good.stdout.contains("zap-payment.png"), "{good:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_outside_the_wallet_is_refused_before_anything_is_sent() {
    let (app, _wallet) = app().await;
    app.write(
        "workflows/dca.yaml",
        "steps:\n  - uses: pocket.order\n    with: { currency: eur, fee_rate: 0.015, debitor_iban: DE89370400440532013000, payout: { wallet: cold, derivation_path: \"m/84'/0'/0'\" } }\n",
    );
    let run = app.satflow(&["order", "setup", "dca", "--message-only"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("hardened"), "{run:?}");
}

/// Replaces the `with:` of the `dca` workflow's order step.
fn declare(app: &TestApp, with: &str) {
    app.write(
        "workflows/dca.yaml",
        &format!("steps:\n  - id: order\n    uses: pocket.order\n    with: {{ {with}, payout: {{ wallet: cold }} }}\n"),
    );
}

fn order_step(run: &super::helpers::Run) -> &str {
    run.stdout
        .lines()
        .find(|l| l.trim_start().starts_with("order "))
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_action_patches_drift_and_refuses_what_cannot_change() {
    let (app, wallet) = app().await;
    let setup = app.set_up_order("dca", &wallet.key(0));
    assert_eq!(setup.code, 0, "{setup:?}");

    let first = app.satflow(&["trigger", "dca", "--wait"]);
    assert_eq!(first.code, 0, "{first:?}");
    assert!(order_step(&first).contains("\"created\":true"), "{first:?}");
    assert!(
        order_step(&first).contains("\"patched\":false"),
        "{first:?}"
    );

    declare(
        &app,
        "currency: eur, fee_rate: \"0.02\", debitor_iban: DE89370400440532013000",
    );
    let plan = app.satflow(&["plan"]);
    assert!(
        plan.stdout
            .contains("at Pocket: active true, fee_rate 0.015"),
        "{plan:?}"
    );
    assert!(
        plan.stdout.contains("will change: fee_rate 0.015 -> 0.02"),
        "{plan:?}"
    );
    assert!(
        plan.stdout.contains("zap: chf at fee_rate 0.012"),
        "{plan:?}"
    );
    assert!(
        plan.stdout
            .contains("no order yet: run `satflow order setup zap`"),
        "{plan:?}"
    );
    let run = app.satflow(&["trigger", "dca", "--wait"]);
    assert_eq!(run.code, 0, "{run:?}");
    let step = order_step(&run);
    assert!(
        step.contains("\"patched\":true")
            && step.contains("\"fee_rate\":0.02")
            && step.contains("\"created\":false"),
        "{run:?}"
    );

    // `active` from an expression: false for this run.
    declare(
        &app,
        "currency: eur, fee_rate: \"0.02\", debitor_iban: DE89370400440532013000, active: \"{{ run.id > 100 }}\"",
    );
    let run = app.satflow(&["trigger", "dca", "--wait"]);
    assert!(order_step(&run).contains("\"active\":false"), "{run:?}");
    let again = app.satflow(&["trigger", "dca", "--wait"]);
    assert!(
        order_step(&again).contains("\"patched\":false"),
        "no drift, no patch: {again:?}"
    );

    declare(
        &app,
        "currency: chf, fee_rate: \"0.02\", debitor_iban: DE89370400440532013000",
    );
    let refused = app.satflow(&["trigger", "dca", "--wait"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused
            .stdout
            .contains("the order pays in eur but the workflow now says chf"),
        "{refused:?}"
    );
    assert!(
        refused.stdout.contains("order setup dca --replace"),
        "{refused:?}"
    );

    let none = app.satflow(&["trigger", "zap", "--wait"]);
    assert_eq!(none.code, 2, "{none:?}");
    assert!(
        none.stdout
            .contains("has no Pocket order yet: run `satflow order setup zap`"),
        "{none:?}"
    );

    let items = app.outbox();
    assert!(
        items
            .iter()
            .filter(|i| i["kind"] == "pocket.order.patch" && i["status"] == "done")
            .count()
            == 2,
        "{items:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_user_rehearses_with_the_sandbox_command() {
    let wallet = TestWallet::new();
    let app = TestApp::empty();
    // Pocket's URL is set once the sandbox has reported the port it bound.
    let config = |pocket: &str| {
        format!(
            "database: sqlite://satflow.db\nlisten: 127.0.0.1:0\npocket: {{ base_url: \"{pocket}\", client_id: rehearsal, webhook_secret: s3cret }}\n\
             alerts: []\nwallets:\n  cold: {{ xpub: {} }}\n",
            wallet.zpub
        )
    };
    app.write("satflow.yaml", &config("http://127.0.0.1:9"));
    app.write(
        "workflows/dca.yaml",
        "steps:\n  - uses: pocket.order\n    with: { currency: eur, fee_rate: 0.015, debitor_iban: DE89370400440532013000, payout: { wallet: cold } }\n",
    );
    let mut sandbox = app.spawn(&["sandbox", "--listen", "127.0.0.1:0"], "sandbox.log");
    let base = logged(&app, "sandbox.log", "Pocket sandbox on ").await;
    app.write("satflow.yaml", &config(&base));
    let message = app
        .satflow(&["order", "setup", "dca", "--message-only"])
        .stdout
        .trim_end()
        .to_string();
    let done = app.satflow(&[
        "order",
        "setup",
        "dca",
        "--signature",
        &sign_message(&wallet.key(0), &message),
    ]);
    assert_eq!(done.code, 0, "{done:?}");
    assert!(done.stdout.contains("BIC"), "{done:?}");
    assert_eq!(super::helpers::terminate(&mut sandbox), 0);
    let log = std::fs::read_to_string(app.path().join("sandbox.log")).unwrap();
    assert!(log.contains(&format!("Pocket sandbox on {base}")), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_cap_pauses_the_order_above_it_and_no_price_changes_nothing() {
    let (app, wallet) = app().await;
    let config = std::fs::read_to_string(app.path().join("satflow.yaml")).unwrap();
    let pocket = config
        .split("base_url: \"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string();
    app.write(
        "satflow.yaml",
        &format!("{config}prices: {{ peach_url: \"{pocket}\" }}\n"),
    );
    let setup = app.set_up_order("dca", &wallet.key(0));
    assert_eq!(setup.code, 0, "{setup:?}");
    app.write(
        "workflows/dca.yaml",
        "steps:\n  - id: price\n    uses: price.quote\n    with: { currency: eur, max_age: 1s }\n\
         \x20 - id: order\n    uses: pocket.order\n    with:\n      currency: eur\n      fee_rate: \"0.015\"\n      \
         debitor_iban: DE89370400440532013000\n      payout: { wallet: cold }\n      active: \"{{ steps.price.price < 60000 }}\"\n",
    );
    let set_price = |price: &'static str| {
        let url = format!("{pocket}/sandbox/price");
        async move {
            let r = reqwest::Client::new()
                .put(url)
                .json(&serde_json::json!({ "currency": "eur", "price": price }))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{}", r.status());
        }
    };

    set_price("61000.5").await;
    let run = app.satflow(&["trigger", "dca", "--wait"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("\"price\":61000.5"), "{run:?}");
    assert!(
        order_step(&run).contains("\"active\":false")
            && order_step(&run).contains("\"patched\":true"),
        "above the cap the order is paused: {run:?}"
    );

    // Once the quote is older than max_age, the new price is fetched.
    set_price("58000").await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let run = app.satflow(&["trigger", "dca", "--wait"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        order_step(&run).contains("\"active\":true")
            && order_step(&run).contains("\"patched\":true"),
        "below the cap it is active again: {run:?}"
    );

    // BitPay's rate, and Peach's list of prices, from the same sandbox market.
    app.write(
        "workflows/quote.yaml",
        "steps:\n  - id: q\n    uses: price.quote\n    with: { currency: eur, source: bitpay }\n",
    );
    let config = std::fs::read_to_string(app.path().join("satflow.yaml"))
        .unwrap()
        .replace(
            "prices: {",
            &format!("prices: {{ bitpay_url: \"{pocket}\","),
        );
    app.write("satflow.yaml", &config);
    let run = app.satflow(&["trigger", "quote", "--wait"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("\"price\":58000") && run.stdout.contains("\"source\":\"bitpay\""),
        "{run:?}"
    );
    let prices: serde_json::Value = reqwest::get(format!("{pocket}/v1/market/prices"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(prices["EUR"], serde_json::json!(58000), "{prices}");

    // No price: the run fails and the order is left as it is.
    let closed = format!("http://127.0.0.1:{}", super::helpers::closed_port());
    let config = std::fs::read_to_string(app.path().join("satflow.yaml"))
        .unwrap()
        .replace(
            &format!("peach_url: \"{pocket}\""),
            &format!("peach_url: \"{closed}\""),
        );
    app.write("satflow.yaml", &config);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    set_price("70000").await;
    let run = app.satflow(&["trigger", "dca", "--wait"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stdout.contains("no price to act on: cannot reach"),
        "{run:?}"
    );
    assert!(
        !run.stdout.contains("\"patched\""),
        "the order step never ran: {run:?}"
    );
}

/// Runs Debian's `electrum` (package `electrum`) offline in `dir`; None when it is not installed.
fn electrum(dir: &std::path::Path, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("electrum")
        .arg("--offline")
        .arg("-D")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    assert!(out.status.success(), "electrum {args:?}: {out:?}");
    Some(String::from_utf8(out.stdout).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_made_by_electrum_is_accepted_even_pasted_with_a_line_break() {
    let (app, wallet) = app().await;
    let dir = app.path().join("electrum");
    let wif = bitcoin::PrivateKey::new(wallet.key(0), bitcoin::Network::Bitcoin).to_wif();
    let Some(_) = electrum(&dir, &["restore", &format!("p2wpkh:{wif}")]) else {
        println!("skipped: `electrum` is not on PATH (Debian package `electrum`)");
        return;
    };
    let listed = electrum(&dir, &["listaddresses"]).unwrap();
    assert!(listed.contains(&wallet.address(0)), "{listed}");

    let first = app.satflow(&["order", "setup", "dca", "--message-only"]);
    assert_eq!(first.code, 0, "{first:?}");
    let message = first.stdout.trim_end().to_string();

    // Electrum's signature over another text: refused, and the refusal says what it saw.
    let other = electrum(&dir, &["signmessage", &wallet.address(0), "another text"]).unwrap();
    let refused = app.satflow(&["order", "setup", "dca", "--signature", other.trim()]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains("legacy header family") && refused.stderr.contains("Sparrow"),
        "{refused:?}"
    );

    let signature = electrum(&dir, &["signmessage", &wallet.address(0), &message]).unwrap();
    let signature = signature.trim();
    let pasted = format!("{}\n{}\n", &signature[..44], &signature[44..]);
    let done = app.satflow(&["order", "setup", "dca", "--signature", &pasted]);
    assert_eq!(done.code, 0, "{done:?}");
    assert!(
        done.stdout.contains("is set up for workflow dca"),
        "{done:?}"
    );
}

/// Account 0 of the BIP-84 branch of the public test seed ("abandon … about").
const PUBLIC_TEST_ZPUB: &str = "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs";

/// A setup whose `dca` order pays out to `zpub`, with Pocket at `base_url`.
fn rehearsal(base_url: &str, zpub: &str) -> TestApp {
    let app = TestApp::empty();
    app.write(
        "satflow.yaml",
        &format!(
            "database: sqlite://satflow.db\npocket: {{ base_url: \"{base_url}\", client_id: sandbox-client }}\n\
             alerts: []\nwallets:\n  cold: {{ xpub: {zpub} }}\n"
        ),
    );
    app.write(
        "workflows/dca.yaml",
        "steps:\n  - id: order\n    uses: pocket.order\n    with: { currency: eur, fee_rate: 0.015, debitor_iban: DE89370400440532013000, payout: { wallet: cold } }\n",
    );
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_test_wallet_signs_by_itself_against_the_sandbox() {
    let (addr, _sb) = sandbox::spawn(SandboxOptions::default()).await;
    let app = rehearsal(&format!("http://{addr}"), PUBLIC_TEST_ZPUB);
    let hint = app.satflow(&["order", "setup", "dca", "--message-only"]);
    assert_eq!(hint.code, 0, "{hint:?}");
    assert_eq!(
        hint.stdout.lines().count(),
        1,
        "the message alone on stdout"
    );
    assert!(
        hint.stderr
            .contains("bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"),
        "--message-only names the address to sign with: {hint:?}"
    );
    let done = app.satflow(&["order", "setup", "dca", "--sign-with-test-key"]);
    assert_eq!(done.code, 0, "{done:?}");
    assert!(
        done.stdout.contains("is set up for workflow dca"),
        "{done:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_key_is_refused_for_another_wallet_or_a_pocket_that_is_not_the_sandbox() {
    let (addr, _sb) = sandbox::spawn(SandboxOptions::default()).await;
    let other = TestWallet::new();
    let app = rehearsal(&format!("http://{addr}"), &other.zpub);
    let refused = app.satflow(&["order", "setup", "dca", "--sign-with-test-key"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("only signs for the public test wallet"),
        "{refused:?}"
    );

    // Not on this machine: refused before anything is asked of it.
    let remote = rehearsal("https://api.pocketbitcoin.com", PUBLIC_TEST_ZPUB);
    let refused = remote.satflow(&["order", "setup", "dca", "--sign-with-test-key"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains("not a sandbox on this machine"),
        "{refused:?}"
    );

    // On this machine but not the sandbox (nothing listens there).
    let port = super::helpers::closed_port();
    let local = rehearsal(&format!("http://127.0.0.1:{port}"), PUBLIC_TEST_ZPUB);
    let refused = local.satflow(&["order", "setup", "dca", "--sign-with-test-key"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("does not answer as `satflow sandbox` does"),
        "{refused:?}"
    );
}

/// The first word after `prefix` on a line of the log `name`, once it is there.
async fn logged(app: &TestApp, name: &str, prefix: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(app.path().join(name)).unwrap_or_default();
        if let Some(word) = log
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
        {
            return word.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {prefix:?} in {log}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Waits until the sandbox at `base` answers.
async fn wait_for(base: &str) {
    let start = std::time::Instant::now();
    while reqwest::get(format!("{base}/sandbox/webhooks"))
        .await
        .is_err()
    {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "the sandbox did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_remembers_the_order_across_a_restart_and_serves_a_node_stand_in() {
    // Both servers bind port 0 and say where they are; the config is then pointed there.
    let app = rehearsal("http://127.0.0.1:9", PUBLIC_TEST_ZPUB);
    let mut sandbox = app.spawn(
        &[
            "sandbox",
            "--listen",
            "127.0.0.1:0",
            "--lightning-listen",
            "127.0.0.1:0",
        ],
        "sandbox.log",
    );
    let base = logged(&app, "sandbox.log", "Pocket sandbox on ").await;
    let node = logged(&app, "sandbox.log", "Lightning node stand-in on ").await;
    let node = node
        .trim_start_matches("http://")
        .trim_end_matches(';')
        .to_string();
    let zpub_app = rehearsal(&base, PUBLIC_TEST_ZPUB);
    app.write(
        "satflow.yaml",
        &std::fs::read_to_string(zpub_app.path().join("satflow.yaml")).unwrap(),
    );
    let done = app.satflow(&["order", "setup", "dca", "--sign-with-test-key"]);
    assert_eq!(done.code, 0, "{done:?}");
    let order_id = done
        .stdout
        .split("Pocket order ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the order id is printed")
        .to_string();

    // The node stand-in answers as Core Lightning does, with the rune it printed.
    let info = reqwest::Client::new()
        .post(format!("http://{node}/v1/getinfo"))
        .header("Rune", "sandbox-rune")
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), 200);
    assert_eq!(super::helpers::terminate(&mut sandbox), 0);
    let log = std::fs::read_to_string(app.path().join("sandbox.log")).unwrap();
    assert!(log.contains("Lightning node stand-in on"), "{log}");
    assert!(app.path().join(".satflow-sandbox.json").is_file(), "{log}");

    // The same address again (the one the first run was given and has just let go of).
    let listen = base.trim_start_matches("http://");
    let mut again = app.spawn(&["sandbox", "--listen", listen], "sandbox-again.log");
    wait_for(&base).await;
    let order = reqwest::Client::new()
        .get(format!("{base}/v1/orders/{order_id}"))
        .header("Authorization", "client_id sandbox-client")
        .send()
        .await
        .unwrap();
    let status = order.status();
    let body = order.text().await.unwrap();
    assert_eq!(status, 200, "the order survives the restart: {body}");
    assert!(body.contains(&order_id), "{body}");
    // The payment of a restarted sandbox still finds the order.
    let paid = reqwest::Client::new()
        .post(format!("{base}/sandbox/orders/{order_id}/payments"))
        .json(&serde_json::json!({ "amount": 100 }))
        .send()
        .await
        .unwrap();
    assert!(paid.status().is_success(), "{:?}", paid.text().await);
    assert_eq!(super::helpers::terminate(&mut again), 0);
    let log = std::fs::read_to_string(app.path().join("sandbox-again.log")).unwrap();
    assert!(
        log.contains("1 order and 0 exchanges from the last run"),
        "{log}"
    );
}

#[test]
fn a_pocket_that_cannot_be_reached_is_explained_with_its_cause_and_the_fix() {
    let port = super::helpers::closed_port();
    let app = rehearsal(&format!("http://127.0.0.1:{port}"), PUBLIC_TEST_ZPUB);
    let run = app.satflow(&["order", "setup", "dca", "--message-only"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("cannot reach Pocket at"), "{run:?}");
    // The cause once, not reqwest's sentence repeating the URL.
    assert!(!run.stderr.contains("error sending request"), "{run:?}");
    assert!(run.stderr.contains("is the sandbox running?"), "{run:?}");
    assert!(run.stderr.contains("sandbox`"), "{run:?}");
}
