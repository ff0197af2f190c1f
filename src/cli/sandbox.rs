//! `satflow sandbox`: the Pocket simulator, to rehearse workflows without money.

use std::path::Path;

use secrecy::ExposeSecret;
use tokio::sync::watch;

use super::{Outcome, open_config, runtime, shutdown_signal};
use crate::sandbox::{Sandbox, SandboxOptions, serve};

#[derive(Debug, clap::Args)]
pub struct SandboxArgs {
    /// Where to listen [default: the host and port of pocket.base_url in satflow.yaml]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Where to send webhooks [default: http://LISTEN/webhooks/pocket of satflow.yaml's `listen`]
    #[arg(long, value_name = "URL")]
    pub webhook_url: Option<String>,
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
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
        // The port it got, when asked for port 0.
        let listen = listener.local_addr().unwrap_or(listen);
        println!("Pocket sandbox on http://{listen} (client id and webhook secret from {})", config_path.display());
        println!("webhooks go to {webhook_url}");
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
        serve(listener, Sandbox::new(options), async move {
            let _ = stopped.wait_for(|s| *s).await;
        })
        .await?;
        Ok(Outcome::Success)
    })
}
