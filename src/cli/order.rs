//! `satflow order setup WORKFLOW`: create the Pocket order a workflow declares, with proof that
//! the payout address (or node) is the user's, verified here before anything is sent; then show
//! the payment instructions the bank needs, with a QR code.
//!
//! Calls Pocket directly (no daemon needed). A refused signature leaves the challenge pending, so
//! the user can try again without a new one.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use bitcoin::Address;
use bitcoin::bip32::{ChildNumber, DerivationPath, Xpriv, Xpub};
use bitcoin::secp256k1::{Secp256k1, SecretKey};

use super::{Outcome, Setup, load_setup, print_problems, runtime};
use crate::config::{Config, InvoiceSource};
use crate::lightning::node::Node;
use crate::lightning::signmessage::verify_node_signature;
use crate::pocket::payment::{PaymentInstructions, qr_png, qr_terminal};
use crate::pocket::types::{Challenge, NewBuyOrder, NewPayout};
use crate::pocket::{PocketClient, PocketError};
use crate::store::Store;
use crate::wallet::address_at_path;
use crate::wallet::proof::{
    ARMOR_BEGIN_MESSAGE, ARMOR_BEGIN_SIGNATURE, ARMOR_END_SIGNATURE, verify_pasted,
};
use crate::workflow::actions::{Payout, PocketOrder};
use crate::workflow::{Action, Condition, Param, Workflow};

#[derive(Debug, clap::Args)]
pub struct OrderArgs {
    #[command(subcommand)]
    pub command: OrderCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum OrderCommand {
    /// Create the Pocket order a workflow declares: challenge, signature, order, bank details
    Setup(SetupCommand),
}

/// `order setup`'s arguments: those the demo passes too, and the rehearsal's own.
#[derive(Debug, clap::Args)]
pub struct SetupCommand {
    #[command(flatten)]
    pub args: SetupArgs,
    /// Rehearsal only: sign the challenge with the key of the public test wallet ("abandon …
    /// about"). Refused unless the wallet is that test wallet and pocket.base_url is a sandbox
    /// on this machine
    #[arg(long, conflicts_with_all = ["signature", "message_only"])]
    pub sign_with_test_key: bool,
}

#[derive(Debug, clap::Args)]
pub struct SetupArgs {
    /// The workflow whose `pocket.order` step declares the order
    pub workflow: String,
    /// Print only the message to sign (alone on stdout) and keep the challenge for --signature
    #[arg(long, conflicts_with = "signature")]
    pub message_only: bool,
    /// The signature of the message, to complete a setup started with --message-only
    #[arg(long, value_name = "SIG")]
    pub signature: Option<String>,
    /// Where to write the payment QR code [default: WORKFLOW-payment.png]
    #[arg(long, value_name = "PATH")]
    pub png: Option<PathBuf>,
    /// Create a new order even though the workflow has one (it gets a new bank reference)
    #[arg(long)]
    pub replace: bool,
    /// Whether the QR code is also printed in the terminal (the demo prints only its path).
    #[arg(skip = true)]
    pub terminal_qr: bool,
}

/// What a refused setup tells the user; `user` decides the exit code.
pub(crate) struct Refused {
    pub(crate) message: String,
    user: bool,
    /// Pocket could not be reached at all: the fix is about where it is and whether it runs.
    unreachable: bool,
}

fn user(message: impl Into<String>) -> Refused {
    Refused {
        message: message.into(),
        user: true,
        unreachable: false,
    }
}

impl From<PocketError> for Refused {
    fn from(e: PocketError) -> Self {
        let user = matches!(&e, PocketError::Api { status, .. } if (400..500).contains(status));
        Refused {
            unreachable: matches!(&e, PocketError::Unreachable { .. }),
            message: e.to_string(),
            user,
        }
    }
}

impl From<crate::store::StoreError> for Refused {
    fn from(e: crate::store::StoreError) -> Self {
        Refused {
            message: e.to_string(),
            user: false,
            unreachable: false,
        }
    }
}

/// What to do when Pocket cannot be reached at `base_url`: start the sandbox when it is on this
/// machine, else look at the address and the network.
fn reach_hint(base_url: &url::Url, config_path: &Path) -> String {
    if is_loopback(base_url) {
        format!(
            "fix: pocket.base_url ({base_url}) is on this machine; is the sandbox running? Start it in another terminal: `satflow -c {} sandbox`",
            config_path.display()
        )
    } else {
        format!(
            "fix: check pocket.base_url ({base_url}) in {}, this machine's network and DNS, and any proxy or firewall in between",
            config_path.display()
        )
    }
}

pub fn run(config_path: &Path, args: &OrderArgs) -> anyhow::Result<Outcome> {
    let OrderCommand::Setup(SetupCommand {
        args,
        sign_with_test_key,
    }) = &args.command;
    let Setup { config, workflows } = match load_setup(config_path) {
        Ok(setup) => setup,
        Err(problems) => {
            print_problems(&problems);
            return Ok(Outcome::UserError);
        }
    };
    let outcome = runtime()?.block_on(setup_with(&config, &workflows, args, *sign_with_test_key));
    Ok(match outcome {
        Ok(_) => Outcome::Success,
        Err(refused) => {
            eprintln!("error: {}", refused.message);
            if let Some(pocket) = config.pocket.as_ref().filter(|_| refused.unreachable) {
                eprintln!("{}", reach_hint(&pocket.base_url, config_path));
            }
            if refused.user {
                Outcome::UserError
            } else {
                Outcome::Failure
            }
        }
    })
}

/// What the order will pay out to, and how its proof is checked.
enum Target {
    OnChain {
        address: Address,
        xpub: Option<(String, String)>,
        /// The wallet's name, its account key and the full path of the address under it:
        /// what `--sign-with-test-key` needs to find the test key.
        wallet: String,
        account: bitcoin::bip32::Xpub,
        relative: DerivationPath,
    },
    Lightning {
        node_pubkey: bitcoin::secp256k1::PublicKey,
        lightning_address: Option<String>,
    },
}

/// The whole setup; with `message_only`, the message to sign (also printed) and nothing else.
/// Called by `demo`; `order setup` goes through `setup_with`.
#[cfg(feature = "sandbox")]
pub(crate) async fn setup(
    config: &Config,
    workflows: &[Workflow],
    args: &SetupArgs,
) -> Result<Option<String>, Refused> {
    setup_with(config, workflows, args, false).await
}

/// `setup`, optionally signing with the public test wallet's key (`--sign-with-test-key`).
async fn setup_with(
    config: &Config,
    workflows: &[Workflow],
    args: &SetupArgs,
    sign_with_test_key: bool,
) -> Result<Option<String>, Refused> {
    let workflow = workflows
        .iter()
        .find(|w| w.name == args.workflow)
        .ok_or_else(|| {
            let names: Vec<&str> = workflows.iter().map(|w| w.name.as_str()).collect();
            user(format!(
                "there is no workflow named `{}`; workflows: {}",
                args.workflow,
                names.join(", ")
            ))
        })?;
    let declared = workflow
        .steps
        .iter()
        .find_map(|s| match &s.action {
            Action::PocketOrder(o) => Some(o),
            _ => None,
        })
        .ok_or_else(|| {
            user(format!(
                "workflow `{}` has no pocket.order step, so it declares no order",
                workflow.name
            ))
        })?;
    let pocket = config
        .pocket
        .as_ref()
        .ok_or_else(|| user("satflow.yaml has no `pocket` section"))?;
    let client = PocketClient::new(pocket);
    let store = Store::open(&config.database).await?;
    if let Some(existing) = store.order_for_workflow(&workflow.name).await?
        && !args.replace
    {
        return Err(user(format!(
            "workflow `{}` already has Pocket order {}; a new order means a new bank reference for your standing order. Pass --replace to create one anyway",
            workflow.name, existing.id
        )));
    }
    let target = target(config, declared).await?;
    // Refused before a challenge is asked for: a real Pocket never sees a test-key rehearsal.
    let test_key = match sign_with_test_key {
        true => Some(test_key(&target, &pocket.base_url).await?),
        false => None,
    };

    // A challenge kept by an earlier --message-only, if it is still usable; else a new one.
    let now = crate::clock::system_now();
    let challenge = match store.pending_challenge(&workflow.name).await? {
        Some(c) if c.expires_on > now + chrono::Duration::minutes(5) => {
            match client.get_challenge(&c.id).await {
                Ok(remote) if remote.completed_on.is_none() => Some(remote),
                _ => None,
            }
        }
        _ => None,
    };
    let challenge = match challenge {
        Some(c) => c,
        None => {
            let c = client.create_challenge().await?;
            store
                .save_pending_challenge(&workflow.name, &c, now)
                .await?;
            c
        }
    };
    let message = challenge.message();
    if args.message_only {
        // stdout holds the message alone (scripts read it); what to sign it with goes beside it.
        eprintln!("{}", sign_with_hint(&target));
        println!("{message}");
        return Ok(Some(message));
    }
    let signature = match (&args.signature, node_signer(config, declared)) {
        (Some(s), _) => s.trim().to_string(),
        (None, _) if let Some(key) = &test_key => {
            println!(
                "Signing with the public test wallet's key (a rehearsal against the sandbox at {}).",
                pocket.base_url
            );
            crate::wallet::proof::sign_message(key, &message)
        }
        // A configured LND or Core Lightning node signs by itself: nobody needs to paste anything.
        (None, Some((name, node))) => {
            println!("Asking lightning.{name} to sign the message {message:?}");
            node.sign_message(&message).await.map_err(|e| Refused {
                message: format!("lightning.{name} could not sign: {e}"),
                user: false,
                unreachable: false,
            })?
        }
        (None, None) => prompt(&target, &challenge, &workflow.name)?,
    };

    // Verified here first: a refusal by Pocket would cost the challenge.
    let payout = match &target {
        Target::OnChain { address, xpub, .. } => {
            // What Pocket receives is the bare signature: pasted line breaks and the armor of a
            // signed-message file are the user's paste, not part of the proof.
            let signature = verify_pasted(address, &message, &signature).map_err(|e| {
                user(format!(
                    "the signature does not prove that you control {address}: {e} Sign exactly the message above with the key of that address, then run again with --signature (the challenge stays valid)"
                ))
            })?;
            match xpub {
                Some((extended, path)) => NewPayout::Xpub {
                    bitcoin_address: address.to_string(),
                    message: message.clone(),
                    signature,
                    extended_public_key: extended.clone(),
                    derivation_path: path.clone(),
                },
                None => NewPayout::Address {
                    bitcoin_address: address.to_string(),
                    message: message.clone(),
                    signature,
                },
            }
        }
        Target::Lightning {
            node_pubkey,
            lightning_address,
        } => {
            verify_node_signature(&message, &signature, node_pubkey).map_err(|e| {
                user(format!(
                    "the signature does not come from node {node_pubkey}: {e}. Sign the message with that node (`lncli signmessage` / `lightning-cli signmessage`), then run again with --signature"
                ))
            })?;
            NewPayout::Lightning {
                node_pubkey: node_pubkey.to_string(),
                message: message.clone(),
                signature,
                lightning_address: lightning_address.clone(),
            }
        }
    };
    let request = NewBuyOrder {
        active: !matches!(declared.active, Condition::Fixed(false)),
        fee_rate: literal(&declared.fee_rate, "fee_rate")?,
        currency: literal(&declared.currency, "currency")?,
        debitor_iban: literal(&declared.debitor_iban, "debitor_iban")?,
        payout,
        affiliate_id: declared.affiliate_id.clone(),
    };
    let order = client.create_buy_order(&request).await?;
    let kind = match &target {
        Target::OnChain { xpub: Some(_), .. } => "xpub",
        Target::OnChain { xpub: None, .. } => "address",
        Target::Lightning { .. } => "lightning",
    };
    store
        .save_order(&workflow.name, kind, &order, crate::clock::system_now())
        .await?;
    let created = crate::store::audit::NewAudit {
        actor: crate::treasury::audit::cli_actor(),
        kind: "order.created".into(),
        subject: format!("order/{}", order.id),
        detail: serde_json::json!({ "workflow": workflow.name, "payout_kind": kind, "active": order.active, "currency": order.currency(), "fee_rate": order.fee_rate }),
    };
    store.audit(&created, crate::clock::system_now()).await?;
    store.close().await;

    println!(
        "Pocket order {} is set up for workflow {}.",
        order.id, workflow.name
    );
    println!();
    let instructions = PaymentInstructions::from_payment_method(&order.payment_method)
        .map_err(|e| user(format!("Pocket's answer lacks payment details: {e:?}")))?;
    println!("{}", instructions.render_text(None));
    match instructions.qr_payload(None) {
        Ok(Some(payload)) => {
            let png = args
                .png
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("{}-payment.png", workflow.name)));
            if args.terminal_qr
                && let Ok(text) = qr_terminal(&payload)
            {
                println!("{text}");
            }
            match qr_png(&payload, &png) {
                Ok(()) => println!("Scan it with your banking app, or open {}.", png.display()),
                Err(e) => eprintln!("warning: cannot write the QR code image: {e:?}"),
            }
        }
        Ok(None) => println!(
            "(No payment QR code exists for {}: type the details above into your bank.)",
            instructions.currency
        ),
        Err(e) => eprintln!("warning: no QR code: {e:?}"),
    }
    Ok(None)
}

/// The node that can sign for a Lightning order by itself (LND or Core Lightning).
fn node_signer(config: &Config, declared: &PocketOrder) -> Option<(String, Node)> {
    let Payout::Lightning { node, .. } = &declared.payout else {
        return None;
    };
    let settings = config.lightning.get(node)?;
    if matches!(settings.source, InvoiceSource::LightningAddress(_)) {
        return None;
    }
    Node::from_config(settings).ok().map(|n| (node.clone(), n))
}

fn literal<T: Clone>(param: &Param<T>, field: &str) -> Result<T, Refused> {
    match param {
        Param::Value(v) => Ok(v.clone()),
        Param::Template(_) => Err(user(format!(
            "{field} of the pocket.order step is a template; `order setup` needs it written out (it becomes part of the order)"
        ))),
    }
}

async fn target(config: &Config, declared: &PocketOrder) -> Result<Target, Refused> {
    match &declared.payout {
        Payout::Wallet {
            wallet,
            derivation_path,
        } => {
            let w = &config.wallets[wallet];
            let account = w.key.account().ok_or_else(|| {
                user(format!(
                    "wallet `{wallet}` is not an xpub/ypub/zpub or a pkh/sh(wpkh)/wpkh descriptor, so Pocket cannot rotate through it"
                ))
            })?;
            let extended = account.extended();
            let path = derivation_path
                .clone()
                .unwrap_or_else(|| account.path_of(0));
            // A path from the master key starts with hardened steps and is written from `m`;
            // one relative to the account key is written bare (`0/0`).
            let shown = if path.into_iter().any(|c| c.is_hardened()) {
                format!("m/{path}")
            } else {
                path.to_string()
            };
            let address = address_at_path(&extended, &path, w.network)
                .map_err(|e| user(format!("wallet `{wallet}`: {e}")))?;
            Ok(Target::OnChain {
                address,
                xpub: Some((extended, shown)),
                wallet: wallet.clone(),
                account: account.xpub,
                relative: relative_part(&path),
            })
        }
        Payout::Lightning {
            node,
            lightning_address,
        } => {
            let n = &config.lightning[node];
            let node_pubkey = match n.node_pubkey {
                Some(key) => key,
                // Read from the node itself when satflow.yaml does not state it.
                None => Node::from_config(n)
                    .map_err(|e| user(format!("lightning.{node}: {e}")))?
                    .pubkey()
                    .await
                    .map_err(|e| Refused {
                        message: format!("lightning.{node} has no node_pubkey and the node cannot tell it: {e}; set node_pubkey"),
                        user: false,
                        unreachable: false,
                    })?,
            };
            let lightning_address = lightning_address.clone().or_else(|| match &n.source {
                InvoiceSource::LightningAddress(a) => Some(a.clone()),
                _ => None,
            });
            Ok(Target::Lightning {
                node_pubkey,
                lightning_address,
            })
        }
    }
}

/// Shows what to sign and how, and reads the signature from stdin.
fn prompt(target: &Target, challenge: &Challenge, workflow: &str) -> Result<String, Refused> {
    let message = challenge.message();
    println!("To prove the payout is yours, sign this message:");
    println!();
    match target {
        Target::OnChain { address, .. } => {
            println!("  address:  {address}");
            println!("  message:  {message}");
            println!();
            println!(
                "Sparrow:   Tools > Sign/Verify Message; pick the address, paste the message, Sign."
            );
            println!("Electrum:  Addresses tab, right-click the address > Sign/verify message.");
            println!(
                "Hardware wallets (Trezor, Ledger, Coldcard, BitBox): connect it and sign in Sparrow or Electrum"
            );
            println!(
                "           as above; the device shows the message and asks you to confirm. A Coldcard's"
            );
            println!("           signed-message file can be pasted whole.");
            println!(
                "Bitcoin Core: `bitcoin-cli signmessage ADDRESS \"MESSAGE\"`, for legacy 1… addresses only."
            );
        }
        Target::Lightning { node_pubkey, .. } => {
            println!("  node:     {node_pubkey}");
            println!("  message:  {message}");
            println!();
            println!("LND:             lncli signmessage \"{message}\"");
            println!("Core Lightning:  lightning-cli signmessage \"{message}\"");
        }
    }
    println!();
    println!(
        "Or in two steps: `satflow order setup {workflow} --message-only`, then `--signature SIG`."
    );
    println!(
        "(The challenge expires {}.)",
        challenge.expires_on.to_rfc3339()
    );
    print!("Paste the signature and press Enter: ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    let mut stdin = std::io::stdin().lock();
    stdin
        .read_line(&mut line)
        .map_err(|e| user(format!("cannot read the signature: {e}")))?;
    // A pasted signed-message file spans lines: read on to its end line.
    if line.contains(ARMOR_BEGIN_MESSAGE) || line.contains(ARMOR_BEGIN_SIGNATURE) {
        loop {
            let before = line.len();
            stdin
                .read_line(&mut line)
                .map_err(|e| user(format!("cannot read the signature: {e}")))?;
            if line.len() == before || line[before..].contains(ARMOR_END_SIGNATURE) {
                break;
            }
        }
    }
    let line = line.trim().to_string();
    if line.is_empty() {
        return Err(user(format!(
            "no signature given; the challenge stays valid: run `satflow order setup {workflow} --signature SIG`"
        )));
    }
    Ok(line)
}

/// What `--message-only` says on stderr: which key must sign the message on stdout.
fn sign_with_hint(target: &Target) -> String {
    match target {
        Target::OnChain {
            address,
            xpub,
            wallet,
            ..
        } => {
            let path = xpub
                .as_ref()
                .map(|(_, path)| format!(", path {path}"))
                .unwrap_or_default();
            format!(
                "Sign the message below with the key of address {address} (wallet `{wallet}`{path}), then run again with --signature SIG."
            )
        }
        Target::Lightning { node_pubkey, .. } => format!(
            "Sign the message below with node {node_pubkey} (`lncli signmessage` / `lightning-cli signmessage`), then run again with --signature SIG."
        ),
    }
}

/// The normal (unhardened) steps at the end of a path: where an address lies under its account
/// key, whether the path was written from `m` or relative to the account.
fn relative_part(path: &DerivationPath) -> DerivationPath {
    let children: Vec<ChildNumber> = path.into_iter().copied().collect();
    let first_normal = children
        .iter()
        .rposition(ChildNumber::is_hardened)
        .map_or(0, |i| i + 1);
    DerivationPath::from(children[first_normal..].to_vec())
}

/// The accounts of the public test seed that `--sign-with-test-key` recognises: BIP-44/49/84
/// and BIP-86 purposes, mainnet and testnet coins, the first ten accounts.
const TEST_PURPOSES: [u32; 4] = [44, 49, 84, 86];
const TEST_COINS: [u32; 2] = [0, 1];
const TEST_ACCOUNTS: u32 = 10;

/// The private key of the order's payout address, when (and only when) the wallet is the public
/// test wallet and Pocket is a sandbox on this machine: a rehearsal can then be finished without
/// a wallet app, and a real setup can never sign with a published key.
async fn test_key(target: &Target, base_url: &url::Url) -> Result<SecretKey, Refused> {
    let Target::OnChain {
        address,
        wallet,
        account,
        relative,
        ..
    } = target
    else {
        return Err(user(
            "--sign-with-test-key signs for an on-chain wallet; this order pays out to a Lightning node, which signs by itself (or with `lncli signmessage` / `lightning-cli signmessage`)",
        ));
    };
    if !is_loopback(base_url) {
        return Err(user(format!(
            "--sign-with-test-key is only for rehearsals: pocket.base_url is {base_url}, not a sandbox on this machine (127.0.0.1, ::1 or localhost). Sign with your own wallet instead"
        )));
    }
    if !answers_as_sandbox(base_url).await {
        return Err(user(format!(
            "--sign-with-test-key is only for rehearsals: {base_url} does not answer as `satflow sandbox` does (GET /sandbox/webhooks). Start `satflow sandbox`, or sign with your own wallet"
        )));
    }
    let refused = || {
        user(format!(
            "--sign-with-test-key only signs for the public test wallet (the \"abandon … about\" seed, as in examples/demo and `satflow init --sandbox`); wallet `{wallet}` is not one of its accounts, so sign with the wallet that holds {address}"
        ))
    };
    let secp = Secp256k1::new();
    let master = Xpriv::new_master(bitcoin::Network::Bitcoin, &crate::wallet::test_seed())
        .map_err(|_| refused())?;
    for purpose in TEST_PURPOSES {
        for coin in TEST_COINS {
            for n in 0..TEST_ACCOUNTS {
                let path: DerivationPath = [purpose, coin, n]
                    .into_iter()
                    .map(|index| ChildNumber::Hardened { index })
                    .collect::<Vec<_>>()
                    .into();
                let Ok(priv_account) = master.derive_priv(&secp, &path) else {
                    continue;
                };
                let public = Xpub::from_priv(&secp, &priv_account);
                // Same key and chain code: the version bytes (xpub/zpub, main/test) do not matter.
                if public.public_key != account.public_key
                    || public.chain_code != account.chain_code
                {
                    continue;
                }
                return priv_account
                    .derive_priv(&secp, relative)
                    .map(|k| k.private_key)
                    .map_err(|_| refused());
            }
        }
    }
    Err(refused())
}

/// Whether a URL's host is this machine.
fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Whether `base_url` serves the sandbox's control API (real Pocket has none).
async fn answers_as_sandbox(base_url: &url::Url) -> bool {
    let Ok(url) = base_url.join("sandbox/webhooks") else {
        return false;
    };
    let Ok(http) = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
    else {
        return false;
    };
    match http.get(url).send().await {
        Ok(answer) if answer.status().is_success() => answer
            .json::<serde_json::Value>()
            .await
            .is_ok_and(|v| v["deliveries"].is_array()),
        _ => false,
    }
}
