//! `satflow.yaml`: where the database and workflows are, how to reach Pocket, the user's wallets,
//! Lightning nodes, withdrawal providers, email, and the retry and alert settings.
//!
//! A `Config` only exists when the whole file is valid; while checking, the names it declares
//! (`Names`) are kept even when a section is broken, so workflows can still be checked against
//! them. Secrets are `SecretString` from the moment they are read and must never be formatted.

mod sections;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bitcoin::Network;
use lettre::message::Mailbox;
use secrecy::SecretString;
use url::Url;

use crate::domain::WalletKey;
use crate::source::{Ctx, Diagnostics, Env, MapReader, load_file};

pub use sections::{DEFAULT_LISTEN, list_names, webhook_key};

/// Where `satflow.yaml` is looked for when `-c` is not given.
pub fn default_path() -> PathBuf {
    std::env::var_os("SATFLOW_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("satflow.yaml"))
}

#[derive(Debug)]
pub struct Config {
    pub path: PathBuf,
    pub database: Database,
    pub workflow_files: Vec<PathBuf>,
    pub listen: SocketAddr,
    pub pocket: Option<PocketConfig>,
    pub email: Option<EmailConfig>,
    pub wallets: BTreeMap<String, WalletConfig>,
    pub lightning: BTreeMap<String, LightningNode>,
    pub withdraw: BTreeMap<String, WithdrawProvider>,
    pub prices: PricesConfig,
    pub outbox: OutboxConfig,
    pub engine: EngineConfig,
    /// The alerts switched on (routed to at least one target).
    pub alerts: BTreeSet<Alert>,
    /// Where each alert that is on goes: `email` or a name under `notify:`.
    pub alert_routes: BTreeMap<Alert, Vec<String>>,
    /// The notification targets besides email (`notify:`), by name.
    pub notify: BTreeMap<String, NotifyTarget>,
    /// The healthchecks.io-style URL pinged while the daemon lives (`healthcheck:`).
    pub healthcheck: Option<HealthcheckUrl>,
    /// The user's email templates by name (`templates:` folder), replacing built-ins.
    pub templates: BTreeMap<String, PathBuf>,
    pub dashboard: DashboardConfig,
}

/// The `dashboard:` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DashboardConfig {
    /// A listener of its own; `None`: the dashboard is served on `listen`.
    pub listen: Option<SocketAddr>,
    /// Mark the session cookie `Secure` even when the request did not say it came over TLS.
    pub secure_cookies: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite(PathBuf),
    Postgres(PostgresUrl),
}

/// A `postgres://` URL as written (it may hold a password): `Debug` and `redacted` show it
/// without the password, `expose` is for opening the connection only.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl(String);

impl PostgresUrl {
    /// Takes a URL the config reader checked (scheme, host, `sslmode`).
    pub fn new(url: String) -> PostgresUrl {
        PostgresUrl(url)
    }

    /// The URL with its password: only for connecting, never for printing.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL without password nor query (`postgres://user@host:port/db`), for messages.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut url) => {
                if url.password().is_some() {
                    let _ = url.set_password(Some("***"));
                }
                url.set_query(None);
                url.to_string()
            }
            Err(_) => "postgres://(unreadable URL)".to_string(),
        }
    }
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresUrl({})", self.redacted())
    }
}

#[derive(Debug)]
pub struct PocketConfig {
    pub base_url: Url,
    pub client_id: SecretString,
    pub webhook_secret: Option<SecretString>,
    /// How soon an exchange that is not final is first read back from Pocket (the wait then
    /// doubles, up to 6 hours).
    pub reconcile_every: Duration,
}

#[derive(Debug)]
pub struct EmailConfig {
    pub transport: EmailTransport,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
}

#[derive(Debug)]
pub enum EmailTransport {
    /// lettre's SMTP URL; it may hold a password, so it is secret as a whole.
    Smtp(SecretString),
    /// Each email written as an `.eml` file into this folder (the demo, or a mail-less Pi).
    Dir(PathBuf),
}

#[derive(Debug, Clone)]
pub struct WalletConfig {
    pub key: WalletKey,
    pub network: Network,
    pub esplora_url: Option<Url>,
    /// The user's own Electrum server; exclusive with `esplora_url`.
    pub electrum_url: Option<crate::domain::ElectrumUrl>,
    /// The `ssl://` Electrum server's own certificate (or its CA), pinned: trusted alone, in
    /// place of public authorities.
    pub tls_cert_file: Option<PathBuf>,
}

#[derive(Debug)]
pub struct LightningNode {
    pub source: InvoiceSource,
    pub node_pubkey: Option<bitcoin::secp256k1::PublicKey>,
    pub node_address: Option<String>,
}

#[derive(Debug)]
pub enum InvoiceSource {
    Lnd {
        url: Url,
        macaroon_file: PathBuf,
        tls_cert_file: PathBuf,
    },
    Cln {
        url: Url,
        rune: SecretString,
        /// clnrest's own `ca.pem` (or `server.pem`), pinned for an https `url`; without it
        /// only public roots are trusted (a node behind a proxy with a public certificate).
        tls_cert_file: Option<PathBuf>,
    },
    LightningAddress(String),
}

/// The kind of a Lightning node, as far as checking workflows needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Lnd,
    Cln,
    LightningAddress,
}

#[derive(Debug)]
pub enum WithdrawProvider {
    LightningPeach {
        base_url: Url,
        email: String,
        password: SecretString,
        /// Read from `key_file` and parsed once, when the configuration is read.
        key: crate::domain::MerchantKey,
    },
    /// The on-chain wallet of a configured LND node.
    Lnd { node: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriceSource {
    Peach,
    Bitpay,
}

#[derive(Debug, Clone)]
pub struct PricesConfig {
    /// Asked in this order: a source that fails (Peach's 451 geo-block, or any other failure)
    /// falls back to the next. Never empty.
    pub sources: Vec<PriceSource>,
    pub peach_url: Url,
    pub bitpay_url: Url,
    pub max_age: Duration,
    /// An executed exchange whose rate is further than this (percent) from the market price
    /// raises the `rate_off_market` alert; unset, rates are not compared.
    pub sanity_percent: Option<rust_decimal::Decimal>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxConfig {
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub max_attempts: u32,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(3600),
            max_attempts: 20,
        }
    }
}

/// How the daemon shares work with others on the same database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// How long a claim on a run or an outbox item lasts: after a crash, another daemon (or the
    /// restarted one) takes the work over once it runs out.
    pub lease: Duration,
    /// On SIGINT/SIGTERM, how long in-flight work may take to finish.
    pub shutdown_grace: Duration,
    /// How often requested withdrawals are looked at until they are confirmed.
    pub follow_every: Duration,
    /// The async runtime's worker threads; `None`: one per core, at most two (SQLite
    /// serialises writers, and every thread costs memory a Raspberry Pi does not have spare).
    pub worker_threads: Option<usize>,
}

impl EngineConfig {
    /// The most worker threads the default picks, whatever the core count.
    pub const DEFAULT_WORKERS_CAP: usize = 2;
    /// What `worker_threads` accepts.
    pub const WORKERS: std::ops::RangeInclusive<u64> = 1..=64;

    /// The worker threads to start: the configured count, or the default for `cores`.
    pub fn workers(&self, cores: usize) -> usize {
        self.worker_threads
            .unwrap_or_else(|| cores.clamp(1, Self::DEFAULT_WORKERS_CAP))
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            lease: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            follow_every: Duration::from_secs(300),
            worker_threads: None,
        }
    }
}

/// The built-in alert emails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Alert {
    Interrupted,
    Refunded,
    PayoutMismatch,
    DeadLetter,
    RunFailed,
    /// A signed webhook whose content satflow cannot read.
    UnrecognizedWebhook,
    /// A withdrawal sent or failed after its step (the hub sends later, or cancels).
    WithdrawalUpdate,
    /// An exchange executed at a rate far from the market price.
    RateOffMarket,
    /// No exchange of an order with `expect:` executed within a window and its grace.
    MissedPurchase,
    /// An exchange's cost differs from the order's `expect: { amount }` beyond the tolerance.
    CostMismatch,
}

impl Alert {
    pub const ALL: [Alert; 10] = [
        Alert::Interrupted,
        Alert::Refunded,
        Alert::PayoutMismatch,
        Alert::DeadLetter,
        Alert::RunFailed,
        Alert::UnrecognizedWebhook,
        Alert::WithdrawalUpdate,
        Alert::RateOffMarket,
        Alert::MissedPurchase,
        Alert::CostMismatch,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Alert::Interrupted => "interrupted",
            Alert::Refunded => "refunded",
            Alert::PayoutMismatch => "payout_mismatch",
            Alert::DeadLetter => "dead_letter",
            Alert::RunFailed => "run_failed",
            Alert::UnrecognizedWebhook => "unrecognized_webhook",
            Alert::WithdrawalUpdate => "withdrawal_update",
            Alert::RateOffMarket => "rate_off_market",
            Alert::MissedPurchase => "missed_purchase",
            Alert::CostMismatch => "cost_mismatch",
        }
    }
}

/// The name under which `alerts:` routes to the `email` section.
pub const EMAIL_TARGET: &str = "email";

/// A notification target of `notify:`. Its secrets are `SecretString`; its URLs are shown by
/// scheme and host only (an ntfy topic or a webhook path is a password of its own).
pub enum NotifyTarget {
    Ntfy {
        /// The topic URL, e.g. https://ntfy.sh/mytopic.
        url: Url,
        token: Option<SecretString>,
        /// 1 (min) to 5 (max/urgent); ntfy's default (3) when unset.
        priority: Option<u8>,
    },
    Telegram {
        bot_token: SecretString,
        /// A chat's numeric id (negative for groups) or `@channelusername`.
        chat_id: String,
        /// The Bot API's base URL (https://api.telegram.org; another for a local Bot API
        /// server or a test).
        api_url: Url,
    },
    /// A receiver of Standard Webhooks (signed with HMAC-SHA256).
    Webhook { url: Url, secret: SecretString },
}

/// The kind of a notification target, as far as routing and checking need to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    Ntfy,
    Telegram,
    Webhook,
}

impl NotifyTarget {
    pub fn kind(&self) -> ChannelKind {
        match self {
            NotifyTarget::Ntfy { .. } => ChannelKind::Ntfy,
            NotifyTarget::Telegram { .. } => ChannelKind::Telegram,
            NotifyTarget::Webhook { .. } => ChannelKind::Webhook,
        }
    }
}

/// `scheme://host[:port]/…`: a URL as logs and errors may show it.
pub fn url_origin(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{}://{host}:{port}/…", url.scheme()),
        (Some(host), None) => format!("{}://{host}/…", url.scheme()),
        _ => format!("{}://…", url.scheme()),
    }
}

impl std::fmt::Debug for NotifyTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotifyTarget::Ntfy { url, priority, .. } => f
                .debug_struct("Ntfy")
                .field("url", &url_origin(url))
                .field("priority", priority)
                .finish_non_exhaustive(),
            NotifyTarget::Telegram {
                chat_id, api_url, ..
            } => f
                .debug_struct("Telegram")
                .field("chat_id", chat_id)
                .field("api_url", &url_origin(api_url))
                .finish_non_exhaustive(),
            NotifyTarget::Webhook { url, .. } => f
                .debug_struct("Webhook")
                .field("url", &url_origin(url))
                .finish_non_exhaustive(),
        }
    }
}

/// The healthcheck URL (healthchecks.io: `https://hc-ping.com/<uuid>`). Whoever knows it can
/// ping the check, so it is shown as [`HealthcheckUrl::shown`] only.
#[derive(Clone)]
pub struct HealthcheckUrl(pub Url);

impl HealthcheckUrl {
    /// The URL with its path cut to its first 4 characters: enough to tell checks apart.
    pub fn shown(&self) -> String {
        let path = self.0.path().trim_start_matches('/');
        let head: String = path.chars().take(4).collect();
        match (self.0.host_str(), self.0.port()) {
            (Some(h), Some(p)) => format!("{}://{h}:{p}/{head}…", self.0.scheme()),
            (Some(h), None) => format!("{}://{h}/{head}…", self.0.scheme()),
            _ => format!("{}://…", self.0.scheme()),
        }
    }
}

impl std::fmt::Debug for HealthcheckUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown())
    }
}

/// What the configuration declares, kept even when a section is broken, so that workflows are
/// checked against what the user meant to configure.
#[derive(Debug, Default)]
pub struct Names {
    pub wallets: BTreeSet<String>,
    /// Wallets whose addresses are taproot: they cannot prove ownership to Pocket.
    pub taproot_wallets: BTreeSet<String>,
    pub nodes: BTreeMap<String, Option<NodeKind>>,
    pub providers: BTreeSet<String>,
    /// Withdrawal providers that are the Lightning Peach hub (it withdraws whole balances only).
    pub hub_providers: BTreeSet<String>,
    pub has_pocket: bool,
    pub has_email: bool,
    pub price_source: Option<PriceSource>,
    /// User email templates by name, with the file each lives in.
    pub templates: BTreeMap<String, PathBuf>,
    /// The targets under `notify:`, by name (`email` is not among them).
    pub notify_targets: BTreeMap<String, ChannelKind>,
}

/// The result of reading satflow.yaml.
pub struct Loaded {
    /// `Some` only when the configuration file has no problem at all.
    pub config: Option<Config>,
    pub names: Names,
    /// The workflow files to read, found even when other sections are broken.
    pub workflow_files: Vec<PathBuf>,
}

/// Reads and checks `path`, reporting every problem to `diags`.
pub fn load(path: &Path, env: &dyn Env, diags: &mut Diagnostics) -> Loaded {
    let before = diags.len();
    let mut names = Names::default();
    let Some(root) = load_file(path, env, diags) else {
        return Loaded {
            config: None,
            names,
            workflow_files: Vec::new(),
        };
    };
    let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut ctx = Ctx { path, diags };
    let Some(mut top) = MapReader::new(&root, "the top level", &mut ctx) else {
        return Loaded {
            config: None,
            names,
            workflow_files: Vec::new(),
        };
    };
    let r = sections::Reader { dir: &dir };
    let database = r.database(top.get("database"), &mut ctx);
    let workflow_files = r.workflows(top.get("workflows"), top.pos, &mut ctx);
    let listen = r.listen(top.get("listen"), &mut ctx);
    let pocket = top
        .get("pocket")
        .and_then(|n| r.pocket(n, &mut ctx, &mut names));
    let email = top
        .get("email")
        .and_then(|n| r.email(n, &mut ctx, &mut names));
    let wallets = top
        .get("wallets")
        .map(|n| r.wallets(n, &mut ctx, &mut names))
        .unwrap_or_default();
    let lightning = top
        .get("lightning")
        .map(|n| r.lightning(n, &mut ctx, &mut names))
        .unwrap_or_default();
    let withdraw = top
        .get("withdraw")
        .map(|n| r.withdraw(n, &mut ctx, &mut names))
        .unwrap_or_default();
    let prices = r.prices(top.get("prices"), &mut ctx, &mut names);
    let outbox = r.outbox(top.get("outbox"), &mut ctx);
    let engine = r.engine(top.get("engine"), &mut ctx);
    let notify = top
        .get("notify")
        .map(|n| r.notify(n, &mut ctx, &mut names))
        .unwrap_or_default();
    let healthcheck = top
        .get("healthcheck")
        .and_then(|n| r.healthcheck(n, &mut ctx));
    let alerts_key = top.get("alerts");
    let alert_routes = r.alerts(alerts_key, &names, &mut ctx);
    let alerts: BTreeSet<Alert> = alert_routes.keys().copied().collect();
    r.templates(top.get("templates"), &mut ctx, &mut names);
    let dashboard = sections::dashboard::read(top.get("dashboard"), &mut ctx);
    let top_pos = top.pos;
    top.finish(&mut ctx);

    // Cross-section rules, once every section has been read.
    let emailed = alert_routes
        .values()
        .any(|targets| targets.iter().any(|t| t == EMAIL_TARGET));
    if emailed && !names.has_email {
        let pos = alerts_key.map_or(top_pos, |n| n.pos);
        ctx.error(
            pos,
            "alerts: alert emails are sent to email.to, but there is no `email` section; add one, or write `alerts: []` to turn alerts off",
        );
    }
    sections::check_withdraw_nodes(&withdraw, &names, &mut ctx);

    let config = if ctx.diags.len() == before {
        database
            .zip(listen)
            .zip(prices)
            .map(|((database, listen), prices)| Config {
                path: path.to_path_buf(),
                database,
                workflow_files: workflow_files.clone(),
                listen,
                pocket,
                email,
                wallets,
                lightning,
                withdraw: withdraw.into_iter().map(|(k, (_, v))| (k, v)).collect(),
                prices,
                outbox,
                engine,
                alerts,
                alert_routes,
                notify,
                healthcheck,
                templates: names.templates.clone(),
                dashboard,
            })
    } else {
        None
    };
    Loaded {
        config,
        names,
        workflow_files,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str, env: &dyn Env) -> (tempfile::TempDir, Loaded, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("satflow.yaml");
        std::fs::write(&path, text).unwrap();
        let mut diags = Diagnostics::default();
        let loaded = load(&path, env, &mut diags);
        let problems = diags.sorted().iter().map(|d| d.to_string()).collect();
        (dir, loaded, problems)
    }

    #[test]
    fn defaults_fill_what_is_left_out_and_paths_start_at_the_config_folder() {
        let (dir, loaded, problems) = load_text("alerts: []\n", &[("X", "y")]);
        assert!(problems.is_empty(), "{problems:?}");
        let config = loaded.config.expect("a valid config");
        assert_eq!(
            config.database,
            Database::Sqlite(dir.path().join("satflow.db"))
        );
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.outbox, OutboxConfig::default());
        assert_eq!(config.prices.sources, vec![PriceSource::Peach]);
        assert!(config.alerts.is_empty());
        assert!(config.pocket.is_none());
    }

    #[test]
    fn a_url_whose_host_is_not_ascii_is_refused_with_its_punycode_form_asked_for() {
        let (_dir, loaded, problems) = load_text(
            "alerts: []\npocket: { base_url: \"https://bücher.example\", client_id: c, webhook_secret: s }\n",
            &[("X", "y")],
        );
        assert!(loaded.config.is_none());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("pocket.base_url") && problems[0].contains("xn--"),
            "{problems:?}"
        );
        // Its xn-- form is accepted.
        let (_dir, loaded, problems) = load_text(
            "alerts: []\npocket: { base_url: \"https://xn--bcher-kva.example\", client_id: c, webhook_secret: s }\n",
            &[("X", "y")],
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert!(loaded.config.is_some());
    }

    #[test]
    fn a_postgres_url_from_the_environment_is_taken_and_its_password_never_shown() {
        let env = [(
            "DATABASE_URL",
            "postgres://satflow:pg-s3cret@db.example.com:5433/treasury?sslmode=verify-full",
        )];
        let (_dir, loaded, problems) = load_text("database: ${DATABASE_URL}\nalerts: []\n", &env);
        assert!(problems.is_empty(), "{problems:?}");
        let config = loaded.config.expect("a valid config");
        let Database::Postgres(url) = &config.database else {
            panic!("{:?}", config.database);
        };
        assert_eq!(url.expose(), env[0].1);
        assert_eq!(
            url.redacted(),
            "postgres://satflow:***@db.example.com:5433/treasury"
        );
        assert!(!format!("{config:?}").contains("pg-s3cret"));

        for (text, expected) in [
            (
                "postgres://u:p@h/db?sslmode=sometimes",
                "sslmode=sometimes is not an sslmode; accepted: disable, allow, prefer, require, verify-ca, verify-full",
            ),
            ("postgresql://u:pw-secret@/db", "empty host"),
        ] {
            let (_dir, loaded, problems) = load_text(
                &format!("database: \"{text}\"\nalerts: []\n"),
                &[("X", "y")],
            );
            assert!(loaded.config.is_none());
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert!(problems[0].contains(expected), "{problems:?}");
            assert!(!problems[0].contains("pw-secret"), "{problems:?}");
        }
    }

    #[test]
    fn secrets_come_from_env_and_files_and_never_show_in_debug_output() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hook.secret"), "file-secret-value\n").unwrap();
        let path = dir.path().join("satflow.yaml");
        std::fs::write(
            &path,
            "pocket:\n  client_id: ${CLIENT}\n  webhook_secret: ${file:hook.secret}\n\
             email:\n  smtp_url: smtp://u:${PW}@mail.example.com:587?tls=required\n  from: a@example.com\n  to: b@example.com\n",
        )
        .unwrap();
        let env = [("CLIENT", "env-client-id"), ("PW", "smtp-password")];
        let mut diags = Diagnostics::default();
        let config = load(&path, &env, &mut diags).config.expect("valid");
        assert!(diags.is_empty());
        let pocket = config.pocket.as_ref().unwrap();
        use secrecy::ExposeSecret;
        assert_eq!(pocket.client_id.expose_secret(), "env-client-id");
        assert_eq!(
            pocket.webhook_secret.as_ref().unwrap().expose_secret(),
            "file-secret-value"
        );
        let shown = format!("{config:?}");
        for secret in ["env-client-id", "file-secret-value", "smtp-password"] {
            assert!(!shown.contains(secret), "{secret} leaked into {shown}");
        }
    }

    #[test]
    fn names_survive_broken_sections_but_the_config_does_not() {
        let (_dir, loaded, problems) = load_text(
            "wallets:\n  cold: { xpub: nonsense }\nlightning:\n  mynode: { lightning_address: me@example.com }\nalerts: []\n",
            &[("X", "y")],
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains(":2:17: wallets.cold.xpub"),
            "{problems:?}"
        );
        assert!(loaded.config.is_none());
        assert!(loaded.names.wallets.contains("cold"));
        assert_eq!(
            loaded.names.nodes.get("mynode"),
            Some(&Some(NodeKind::LightningAddress))
        );
    }

    #[test]
    fn smtp_without_tls_is_refused_off_loopback_unless_meant() {
        let email = |url: &str| {
            format!("email:\n  smtp_url: \"{url}\"\n  from: a@example.com\n  to: b@example.com\n")
        };
        let env = [("PW", "smtp-password")];
        let (_d, loaded, problems) = load_text(&email("smtp://u:${PW}@mail.example.com:587"), &env);
        assert!(loaded.config.is_none());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains(":2:13: email.smtp_url: smtp:// to mail.example.com without TLS")
                && problems[0].contains("clear text")
                && problems[0].contains("tls=none"),
            "{problems:?}"
        );
        assert!(!problems[0].contains("smtp-password"), "{problems:?}");
        let (_d, _, problems) = load_text(
            &email("smtp://u:pw@mail.example.com:587?tls=opportunistic"),
            &env,
        );
        assert!(problems[0].contains("tls=opportunistic"), "{problems:?}");
        let (_d, _, problems) = load_text(&email("smtp://mail.example.com?tls=maybe"), &env);
        assert!(problems[0].contains("not a TLS mode"), "{problems:?}");

        use secrecy::ExposeSecret;
        for (url, stored) in [
            ("smtp://127.0.0.1:2525", "smtp://127.0.0.1:2525"),
            ("smtp://localhost:25", "smtp://localhost:25"),
            ("smtp://[::1]:25", "smtp://[::1]:25"),
            // Meant on purpose: kept, without the parameter lettre does not know.
            ("smtp://relay.lan:25?tls=none", "smtp://relay.lan:25"),
            (
                "smtps://u:pw@mail.example.com:465",
                "smtps://u:pw@mail.example.com:465",
            ),
        ] {
            let (_d, loaded, problems) = load_text(&email(url), &env);
            assert!(problems.is_empty(), "{url}: {problems:?}");
            let config = loaded.config.unwrap();
            let EmailTransport::Smtp(secret) = &config.email.as_ref().unwrap().transport else {
                panic!("not smtp")
            };
            assert_eq!(secret.expose_secret(), stored);
        }
    }

    #[test]
    fn durations_have_bounds_and_secrets_no_control_characters() {
        let (_d, _, problems) = load_text(
            "pocket:\n  client_id: ${ID}\n  reconcile_every: 0s\noutbox:\n  base_delay: 9999999999999s\nengine:\n  lease: 2h\nalerts: []\n",
            &[("ID", "abc\u{1b}[31mdef")],
        );
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(
            problems[0]
                .contains(":2:14: pocket.client_id: character 4 is a control character (U+001B)"),
            "{problems:?}"
        );
        assert!(
            problems[1].contains(
                ":3:20: pocket.reconcile_every: \"0s\" is out of range; accepted: 1s to 24h"
            ),
            "{problems:?}"
        );
        assert!(
            problems[2].contains(
                ":5:15: outbox.base_delay: \"9999999999999s\" is longer than any satflow duration"
            ),
            "{problems:?}"
        );
        assert!(
            problems[3].contains(":7:10: engine.lease: \"2h\" is out of range; accepted: 1s to 1h"),
            "{problems:?}"
        );
        assert!(problems.iter().all(|p| !p.contains("def")), "{problems:?}");
    }
}
