//! `satflow init [DIR]`: writes a commented satflow.yaml and ready-to-use workflows from the
//! user's answers (asked on stdin, a terminal or a pipe, or given as flags), so that a newcomer
//! starts from a setup that passes `check`.
//!
//! Every answer is judged by the same readers `check` uses (the answer is written into the
//! setup and the setup read back), so a refusal reads exactly as `check` would word it. It must
//! never overwrite a file that is already there, and never write a secret into a file: secrets
//! are `${VARIABLE}` references.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use rust_decimal::Decimal;

use super::Outcome;
use crate::config;
use crate::source::{Diagnostics, Env, ProcessEnv};
use crate::workflow;

/// The throwaway key and rune of the Lightning node stand-in `satflow sandbox` serves beside
/// the Pocket sandbox; `init --sandbox` writes its public key into the setup.
pub(crate) const STANDIN_KEY: [u8; 32] = [0x5a; 32];
pub(crate) const STANDIN_RUNE: &str = "sandbox-rune";
/// Where `init --sandbox` expects the sandbox (Pocket, hub, prices) and the node stand-in.
pub(crate) const SANDBOX_URL: &str = "http://127.0.0.1:8421";
pub(crate) const STANDIN_URL: &str = "http://127.0.0.1:8422";

/// Account 0 of the BIP-84 branch of the public test seed ("abandon" ×11 "about").
pub(crate) const TEST_WALLET: &str = "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs";

/// The secrets a setup names by environment variable; while init checks the setup they may
/// be unset (the user exports them afterwards), so placeholders stand in for them.
const SECRET_VARIABLES: [&str; 3] = ["POCKET_CLIENT_ID", "POCKET_WEBHOOK_SECRET", "CLN_RUNE"];

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The folder to set up (created when missing) [default: the current folder]
    pub dir: Option<PathBuf>,
    /// Rehearsal: Pocket, the hub and prices at `satflow sandbox` (127.0.0.1:8421), its
    /// Lightning node stand-in, and the public test wallet. No account, no money
    #[arg(long)]
    pub sandbox: bool,
    /// Your cold wallet: the xpub/ypub/zpub it exports, or an output descriptor
    #[arg(long, value_name = "XPUB|DESCRIPTOR")]
    pub wallet: Option<String>,
    /// The IBAN you pay Pocket from
    #[arg(long, value_name = "IBAN")]
    pub iban: Option<String>,
    /// The currency of your bank payments: eur, chf or gbp
    #[arg(long, value_name = "CURRENCY")]
    pub currency: Option<String>,
    /// How much each bank payment is (your standing order at the bank), e.g. 100
    #[arg(long, value_name = "AMOUNT")]
    pub amount: Option<String>,
    /// How often your bank pays: daily, weekly or monthly
    #[arg(long, value_name = "CADENCE")]
    pub cadence: Option<String>,
    /// Pocket's fee as a fraction, 0.012 to 0.045
    #[arg(long, value_name = "RATE")]
    pub fee_rate: Option<String>,
    /// Where emails go (order details, alerts, the weekly digest); `none` for no email
    #[arg(long, value_name = "ADDRESS")]
    pub email: Option<String>,
    /// A Lightning node for Lightning payouts (optional): a Lightning address (user@domain) or a
    /// Core Lightning clnrest URL (its rune from $CLN_RUNE); `none` for none
    #[arg(long, value_name = "NODE")]
    pub lightning: Option<String>,
}

/// One question: what is asked, the flag that answers it, and the answer when none is given.
struct Question {
    ask: &'static str,
    flag: &'static str,
    default: Option<String>,
}

/// The answers a setup is written from.
#[derive(Clone)]
struct Answers {
    sandbox: bool,
    wallet: String,
    iban: String,
    currency: String,
    amount: Decimal,
    cadence: Cadence,
    fee_rate: String,
    email: Option<String>,
    lightning: Option<Lightning>,
}

#[derive(Clone)]
enum Lightning {
    Address(String),
    Cln { url: String, rune: String },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cadence {
    Daily,
    Weekly,
    Monthly,
}

impl Cadence {
    fn parse(text: &str) -> Result<Cadence, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "daily" => Ok(Cadence::Daily),
            "weekly" => Ok(Cadence::Weekly),
            "monthly" => Ok(Cadence::Monthly),
            _ => Err(format!(
                "cadence: {text:?} is not a cadence; write daily, weekly or monthly"
            )),
        }
    }

    fn word(self) -> &'static str {
        match self {
            Cadence::Daily => "daily",
            Cadence::Weekly => "weekly",
            Cadence::Monthly => "monthly",
        }
    }

    /// When the order-keeping workflow looks at the order: soon after each payment is due.
    fn cron(self) -> (&'static str, &'static str) {
        match self {
            Cadence::Daily => ("0 9 * * *", "every day at 09:00"),
            Cadence::Weekly => ("0 9 * * MON", "Mondays 09:00"),
            Cadence::Monthly => ("0 9 1 * *", "the 1st of the month, 09:00"),
        }
    }
}

/// What a refusal means for the exit code.
enum Stop {
    /// The user's answer or folder is wrong (exit 1); the message says what to do.
    User(String),
}

pub fn run(args: &InitArgs) -> anyhow::Result<Outcome> {
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    match init(&dir, args) {
        Ok(()) => Ok(Outcome::Success),
        Err(Stop::User(message)) => {
            eprintln!("error: {message}");
            Ok(Outcome::UserError)
        }
    }
}

fn init(dir: &Path, args: &InitArgs) -> Result<(), Stop> {
    // Refused before a single question: answering everything to learn at the end that the
    // folder is taken would waste the user's time.
    for name in ["satflow.yaml", "workflows"] {
        let path = dir.join(name);
        if std::fs::symlink_metadata(&path).is_ok() {
            return Err(Stop::User(format!(
                "{} already exists; `init` never overwrites a setup. Run `satflow check -c {}` to check it, or `satflow init OTHER_DIR` for a new one",
                path.display(),
                dir.join("satflow.yaml").display()
            )));
        }
    }
    let answers = ask_all(args)?;
    let files = render(&answers);
    std::fs::create_dir_all(dir.join("workflows")).map_err(|e| {
        Stop::User(format!(
            "cannot create {}: {e}",
            dir.join("workflows").display()
        ))
    })?;
    for (name, contents) in &files {
        let path = dir.join(name);
        // `create_new`: a file that appeared meanwhile is still never replaced.
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(|mut f| f.write_all(contents.as_bytes()));
        if let Err(e) = written {
            return Err(Stop::User(format!("cannot write {}: {e}", path.display())));
        }
    }
    let config_path = dir.join("satflow.yaml");
    println!("Wrote {}:", dir.display());
    for (name, _) in &files {
        println!("  {name}");
    }
    let c = if config_path == Path::new("./satflow.yaml") {
        String::new()
    } else {
        format!(" -c {}", config_path.display())
    };
    println!();
    println!("Next:");
    if answers.sandbox {
        println!(
            "  satflow{c} sandbox                # in a second terminal: Pocket, the hub, prices and a Lightning node, simulated"
        );
        println!("  satflow{c} check");
        println!("  satflow{c} plan");
        println!("  satflow{c} order setup stacking --sign-with-test-key");
        println!(
            "  satflow{c} run                    # the daemon; then play the bank with the curl lines the sandbox printed"
        );
    } else {
        let missing: Vec<&str> = SECRET_VARIABLES
            .iter()
            .filter(|v| setup_uses(&files, v) && std::env::var_os(v).is_none())
            .copied()
            .collect();
        if !missing.is_empty() {
            println!(
                "  export {}   # Pocket gives you the client id and webhook secret",
                missing
                    .iter()
                    .map(|v| format!("{v}=…"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        println!("  satflow{c} check");
        println!("  satflow{c} plan");
        println!("  satflow{c} order setup stacking    # sign Pocket's challenge with your wallet");
        println!(
            "  then set up a {} standing order of {} {} at your bank with the details it prints",
            answers.cadence.word(),
            answers.amount,
            answers.currency.to_ascii_uppercase()
        );
        println!(
            "  satflow{c} run                    # as a service; see the README for how Pocket reaches the webhook"
        );
    }
    Ok(())
}

/// Whether any file of the setup refers to `${variable}`.
fn setup_uses(files: &[(String, String)], variable: &str) -> bool {
    files
        .iter()
        .any(|(_, text)| text.contains(&format!("${{{variable}}}")))
}

/// Reads every answer that no flag gave, one line each from stdin (a terminal or a pipe),
/// judging each as `check` would as soon as it is given.
fn ask_all(args: &InitArgs) -> Result<Answers, Stop> {
    let sandbox = args.sandbox;
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut answers = defaults(sandbox);

    // Each question: the flag's value if given, else a line from stdin; a wrong flag is refused
    // at once, a wrong typed answer is asked again (until the input ends).
    if !sandbox {
        let q = Question {
            ask: "Your cold wallet's xpub/ypub/zpub (or an output descriptor)",
            flag: "--wallet",
            default: None,
        };
        answers = answer(&mut input, &q, args.wallet.as_deref(), &answers, |a, v| {
            a.wallet = v.trim().to_string();
            Ok(())
        })?;
    } else if let Some(w) = &args.wallet
        && w != TEST_WALLET
    {
        return Err(Stop::User(
            "--sandbox uses the public test wallet (so that `order setup --sign-with-test-key` can sign); leave out --wallet, or leave out --sandbox".into(),
        ));
    }
    let q = Question {
        ask: "The currency you pay in (eur, chf or gbp)",
        flag: "--currency",
        default: Some("eur".into()),
    };
    answers = answer(
        &mut input,
        &q,
        args.currency.as_deref(),
        &answers,
        |a, v| {
            a.currency = v.trim().to_string();
            Ok(())
        },
    )?;
    let q = Question {
        ask: "The IBAN you pay from",
        flag: "--iban",
        default: sandbox.then(|| default_iban(&answers.currency).to_string()),
    };
    answers = answer(&mut input, &q, args.iban.as_deref(), &answers, |a, v| {
        a.iban = v.trim().to_string();
        Ok(())
    })?;
    let q = Question {
        ask: "How much each bank payment is",
        flag: "--amount",
        default: sandbox.then(|| "100".to_string()),
    };
    answers = answer(&mut input, &q, args.amount.as_deref(), &answers, |a, v| {
        a.amount = amount(v)?;
        Ok(())
    })?;
    let q = Question {
        ask: "How often your bank pays (daily, weekly or monthly)",
        flag: "--cadence",
        default: Some("weekly".into()),
    };
    answers = answer(&mut input, &q, args.cadence.as_deref(), &answers, |a, v| {
        a.cadence = Cadence::parse(v)?;
        Ok(())
    })?;
    let q = Question {
        ask: "Pocket's fee rate, 0.012 to 0.045",
        flag: "--fee-rate",
        default: Some("0.015".into()),
    };
    answers = answer(
        &mut input,
        &q,
        args.fee_rate.as_deref(),
        &answers,
        |a, v| {
            a.fee_rate = v.trim().to_string();
            Ok(())
        },
    )?;
    let q = Question {
        ask: "Your email address for order details and alerts (none: no email)",
        flag: "--email",
        default: Some(if sandbox {
            "stacker@example.com".into()
        } else {
            "none".into()
        }),
    };
    answers = answer(&mut input, &q, args.email.as_deref(), &answers, |a, v| {
        a.email = none_or(v).map(str::to_string);
        Ok(())
    })?;
    if !sandbox {
        let q = Question {
            ask: "A Lightning node for Lightning payouts: a Lightning address (user@domain) or a Core Lightning clnrest URL (none: on-chain only)",
            flag: "--lightning",
            default: Some("none".into()),
        };
        answers = answer(
            &mut input,
            &q,
            args.lightning.as_deref(),
            &answers,
            |a, v| {
                a.lightning = none_or(v).map(|text| match url::Url::parse(text) {
                    Ok(_) => Lightning::Cln {
                        url: text.to_string(),
                        rune: "${CLN_RUNE}".into(),
                    },
                    Err(_) => Lightning::Address(text.to_string()),
                });
                Ok(())
            },
        )?;
    } else if args.lightning.is_some() {
        return Err(Stop::User(
            "--sandbox uses the sandbox's Lightning node stand-in; leave out --lightning, or leave out --sandbox".into(),
        ));
    }
    Ok(answers)
}

fn none_or(text: &str) -> Option<&str> {
    let text = text.trim();
    (!text.is_empty() && !text.eq_ignore_ascii_case("none")).then_some(text)
}

/// One answer: from its flag, else read from `input` (asked again while wrong); judged by
/// applying it to the answers so far and reading the whole setup back as `check` does. The
/// answers before it were already judged, and the ones after it are still valid defaults, so a
/// problem found is this answer's.
fn answer(
    input: &mut dyn BufRead,
    q: &Question,
    flag: Option<&str>,
    so_far: &Answers,
    apply: impl Fn(&mut Answers, &str) -> Result<(), String>,
) -> Result<Answers, Stop> {
    let judge = |text: &str| -> Result<Answers, Vec<String>> {
        let mut next = so_far.clone();
        apply(&mut next, text).map_err(|e| vec![e])?;
        let problems = problems_of(&render(&next));
        if problems.is_empty() {
            Ok(next)
        } else {
            Err(problems)
        }
    };
    if let Some(text) = flag {
        return judge(text).map_err(|problems| {
            Stop::User(format!(
                "{} {text:?} is refused: {}",
                q.flag,
                problems.join("; ")
            ))
        });
    }
    loop {
        match &q.default {
            Some(d) => eprint!("{} [{d}]: ", q.ask),
            None => eprint!("{}: ", q.ask),
        }
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        let read = input
            .read_line(&mut line)
            .map_err(|e| Stop::User(format!("cannot read the answer: {e}")))?;
        let typed = line.trim();
        // From a pipe, nothing echoes the answer: it is shown after the prompt, so the
        // transcript reads as a terminal session would.
        let piped = !std::io::IsTerminal::is_terminal(&std::io::stdin());
        let text = match (typed.is_empty(), &q.default) {
            (false, _) => {
                if piped {
                    eprintln!("{typed}");
                }
                typed.to_string()
            }
            (true, Some(d)) => {
                if piped {
                    eprintln!("{d}");
                }
                d.clone()
            }
            (true, None) if read == 0 => {
                if piped {
                    eprintln!();
                }
                return Err(Stop::User(format!(
                    "no answer to \"{}\" (the input ended); pass {} or answer on stdin",
                    q.ask, q.flag
                )));
            }
            (true, None) => continue,
        };
        match judge(&text) {
            Ok(next) => return Ok(next),
            Err(problems) => {
                for p in &problems {
                    eprintln!("  {p}");
                }
                if read == 0 {
                    return Err(Stop::User(format!(
                        "{} is refused and the input ended",
                        q.flag
                    )));
                }
            }
        }
    }
}

/// An amount of fiat: positive, at most two decimals. (Only the bank sees it; `check` has no
/// reader for it.)
fn amount(text: &str) -> Result<Decimal, String> {
    let text = text.trim();
    match Decimal::from_str(text) {
        Ok(d) if d > Decimal::ZERO && d.scale() <= 2 => Ok(d.normalize()),
        _ => Err(format!(
            "amount: {text:?} is not an amount; write a positive number with at most two decimals, e.g. 100 or 49.50"
        )),
    }
}

/// The answers of a rehearsal, and the starting point of every other setup.
fn defaults(sandbox: bool) -> Answers {
    Answers {
        sandbox,
        wallet: TEST_WALLET.into(),
        iban: default_iban("eur").into(),
        currency: "eur".into(),
        amount: Decimal::new(100, 0),
        cadence: Cadence::Weekly,
        fee_rate: "0.015".into(),
        email: None,
        lightning: sandbox.then(|| Lightning::Cln {
            url: STANDIN_URL.into(),
            rune: STANDIN_RUNE.into(),
        }),
    }
}

/// A published example IBAN of the currency's country (valid checksums, nobody's account).
fn default_iban(currency: &str) -> &'static str {
    match currency.to_ascii_lowercase().as_str() {
        "chf" => "CH9300762011623852957",
        "gbp" => "GB29NWBK60161331926819",
        _ => "DE89370400440532013000",
    }
}

/// The problems `check` finds in a setup made of `files`, read from a scratch folder; the
/// messages alone (the scratch paths mean nothing to the user).
fn problems_of(files: &[(String, String)]) -> Vec<String> {
    let scratch = scratch_dir();
    let result = (|| -> std::io::Result<Vec<String>> {
        std::fs::create_dir_all(scratch.join("workflows"))?;
        for (name, contents) in files {
            std::fs::write(scratch.join(name), contents)?;
        }
        let mut diags = Diagnostics::default();
        let env = InitEnv;
        let loaded = config::load(&scratch.join("satflow.yaml"), &env, &mut diags);
        workflow::load_all(&loaded.workflow_files, &loaded.names, &env, &mut diags);
        Ok(diags.sorted().into_iter().map(|d| d.message).collect())
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result.unwrap_or_else(|e| {
        vec![format!(
            "cannot check the answers in {}: {e}",
            scratch.display()
        )]
    })
}

fn scratch_dir() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    std::env::temp_dir().join(format!(
        "satflow-init-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// The process environment, with placeholders for the secrets the user exports later.
struct InitEnv;

impl Env for InitEnv {
    fn var(&self, name: &str) -> Option<String> {
        ProcessEnv.var(name).or_else(|| {
            SECRET_VARIABLES
                .contains(&name)
                .then(|| "placeholder-until-exported".to_string())
        })
    }
}

fn standin_pubkey() -> PublicKey {
    let key = SecretKey::from_slice(&STANDIN_KEY).expect("a valid throwaway key");
    PublicKey::from_secret_key(&Secp256k1::new(), &key)
}

/// The files of the setup, by path relative to its folder.
fn render(a: &Answers) -> Vec<(String, String)> {
    let mut files = vec![("satflow.yaml".to_string(), config_file(a))];
    files.push(("workflows/stacking.yaml".into(), stacking(a)));
    if a.email.is_some() {
        files.push(("workflows/weekly-digest.yaml".into(), DIGEST.into()));
    }
    if a.lightning.is_some() {
        files.push(("workflows/lightning-payout.yaml".into(), PAYOUT.into()));
    }
    if a.sandbox {
        files.push((
            "workflows/lightning-stacking.yaml".into(),
            lightning_stacking(a),
        ));
    }
    files
}

fn wallet_line(wallet: &str) -> String {
    let key = if wallet.contains('(') {
        "descriptor"
    } else {
        "xpub"
    };
    // Quoted: a descriptor holds `'`, `[` and `#`, which plain YAML would misread.
    format!("{key}: {}", yaml_string(wallet))
}

/// A YAML double-quoted string of `text`.
fn yaml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn config_file(a: &Answers) -> String {
    let mut s = String::new();
    if a.sandbox {
        s.push_str(
            "# A rehearsal setup written by `satflow init --sandbox`: Pocket, the Lightning Peach hub\n\
             # and prices are `satflow sandbox` on this machine, the wallet is the public test wallet.\n\
             # No account, no money. For a real setup run `satflow init` again in another folder.\n\n",
        );
    } else {
        s.push_str(
            "# Written by `satflow init`. Every key is explained in docs/configuration.md; `satflow check`\n\
             # validates this file and the workflows, `satflow plan` shows when they run.\n\n",
        );
    }
    s.push_str(
        "# The state of every run, order, exchange and address (relative to this file's folder).\n\
         database: sqlite://satflow.db\n\n\
         # The workflows: every *.yaml file in this folder.\n\
         workflows: workflows\n\n\
         # Webhooks, /healthz and /metrics. Loopback only: in production Pocket reaches\n\
         # /webhooks/pocket through a reverse proxy with TLS or a tunnel (see the README).\n\
         listen: 127.0.0.1:8420\n\n",
    );
    if a.sandbox {
        s.push_str(&format!(
            "pocket:\n\
             \x20 base_url: {SANDBOX_URL}          # `satflow sandbox`; https://api.pocketbitcoin.com for real\n\
             \x20 client_id: sandbox-client\n\
             \x20 webhook_secret: sandbox-webhook-secret\n\n"
        ));
    } else {
        s.push_str(
            "pocket:\n\
             \x20 base_url: https://api.pocketbitcoin.com\n\
             \x20 client_id: ${POCKET_CLIENT_ID}              # export it; never write it here\n\
             \x20 webhook_secret: ${POCKET_WEBHOOK_SECRET}    # webhooks without a valid signature are refused\n\n",
        );
    }
    if let Some(email) = &a.email {
        s.push_str(&format!(
            "email:\n\
             \x20 dir: mail                      # each email as an .eml file; to send for real use\n\
             \x20                                # smtp_url: smtps://user:${{SMTP_PASSWORD}}@mail.example.com:465\n\
             \x20 from: \"satflow <{email}>\"\n\
             \x20 to: [{email}]\n\n",
            email = email.replace('"', "")
        ));
    }
    s.push_str(&format!(
        "wallets:\n\
         \x20 # Where Pocket pays out: it rotates through this key, so no address is used twice.\n\
         \x20 cold:\n\
         \x20   {}\n",
        wallet_line(&a.wallet)
    ));
    if a.sandbox {
        s.push_str(
            "    # ^ the public test wallet (\"abandon … about\"): never send real coins to it.\n",
        );
    }
    s.push('\n');
    match &a.lightning {
        Some(Lightning::Cln { url, rune }) => {
            s.push_str(&format!(
                "lightning:\n\
                 \x20 mynode:\n\
                 \x20   cln:\n\
                 \x20     url: {}\n\
                 \x20     rune: {rune}\n",
                yaml_string(url)
            ));
            if a.sandbox {
                s.push_str(&format!(
                    "    node_pubkey: {}     # the sandbox's node stand-in\n",
                    standin_pubkey()
                ));
            }
            s.push('\n');
        }
        Some(Lightning::Address(address)) => s.push_str(&format!(
            "lightning:\n\
             \x20 mynode:\n\
             \x20   lightning_address: {}\n\n",
            yaml_string(address)
        )),
        None => {}
    }
    if a.sandbox {
        s.push_str(&format!(
            "prices:\n\
             \x20 source: peach\n\
             \x20 peach_url: {SANDBOX_URL}         # the sandbox serves Peach's market endpoints too\n\n"
        ));
    }
    s.push_str(
        "# Retries of every side effect (orders, payouts, emails): doubling delays up to max_delay.\n\
         outbox: { base_delay: 2s, max_delay: 1h, max_attempts: 20 }\n",
    );
    if a.email.is_none() {
        s.push_str("# Alert emails need an `email` section.\nalerts: []\n");
    }
    s
}

fn stacking(a: &Answers) -> String {
    let (cron, when) = a.cadence.cron();
    let mut s = format!(
        "# Dollar-cost averaging with a Pocket standing order.\n\
         #\n\
         # Your bank pays Pocket {amount} {cur} {cadence} by standing order; Pocket buys bitcoin with each\n\
         # payment and pays it out to the next address of wallet `cold`. This workflow keeps the order\n\
         # in shape: `satflow order setup stacking` creates it, then {when} it checks that it is\n\
         # still active with the fee rate below.\n\
         name: stacking\n\
         on:\n\
         \x20 schedule:\n\
         \x20   cron: \"{cron}\"            # minute hour day-of-month month day-of-week\n\
         \x20   timezone: UTC               # any IANA zone, e.g. Europe/Zurich\n\
         \x20   catch_up: once              # after downtime, run once for what was missed\n\
         steps:\n\
         \x20 - id: order\n\
         \x20   uses: pocket.order\n\
         \x20   with:\n\
         \x20     currency: {currency}\n\
         \x20     fee_rate: {fee_rate}        # Pocket's fee, 0.012 to 0.045\n\
         \x20     debitor_iban: {iban}   # the account you pay from\n\
         \x20     payout:\n\
         \x20       wallet: cold\n\
         \x20     active: true\n",
        amount = a.amount,
        cur = a.currency.to_ascii_uppercase(),
        cadence = a.cadence.word(),
        currency = yaml_string(&a.currency),
        fee_rate = yaml_string(&a.fee_rate),
        iban = yaml_string(&a.iban),
    );
    if a.email.is_some() {
        s.push_str(
            "\n  - id: tell_me\n\
             \x20   uses: email\n\
             \x20   if: \"{{ steps.order.created }}\"    # only the time the order was created\n\
             \x20   with:\n\
             \x20     template: order_created          # IBAN, reference and a payment QR code\n",
        );
    }
    s
}

fn lightning_stacking(a: &Answers) -> String {
    format!(
        "# A second standing order whose bitcoin is paid out over Lightning to `mynode` (in the\n\
         # rehearsal, the sandbox's node stand-in). `lightning-payout` hands Pocket the invoice.\n\
         name: lightning-stacking\n\
         steps:\n\
         \x20 - id: order\n\
         \x20   uses: pocket.order\n\
         \x20   with:\n\
         \x20     currency: {currency}\n\
         \x20     fee_rate: {fee_rate}\n\
         \x20     debitor_iban: {iban}\n\
         \x20     payout: {{ lightning: mynode }}\n",
        currency = yaml_string(&a.currency),
        fee_rate = yaml_string(&a.fee_rate),
        iban = yaml_string(&a.iban),
    )
}

const DIGEST: &str = "\
# Sunday evening: the week in one email, with a chart of your stack (stacking.png).
name: weekly-digest
on:
  schedule:
    cron: \"0 19 * * SUN\"
    timezone: UTC
    catch_up: skip               # a digest for a week long gone helps nobody
steps:
  - id: digest
    uses: email
    with:
      template: weekly_digest
";

const PAYOUT: &str = "\
# Lightning payouts: when an exchange of a Lightning order executes, ask `mynode` for an invoice
# of exactly the exchange's amount, check it, and hand it to Pocket.
name: lightning-payout
on:
  event: exchange.executed
steps:
  - id: payout
    uses: pocket.payout
    with:
      node: mynode
      channel_fallback: false    # true: when the node lacks inbound liquidity, ask Pocket for a channel
";
