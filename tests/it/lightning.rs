//! Lightning payouts end to end: the sandbox executes an exchange of a Lightning order, its
//! signed webhook reaches the daemon, satflow gets a real BOLT11 invoice from the user's node
//! (LND over HTTPS with a pinned certificate, Core Lightning, or a Lightning address), checks
//! it, and patches the exchange; the sandbox settles. Bad invoices never leave satflow.

use std::time::Duration;

use satflow::config::{InvoiceSource, LightningNode};
use satflow::lightning::node::{Node, NodeError};
use satflow::lightning::signmessage::sign_node_message;
use satflow::sandbox::{self, SandboxOptions};
use serde_json::{Value, json};

use super::helpers::{Relay, TestApp, closed_port, eventually, nothing_in_flight, terminate};
use super::lnnode::{self, Mode, StandIn};

const SECRET: &str = "lightning-webhook-secret";

struct Setup {
    app: TestApp,
    pocket: String,
    relay: Relay,
    daemon: Option<std::process::Child>,
}

impl Setup {
    /// A sandbox, and a satflow whose node `mynode` is `node` (YAML of its source), with a
    /// Lightning order workflow `zap` and the payout workflow.
    async fn new(node_yaml: &str, payout_with: &str) -> Setup {
        // The daemon binds port 0: the sandbox's webhooks wait in the relay until it is up.
        let relay = Relay::start().await;
        let (addr, _sb) = sandbox::spawn(SandboxOptions {
            webhook_url: Some(format!("{}/webhooks/pocket", relay.url)),
            webhook_secret: Some(SECRET.into()),
            retry_base: Duration::from_millis(200),
            ..SandboxOptions::default()
        })
        .await;
        let app = TestApp::empty();
        app.write(
            "satflow.yaml",
            &format!(
                "database: sqlite://satflow.db\nlisten: 127.0.0.1:0\n\
                 pocket: {{ base_url: \"http://{addr}\", client_id: sandbox-client, webhook_secret: {SECRET}, reconcile_every: 1s }}\n\
                 email: {{ dir: mail, from: satflow@example.com, to: me@example.com }}\n\
                 outbox: {{ base_delay: 100ms, max_delay: 500ms, max_attempts: 3 }}\n\
                 lightning:\n  mynode:\n{node_yaml}"
            ),
        );
        app.write(
            "workflows/zap.yaml",
            "steps:\n  - uses: pocket.order\n    with: { currency: chf, fee_rate: 0.012, debitor_iban: CH9300762011623852957, payout: { lightning: mynode } }\n",
        );
        app.write(
            "workflows/lightning-payout.yaml",
            &format!("on: {{ event: exchange.executed }}\nsteps:\n  - id: payout\n    uses: pocket.payout\n    with: {{ {payout_with} }}\n"),
        );
        Setup {
            app,
            pocket: format!("http://{addr}"),
            relay,
            daemon: None,
        }
    }

    async fn start(&mut self) {
        let check = self.app.satflow(&["check"]);
        assert_eq!(check.code, 0, "{check:?}");
        self.daemon = Some(self.app.spawn(&["run"], "daemon.log"));
        let listen = self.app.started().await;
        self.relay.point_to(&format!("http://{listen}"));
        let url = format!("http://{listen}/healthz");
        let start = std::time::Instant::now();
        while reqwest::get(&url)
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
        {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the daemon did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn control(&self, path: &str, body: Value) -> Value {
        let r = reqwest::Client::new()
            .post(format!("{}/{path}", self.pocket))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap()
    }

    /// The bank pays into the zap order; returns the exchange id.
    async fn pay(&self, order_id: &str) -> String {
        let e = self
            .control(
                &format!("sandbox/orders/{order_id}/payments"),
                json!({ "amount": "100.00" }),
            )
            .await;
        e["id"].as_str().unwrap().to_string()
    }

    async fn pocket_state(&self, exchange: &str) -> Value {
        reqwest::Client::new()
            .get(format!("{}/v1/exchanges/{exchange}", self.pocket))
            .header("Authorization", "client_id sandbox-client")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    fn payout_items(&self) -> Vec<Value> {
        self.app
            .outbox()
            .into_iter()
            .filter(|i| i["kind"] == "pocket.payout")
            .collect()
    }

    fn stop(mut self) {
        if let Some(mut d) = self.daemon.take() {
            assert_eq!(terminate(&mut d), 0);
        }
    }
}

fn order_id(setup_stdout: &str) -> String {
    setup_stdout
        .split_whitespace()
        .skip_while(|w| *w != "order")
        .nth(1)
        .unwrap()
        .to_string()
}

fn lnd_yaml(app: &TestApp, node: &StandIn) -> String {
    app.write("tls.cert", &node.cert_pem);
    std::fs::write(app.path().join("invoice.macaroon"), &node.macaroon).unwrap();
    format!(
        "    lnd: {{ url: \"{}\", macaroon_file: invoice.macaroon, tls_cert_file: tls.cert }}\n",
        node.url
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_lnd_node_behind_a_pinned_certificate_gets_the_exchange_paid_out() {
    let node = lnnode::lnd().await;
    let mut s = Setup::new("", "node: mynode").await;
    // The node's key is read from the node (no node_pubkey in satflow.yaml).
    let yaml = lnd_yaml(&s.app, &node);
    let config = std::fs::read_to_string(s.app.path().join("satflow.yaml")).unwrap() + &yaml;
    s.app.write("satflow.yaml", &config);

    // The node signs the challenge itself: nothing to paste.
    let setup = s.app.satflow(&["order", "setup", "zap"]);
    assert_eq!(setup.code, 0, "{setup:?}");
    assert!(
        setup.stdout.contains("Asking lightning.mynode to sign"),
        "{setup:?}"
    );
    let order = order_id(&setup.stdout);
    s.start().await;

    let id = s.pay(&order).await;
    eventually(
        Duration::from_secs(15),
        "the payout and the settlement",
        || {
            s.app
                .satflow(&["exchanges", "show", &id, "--json"])
                .stdout
                .contains("\"state\": \"settled\"")
        },
    )
    .await;
    let pocket = s.pocket_state(&id).await;
    let invoice = pocket["payout"]["invoice"].as_str().unwrap().to_string();
    assert_eq!(
        node.state.lock().unwrap().invoices,
        std::slice::from_ref(&invoice),
        "the node's own invoice was used"
    );
    let runs = s.app.runs();
    let payout_run = runs
        .iter()
        .find(|r| r["workflow"] == "lightning-payout")
        .unwrap();
    assert_eq!(payout_run["status"], "succeeded", "{payout_run:#}");
    assert_eq!(payout_run["steps"][0]["output"]["method"], "invoice");
    assert_eq!(
        payout_run["steps"][0]["output"]["invoice"],
        invoice.as_str()
    );

    // Invoices that are wrong in each way are refused by satflow before Pocket sees them.
    for (mode, words) in [
        (Mode::WrongAmount, "msat, but Pocket pays"),
        (Mode::WrongNetwork, "is for Regtest, not Bitcoin"),
        (Mode::WrongPayee, "payable to node"),
        (Mode::Expired, "expires in 0 s"),
    ] {
        node.set_mode(mode);
        let id = s.pay(&order).await;
        eventually(Duration::from_secs(15), "the payout to be given up", || {
            s.payout_items().iter().any(|i| {
                i["status"] == "dead" && i["last_error"].as_str().unwrap_or("").contains(words)
            })
        })
        .await;
        assert!(
            s.pocket_state(&id).await["payout"].is_null(),
            "{mode:?}: nothing was sent to Pocket"
        );
    }
    // Each one stopped for a human; their alerts are coalesced: the first is emailed now, the
    // other three are counted into the summary sent when the hour is over.
    let alerts = || {
        s.app
            .emails()
            .iter()
            .filter(|m| m.contains("gave up on pocket.payout"))
            .count()
    };
    eventually(Duration::from_secs(10), "the dead-letter alert", || {
        alerts() >= 1
    })
    .await;
    nothing_in_flight(&s.app, &format!("http://{}", s.app.listen())).await;
    assert_eq!(
        alerts(),
        1,
        "one email for four dead payouts within the hour"
    );
    let dead = s
        .payout_items()
        .iter()
        .filter(|i| i["status"] == "dead")
        .count();
    assert_eq!(dead, 4, "all four are listed for a human");
    s.stop();
}

#[tokio::test]
async fn a_node_presenting_another_certificate_is_not_trusted() {
    let node = lnnode::lnd().await;
    let impostor_cert = rcgen::generate_simple_self_signed(vec!["localhost".into()])
        .unwrap()
        .cert
        .pem();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tls.cert"), impostor_cert).unwrap();
    std::fs::write(dir.path().join("m"), &node.macaroon).unwrap();
    let config = LightningNode {
        source: InvoiceSource::Lnd {
            url: node.url.parse().unwrap(),
            macaroon_file: dir.path().join("m"),
            tls_cert_file: dir.path().join("tls.cert"),
        },
        node_pubkey: None,
        node_address: None,
    };
    match Node::from_config(&config).unwrap().pubkey().await {
        Err(e @ NodeError::Certificate { .. }) => {
            // The same certificate is refused on every attempt: nothing to retry.
            assert_eq!(e.class(), satflow::outcome::Class::Permanent, "{e}");
            let reason = e.to_string();
            assert!(
                reason.contains("is not the one in tls_cert_file") && reason.contains("tls.cert"),
                "{reason}"
            )
        }
        other => panic!("the impostor certificate was accepted: {other:?}"),
    }
    std::fs::write(dir.path().join("tls.cert"), &node.cert_pem).unwrap();
    assert_eq!(
        Node::from_config(&config).unwrap().pubkey().await.unwrap(),
        node.pubkey()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_lightning_and_a_lightning_address_pay_out_too() {
    // Core Lightning: signs the challenge and makes the invoice, with its rune.
    let cln = lnnode::cln("cln-rune-for-tests").await;
    let mut s = Setup::new(
        &format!(
            "    cln: {{ url: \"{}\", rune: cln-rune-for-tests }}\n",
            cln.url
        ),
        "node: mynode",
    )
    .await;
    let setup = s.app.satflow(&["order", "setup", "zap"]);
    assert_eq!(setup.code, 0, "{setup:?}");
    let order = order_id(&setup.stdout);
    s.start().await;
    let id = s.pay(&order).await;
    eventually(Duration::from_secs(15), "the CLN payout", || {
        s.app
            .satflow(&["exchanges", "show", &id, "--json"])
            .stdout
            .contains("\"state\": \"settled\"")
    })
    .await;
    assert_eq!(cln.state.lock().unwrap().invoices.len(), 1);
    s.stop();

    // A Lightning address: the invoice comes from LNURL-pay and its description hash is checked.
    let (server, address) = lnnode::lnurl("stacker").await;
    let (s, id) = paid_to_lightning_address(&server, &address).await;
    assert!(
        s.pocket_state(&id).await["payout"]["invoice"]
            .as_str()
            .unwrap()
            .starts_with("lnbc")
    );
    s.stop();
}

/// An order paid out to the Lightning address `address` served by `server`: set up with the
/// node's signature, one payment, waited for until the exchange is settled.
async fn paid_to_lightning_address(server: &lnnode::StandIn, address: &str) -> (Setup, String) {
    let mut s = Setup::new(
        &format!(
            "    lightning_address: \"{address}\"\n    node_pubkey: {}\n",
            server.pubkey()
        ),
        "node: mynode",
    )
    .await;
    let message = s
        .app
        .satflow(&["order", "setup", "zap", "--message-only"])
        .stdout
        .trim_end()
        .to_string();
    let key = server.state.lock().unwrap().key;
    let setup = s.app.satflow(&[
        "order",
        "setup",
        "zap",
        "--signature",
        &sign_node_message(&key, &message),
    ]);
    assert_eq!(setup.code, 0, "{setup:?}");
    let order = order_id(&setup.stdout);
    s.start().await;
    let id = s.pay(&order).await;
    eventually(Duration::from_secs(15), "the LNURL payout", || {
        s.app
            .satflow(&["exchanges", "show", &id, "--json"])
            .stdout
            .contains("\"state\": \"settled\"")
    })
    .await;
    (s, id)
}

/// A payout to a Lightning address whose server makes invoices without committing to the
/// metadata, valid for 600 s, the first `stale_first` of them already stale: the invoices
/// issued, the one Pocket was given, and the daemon's log.
async fn short_uncommitted_lnurl_payout(stale_first: usize) -> (Vec<String>, String, String) {
    let (server, address) = lnnode::lnurl_with(
        "stacker",
        lnnode::LnurlStyle {
            commits_to_metadata: false,
            expiry: Duration::from_secs(600),
            stale_first,
        },
    )
    .await;
    let (s, id) = paid_to_lightning_address(&server, &address).await;
    let issued = server.state.lock().unwrap().invoices.clone();
    let given = s.pocket_state(&id).await["payout"]["invoice"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let log = std::fs::read_to_string(s.app.path().join("daemon.log")).unwrap_or_default();
    s.stop();
    (issued, given, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lightning_address_as_wallets_run_it_pays_out_with_short_uncommitted_invoices() {
    // As widely used providers: a plain description (no hash of the LNURL metadata) and a
    // 600 s expiry, shorter than the 10 minutes satflow once asked to be left.
    let (issued, given, log) = short_uncommitted_lnurl_payout(0).await;
    assert_eq!(issued.len(), 1, "one invoice was enough: {issued:?}");
    assert_eq!(given, issued[0]);
    assert!(
        log.contains("description hash does not match"),
        "the mismatch is logged as a warning: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invoice_with_less_than_half_its_validity_left_is_replaced_by_a_fresh_one() {
    // The first invoice has 240 s of its 600 left, under the half (300 s) asked for.
    let (issued, given, log) = short_uncommitted_lnurl_payout(1).await;
    assert_eq!(issued.len(), 2, "asked again once: {issued:?}");
    assert_eq!(given, issued[1], "Pocket got the fresh invoice");
    assert!(
        log.contains("asking lightning.mynode for a fresh invoice"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_inbound_liquidity_a_channel_is_asked_for() {
    let node = lnnode::lnd().await;
    node.state.lock().unwrap().inbound_msat = 0;
    let mut s = Setup::new("", "node: mynode, channel_fallback: true").await;
    let yaml = lnd_yaml(&s.app, &node)
        + &format!("    node_address: \"{}@127.0.0.1:9735\"\n", node.pubkey());
    let config = std::fs::read_to_string(s.app.path().join("satflow.yaml")).unwrap() + &yaml;
    s.app.write("satflow.yaml", &config);
    let setup = s.app.satflow(&["order", "setup", "zap"]);
    assert_eq!(setup.code, 0, "{setup:?}");
    let order = order_id(&setup.stdout);
    s.start().await;
    let id = s.pay(&order).await;
    eventually(Duration::from_secs(15), "the channel payout", || {
        s.app
            .satflow(&["exchanges", "show", &id, "--json"])
            .stdout
            .contains("\"state\": \"settled\"")
    })
    .await;
    let pocket = s.pocket_state(&id).await;
    assert_eq!(pocket["payout"]["type"], "channel", "{pocket:#}");
    assert!(
        node.state.lock().unwrap().invoices.is_empty(),
        "no invoice was needed"
    );
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keeper_of_a_lightning_order_compares_with_the_key_the_node_gives() {
    let node = lnnode::lnd().await;
    let s = Setup::new("", "node: mynode").await;
    // No node_pubkey in satflow.yaml: the key comes from the node's getinfo.
    let yaml = lnd_yaml(&s.app, &node);
    let base = std::fs::read_to_string(s.app.path().join("satflow.yaml")).unwrap();
    s.app.write("satflow.yaml", &(base.clone() + &yaml));
    let setup = s.app.satflow(&["order", "setup", "zap"]);
    assert_eq!(setup.code, 0, "{setup:?}");
    let order = order_id(&setup.stdout);

    let run = s.app.satflow(&["trigger", "zap", "--wait"]);
    assert_eq!(run.code, 0, "the order is in shape: {run:?}");
    assert!(!run.stdout.contains("--replace"), "{run:?}");
    assert!(run.stdout.contains(&order), "{run:?}");

    // The node now answers with another key: that is drift only a new order can fix.
    let before = node.pubkey();
    node.state.lock().unwrap().key =
        bitcoin::secp256k1::SecretKey::from_slice(&[11u8; 32]).unwrap();
    let run = s.app.satflow(&["trigger", "zap", "--wait"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stdout.contains(&format!(
            "the order pays out to node {before}, not to lightning.mynode (node {})",
            node.pubkey()
        )),
        "{run:?}"
    );
    assert!(run.stdout.contains("order setup zap --replace"), "{run:?}");

    // The node does not answer: the check cannot be made, and a new order is not advised.
    let down = yaml.replace(&node.url, &format!("https://127.0.0.1:{}", closed_port()));
    s.app.write("satflow.yaml", &(base + &down));
    let run = s.app.satflow(&["trigger", "zap", "--wait"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stdout
            .contains("cannot check that the order still pays out to lightning.mynode"),
        "{run:?}"
    );
    assert!(!run.stdout.contains("--replace"), "{run:?}");
}
