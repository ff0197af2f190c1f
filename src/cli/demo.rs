//! `satflow demo`: the whole mission on this machine, with no account and no network. It writes
//! a setup into a folder (SQLite database, `.eml` emails, the example workflows), starts the
//! sandbox (Pocket and the Lightning Peach hub) and a Lightning node stand-in on loopback, runs
//! the real daemon on a clock that jumps from one event to the next, and plays three weeks:
//! orders set up by signing challenges, payments executed and settled to fresh xpub addresses, a
//! Lightning payout, an exchange interrupted before it executes (the buyer identifies, it executes
//! and settles), a refunded exchange, withdrawals, weekly digests, then
//! the report.
//!
//! It plays the bank and Pocket's back office through the sandbox's control API; everything
//! satflow does in between is the daemon's own work. The keys are public test keys: nothing
//! here may ever hold real money.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bitcoin::Network;
use bitcoin::bip32::{DerivationPath, Xpriv};
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use chrono::{DateTime, Datelike, TimeZone, Utc};
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};

use super::order::{SetupArgs, setup};
use super::{Outcome, Setup, load_setup, print_problems, runtime};
use crate::clock::{Clock, JumpClock};
use crate::engine::daemon;
use crate::pocket::types::ExchangeState;
use crate::sandbox::lightning as standin;
use crate::sandbox::{self, SandboxOptions};
use crate::store::{Store, WithdrawalStatus};
use crate::wallet::proof::sign_message;
use crate::workflow::zone::Zone;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where to write the demo's setup, database and emails: a new or empty folder, or one a
    /// previous demo wrote (what that demo wrote is replaced; nothing else is touched)
    #[arg(long, default_value = "satflow-demo")]
    pub dir: PathBuf,
    /// Also use a folder that holds files of yours; the demo still never changes or deletes a
    /// file it did not write, and refuses when one of its files would replace one of yours
    #[arg(long)]
    pub force: bool,
    /// Also print the payment QR codes in the terminal (they are written as PNG files, whose
    /// paths are printed, either way)
    #[arg(long)]
    pub show_qr: bool,
    /// Keep the daemon (and the simulated Pocket) running after the demo, to look around in
    /// the dashboard, until Ctrl-C
    #[arg(long)]
    pub serve: bool,
}

/// The demo's dashboard login (an admin): public, like the demo's keys.
pub const DEMO_USER: &str = "demo";
pub const DEMO_PASSWORD: &str = "satflow-demo";

/// Accounts 0 and 1 of the BIP-84 branch of the published test seed (`wallet::test_seed`).
const COLD: &str = "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs";
const VAULT: &str = "zpub6rFR7y4Q2AijF6Gk1bofHLs1d66hKFamhXWdWBup1Em25wfabZqkDqvaieV63fDQFaYmaatCG7jVNUpUiM2hAMo6SAVHcrUpSnHDpNzucB7";
const HUB_KEY: &str = "6ab4a84b57f46d9df02aee3589139570493543805c77af661db089ecbee36d1f";
const NODE_KEY: [u8; 32] = [0x5a; 32];
const RUNE: &str = "demo-rune";
const WEBHOOK_SECRET: &str = "demo-webhook-secret";

const LIGHTNING_DCA: &str = "\
# Every Monday, a second standing order, paid out over Lightning to your node.
name: lightning-dca
on:
  schedule:
    cron: \"0 9 * * MON\"
    timezone: Europe/Zurich
    catch_up: once
steps:
  - id: order
    uses: pocket.order
    with:
      currency: chf
      fee_rate: \"0.012\"
      debitor_iban: CH9300762011623852957
      payout: { lightning: mynode }
";

pub fn run(args: &DemoArgs) -> anyhow::Result<Outcome> {
    let before = match prepare_folder(&args.dir, args.force)? {
        Ok(before) => before,
        Err(refusal) => {
            eprintln!("error: {refusal}");
            return Ok(Outcome::UserError);
        }
    };
    // Before the demo's workflows name it.
    zurich();
    let outcome = runtime()?.block_on(play(&args.dir, args.show_qr, args.serve));
    // Whatever the demo left (emails, QR codes, the database), so that the next demo replaces
    // it — and only it.
    let written: Vec<String> = listing(&args.dir)
        .into_iter()
        .filter(|p| !p.ends_with('/') && !before.contains(p))
        .collect();
    if let Err(e) = add_to_marker(&args.dir, &written) {
        eprintln!("warning: cannot record the demo's files in {MARKER}: {e}");
    }
    outcome
}

/// The file that says a folder was written by the demo; it lists what the demo wrote there.
const MARKER: &str = ".satflow-demo";

/// What the demo writes before it plays, and what its scenario writes by name.
const DEMO_FILES: [&str; 13] = [
    "satflow.yaml",
    "hub-merchant.key",
    "workflows/weekly-dca.yaml",
    "workflows/lightning-payout.yaml",
    "workflows/sunday-withdrawal.yaml",
    "workflows/weekly-digest.yaml",
    "workflows/lightning-dca.yaml",
    "satflow.db",
    "satflow.db-wal",
    "satflow.db-shm",
    "satflow.db.lock",
    "weekly-dca-payment.png",
    "lightning-dca-payment.png",
];

/// Makes `dir` ready for the demo without touching anything the demo did not write: a new or
/// empty folder gets the marker; a folder with the marker loses the files it lists; any other
/// folder is refused unless `force`. Even then, a file of the user's where the demo writes one
/// (or a `workflows/` or `templates/` folder of theirs, which the demo's setup would read) is a
/// refusal. Returns what is in the folder now (to tell later what the demo added), or why not.
fn prepare_folder(dir: &Path, force: bool) -> anyhow::Result<Result<Vec<String>, String>> {
    let shown = dir.display();
    match std::fs::symlink_metadata(dir) {
        Err(_) => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {shown}"))?;
        }
        Ok(meta) if !meta.is_dir() => {
            return Ok(Err(format!(
                "{shown} is not a folder; choose a new folder with --dir, e.g. --dir satflow-demo"
            )));
        }
        Ok(_) => {}
    }
    let marker = dir.join(MARKER);
    if marker.is_file() {
        for relative in marker_entries(&marker)? {
            let path = dir.join(&relative);
            // Only files (or links) by name: a folder in their place is not the demo's.
            if std::fs::symlink_metadata(&path).is_ok_and(|m| !m.is_dir()) {
                std::fs::remove_file(&path)
                    .with_context(|| format!("cannot remove {}", path.display()))?;
            }
        }
        for folder in ["workflows", "mail"] {
            // Succeeds only when empty: whatever else is in it stays.
            let _ = std::fs::remove_dir(dir.join(folder));
        }
    } else {
        let present = listing(dir);
        if !present.is_empty() && !force {
            return Ok(Err(format!(
                "{shown} is not empty and was not written by `satflow demo` (it has no {MARKER}); nothing was changed. Choose a new folder (e.g. --dir satflow-demo), or pass --force to add the demo's files next to yours (yours are never changed or deleted)"
            )));
        }
    }
    let mut conflicts: Vec<String> = DEMO_FILES
        .iter()
        .filter(|f| std::fs::symlink_metadata(dir.join(f)).is_ok())
        .map(|f| f.to_string())
        .collect();
    for folder in ["workflows", "templates"] {
        let path = dir.join(folder);
        let used = match std::fs::read_dir(&path) {
            Ok(mut entries) => entries.next().is_some(),
            Err(_) => std::fs::symlink_metadata(&path).is_ok(),
        };
        if used && !conflicts.iter().any(|c| c.starts_with(folder)) {
            conflicts.push(format!("{folder}/"));
        }
    }
    if !conflicts.is_empty() {
        return Ok(Err(format!(
            "{shown} already holds {} which `satflow demo` did not write, and its setup would replace or read them; nothing was changed. Choose a new folder (e.g. --dir satflow-demo), or move them away",
            conflicts.join(", ")
        )));
    }
    let before = listing(dir);
    add_to_marker(dir, &DEMO_FILES.map(String::from))
        .with_context(|| format!("cannot write {}", marker.display()))?;
    Ok(Ok(before))
}

/// The relative paths a marker lists; any entry that could reach outside the folder is ignored.
fn marker_entries(marker: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let text = crate::source::files::read_text(marker)
        .map_err(|e| anyhow::anyhow!("{}: {e}", marker.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(PathBuf::from)
        .filter(|p| {
            p.components()
                .all(|c| matches!(c, std::path::Component::Normal(_)))
        })
        .collect())
}

/// Adds `files` to the marker (created when missing).
fn add_to_marker(dir: &Path, files: &[String]) -> anyhow::Result<()> {
    let marker = dir.join(MARKER);
    let mut entries: Vec<String> = if marker.is_file() {
        marker_entries(&marker)?
            .into_iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect()
    } else {
        Vec::new()
    };
    for f in files {
        if f != MARKER && !entries.contains(f) {
            entries.push(f.clone());
        }
    }
    let mut text = String::from(
        "# Written by `satflow demo`: this folder is the demo's. The files below are the ones it\n# wrote; the next `satflow demo --dir` here replaces them and touches nothing else.\n",
    );
    for e in entries {
        text.push_str(&e);
        text.push('\n');
    }
    std::fs::write(&marker, text)?;
    Ok(())
}

/// The files in `dir` and in its `workflows/` and `mail/` (where the demo writes), relative.
fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for (sub, prefix) in [
        (dir.to_path_buf(), ""),
        (dir.join("workflows"), "workflows/"),
        (dir.join("mail"), "mail/"),
    ] {
        let Ok(entries) = std::fs::read_dir(&sub) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if prefix.is_empty() && is_dir {
                out.push(format!("{name}/"));
            } else {
                out.push(format!("{prefix}{name}"));
            }
        }
    }
    crate::sorting::sort(&mut out);
    out
}

/// The demo's zone: the system's Europe/Zurich or, on a machine without tzdata, Zurich's
/// current rule (every date the demo shows is recent), so that the demo runs anywhere.
fn zurich() -> Zone {
    static ZURICH: std::sync::OnceLock<Zone> = std::sync::OnceLock::new();
    ZURICH
        .get_or_init(|| {
            Zone::named("Europe/Zurich").unwrap_or_else(|e| {
                eprintln!("note: {e}; the demo uses Zurich's current rule instead");
                let zone = Zone::from_posix("Europe/Zurich", "CET-1CEST,M3.5.0,M10.5.0/3")
                    .expect("Zurich's TZ string is valid");
                Zone::provide(zone.clone());
                zone
            })
        })
        .clone()
}

fn say(text: impl AsRef<str>) {
    println!("{}", text.as_ref());
}

fn heading(clock: &JumpClock, what: &str) {
    let local = clock.now().with_timezone(&zurich());
    println!();
    println!("── {} · {what}", local.format("%a %Y-%m-%d %H:%M %Z"));
}

/// Waits for `check` to give a value; the daemon works in the background meanwhile.
async fn until<T, F, Fut>(what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("the demo waited 30 s for {what}; the log above may say why");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sandbox's control API: the bank and Pocket's back office.
struct Control {
    http: reqwest::Client,
    base: String,
}

impl Control {
    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let r = self
            .http
            .post(format!("{}/{path}", self.base))
            .json(&body)
            .send()
            .await?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("the sandbox refused {path}: {status} {v}");
        }
        Ok(v)
    }
}

fn first_monday_after(now: DateTime<Utc>) -> DateTime<Utc> {
    let local = now.with_timezone(&zurich()).date_naive();
    let days = 7 - i64::from(local.weekday().num_days_from_monday());
    let monday = local + chrono::Duration::days(days);
    zurich()
        .from_local_datetime(&monday.and_hms_opt(0, 0, 0).expect("midnight"))
        .earliest()
        .expect("midnight exists in Zurich")
        .with_timezone(&Utc)
}

fn at(day: DateTime<Utc>, days: i64, hour: u32) -> DateTime<Utc> {
    let local = (day.with_timezone(&zurich()) + chrono::Duration::days(days)).date_naive();
    zurich()
        .from_local_datetime(&local.and_hms_opt(hour, 0, 0).expect("a valid hour"))
        .earliest()
        .expect("the hour exists")
        .with_timezone(&Utc)
}

/// The emails written so far, oldest first.
fn emails(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir.join("mail"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| {
                    let modified = e
                        .metadata()
                        .and_then(|m| m.modified())
                        .unwrap_or(std::time::UNIX_EPOCH);
                    (modified, e.path())
                })
                .collect()
        })
        .unwrap_or_default();
    crate::sorting::sort(&mut files);
    files.into_iter().map(|(_, p)| p).collect()
}

/// The Subject header, unfolded.
fn subject(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines = text.lines().skip_while(|l| !l.starts_with("Subject: "));
    let mut subject = lines
        .next()
        .and_then(|l| l.strip_prefix("Subject: "))
        .unwrap_or("")
        .to_string();
    for more in lines.take_while(|l| l.starts_with([' ', '\t'])) {
        subject.push(' ');
        subject.push_str(more.trim());
    }
    subject
}

/// Prints the emails not seen yet, and marks them seen.
fn new_emails(dir: &Path, seen: &mut HashSet<PathBuf>) {
    for path in emails(dir) {
        if seen.insert(path.clone()) {
            say(format!(
                "   ✉ {} — {}",
                path.strip_prefix(dir).unwrap_or(&path).display(),
                subject(&path)
            ));
        }
    }
}

/// Waits until the outbox has sent every email queued so far, then prints the new ones: the
/// emails a step caused appear under that step, before the next one is narrated.
async fn narrate_emails(
    dir: &Path,
    store: &Store,
    seen: &mut HashSet<PathBuf>,
) -> anyhow::Result<()> {
    until("the outbox to send the emails", || async {
        let pending = store.outbox_items(1000).await?.iter().any(|i| {
            i.kind == crate::notify::email::KIND && i.status == crate::store::OutboxStatus::Pending
        });
        Ok((!pending).then_some(()))
    })
    .await?;
    new_emails(dir, seen);
    Ok(())
}

/// `word` as one word for a POSIX shell: as it is when it is plain, else single-quoted.
fn shell_word(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:,=@".contains(c))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

fn write_setup(
    dir: &Path,
    listen: u16,
    sandbox: &str,
    node: &standin::StandIn,
) -> anyhow::Result<()> {
    // `prepare_folder` has already removed what an earlier demo wrote, and only that.
    std::fs::create_dir_all(dir.join("workflows"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(dir.join("hub-merchant.key"), HUB_KEY)?;
    let config = format!(
        "# Written by `satflow demo`: everything here is local and uses public test keys.
database: sqlite://satflow.db
listen: 127.0.0.1:{listen}
pocket: {{ base_url: \"{sandbox}\", client_id: demo-client, webhook_secret: {WEBHOOK_SECRET}, reconcile_every: 1m }}
email: {{ dir: mail, from: \"satflow <satflow@example.com>\", to: [stacker@example.com] }}
wallets:
  cold: {{ xpub: {COLD} }}
  vault: {{ xpub: {VAULT} }}
lightning:
  mynode:
    cln: {{ url: \"{}\", rune: {RUNE} }}
    node_pubkey: {}
withdraw:
  hub:
    lightningpeach: {{ base_url: \"{sandbox}/hub\", email: stacker@example.com, password: demo-password, key_file: hub-merchant.key }}
prices: {{ source: peach, peach_url: \"{sandbox}\", sanity_percent: 3 }}
outbox: {{ base_delay: 200ms, max_delay: 5s, max_attempts: 10 }}
engine: {{ follow_every: 500ms, shutdown_grace: 5s }}
",
        node.url,
        node.pubkey()
    );
    std::fs::write(dir.join("satflow.yaml"), config)?;
    let workflows = [
        (
            "weekly-dca.yaml",
            include_str!("../../workflows/weekly-dca.yaml"),
        ),
        (
            "lightning-payout.yaml",
            include_str!("../../workflows/lightning-payout.yaml"),
        ),
        (
            "sunday-withdrawal.yaml",
            include_str!("../../workflows/sunday-withdrawal.yaml"),
        ),
        (
            "weekly-digest.yaml",
            include_str!("../../workflows/weekly-digest.yaml"),
        ),
        ("lightning-dca.yaml", LIGHTNING_DCA),
    ];
    for (name, text) in workflows {
        std::fs::write(dir.join("workflows").join(name), text)?;
    }
    Ok(())
}

fn load(dir: &Path) -> anyhow::Result<Setup> {
    match load_setup(&dir.join("satflow.yaml")) {
        Ok(setup) => Ok(setup),
        Err(problems) => {
            print_problems(&problems);
            bail!("the demo's own setup does not pass `check`; this is a bug in satflow");
        }
    }
}

/// The key of `m/84'/0'/0'/0/0` of the test seed: it signs the challenge of the `cold` order.
fn cold_key() -> SecretKey {
    let master =
        Xpriv::new_master(Network::Bitcoin, &crate::wallet::test_seed()).expect("a valid seed");
    let path = DerivationPath::from_str("m/84'/0'/0'/0/0").expect("a valid path");
    master
        .derive_priv(&Secp256k1::new(), &path)
        .expect("derivable")
        .private_key
}

async fn play(dir: &Path, show_qr: bool, serve: bool) -> anyhow::Result<Outcome> {
    say("satflow demo: three weeks of stacking, played on this machine in seconds.");
    say("Pocket and the Lightning Peach hub are simulated, the Lightning node is a stand-in, the");
    say("keys are public test keys: no account, no network, no money.");

    // The clock starts next Monday at midnight and jumps to each event; the sandbox executes
    // exchanges on it too, so the report's dates are the demo's.
    let start = first_monday_after(crate::clock::system_now());
    let clock = Arc::new(JumpClock::new(start));
    let node = standin::spawn(SecretKey::from_slice(&NODE_KEY)?, RUNE).await?;
    let listen = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let (sandbox_addr, _sandbox) = sandbox::spawn(SandboxOptions {
        client_id: "demo-client".into(),
        webhook_url: Some(format!("http://127.0.0.1:{listen}/webhooks/pocket")),
        webhook_secret: Some(WEBHOOK_SECRET.into()),
        retry_base: Duration::from_millis(200),
        clock: clock.clone(),
        ..SandboxOptions::default()
    })
    .await;
    let sandbox_url = format!("http://{sandbox_addr}");
    write_setup(dir, listen, &sandbox_url, &node)?;
    let control = Control {
        http: reqwest::Client::new(),
        base: sandbox_url.clone(),
    };
    say(format!(
        "\nThe setup is in {}/: satflow.yaml, workflows/, the database and mail/.",
        dir.display()
    ));

    // Orders first: each needs a proof that its payout is the user's.
    let Setup { config, workflows } = load(dir)?;
    say("\n── Setting up the standing orders");
    say(
        "weekly-dca pays out on chain to wallet `cold`, rotating through its xpub. Pocket's challenge:",
    );
    let message = setup(
        &config,
        &workflows,
        &SetupArgs {
            workflow: "weekly-dca".into(),
            message_only: true,
            signature: None,
            png: None,
            replace: false,
            terminal_qr: show_qr,
        },
    )
    .await
    .map_err(|r| anyhow::anyhow!(r.message))?
    .context("no message to sign")?;
    say("signed with the key of the wallet's first address (a hardware wallet would do this):");
    let signature = sign_message(&cold_key(), &message);
    say(format!("  {signature}"));
    for (workflow, signature) in [("weekly-dca", Some(signature)), ("lightning-dca", None)] {
        setup(
            &config,
            &workflows,
            &SetupArgs {
                workflow: workflow.into(),
                message_only: false,
                signature,
                png: Some(dir.join(format!("{workflow}-payment.png"))),
                replace: false,
                terminal_qr: show_qr,
            },
        )
        .await
        .map_err(|r| anyhow::anyhow!(r.message))?;
    }
    let store = Store::open(&config.database).await?;
    // A dashboard login for the demo (the folder was emptied of the previous demo's database).
    let demo_user = crate::store::UserName::parse(DEMO_USER)?;
    if store.user(DEMO_USER).await?.is_none() {
        let hash = crate::store::users::hash_password(DEMO_PASSWORD);
        store
            .add_user(
                &demo_user,
                crate::store::Role::Admin,
                &hash,
                crate::clock::system_now(),
            )
            .await?;
    }
    let dca_order = store
        .order_for_workflow("weekly-dca")
        .await?
        .context("the weekly-dca order")?
        .id;
    let ln_order = store
        .order_for_workflow("lightning-dca")
        .await?
        .context("the lightning-dca order")?
        .id;

    // The daemon, on the demo's clock.
    let Setup {
        config: daemon_config,
        workflows,
    } = load(dir)?;
    let (stop, stopped) = watch::channel(false);
    let (ready, is_ready) = oneshot::channel();
    let engine_clock: Arc<dyn Clock> = clock.clone();
    let daemon = tokio::spawn(daemon::serve(
        daemon_config,
        workflows,
        engine_clock,
        stopped,
        Some(ready),
    ));
    let addr = is_ready.await.context("the daemon did not start")?;
    say(format!(
        "\nThe daemon runs (webhooks on http://{addr}/webhooks/pocket); the clock starts {}.",
        start.with_timezone(&zurich()).format("%a %Y-%m-%d")
    ));

    let mut seen = HashSet::new();
    narrate_emails(dir, &store, &mut seen).await?;
    let result = weeks(
        dir, &store, &clock, &control, &node, &dca_order, &ln_order, &mut seen,
    )
    .await;
    let mut daemon = Some(daemon);
    if (result.is_err() || !serve)
        && let Some(daemon) = daemon.take()
    {
        let _ = stop.send(true);
        let _ = daemon.await;
    }
    result?;

    say("\n── The report (`satflow report`)");
    let entries = crate::ledger::entries(
        &store.exchanges(i64::MAX).await?,
        &store.withdrawals(i64::MAX).await?,
    );
    print!(
        "{}",
        super::report::text(&entries, &crate::ledger::totals(&entries))
    );
    store.close().await;
    let db = dir.join("satflow.db");
    say(format!(
        "\nDone. The database is {}; the {} emails are in {} (.eml files: open them in a mail client).",
        db.display(),
        emails(dir).len(),
        dir.join("mail").display()
    ));
    // The binary that is running: a newcomer may not have `satflow` on the PATH yet.
    let binary = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "satflow".into());
    let config = dir.join("satflow.yaml");
    if serve {
        let dashboard = format!("http://{addr}/");
        say(format!(
            "\nThe dashboard: {dashboard}  (log in as {DEMO_USER} / {DEMO_PASSWORD})\nThe daemon keeps running; stop it with Ctrl-C."
        ));
        super::shutdown_signal().await;
        let _ = stop.send(true);
        if let Some(daemon) = daemon {
            let _ = daemon.await;
        }
        return Ok(Outcome::Success);
    }
    say(format!(
        "\nThe dashboard stopped with the demo's daemon: `satflow demo --serve` keeps it up (log in as {DEMO_USER} / {DEMO_PASSWORD})."
    ));
    say("Look around with:");
    for command in [
        "runs",
        "exchanges",
        "withdrawals",
        "addresses cold",
        "report --csv",
    ] {
        say(format!(
            "  {} -c {} {command}",
            shell_word(&binary),
            shell_word(&config.display().to_string())
        ));
    }
    Ok(Outcome::Success)
}

async fn exchange_in(
    store: &Store,
    id: &str,
    state: ExchangeState,
) -> anyhow::Result<Option<crate::store::ExchangeRow>> {
    Ok(store.exchange(id).await?.filter(|r| r.state == state))
}

async fn runs_done(
    store: &Store,
    since: i64,
    workflows: &[&str],
) -> anyhow::Result<Option<Vec<crate::store::RunRow>>> {
    let runs = store.recent_runs(100).await?;
    let mut done = Vec::new();
    for w in workflows {
        match runs
            .iter()
            .find(|r| r.id > since && r.workflow == *w && r.status.is_finished())
        {
            Some(r) => done.push(r.clone()),
            None => return Ok(None),
        }
    }
    Ok(Some(done))
}

async fn last_run_id(store: &Store) -> anyhow::Result<i64> {
    Ok(store.recent_runs(1).await?.first().map_or(0, |r| r.id))
}

/// Jumps to `when` and waits for the runs of `workflows` it fires.
async fn fire(
    store: &Store,
    clock: &JumpClock,
    when: DateTime<Utc>,
    workflows: &[&str],
) -> anyhow::Result<Vec<crate::store::RunRow>> {
    let since = last_run_id(store).await?;
    clock.jump_to(when - chrono::Duration::milliseconds(300));
    until(&format!("the runs of {}", workflows.join(", ")), || {
        runs_done(store, since, workflows)
    })
    .await
}

fn describe_run(run: &crate::store::RunRow) -> String {
    match &run.error {
        None => format!("{} {}", run.workflow, run.status),
        Some(e) => format!("{} {}: {e}", run.workflow, run.status),
    }
}

/// The bank pays `amount` CHF into `order`: the exchange, once the daemon has it executed.
async fn pay(
    store: &Store,
    control: &Control,
    order: &str,
    amount: &str,
) -> anyhow::Result<crate::store::ExchangeRow> {
    let e = control
        .post(
            &format!("sandbox/orders/{order}/payments"),
            json!({ "amount": amount }),
        )
        .await?;
    let id = e["id"].as_str().context("an exchange id")?.to_string();
    until("the executed exchange", || {
        exchange_in(store, &id, ExchangeState::Executed)
    })
    .await
}

/// Pocket's back office does `what` to the exchange (settle, interrupt, refund): the exchange,
/// once the daemon has it in `state`.
async fn back_office(
    store: &Store,
    control: &Control,
    id: &str,
    what: &str,
    body: Value,
    state: ExchangeState,
) -> anyhow::Result<crate::store::ExchangeRow> {
    control
        .post(&format!("sandbox/exchanges/{id}/{what}"), body)
        .await?;
    until(&format!("the exchange to be {}", state.name()), || {
        exchange_in(store, id, state)
    })
    .await
}

/// The market moves to `price`; the bank pays `amount` CHF into the order; Pocket settles to
/// the next address of the order's xpub.
async fn buy_and_settle(
    store: &Store,
    control: &Control,
    order: &str,
    price: &str,
    amount: &str,
) -> anyhow::Result<()> {
    let r = control
        .http
        .put(format!("{}/sandbox/price", control.base))
        .json(&json!({ "currency": "chf", "price": price }))
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("the sandbox refused the price: {}", r.status());
    }
    say(format!(
        "   the market is at {price} CHF/BTC; the bank pays {amount} CHF into the weekly-dca order…"
    ));
    let row = pay(store, control, order, amount).await?;
    let id = row.id.clone();
    let x = &row.exchange;
    say(format!(
        "   exchange {id} executed (webhook): {} CHF at {} CHF/BTC, fee {} CHF → {} BTC",
        x.cost.unwrap_or_default(),
        x.rate.unwrap_or_default(),
        x.fee.unwrap_or_default(),
        x.amount.unwrap_or_default()
    ));
    let row = back_office(
        store,
        control,
        &id,
        "settle",
        json!({}),
        ExchangeState::Settled,
    )
    .await?;
    let payout = row.exchange.payout.as_ref();
    say(format!(
        "   settled: paid out to {} (txid {}) — checked: a fresh address of wallet `cold`",
        payout
            .and_then(|p| p.bitcoin_address.as_deref())
            .unwrap_or("?"),
        payout.and_then(|p| p.txid.as_deref()).unwrap_or("?")
    ));
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn weeks(
    dir: &Path,
    store: &Store,
    clock: &JumpClock,
    control: &Control,
    node: &standin::StandIn,
    dca_order: &str,
    ln_order: &str,
    seen: &mut HashSet<PathBuf>,
) -> anyhow::Result<()> {
    let monday = clock.now();
    for week in 0..3i64 {
        let fire_at = at(monday, 7 * week, 9);
        let runs = fire(store, clock, fire_at, &["weekly-dca", "lightning-dca"]).await?;
        heading(
            clock,
            &format!("week {}: the Monday schedule fired", week + 1),
        );
        for run in &runs {
            say(format!(
                "   {} (the order is kept in shape: active, fee rate as declared)",
                describe_run(run)
            ));
        }
        narrate_emails(dir, store, seen).await?;

        match week {
            0 => {
                buy_and_settle(store, control, dca_order, "57000", "100.00").await?;

                say("   the bank pays 50 CHF into the Lightning order…");
                let e = control
                    .post(
                        &format!("sandbox/orders/{ln_order}/payments"),
                        json!({ "amount": "50.00" }),
                    )
                    .await?;
                let id = e["id"].as_str().context("an exchange id")?.to_string();
                until("the Lightning payout", || {
                    exchange_in(store, &id, ExchangeState::Settled)
                })
                .await?;
                let invoice = node
                    .invoices
                    .lock()
                    .map(|i| i.last().cloned())
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                say(format!(
                    "   exchange {id} executed; lightning-payout asked the node for an invoice ({}…), checked it and patched the exchange; Pocket paid it: settled",
                    invoice.chars().take(24).collect::<String>()
                ));
                narrate_emails(dir, store, seen).await?;
            }
            1 => {
                buy_and_settle(store, control, dca_order, "61500", "100.00").await?;
                say("   the bank pays 2000 CHF; Pocket wants to identify the buyer first…");
                // Pocket interrupts before it executes: nothing is bought yet.
                let e = control
                    .post(
                        &format!("sandbox/orders/{dca_order}/payments"),
                        json!({ "amount": "2000.00", "interrupt": "identify" }),
                    )
                    .await?;
                let id = e["id"].as_str().context("an exchange id")?.to_string();
                until("the interrupted exchange", || {
                    exchange_in(store, &id, ExchangeState::Interrupted)
                })
                .await?;
                say(format!(
                    "   exchange {id} interrupted: satflow emails what to do"
                ));
                narrate_emails(dir, store, seen).await?;
                say("   the buyer identifies with Pocket; the held exchange goes ahead…");
                let row = back_office(
                    store,
                    control,
                    &id,
                    "identify",
                    json!({}),
                    ExchangeState::Executed,
                )
                .await?;
                let x = &row.exchange;
                say(format!(
                    "   exchange {id} identified, then executed (webhook): {} CHF at {} CHF/BTC → {} BTC",
                    x.cost.unwrap_or_default(),
                    x.rate.unwrap_or_default(),
                    x.amount.unwrap_or_default()
                ));
                let row = back_office(
                    store,
                    control,
                    &id,
                    "settle",
                    json!({}),
                    ExchangeState::Settled,
                )
                .await?;
                let payout = row.exchange.payout.as_ref();
                say(format!(
                    "   the once interrupted exchange settled: paid out to {} — the whole lifecycle, interrupted → executed → settled",
                    payout
                        .and_then(|p| p.bitcoin_address.as_deref())
                        .unwrap_or("?")
                ));
                narrate_emails(dir, store, seen).await?;
            }
            _ => {
                buy_and_settle(store, control, dca_order, "54250", "100.00").await?;
                say("   the bank pays 150 CHF; the exchange cannot go through…");
                let id = pay(store, control, dca_order, "150.00").await?.id;
                let refund = json!({ "reason": "threshold_exceeded" });
                back_office(
                    store,
                    control,
                    &id,
                    "refund",
                    refund,
                    ExchangeState::Refunded,
                )
                .await?;
                say(format!(
                    "   exchange {id} refunded (threshold exceeded): satflow emails why"
                ));
                narrate_emails(dir, store, seen).await?;
            }
        }

        // Sunday evening: the sweep to cold storage.
        if week == 0 {
            control
                .post("sandbox/hub/credit", json!({ "sat": 250_000 }))
                .await?;
        }
        let runs = fire(
            store,
            clock,
            at(monday, 7 * week + 6, 18),
            &["sunday-withdrawal"],
        )
        .await?;
        heading(clock, "Sunday: sunday-withdrawal fired");
        say(format!("   {}", describe_run(&runs[0])));
        let withdrawal = store
            .withdrawals(1)
            .await?
            .into_iter()
            .next()
            .context("a withdrawal")?;
        match withdrawal.status {
            WithdrawalStatus::Requested => {
                say(format!(
                    "   the hub's {} sat go to {} (a fresh address of wallet `vault`), withdrawal {}",
                    withdrawal.amount_sat.unwrap_or_default(),
                    withdrawal.address,
                    withdrawal.provider_ref.as_deref().unwrap_or("?")
                ));
                let id = withdrawal.provider_ref.clone().unwrap_or_default();
                control
                    .post(&format!("sandbox/hub/withdrawals/{id}/complete"), json!({}))
                    .await?;
                let key = withdrawal.key.clone();
                let sent = until("the withdrawal to be sent", || async {
                    Ok(store
                        .withdrawal(&key)
                        .await?
                        .filter(|w| w.status == WithdrawalStatus::Sent))
                })
                .await?;
                say(format!(
                    "   the hub sent it: transaction {}",
                    sent.txid.as_deref().unwrap_or("?")
                ));
            }
            _ => say(format!(
                "   nothing moved: {}",
                withdrawal
                    .reason
                    .as_deref()
                    .unwrap_or(withdrawal.status.name())
            )),
        }
        narrate_emails(dir, store, seen).await?;
        let runs = fire(
            store,
            clock,
            at(monday, 7 * week + 6, 19),
            &["weekly-digest"],
        )
        .await?;
        heading(clock, "Sunday: weekly-digest fired");
        say(format!(
            "   {} (the week, the totals and a chart of the stack, stacking.png)",
            describe_run(&runs[0])
        ));
        narrate_emails(dir, store, seen).await?;
    }
    Ok(())
}
