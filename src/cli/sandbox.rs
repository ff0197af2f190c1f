//! `satflow sandbox`: the Pocket simulator (with the hub, prices and a Lightning node
//! stand-in), to rehearse workflows without money. Its state is kept in a file beside the
//! configuration, so stopping and starting it again keeps the user's orders and exchanges.

use std::path::Path;

use secrecy::ExposeSecret;
use tokio::sync::watch;

use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};

use super::init::{STANDIN_KEY, STANDIN_RUNE};
use super::{Outcome, open_config, plural, runtime, shutdown_signal};
use crate::sandbox::{Sandbox, SandboxOptions, lightning, serve};

#[derive(Debug, clap::Args)]
pub struct SandboxArgs {
    /// Where to listen [default: the host and port of pocket.base_url in satflow.yaml]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Where to send webhooks [default: http://LISTEN/webhooks/pocket of satflow.yaml's `listen`]
    #[arg(long, value_name = "URL")]
    pub webhook_url: Option<String>,
    /// Where the sandbox keeps its orders, exchanges and hub between runs [default:
    /// .satflow-sandbox.json beside satflow.yaml]
    #[arg(long, value_name = "FILE", conflicts_with = "forget")]
    pub state: Option<std::path::PathBuf>,
    /// Keep everything in memory only: a restart starts from nothing
    #[arg(long)]
    pub forget: bool,
    /// Serve the Lightning node stand-in (Core Lightning's clnrest) here [default: the url of a
    /// `cln` node in satflow.yaml whose node_pubkey is the stand-in's, as `init --sandbox` writes]
    #[arg(long, value_name = "ADDR")]
    pub lightning_listen: Option<std::net::SocketAddr>,
}

pub fn run(config_path: &Path, args: &SandboxArgs) -> anyhow::Result<Outcome> {
    let Some(config) = open_config(config_path) else {
        return Ok(Outcome::UserError);
    };
    let Some(pocket) = &config.pocket else {
        eprintln!(
            "error: satflow.yaml has no `pocket` section; the sandbox takes its client id and webhook secret from it"
        );
        return Ok(Outcome::UserError);
    };
    let listen = match args.listen {
        Some(addr) => addr,
        None => {
            let host = pocket.base_url.host_str().unwrap_or("127.0.0.1");
            let port = pocket.base_url.port_or_known_default().unwrap_or(8421);
            match format!("{host}:{port}").parse() {
                Ok(addr) => addr,
                Err(_) => {
                    eprintln!(
                        "error: pocket.base_url ({}) is not an IP address and port to listen on; pass --listen 127.0.0.1:8421",
                        pocket.base_url
                    );
                    return Ok(Outcome::UserError);
                }
            }
        }
    };
    let webhook_url = args
        .webhook_url
        .clone()
        .unwrap_or_else(|| format!("http://{}/webhooks/pocket", config.listen));
    // The hub simulator accepts the merchant account of the first `lightningpeach` provider.
    let hub_account = config.withdraw.values().find_map(|p| match p {
        crate::config::WithdrawProvider::LightningPeach {
            email, password, ..
        } => Some((email.clone(), password.expose_secret().to_string())),
        _ => None,
    });
    let defaults = SandboxOptions::default();
    let (hub_email, hub_password) =
        hub_account.unwrap_or((defaults.hub_email.clone(), defaults.hub_password.clone()));
    let options = SandboxOptions {
        client_id: pocket.client_id.expose_secret().to_string(),
        webhook_url: Some(webhook_url.clone()),
        webhook_secret: pocket
            .webhook_secret
            .as_ref()
            .map(|s| s.expose_secret().to_string()),
        hub_email,
        hub_password,
        ..defaults
    };
    let state_file = (!args.forget).then(|| {
        args.state.clone().unwrap_or_else(|| {
            config_path
                .parent()
                .unwrap_or(Path::new("."))
                .join(".satflow-sandbox.json")
        })
    });
    let standin_key =
        SecretKey::from_slice(&STANDIN_KEY).expect("the stand-in's key is a valid key");
    let standin_pubkey = PublicKey::from_secret_key(&Secp256k1::new(), &standin_key);
    // The stand-in serves the node satflow.yaml names with its key and rune (what `init
    // --sandbox` writes), or wherever --lightning-listen says, with the default rune.
    let configured_node = config
        .lightning
        .iter()
        .find_map(|(name, node)| match &node.source {
            crate::config::InvoiceSource::Cln { url, rune, .. }
                if node.node_pubkey == Some(standin_pubkey) =>
            {
                let addr = format!("{}:{}", url.host_str()?, url.port_or_known_default()?)
                    .parse::<std::net::SocketAddr>()
                    .ok()?;
                Some((name.clone(), addr, rune.expose_secret().to_string()))
            }
            _ => None,
        });
    let lightning = match (args.lightning_listen, configured_node) {
        (Some(addr), node) => Some((
            node.as_ref().map(|(n, _, _)| n.clone()),
            addr,
            node.map_or_else(|| STANDIN_RUNE.to_string(), |(_, _, rune)| rune),
        )),
        (None, Some((name, addr, rune))) => Some((Some(name), addr, rune)),
        (None, None) => None,
    };
    let sandbox = match &state_file {
        Some(file) => match Sandbox::persisted(options, file) {
            Ok(s) => s,
            Err(e) => {
                eprintln!(
                    "error: {e}; move it away (or pass --state OTHER_FILE, or --forget) to start from nothing"
                );
                return Ok(Outcome::UserError);
            }
        },
        None => Sandbox::new(options),
    };
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
        // The port it got, when asked for port 0.
        let listen = listener.local_addr().unwrap_or(listen);
        println!("Pocket sandbox on http://{listen} (client id and webhook secret from {})", config_path.display());
        match &state_file {
            Some(file) => {
                let (orders, exchanges) = sandbox.held();
                println!(
                    "state kept in {} ({})",
                    file.display(),
                    if orders + exchanges == 0 {
                        "new".to_string()
                    } else {
                        format!(
                            "{} and {} from the last run",
                            plural(orders, "order", "orders"),
                            plural(exchanges, "exchange", "exchanges")
                        )
                    }
                );
            }
            None => println!("state kept in memory only (--forget)"),
        }
        println!("webhooks go to {webhook_url}");
        if let Some((name, addr, rune)) = &lightning {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for the Lightning node stand-in: {e}"))?;
            let node = lightning::spawn_on(listener, standin_key, rune)?;
            match name {
                Some(name) => println!("Lightning node stand-in (lightning.{name}) on {}", node.url),
                None => {
                    println!("Lightning node stand-in on {}; in satflow.yaml:", node.url);
                    println!("  lightning:\n    mynode:\n      cln: {{ url: \"{}\", rune: {rune} }}\n      node_pubkey: {standin_pubkey}", node.url);
                }
            }
        }
        println!();
        println!("Play the bank and Pocket's back office:");
        println!("  curl -X POST http://{listen}/sandbox/orders/ORDER_ID/payments -H 'Content-Type: application/json' -d '{{\"amount\": 100}}'");
        println!("  curl -X POST http://{listen}/sandbox/exchanges/EXCHANGE_ID/settle");
        println!("  curl -X POST http://{listen}/sandbox/orders/ORDER_ID/payments -H 'Content-Type: application/json' -d '{{\"amount\": 2000, \"interrupt\": \"identify\"}}'");
        println!("  curl -X POST http://{listen}/sandbox/exchanges/EXCHANGE_ID/identify");
        println!("  curl -X POST http://{listen}/sandbox/exchanges/EXCHANGE_ID/refund -H 'Content-Type: application/json' -d '{{\"reason\": \"threshold_exceeded\"}}'");
        println!("  curl -X PUT  http://{listen}/sandbox/price -H 'Content-Type: application/json' -d '{{\"currency\": \"eur\", \"price\": 60000}}'");
        println!("  curl http://{listen}/sandbox/webhooks");
        println!("  curl -X POST http://{listen}/sandbox/hub/credit -H 'Content-Type: application/json' -d '{{\"sat\": 250000}}'");
        println!("  curl -X PUT  http://{listen}/sandbox/fees -H 'Content-Type: application/json' -d '{{\"halfHourFee\": 60}}'");
        let (stop, mut stopped) = watch::channel(false);
        let signal = shutdown_signal();
        tokio::spawn(async move {
            signal.await;
            let _ = stop.send(true);
        });
        serve(listener, sandbox, async move {
            let _ = stopped.wait_for(|s| *s).await;
        })
        .await?;
        Ok(Outcome::Success)
    })
}
