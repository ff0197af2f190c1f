//! One reader per section of satflow.yaml. Each reports its own problems and returns what it
//! could read; `config::load` decides whether the whole makes a `Config`.
//!
//! The sections with settings of their own each have their file; what several share (paths,
//! URLs, secrets, durations, named entries) is here.

pub mod dashboard;
mod email;
mod lightning;
mod notify;
mod pocket;
mod prices;
mod wallets;
mod withdraw;

pub use notify::webhook_key;
pub use withdraw::check_withdraw_nodes;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use bitcoin::secp256k1::PublicKey;
use bitcoin::{Network, NetworkKind};
use lettre::message::Mailbox;
use secrecy::SecretString;
use url::Url;

use super::{
    Alert, ChannelKind, Database, EmailConfig, EmailTransport, EngineConfig, HealthcheckUrl,
    InvoiceSource, LightningNode, Names, NodeKind, NotifyTarget, OutboxConfig, PocketConfig,
    PriceSource, PricesConfig, WalletConfig, WithdrawProvider,
};
use crate::domain::HumanDuration;
use crate::domain::{ScriptType, WalletKey};
use crate::source::files::{MAX_FILE_BYTES, not_a_file};
use crate::source::reader::{describe, did_you_mean, list_or_one, scalar, string, unsigned};
use crate::source::{Ctx, Kind, MapReader, Node, Pos, resolve_path};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8420";
const DEFAULT_POCKET_URL: &str = "https://api.pocketbitcoin.com";
const DEFAULT_PEACH_URL: &str = "https://api.peachbitcoin.com";
const DEFAULT_BITPAY_URL: &str = "https://bitpay.com";

pub struct Reader<'a> {
    /// The folder of satflow.yaml: relative paths start here.
    pub dir: &'a Path,
}

impl Reader<'_> {
    pub fn database(&self, node: Option<&Node>, ctx: &mut Ctx<'_>) -> Option<Database> {
        let Some(node) = node else {
            return Some(Database::Sqlite(resolve_path(
                self.dir,
                Path::new("satflow.db"),
            )));
        };
        let url = string(node, "database", ctx)?;
        let sqlite_path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"));
        match sqlite_path {
            Some(path) if !path.is_empty() && !path.starts_with(':') => {
                let path = path.split('?').next().unwrap_or(path);
                Some(Database::Sqlite(resolve_path(self.dir, Path::new(path))))
            }
            _ if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                match check_postgres_url(&url) {
                    Ok(()) => Some(Database::Postgres(super::PostgresUrl::new(url))),
                    Err(problem) => {
                        ctx.error(node.pos, format!("database: {problem}"));
                        None
                    }
                }
            }
            _ => {
                // A database URL may hold a password: name the scheme, never the URL.
                let scheme = url.split_once("://").map_or("none", |(scheme, _)| scheme);
                ctx.error(
                    node.pos,
                    format!(
                        "database: not a database URL satflow can open (scheme: {scheme}); write sqlite://PATH (relative to this file's folder), e.g. sqlite://satflow.db, or postgres://USER:PASSWORD@HOST:PORT/DATABASE"
                    ),
                );
                None
            }
        }
    }

    /// A folder of `*.yaml` / `*.yml` files, one file, or a list of files.
    pub fn workflows(&self, node: Option<&Node>, top: Pos, ctx: &mut Ctx<'_>) -> Vec<PathBuf> {
        let Some(node) = node else {
            let default = resolve_path(self.dir, Path::new("workflows"));
            if default.is_dir() {
                return list_workflow_folder(&default, top, ctx);
            }
            return Vec::new();
        };
        if let Kind::Seq(items) = &node.kind {
            let mut files = Vec::new();
            for item in items {
                let Some(name) = string(item, "workflows", ctx) else {
                    continue;
                };
                let path = resolve_path(self.dir, Path::new(&name));
                match not_a_file(&path) {
                    None => files.push(path),
                    Some(kind) => ctx.error(
                        item.pos,
                        format!(
                            "workflows: {} is {kind}; list workflow files (paths are relative to this file's folder)",
                            path.display()
                        ),
                    ),
                }
            }
            return files;
        }
        let Some(name) = string(node, "workflows", ctx) else {
            return Vec::new();
        };
        let path = resolve_path(self.dir, Path::new(&name));
        if path.is_dir() {
            list_workflow_folder(&path, node.pos, ctx)
        } else if path.is_file() {
            vec![path]
        } else {
            let what = match std::fs::symlink_metadata(&path) {
                Err(_) => "neither a folder nor a file".to_string(),
                Ok(_) => not_a_file(&path).unwrap_or_else(|| "not usable".into()),
            };
            ctx.error(
                node.pos,
                format!(
                    "workflows: {} is {what} (paths are relative to this file's folder); write a folder of *.yaml files or a list of files",
                    path.display()
                ),
            );
            Vec::new()
        }
    }

    pub fn listen(&self, node: Option<&Node>, ctx: &mut Ctx<'_>) -> Option<SocketAddr> {
        let Some(node) = node else {
            return DEFAULT_LISTEN.parse().ok();
        };
        let text = string(node, "listen", ctx)?;
        match text.parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                ctx.error(
                    node.pos,
                    format!(
                        "listen: {} is not an address to listen on; write IP:PORT, e.g. 127.0.0.1:8420 (or 0.0.0.0:8420 to accept webhooks from other machines)",
                        describe(&text)
                    ),
                );
                None
            }
        }
    }

    /// An existing file that holds at least one PEM certificate.
    fn cert_file(&self, node: &Node, field: &str, ctx: &mut Ctx<'_>) -> Option<PathBuf> {
        let path = self.existing_file(node, field, ctx)?;
        let problem = match std::fs::read(&path) {
            Ok(pem) => {
                use rustls::pki_types::{CertificateDer, pem::PemObject};
                match CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>() {
                    Ok(certs) if !certs.is_empty() => return Some(path),
                    Ok(_) => format!(
                        "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                        path.display()
                    ),
                    Err(e) => format!("{} is not a PEM certificate: {e}", path.display()),
                }
            }
            Err(e) => format!("cannot read {}: {e}", path.display()),
        };
        ctx.error(
            node.pos,
            format!("{field}: {problem}; write the path of the node's certificate or CA (PEM)"),
        );
        None
    }

    pub fn outbox(&self, node: Option<&Node>, ctx: &mut Ctx<'_>) -> OutboxConfig {
        let mut outbox = OutboxConfig::default();
        let Some(mut m) = node.and_then(|n| MapReader::new(n, "outbox", ctx)) else {
            return outbox;
        };
        if let Some(d) = m
            .get("base_delay")
            .and_then(|n| duration(n, "outbox.base_delay", bounds::BASE_DELAY, ctx))
        {
            outbox.base_delay = d;
        }
        let max = m.get("max_delay");
        if let Some(d) = max.and_then(|n| duration(n, "outbox.max_delay", bounds::MAX_DELAY, ctx)) {
            outbox.max_delay = d;
        }
        if let Some(n) = m.get("max_attempts") {
            match unsigned(n, "outbox.max_attempts", ctx) {
                Some(a @ 1..=1000) => outbox.max_attempts = a as u32,
                Some(a) => ctx.error(
                    n.pos,
                    format!("outbox.max_attempts: {a} is out of range; accepted: 1 to 1000"),
                ),
                None => {}
            }
        }
        if outbox.max_delay < outbox.base_delay {
            let pos = max.map_or(m.pos, |n| n.pos);
            ctx.error(
                pos,
                format!(
                    "outbox: base_delay ({}) must be at most max_delay ({})",
                    HumanDuration(outbox.base_delay),
                    HumanDuration(outbox.max_delay)
                ),
            );
        }
        m.finish(ctx);
        outbox
    }

    pub fn engine(&self, node: Option<&Node>, ctx: &mut Ctx<'_>) -> EngineConfig {
        let mut engine = EngineConfig::default();
        let Some(mut m) = node.and_then(|n| MapReader::new(n, "engine", ctx)) else {
            return engine;
        };
        for (key, slot, bound) in [
            ("lease", &mut engine.lease, bounds::LEASE),
            (
                "shutdown_grace",
                &mut engine.shutdown_grace,
                bounds::SHUTDOWN_GRACE,
            ),
            (
                "follow_every",
                &mut engine.follow_every,
                bounds::FOLLOW_EVERY,
            ),
        ] {
            let field = format!("engine.{key}");
            if let Some(n) = m.get(key)
                && let Some(d) = duration(n, &field, bound, ctx)
            {
                *slot = d;
            }
        }
        if let Some(n) = m.get("worker_threads") {
            match unsigned(n, "engine.worker_threads", ctx) {
                Some(w) if EngineConfig::WORKERS.contains(&w) => {
                    engine.worker_threads = Some(w as usize);
                }
                Some(w) => ctx.error(
                    n.pos,
                    format!(
                        "engine.worker_threads: {w} is out of range; accepted: {} to {} (leave it out for one per core, at most {})",
                        EngineConfig::WORKERS.start(),
                        EngineConfig::WORKERS.end(),
                        EngineConfig::DEFAULT_WORKERS_CAP
                    ),
                ),
                None => {}
            }
        }
        m.finish(ctx);
        engine
    }

    /// The user's email templates (`NAME.txt` in `templates:`, `templates/` by default when it
    /// exists), into `names.templates`.
    pub fn templates(&self, node: Option<&Node>, ctx: &mut Ctx<'_>, names: &mut Names) {
        let (dir, pos) = match node {
            Some(n) => match string(n, "templates", ctx) {
                Some(d) => (resolve_path(self.dir, Path::new(&d)), Some(n.pos)),
                None => return,
            },
            None => (resolve_path(self.dir, Path::new("templates")), None),
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) => {
                if let Some(pos) = pos {
                    ctx.error(
                        pos,
                        format!(
                            "templates: cannot read the folder {} (relative to this file's folder): {err}",
                            dir.display()
                        ),
                    );
                }
                return;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "txt")
                && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
            {
                names.templates.insert(stem.to_string(), path.clone());
            }
        }
    }

    fn existing_file(&self, node: &Node, field: &str, ctx: &mut Ctx<'_>) -> Option<PathBuf> {
        let text = string(node, field, ctx)?;
        let path = resolve_path(self.dir, Path::new(&text));
        let problem = match not_a_file(&path) {
            Some(_) if std::fs::symlink_metadata(&path).is_err() => {
                format!("there is no file {}", path.display())
            }
            Some(kind) => format!("{} is {kind}", path.display()),
            // Keys, macaroons and certificates are a few kilobytes: a wrong path (a disk image,
            // a log) is refused before anything reads it whole.
            None if std::fs::metadata(&path).is_ok_and(|m| m.len() > MAX_FILE_BYTES) => format!(
                "{} is larger than {} KiB, more than any key or certificate",
                path.display(),
                MAX_FILE_BYTES / 1024
            ),
            None => return Some(path),
        };
        ctx.error(
            node.pos,
            format!("{field}: {problem} (paths are relative to this file's folder)"),
        );
        None
    }
}

/// The names, comma-separated, or "none" — for "defined: …" hints.
pub fn list_names<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let list: Vec<&str> = names.map(String::as_str).collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

/// The `*.yaml`/`*.yml` files of a folder. An entry with that name which is not a regular file
/// (a folder, a FIFO, a dangling or looping symlink) is refused rather than skipped: the user
/// meant it to be a workflow, and skipping it would leave that workflow silently off.
fn list_workflow_folder(dir: &Path, pos: Pos, ctx: &mut Ctx<'_>) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            let mut named: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                .collect();
            crate::sorting::sort(&mut named);
            let mut files = Vec::new();
            for path in named {
                match not_a_file(&path) {
                    None => files.push(path),
                    Some(kind) => ctx.error(
                        pos,
                        format!(
                            "workflows: {} is {kind}; a workflow is a regular *.yaml file — remove or rename it",
                            path.display()
                        ),
                    ),
                }
            }
            files
        }
        Err(err) => {
            ctx.error(
                pos,
                format!("workflows: cannot read the folder {}: {err}", dir.display()),
            );
            Vec::new()
        }
    }
}

/// Entries of a mapping whose keys are names the user chose (wallets, nodes, providers).
fn named_entries<'n>(node: &'n Node, section: &str, ctx: &mut Ctx<'_>) -> Vec<(String, &'n Node)> {
    let Kind::Map(entries) = &node.kind else {
        if node.kind != Kind::Invalid {
            ctx.error(
                node.pos,
                format!(
                    "{section}: expected a mapping of names to settings, found {}",
                    node.kind_name()
                ),
            );
        }
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in entries {
        let Some(name) = k.scalar().map(|s| s.raw.clone()) else {
            continue;
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            ctx.error(
                k.pos,
                format!(
                    "{section}: {} is not a usable name; use letters, digits, `-` and `_`",
                    describe(&name)
                ),
            );
            continue;
        }
        out.push((name, v));
    }
    out
}

fn http_url(node: &Node, field: &str, ctx: &mut Ctx<'_>) -> Option<Url> {
    let text = string(node, field, ctx)?;
    match Url::parse(&text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Some(url),
        // satflow is built without a Unicode IDNA back end (see Cargo.toml: idna_adapter).
        Err(url::ParseError::IdnaError) => {
            ctx.error(
                node.pos,
                format!(
                    "{field}: {} has a host name that is not ASCII; write it in its xn-- (punycode) form, e.g. https://xn--bcher-kva.example for bücher.example",
                    describe(&text)
                ),
            );
            None
        }
        _ => {
            ctx.error(
                node.pos,
                format!(
                    "{field}: {} is not an http(s) URL; write e.g. https://example.com",
                    describe(&text)
                ),
            );
            None
        }
    }
}

/// Whether `host` is one a public certificate authority could have signed for: not
/// loopback, a private or link-local address, or a name only a local network resolves.
fn is_public(host: url::Host<&str>) -> bool {
    match host {
        url::Host::Ipv4(ip) => {
            let [a, b, ..] = ip.octets();
            !(ip.is_loopback()
                || ip.is_private()
                || ip.is_link_local()
                || ip.is_unspecified()
                || (a == 100 && (64..128).contains(&b)))
        }
        url::Host::Ipv6(ip) => {
            let first = ip.segments()[0];
            !(ip.is_loopback()
                || ip.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
        url::Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name.contains('.')
                && ![
                    ".local",
                    ".lan",
                    ".home.arpa",
                    ".internal",
                    ".localhost",
                    ".onion",
                ]
                .iter()
                .any(|suffix| name.ends_with(suffix))
        }
    }
}

/// A secret value: checked for presence only, and never echoed in a message.
fn secret(node: &Node, field: &str, ctx: &mut Ctx<'_>) -> Option<SecretString> {
    let s = scalar(node, field, ctx)?;
    if s.value.trim().is_empty() {
        ctx.error(
            node.pos,
            format!(
                "{field}: is empty; it must hold the secret (from ${{NAME}} or ${{file:PATH}})"
            ),
        );
        return None;
    }
    if let Some(problem) = control_character(&s.value) {
        ctx.error(
            node.pos,
            format!(
                "{field}: {problem}; a secret is one line of printable text — check the variable or file it comes from (a stray line break, a copy-pasted escape)"
            ),
        );
        return None;
    }
    Some(SecretString::from(s.value.clone()))
}

/// Where a secret holds a control character (a line break inside it, a NUL, an escape), which
/// would end up in an HTTP header or an SMTP command. Said by position and code, never by showing
/// the secret. (A trailing newline of a `${file:…}` secret is already trimmed.)
fn control_character(value: &str) -> Option<String> {
    value
        .chars()
        .enumerate()
        .find(|(_, c)| (*c as u32) < 0x20 || *c as u32 == 0x7f)
        .map(|(i, c)| {
            format!(
                "character {} is a control character (U+{:04X})",
                i + 1,
                c as u32
            )
        })
}

/// A duration within `[min, max]`; `why` says what the bounds protect, for the message.
fn duration(
    node: &Node,
    field: &str,
    (min, max, why): (Duration, Duration, &str),
    ctx: &mut Ctx<'_>,
) -> Option<Duration> {
    let text = string(node, field, ctx)?;
    let d = text
        .parse::<HumanDuration>()
        .map(|d| d.0)
        .map_err(|e| ctx.error(node.pos, format!("{field}: {e}")))
        .ok()?;
    if d < min || d > max {
        ctx.error(
            node.pos,
            format!(
                "{field}: {} is out of range; accepted: {} to {} ({why})",
                describe(&text),
                HumanDuration(min),
                HumanDuration(max)
            ),
        );
        return None;
    }
    Some(d)
}

const SECOND: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// The accepted range of every duration in satflow.yaml, with the reason for its bounds.
pub mod bounds {
    use super::{DAY, Duration, HOUR, SECOND};
    pub type Bound = (Duration, Duration, &'static str);

    pub const RECONCILE_EVERY: Bound = (
        SECOND,
        DAY,
        "each pass reads every unsettled exchange from Pocket: shorter floods its API, longer leaves a lost webhook unnoticed for days",
    );
    pub const PRICES_MAX_AGE: Bound = (
        SECOND,
        DAY,
        "a quote older than a day says nothing about today's price",
    );
    pub const BASE_DELAY: Bound = (
        Duration::from_millis(10),
        HOUR,
        "the wait before the first retry: shorter hammers a failing service, longer leaves an effect undone for hours",
    );
    pub const MAX_DELAY: Bound = (
        Duration::from_millis(10),
        Duration::from_secs(7 * 86_400),
        "the longest wait between two retries: beyond a week, a retry would come after anyone remembers the effect",
    );
    pub const LEASE: Bound = (
        SECOND,
        HOUR,
        "how long a crashed daemon's work stays claimed before another takes it over",
    );
    pub const SHUTDOWN_GRACE: Bound = (
        Duration::ZERO,
        Duration::from_secs(600),
        "how long a stop waits for work in flight; service managers kill long before ten minutes",
    );
    pub const FOLLOW_EVERY: Bound = (
        Duration::from_millis(100),
        DAY,
        "how often a requested withdrawal is looked at until it is confirmed",
    );
}

/// The `sslmode` values a PostgreSQL URL may carry (libpq's, all honoured through rustls).
const SSL_MODES: &[&str] = &[
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

/// Checks a `postgres://` URL before the store opens it. The problem never quotes the URL (it
/// may hold a password): it names the part that is wrong and what is accepted.
fn check_postgres_url(raw: &str) -> Result<(), String> {
    let url = Url::parse(raw).map_err(|e| {
        format!(
            "not a PostgreSQL URL ({e}); write postgres://USER:PASSWORD@HOST:PORT/DATABASE, e.g. postgres://satflow@localhost/satflow"
        )
    })?;
    let host_param = url.query_pairs().any(|(k, _)| k == "host");
    if url.host_str().is_none_or(str::is_empty) && !host_param {
        return Err(
            "the PostgreSQL URL names no host; write postgres://USER:PASSWORD@HOST:PORT/DATABASE"
                .to_string(),
        );
    }
    for (key, value) in url.query_pairs() {
        if key == "sslmode" && !SSL_MODES.contains(&value.as_ref()) {
            return Err(format!(
                "sslmode={value} is not an sslmode; accepted: {}",
                SSL_MODES.join(", ")
            ));
        }
    }
    Ok(())
}
