//! An Electrum-protocol stand-in on loopback (newline-delimited JSON-RPC over TCP, as Electrs
//! and Fulcrum speak it), and the wallet features that use it: the address gap check through
//! the real binary, confirmations and the fee estimate through the library.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use satflow::outcome::Class;
use satflow::wallet::WalletKey;
use satflow::wallet::chain::{ChainError, ChainSource};
use satflow::wallet::electrum::{Electrum, ElectrumError, ElectrumUrl};

use satflow::sandbox::{self, SandboxOptions};

use super::helpers::{Relay, TestApp, closed_port, eventually, sandbox_post};
use super::pocket::TestWallet;
use super::webhooks::Daemon;

#[derive(Default)]
pub struct Chain {
    pub tip: u64,
    /// Confirmed transactions and their heights; a txid in `mempool` is unconfirmed, any other
    /// is unknown to the server.
    pub confirmed: HashMap<String, u64>,
    pub mempool: HashSet<String>,
    /// Every other transaction is confirmed at this height, when set.
    pub default_height: Option<u64>,
    /// Addresses that have a history, by the script hash the protocol names them by.
    pub used: HashSet<String>,
    /// `blockchain.estimatefee` for 3 blocks, BTC/kvB, as the server would write it.
    pub fee: Value,
    /// Every method asked, in order.
    pub calls: Vec<String>,
}

#[derive(Clone)]
pub struct ElectrumServer {
    pub url: String,
    pub chain: Arc<Mutex<Chain>>,
}

/// The protocol's script hash, computed here on its own: sha256 of the output script, bytes
/// reversed, in hex (electrumx docs, "Script Hashes").
pub fn script_hash_of(address: &str) -> String {
    let script = address
        .parse::<bitcoin::Address<_>>()
        .unwrap()
        .assume_checked()
        .script_pubkey();
    let mut digest = Sha256::digest(script.as_bytes()).to_vec();
    digest.reverse();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl ElectrumServer {
    pub async fn start() -> ElectrumServer {
        let chain = Arc::new(Mutex::new(Chain {
            tip: 800_000,
            fee: json!(0.00012345),
            ..Chain::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("tcp://{}", listener.local_addr().unwrap());
        let shared = Arc::clone(&chain);
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve(socket, Arc::clone(&shared)));
            }
        });
        ElectrumServer { url, chain }
    }

    /// The same server behind TLS (`ssl://`), presenting the certificate of `config`, as
    /// Fulcrum does with the self-signed certificate a node's installer made for it.
    pub async fn start_tls(config: Arc<rustls::ServerConfig>) -> ElectrumServer {
        let chain = Arc::new(Mutex::new(Chain {
            tip: 800_000,
            fee: json!(0.00012345),
            ..Chain::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ssl://{}", listener.local_addr().unwrap());
        let shared = Arc::clone(&chain);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, chain) = (acceptor.clone(), Arc::clone(&shared));
                tokio::spawn(async move {
                    // A client that refuses the certificate ends the handshake: nothing to serve.
                    if let Ok(tls) = acceptor.accept(socket).await {
                        serve(tls, chain).await;
                    }
                });
            }
        });
        ElectrumServer { url, chain }
    }

    pub fn calls(&self) -> Vec<String> {
        self.chain.lock().unwrap().calls.clone()
    }
}

async fn serve<S>(socket: S, chain: Arc<Mutex<Chain>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (read, mut write) = tokio::io::split(socket);
    let mut lines = BufReader::new(read).lines();
    let mut greeted = false;
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(request) = serde_json::from_str::<Value>(&line) else {
            return;
        };
        let method = request["method"].as_str().unwrap_or_default().to_string();
        let params = &request["params"];
        let answer = {
            let mut chain = chain.lock().unwrap();
            chain.calls.push(method.clone());
            // Fulcrum and ElectrumX want the version first.
            if !greeted && method != "server.version" {
                Err("server.version must come first".to_string())
            } else {
                match method.as_str() {
                    "server.version" => {
                        greeted = true;
                        Ok(json!(["stand-in 1.0", "1.4"]))
                    }
                    "blockchain.headers.subscribe" => {
                        Ok(json!({ "height": chain.tip, "hex": "00".repeat(80) }))
                    }
                    "blockchain.scripthash.get_history" => {
                        let hash = params[0].as_str().unwrap_or_default();
                        if chain.used.contains(hash) {
                            Ok(json!([{ "height": chain.tip - 1, "tx_hash": "ab".repeat(32) }]))
                        } else {
                            Ok(json!([]))
                        }
                    }
                    "blockchain.transaction.get" if params[1] == json!(true) => {
                        let txid = params[0].as_str().unwrap_or_default();
                        if let Some(height) =
                            chain.confirmed.get(txid).copied().or(chain.default_height)
                        {
                            Ok(json!({ "txid": txid, "hex": "00",
                                "confirmations": chain.tip + 1 - height, "blockhash": "00" }))
                        } else if chain.mempool.contains(txid) {
                            Ok(json!({ "txid": txid, "hex": "00" }))
                        } else {
                            Err("No such mempool or blockchain transaction".to_string())
                        }
                    }
                    "blockchain.estimatefee" => Ok(chain.fee.clone()),
                    _ => Err(format!("unknown method {method}")),
                }
            }
        };
        let mut reply = match answer {
            Ok(result) => json!({ "jsonrpc": "2.0", "id": request["id"], "result": result }),
            Err(message) => json!({ "jsonrpc": "2.0", "id": request["id"],
                "error": { "code": -32600, "message": message } }),
        }
        .to_string();
        reply.push('\n');
        // A notification in between, as a subscribed server may send: not the answer.
        if method == "blockchain.estimatefee" {
            let note = json!({"jsonrpc": "2.0", "method": "blockchain.headers.subscribe", "params": [{"height": 1, "hex": ""}]});
            reply = format!("{note}\n{reply}");
        }
        if write.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Account 1 of the "abandon … about" test seed (as in wallets.rs).
const VAULT: &str = "zpub6rFR7y4Q2AijF6Gk1bofHLs1d66hKFamhXWdWBup1Em25wfabZqkDqvaieV63fDQFaYmaatCG7jVNUpUiM2hAMo6SAVHcrUpSnHDpNzucB7";

fn derived(index: u32) -> String {
    WalletKey::from_extended(VAULT, None)
        .unwrap()
        .address_at(index, bitcoin::Network::Bitcoin)
        .unwrap()
        .to_string()
}

fn app(chain: &str) -> TestApp {
    let app = TestApp::engine();
    let config = std::fs::read_to_string(app.path().join("satflow.yaml")).unwrap();
    app.write(
        "satflow.yaml",
        &format!("{config}wallets:\n  vault: {{ xpub: {VAULT}, {chain} }}\n"),
    );
    app.write(
        "workflows/reserve.yaml",
        "steps:\n  - id: next\n    uses: wallet.address\n    with: { wallet: vault }\n",
    );
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gap_check_asks_the_electrum_server_and_skips_used_addresses() {
    let server = ElectrumServer::start().await;
    {
        let mut chain = server.chain.lock().unwrap();
        for i in 0..4 {
            chain.used.insert(script_hash_of(&derived(i)));
        }
    }
    let app = app(&format!("electrum_url: \"{}\"", server.url));
    let run = app.satflow(&["trigger", "reserve", "--wait"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("\"index\":4"),
        "the four used addresses are passed over: {run:?}"
    );
    assert!(run.stdout.contains(&derived(4)), "{run:?}");
    let calls = server.calls();
    assert_eq!(
        calls
            .iter()
            .filter(|c| *c == "blockchain.scripthash.get_history")
            .count(),
        5,
        "{calls:?}"
    );

    // The server is gone: no address rather than one that might be used.
    let closed = format!("tcp://127.0.0.1:{}", closed_port());
    let config = std::fs::read_to_string(app.path().join("satflow.yaml"))
        .unwrap()
        .replace(&server.url, &closed);
    app.write("satflow.yaml", &config);
    let run = app.satflow(&["trigger", "reserve", "--wait"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stdout
            .contains("not handing out an address that might be used"),
        "{run:?}"
    );
}

#[test]
fn check_refuses_a_bad_electrum_url_and_both_sources_with_their_place() {
    let bad = app("electrum_url: \"http://node.local:50001\"");
    let check = bad.satflow(&["check"]);
    assert_ne!(check.code, 0, "{check:?}");
    let out = format!("{}{}", check.stdout, check.stderr);
    assert!(
        out.contains("wallets.vault.electrum_url") && out.contains("tcp://host:port"),
        "{out}"
    );
    assert!(out.contains("satflow.yaml:"), "a file:line:col: {out}");

    let both = app_both();
    let check = both.satflow(&["check"]);
    assert_ne!(check.code, 0, "{check:?}");
    let out = format!("{}{}", check.stdout, check.stderr);
    assert!(
        out.contains("both `esplora_url` and `electrum_url`"),
        "{out}"
    );

    // A public server's certificate is signed by a public authority; a node's own is not, and
    // is pinned.
    let public = app("electrum_url: \"ssl://electrum.blockstream.info:50002\"");
    let check = public.satflow(&["check"]);
    assert_eq!(check.code, 0, "{check:?}");
    let unpinned = app("electrum_url: \"ssl://umbrel.local:50002\"");
    let check = unpinned.satflow(&["check"]);
    assert_eq!(check.code, 1, "{check:?}");
    let problems = check.problems();
    assert_eq!(problems.len(), 1, "{check:?}");
    let p = problems[0].to_string();
    assert!(
        p.contains("wallets.vault.electrum_url") && p.contains("set tls_cert_file"),
        "{p}"
    );
    let pinned = app("electrum_url: \"ssl://umbrel.local:50002\", tls_cert_file: fulcrum.pem");
    pinned.write("fulcrum.pem", &super::lnnode::self_signed().0);
    let check = pinned.satflow(&["check"]);
    assert_eq!(check.code, 0, "{check:?}");

    for (chain, says) in [
        (
            "electrum_url: \"tcp://umbrel.local:50001\", tls_cert_file: fulcrum.pem",
            "is plain TCP",
        ),
        (
            "esplora_url: \"https://mempool.space/api\", tls_cert_file: fulcrum.pem",
            "there is none",
        ),
        (
            "electrum_url: \"ssl://umbrel.local:50002\", tls_cert_file: missing.pem",
            "there is no file",
        ),
    ] {
        let bad = app(chain);
        bad.write("fulcrum.pem", &super::lnnode::self_signed().0);
        let check = bad.satflow(&["check"]);
        assert_eq!(check.code, 1, "{chain}: {check:?}");
        let out = format!("{}{}", check.stdout, check.stderr);
        assert!(
            out.contains("wallets.vault.tls_cert_file") && out.contains(says),
            "{chain}: {out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ssl_electrum_server_is_trusted_by_its_pinned_certificate_only() {
    let (cert_pem, config) = super::lnnode::self_signed();
    let server = ElectrumServer::start_tls(config).await;
    let mined = "11".repeat(32);
    {
        let mut chain = server.chain.lock().unwrap();
        chain.tip = 800_005;
        chain.confirmed.insert(mined.clone(), 800_000);
        for i in 0..2 {
            chain.used.insert(script_hash_of(&derived(i)));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let (pinned, impostor) = (dir.path().join("fulcrum.pem"), dir.path().join("other.pem"));
    std::fs::write(&pinned, &cert_pem).unwrap();
    std::fs::write(&impostor, super::lnnode::self_signed().0).unwrap();
    let url = ElectrumUrl::parse(&server.url).unwrap();
    let electrum = |cert: Option<&std::path::Path>| {
        Electrum::new(&url, bitcoin::Network::Bitcoin).pinning(cert.map(Into::into))
    };

    // Over real TLS, with exactly the server's certificate pinned.
    assert_eq!(
        electrum(Some(&pinned)).confirmations(&mined).await.unwrap(),
        6
    );
    assert!(
        electrum(Some(&pinned))
            .address_used(&derived(0))
            .await
            .unwrap()
    );
    let asked = server.calls().len();
    assert!(asked >= 4, "{:?}", server.calls());

    // Another certificate pinned: refused for good, saying which setting to change; and
    // without a pin, a self-signed certificate is no public authority's.
    let err = electrum(Some(&impostor))
        .confirmations(&mined)
        .await
        .unwrap_err();
    assert_eq!(err.class(), Class::Permanent, "{err}");
    let ElectrumError::Certificate { reason, .. } = &err else {
        panic!("not a certificate refusal: {err:?}")
    };
    assert!(
        reason.contains(&format!(
            "the server's certificate is not the one in tls_cert_file {}",
            impostor.display()
        )),
        "{reason}"
    );
    let err = electrum(None).confirmations(&mined).await.unwrap_err();
    assert_eq!(err.class(), Class::Permanent, "{err}");
    assert!(
        matches!(&err, ElectrumError::Certificate { reason, .. } if reason.contains("not signed by a public authority")),
        "{err:?}"
    );
    assert_eq!(
        server.calls().len(),
        asked,
        "nothing was asked over a refused connection"
    );

    // The binary: the gap check through the pinned ssl:// server.
    let app = app(&format!(
        "electrum_url: \"{}\", tls_cert_file: fulcrum.pem",
        server.url
    ));
    app.write("fulcrum.pem", &cert_pem);
    let run = app.satflow(&["trigger", "reserve", "--wait"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains(&derived(2)),
        "the two used ones are passed over: {run:?}"
    );
    app.write("fulcrum.pem", &super::lnnode::self_signed().0);
    let run = app.satflow(&["trigger", "reserve", "--wait"]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("is not the one in tls_cert_file"),
        "the refusal reaches the run's output: {run:?}"
    );
}

fn app_both() -> TestApp {
    app("esplora_url: \"https://mempool.space/api\", electrum_url: \"tcp://127.0.0.1:50001\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmations_and_the_fee_rate_come_from_the_electrum_server() {
    let server = ElectrumServer::start().await;
    let (mined, waiting, unknown) = ("11".repeat(32), "22".repeat(32), "33".repeat(32));
    {
        let mut chain = server.chain.lock().unwrap();
        chain.tip = 800_005;
        chain.confirmed.insert(mined.clone(), 800_000);
        chain.mempool.insert(waiting.clone());
    }
    let url = ElectrumUrl::parse(&server.url).unwrap();
    let electrum = Electrum::new(&url, bitcoin::Network::Bitcoin);
    let source = ChainSource::Electrum(electrum.clone());
    assert_eq!(source.confirmations(&mined).await.unwrap(), 6);
    assert_eq!(source.confirmations(&waiting).await.unwrap(), 0);
    let err = source.confirmations(&unknown).await.unwrap_err();
    assert!(
        matches!(err, ChainError::Electrum(ElectrumError::Rpc { .. })),
        "{err}"
    );
    assert_eq!(err.class(), Class::Permanent);

    // 0.00012345 BTC/kvB = 12.345 sat/vB, rounded up; a notification before the answer is
    // passed over.
    assert_eq!(source.fee_rate().await.unwrap(), 13);
    server.chain.lock().unwrap().fee = json!(-1);
    let err = source.fee_rate().await.unwrap_err();
    assert_eq!(err.class(), Class::TRANSIENT, "{err}");
    server.chain.lock().unwrap().fee = json!(1.5e-5);
    assert_eq!(source.fee_rate().await.unwrap(), 2);

    assert!(source.is_used(&derived(0)).await.map(|u| !u).unwrap());
    server
        .chain
        .lock()
        .unwrap()
        .used
        .insert(script_hash_of(&derived(0)));
    assert!(source.is_used(&derived(0)).await.unwrap());

    // A closed port is transient: the follow-up tries again later.
    let closed = ElectrumUrl::parse(&format!("tcp://127.0.0.1:{}", closed_port())).unwrap();
    let err = Electrum::new(&closed, bitcoin::Network::Bitcoin)
        .confirmations(&mined)
        .await
        .unwrap_err();
    assert!(matches!(err, ElectrumError::Unreachable { .. }), "{err}");
    assert_eq!(err.class(), Class::TRANSIENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_follows_a_payout_through_the_electrum_server() {
    // The daemon binds port 0: the sandbox's webhooks wait in the relay until it is up.
    let relay = Relay::start().await;
    let (addr, _sb) = sandbox::spawn(SandboxOptions {
        webhook_url: Some(format!("{}/webhooks/pocket", relay.url)),
        webhook_secret: Some(super::webhooks::SECRET.into()),
        retry_base: Duration::from_millis(200),
        ..SandboxOptions::default()
    })
    .await;
    let wallet = TestWallet::new();
    let server = ElectrumServer::start().await;
    {
        let mut chain = server.chain.lock().unwrap();
        chain.tip = 800_005;
        chain.default_height = Some(800_000);
    }
    let pocket = format!("http://{addr}");
    let d = Daemon::start(
        &pocket,
        0,
        &format!(
            "wallets:\n  cold: {{ xpub: {}, electrum_url: \"{}\" }}\n",
            wallet.zpub, server.url
        ),
        &[(
            "dca",
            "steps:\n  - uses: pocket.order\n    with: { currency: eur, fee_rate: 0.015, debitor_iban: DE89370400440532013000, payout: { wallet: cold } }\n",
        )],
    )
    .await;
    relay.point_to(&d.url);
    let setup = d.app.set_up_order("dca", &wallet.key(0));
    assert_eq!(setup.code, 0, "{setup:?}");
    let order_id = setup.stdout.split_whitespace().nth(2).unwrap().to_string();
    let control = |path: String, body: Value| sandbox_post(&pocket, path, body);
    let first = control(
        format!("sandbox/orders/{order_id}/payments"),
        json!({ "amount": 100 }),
    )
    .await;
    let id = first["id"].as_str().unwrap().to_string();
    eventually(Duration::from_secs(10), "the executed webhook", || {
        d.exchange(&id).is_some()
    })
    .await;
    control(format!("sandbox/exchanges/{id}/settle"), json!({})).await;
    // Tip 800005, mined at 800000: six confirmations, read from the Electrum server.
    eventually(
        Duration::from_secs(15),
        "the payout's confirmations",
        || d.exchange(&id).is_some_and(|e| e["confirmations"] == 6),
    )
    .await;
    assert!(
        server
            .calls()
            .iter()
            .any(|c| c == "blockchain.transaction.get"),
        "{:?}",
        server.calls()
    );
    d.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_scan_asks_an_electrum_only_wallets_server() {
    let server = ElectrumServer::start().await;
    {
        let mut chain = server.chain.lock().unwrap();
        for i in [0, 1, 3] {
            chain.used.insert(script_hash_of(&derived(i)));
        }
    }
    let node = app(&format!("electrum_url: \"{}\"", server.url));
    let scan = node.satflow(&["addresses", "vault", "--scan", "--json", "--count", "5"]);
    assert_eq!(scan.code, 0, "{scan:?}");
    assert!(scan.stderr.contains("scanned 5 addresses"), "{scan:?}");
    let doc: Value = serde_json::from_str(&scan.stdout).unwrap();
    let states: Vec<&str> = doc["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["used", "used", "fresh", "used", "fresh"]);
    let asked = server
        .calls()
        .iter()
        .filter(|c| *c == "blockchain.scripthash.get_history")
        .count();
    assert_eq!(asked, 5, "{:?}", server.calls());

    // A wallet with no chain source at all says what to add.
    let none = app("network: bitcoin");
    let scan = none.satflow(&["addresses", "vault", "--scan"]);
    assert_eq!(scan.code, 1, "{scan:?}");
    assert!(
        scan.stderr.contains("esplora_url") && scan.stderr.contains("electrum_url"),
        "{scan:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_withdrawal_to_an_electrum_only_wallet_is_followed_to_confirmation() {
    use super::withdrawals::{
        hub_withdrawals, hub_yaml, vault_address, with_providers, withdrawals,
    };
    let (addr, sandbox) = sandbox::spawn(SandboxOptions::default()).await;
    let server = ElectrumServer::start().await;
    let app = with_providers(
        "1s",
        None,
        "hub",
        "min_amount_sat: 100000, max_fee_percent: 1",
        |dir| hub_yaml(dir, addr),
    );
    let config = std::fs::read_to_string(app.path().join("satflow.yaml")).unwrap();
    let wallet = format!("vault: {{ xpub: {VAULT} }}");
    assert!(config.contains(&wallet), "{config}");
    app.write(
        "satflow.yaml",
        &config.replace(
            &wallet,
            &format!(
                "vault: {{ xpub: {VAULT}, electrum_url: \"{}\" }}",
                server.url
            ),
        ),
    );
    sandbox.hub.lock().unwrap().balance_sat = 250_000;
    let run = app.satflow(&["trigger", "sweep", "--wait"]);
    assert_eq!(run.code, 0, "{run:?}");
    let made = hub_withdrawals(&sandbox);
    assert_eq!(made.len(), 1, "{made:?}");
    let (id, _, address, _) = made[0].clone();
    assert_eq!(address, vault_address(0));

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
    {
        let mut chain = server.chain.lock().unwrap();
        chain.tip = 800_005;
        chain.confirmed.insert(tx.clone(), 800_000);
    }
    eventually(
        Duration::from_secs(15),
        "the withdrawal confirmed through the Electrum server",
        || {
            withdrawals(&app)
                .iter()
                .any(|w| w["status"] == "confirmed" && w["confirmations"] == 6)
        },
    )
    .await;
    assert_eq!(super::helpers::terminate(&mut daemon), 0);
    assert!(
        server
            .calls()
            .iter()
            .any(|c| c == "blockchain.transaction.get"),
        "{:?}",
        server.calls()
    );
}
