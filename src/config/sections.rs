//! One reader per section of satflow.yaml. Each reports its own problems and returns what it
//! could read; `config::load` decides whether the whole makes a `Config`.

use std::collections::{BTreeMap, BTreeSet};
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
    Alert, Database, EmailConfig, EmailTransport, EngineConfig, InvoiceSource, LightningNode,
    Names, NodeKind, OutboxConfig, PocketConfig, PriceSource, PricesConfig, WalletConfig,
    WithdrawProvider,
};
use crate::domain::HumanDuration;
use crate::source::files::{MAX_FILE_BYTES, not_a_file};
use crate::source::reader::{describe, did_you_mean, list_or_one, scalar, string, unsigned};
use crate::source::{Ctx, Kind, MapReader, Node, Pos, resolve_path};
use crate::wallet::{ScriptType, WalletKey};

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
                ctx.error(
                    node.pos,
                    "database: PostgreSQL is not supported by this version of satflow yet; use sqlite://PATH",
                );
                None
            }
            _ => {
                // A database URL may hold a password: name the scheme, never the URL.
                let scheme = url.split_once("://").map_or("none", |(scheme, _)| scheme);
                ctx.error(
                    node.pos,
                    format!(
                        "database: not a database URL satflow can open (scheme: {scheme}); write sqlite://PATH (relative to this file's folder), e.g. sqlite://satflow.db"
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

    pub fn pocket(
        &self,
        node: &Node,
        ctx: &mut Ctx<'_>,
        names: &mut Names,
    ) -> Option<PocketConfig> {
        names.has_pocket = true;
        let mut m = MapReader::new(node, "pocket", ctx)?;
        let base_url = match m.get("base_url") {
            Some(n) => http_url(n, "pocket.base_url", ctx),
            None => Url::parse(DEFAULT_POCKET_URL).ok(),
        };
        let client_id = m
            .required(
                "client_id",
                "write your Pocket client id, e.g. client_id: ${POCKET_CLIENT_ID}",
                ctx,
            )
            .and_then(|n| secret(n, "pocket.client_id", ctx));
        let webhook_secret = m
            .get("webhook_secret")
            .and_then(|n| secret(n, "pocket.webhook_secret", ctx));
        let reconcile_every = match m.get("reconcile_every") {
            Some(n) => duration(n, "pocket.reconcile_every", bounds::RECONCILE_EVERY, ctx),
            None => Some(std::time::Duration::from_secs(600)),
        };
        m.finish(ctx);
        Some(PocketConfig {
            base_url: base_url?,
            client_id: client_id?,
            webhook_secret,
            reconcile_every: reconcile_every?,
        })
    }

    pub fn email(&self, node: &Node, ctx: &mut Ctx<'_>, names: &mut Names) -> Option<EmailConfig> {
        names.has_email = true;
        let mut m = MapReader::new(node, "email", ctx)?;
        let smtp = m.get("smtp_url");
        let dir = m.get("dir");
        let transport = match (smtp, dir) {
            (Some(n), None) => smtp_url(n, ctx).map(EmailTransport::Smtp),
            (None, Some(n)) => string(n, "email.dir", ctx).and_then(|d| {
                let path = resolve_path(self.dir, Path::new(&d));
                // A missing folder is created when the first email is written; anything else
                // in its place would make every email fail at run time.
                match std::fs::metadata(&path) {
                    Ok(meta) if !meta.is_dir() => {
                        ctx.error(
                            n.pos,
                            format!(
                                "email.dir: {} is not a folder; name a folder for the .eml files (it is created when missing)",
                                path.display()
                            ),
                        );
                        None
                    }
                    _ => Some(EmailTransport::Dir(path)),
                }
            }),
            (Some(n), Some(_)) => {
                ctx.error(
                    n.pos,
                    "email: both `smtp_url` and `dir` are set; keep one (smtp_url sends the emails, dir writes them as .eml files)",
                );
                None
            }
            (None, None) => {
                ctx.error(
                    m.pos,
                    "email: missing required key `smtp_url`; write smtp_url: smtp://user:${SMTP_PASSWORD}@mail.example.com:587?tls=required (or `dir: FOLDER` to write .eml files)",
                );
                None
            }
        };
        let from = m
            .required(
                "from",
                "write the sender, e.g. from: \"satflow <satflow@example.com>\"",
                ctx,
            )
            .and_then(|n| mailbox(n, "email.from", ctx));
        let to = m
            .required(
                "to",
                "write who receives alerts, e.g. to: [me@example.com]",
                ctx,
            )
            .and_then(|n| {
                let items = list_or_one(n);
                if matches!(&n.kind, Kind::Seq(list) if list.is_empty()) {
                    ctx.error(
                        n.pos,
                        "email.to: the list is empty; alerts and emails need at least one recipient, e.g. to: [me@example.com]",
                    );
                    return None;
                }
                let count = items.len();
                let to: Vec<_> = items
                    .into_iter()
                    .filter_map(|item| mailbox(item, "email.to", ctx))
                    .collect();
                (to.len() == count).then_some(to)
            });
        m.finish(ctx);
        Some(EmailConfig {
            transport: transport?,
            from: from?,
            to: to.filter(|t| !t.is_empty())?,
        })
    }

    pub fn wallets(
        &self,
        node: &Node,
        ctx: &mut Ctx<'_>,
        names: &mut Names,
    ) -> BTreeMap<String, WalletConfig> {
        let mut out = BTreeMap::new();
        for (name, value) in named_entries(node, "wallets", ctx) {
            names.wallets.insert(name.clone());
            if let Some(wallet) = self.wallet(&name, value, ctx) {
                if wallet.key.descriptor().desc_type() == miniscript::descriptor::DescriptorType::Tr
                {
                    names.taproot_wallets.insert(name.clone());
                }
                out.insert(name, wallet);
            }
        }
        out
    }

    fn wallet(&self, name: &str, node: &Node, ctx: &mut Ctx<'_>) -> Option<WalletConfig> {
        let what = format!("wallets.{name}");
        let mut m = MapReader::new(node, what.clone(), ctx)?;
        let script = m.get("script_type").and_then(|n| {
            let text = string(n, "script_type", ctx)?;
            ScriptType::from_str(&text)
                .map_err(|e| ctx.error(n.pos, format!("{what}.script_type: {e}")))
                .ok()
        });
        let key = match (m.get("xpub"), m.get("descriptor")) {
            (Some(n), None) => string(n, "xpub", ctx).and_then(|text| {
                WalletKey::from_extended(&text, script)
                    .map_err(|e| ctx.error(n.pos, format!("{what}.xpub: {e}")))
                    .ok()
            }),
            (None, Some(n)) => {
                if let Some(s) = m.get("script_type") {
                    ctx.error(
                        s.pos,
                        format!("{what}.script_type: a descriptor states its own script type; remove script_type"),
                    );
                }
                string(n, "descriptor", ctx).and_then(|text| {
                    WalletKey::from_descriptor(&text)
                        .map_err(|e| ctx.error(n.pos, format!("{what}.descriptor: {e}")))
                        .ok()
                })
            }
            (Some(n), Some(_)) => {
                ctx.error(
                    n.pos,
                    format!("{what}: both `xpub` and `descriptor` are set; keep one"),
                );
                None
            }
            (None, None) => {
                ctx.error(
                    m.pos,
                    format!("{what}: missing required key `xpub` (or `descriptor`); write the extended public key your wallet exports, e.g. xpub: zpub6r…"),
                );
                None
            }
        };
        let network = m.get("network").and_then(|n| {
            let text = string(n, "network", ctx)?;
            let network = match text.as_str() {
                "bitcoin" | "mainnet" => Some(Network::Bitcoin),
                "testnet" => Some(Network::Testnet),
                "signet" => Some(Network::Signet),
                "regtest" => Some(Network::Regtest),
                _ => None,
            };
            if network.is_none() {
                ctx.error(
                    n.pos,
                    format!("{what}.network: {} is not a network; accepted: bitcoin, testnet, signet, regtest", describe(&text)),
                );
            }
            network.map(|net| (net, n.pos))
        });
        let esplora_url = m
            .get("esplora_url")
            .and_then(|n| http_url(n, &format!("{what}.esplora_url"), ctx));
        let electrum_node = m.get("electrum_url");
        let electrum_url = electrum_node.and_then(|n| {
            let text = string(n, "electrum_url", ctx)?;
            crate::wallet::electrum::ElectrumUrl::parse(&text)
                .map_err(|e| {
                    ctx.error(
                        n.pos,
                        format!("{what}.electrum_url: {} is refused: {e}", describe(&text)),
                    )
                })
                .ok()
        });
        if let (Some(_), Some(n)) = (m.get("esplora_url"), electrum_node) {
            ctx.error(
                n.pos,
                format!("{what}: both `esplora_url` and `electrum_url` are set; keep one (electrum_url for your own node's Electrum server)"),
            );
        }
        // Electrs and Fulcrum on a node serve `ssl://` with a self-signed certificate of their
        // own: it is pinned, as LND's tls.cert and clnrest's ca.pem.
        let cert_node = m.get("tls_cert_file");
        let tls_cert_file =
            cert_node.and_then(|n| self.cert_file(n, &format!("{what}.tls_cert_file"), ctx));
        m.finish(ctx);
        match (&electrum_url, cert_node) {
            (Some(url), Some(n)) if !url.tls => ctx.error(
                n.pos,
                format!("{what}.tls_cert_file: {url} is plain TCP, which has no certificate; use ssl:// in electrum_url, or remove tls_cert_file"),
            ),
            (None, Some(n)) if electrum_node.is_none() => ctx.error(
                n.pos,
                format!("{what}.tls_cert_file: pins the certificate of an ssl:// electrum_url, and there is none; an esplora_url is trusted through public authorities"),
            ),
            (Some(url), None) if url.tls && !is_public(url.url_host()) => ctx.error(
                electrum_node.map_or(node.pos, |n| n.pos),
                format!("{what}.electrum_url: {url} is served with the Electrum server's own certificate, which no public authority signed; set tls_cert_file to it (Electrs: its TLS proxy's certificate; Fulcrum: the file its `cert` setting names), or use tcp:// on your own network"),
            ),
            _ => {}
        }
        let key = key?;
        let network = match network {
            Some((net, pos)) => {
                if NetworkKind::from(net) != key.network_kind() {
                    ctx.error(
                        pos,
                        format!(
                            "{what}.network: {net} does not match the key, which was exported for {}; use the key of the right network or fix `network`",
                            if key.network_kind() == NetworkKind::Main { "mainnet" } else { "a test network" }
                        ),
                    );
                }
                net
            }
            None if key.network_kind() == NetworkKind::Main => Network::Bitcoin,
            None => Network::Testnet,
        };
        Some(WalletConfig {
            key,
            network,
            esplora_url,
            electrum_url,
            tls_cert_file,
        })
    }

    pub fn lightning(
        &self,
        node: &Node,
        ctx: &mut Ctx<'_>,
        names: &mut Names,
    ) -> BTreeMap<String, LightningNode> {
        let mut out = BTreeMap::new();
        for (name, value) in named_entries(node, "lightning", ctx) {
            let (kind, parsed) = self.lightning_node(&name, value, ctx);
            names.nodes.insert(name.clone(), kind);
            if let Some(parsed) = parsed {
                out.insert(name, parsed);
            }
        }
        out
    }

    fn lightning_node(
        &self,
        name: &str,
        node: &Node,
        ctx: &mut Ctx<'_>,
    ) -> (Option<NodeKind>, Option<LightningNode>) {
        let what = format!("lightning.{name}");
        let Some(mut m) = MapReader::new(node, what.clone(), ctx) else {
            return (None, None);
        };
        let lnd = m.get("lnd");
        let cln = m.get("cln");
        let address = m.get("lightning_address");
        let given = [lnd.is_some(), cln.is_some(), address.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        let (kind, source) = if given != 1 {
            ctx.error(
                m.pos,
                format!(
                    "{what}: {} of `lnd`, `cln`, `lightning_address` are set; set exactly one, e.g. lnd: {{ url: https://127.0.0.1:8080, macaroon_file: …, tls_cert_file: … }}",
                    if given == 0 { "none" } else { "several" }
                ),
            );
            (None, None)
        } else if let Some(n) = lnd {
            (Some(NodeKind::Lnd), self.lnd(&what, n, ctx))
        } else if let Some(n) = cln {
            (Some(NodeKind::Cln), self.cln(&what, n, ctx))
        } else {
            let n = address.expect("exactly one source is set");
            let source = string(n, "lightning_address", ctx).and_then(|text| {
                if is_lightning_address(&text) {
                    Some(InvoiceSource::LightningAddress(text))
                } else {
                    ctx.error(
                        n.pos,
                        format!("{what}.lightning_address: {} is not a Lightning address; write user@domain, e.g. me@getalby.com", describe(&text)),
                    );
                    None
                }
            });
            (Some(NodeKind::LightningAddress), source)
        };
        let node_pubkey = m.get("node_pubkey").and_then(|n| {
            let text = string(n, "node_pubkey", ctx)?;
            pubkey(&text)
                .map_err(|e| ctx.error(n.pos, format!("{what}.node_pubkey: {e}")))
                .ok()
        });
        let node_address = m.get("node_address").and_then(|n| {
            let text = string(n, "node_address", ctx)?;
            let parsed = text.split_once('@').and_then(|(key, hostport)| {
                let (host, port) = hostport.rsplit_once(':')?;
                (!host.is_empty() && port.parse::<u16>().is_ok()).then_some(key)
            });
            match parsed.map(pubkey) {
                Some(Ok(key)) => {
                    if node_pubkey.is_some_and(|configured| configured != key) {
                        ctx.error(
                            n.pos,
                            format!("{what}.node_address: its public key differs from node_pubkey; they must name the same node"),
                        );
                    }
                    Some(text)
                }
                _ => {
                    ctx.error(
                        n.pos,
                        format!("{what}.node_address: {} is not a node address; write PUBKEY@HOST:PORT, e.g. 02…@node.example.com:9735", describe(&text)),
                    );
                    None
                }
            }
        });
        m.finish(ctx);
        let parsed = source.map(|source| LightningNode {
            source,
            node_pubkey,
            node_address,
        });
        (kind, parsed)
    }

    fn lnd(&self, what: &str, node: &Node, ctx: &mut Ctx<'_>) -> Option<InvoiceSource> {
        let what = format!("{what}.lnd");
        let mut m = MapReader::new(node, what.clone(), ctx)?;
        let url = m
            .required(
                "url",
                "write the node's REST address, e.g. url: https://127.0.0.1:8080",
                ctx,
            )
            .and_then(|n| http_url(n, &format!("{what}.url"), ctx));
        let macaroon_file = m
            .required(
                "macaroon_file",
                "write the path of a macaroon that may create invoices, e.g. invoice.macaroon",
                ctx,
            )
            .and_then(|n| self.existing_file(n, &format!("{what}.macaroon_file"), ctx));
        let tls_cert_file = m
            .required(
                "tls_cert_file",
                "write the path of the node's tls.cert (satflow pins it)",
                ctx,
            )
            .and_then(|n| self.existing_file(n, &format!("{what}.tls_cert_file"), ctx));
        m.finish(ctx);
        Some(InvoiceSource::Lnd {
            url: url?,
            macaroon_file: macaroon_file?,
            tls_cert_file: tls_cert_file?,
        })
    }

    fn cln(&self, what: &str, node: &Node, ctx: &mut Ctx<'_>) -> Option<InvoiceSource> {
        let what = format!("{what}.cln");
        let mut m = MapReader::new(node, what.clone(), ctx)?;
        let url_node = m.required(
            "url",
            "write the clnrest address, e.g. url: https://127.0.0.1:3010",
            ctx,
        );
        let url = url_node.and_then(|n| http_url(n, &format!("{what}.url"), ctx));
        let rune = m
            .required(
                "rune",
                "write a rune allowed to call invoice and signmessage, e.g. rune: ${CLN_RUNE}",
                ctx,
            )
            .and_then(|n| secret(n, &format!("{what}.rune"), ctx));
        // clnrest serves https with a CA of its own (`ca.pem` signing `server.pem`, in the
        // node's network folder); satflow pins it, as LND's tls.cert.
        let cert_node = m.get("tls_cert_file");
        let tls_cert_file =
            cert_node.and_then(|n| self.cert_file(n, &format!("{what}.tls_cert_file"), ctx));
        m.finish(ctx);
        let url = url?;
        if cert_node.is_none() && url.scheme() == "https" && !url.host().is_some_and(is_public) {
            ctx.error(
                url_node.map_or(node.pos, |n| n.pos),
                format!(
                    "{what}.url: {} is served with clnrest's own certificate, which no public authority signed; set tls_cert_file to the node's ca.pem, in its network folder (e.g. tls_cert_file: /home/you/.lightning/bitcoin/ca.pem; server.pem works too), or use an http:// URL on loopback",
                    url.as_str().trim_end_matches('/')
                ),
            );
            return None;
        }
        Some(InvoiceSource::Cln {
            url,
            rune: rune?,
            tls_cert_file: match cert_node {
                Some(_) => Some(tls_cert_file?),
                None => None,
            },
        })
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

    /// Providers by name, each with the position of what refers elsewhere (an LND node name).
    pub fn withdraw(
        &self,
        node: &Node,
        ctx: &mut Ctx<'_>,
        names: &mut Names,
    ) -> BTreeMap<String, (Pos, WithdrawProvider)> {
        let mut out = BTreeMap::new();
        for (name, value) in named_entries(node, "withdraw", ctx) {
            names.providers.insert(name.clone());
            if let Some(provider) = self.provider(&name, value, ctx) {
                if matches!(provider.1, WithdrawProvider::LightningPeach { .. }) {
                    names.hub_providers.insert(name.clone());
                }
                out.insert(name, provider);
            }
        }
        out
    }

    fn provider(
        &self,
        name: &str,
        node: &Node,
        ctx: &mut Ctx<'_>,
    ) -> Option<(Pos, WithdrawProvider)> {
        let what = format!("withdraw.{name}");
        let mut m = MapReader::new(node, what.clone(), ctx)?;
        let hub = m.get("lightningpeach");
        let lnd = m.get("lnd");
        let provider = match (hub, lnd) {
            (Some(n), None) => self.lightningpeach(&what, n, ctx).map(|p| (n.pos, p)),
            (None, Some(n)) => MapReader::new(n, format!("{what}.lnd"), ctx).and_then(|mut l| {
                let node = l
                    .required(
                        "node",
                        "name the LND node under `lightning:` whose on-chain wallet is swept",
                        ctx,
                    )
                    .and_then(|n| string(n, "node", ctx).map(|name| (n.pos, name)));
                l.finish(ctx);
                node.map(|(pos, node)| (pos, WithdrawProvider::Lnd { node }))
            }),
            _ => {
                ctx.error(
                    m.pos,
                    format!("{what}: set exactly one provider: `lightningpeach: {{ base_url, email, password, key_file }}` or `lnd: {{ node: NAME }}`"),
                );
                None
            }
        };
        m.finish(ctx);
        provider
    }

    fn lightningpeach(
        &self,
        what: &str,
        node: &Node,
        ctx: &mut Ctx<'_>,
    ) -> Option<WithdrawProvider> {
        let what = format!("{what}.lightningpeach");
        let mut m = MapReader::new(node, what.clone(), ctx)?;
        let base_url = m
            .required(
                "base_url",
                "write the hub's address, e.g. base_url: https://hub.example.com",
                ctx,
            )
            .and_then(|n| http_url(n, &format!("{what}.base_url"), ctx));
        let email = m
            .required("email", "write the merchant account's email", ctx)
            .and_then(|n| string(n, "email", ctx));
        let password = m
            .required(
                "password",
                "write the account password, e.g. password: ${HUB_PASSWORD}",
                ctx,
            )
            .and_then(|n| secret(n, &format!("{what}.password"), ctx));
        let key = m
            .required(
                "key_file",
                "write the path of the merchant's signing key file",
                ctx,
            )
            .and_then(|n| {
                let field = format!("{what}.key_file");
                let path = self.existing_file(n, &field, ctx)?;
                match read_merchant_key(&path) {
                    Ok(key) => Some(key),
                    Err(e) => {
                        ctx.error(n.pos, format!("{field}: {e}"));
                        None
                    }
                }
            });
        m.finish(ctx);
        Some(WithdrawProvider::LightningPeach {
            base_url: base_url?,
            email: email?,
            password: password?,
            key: key?,
        })
    }

    pub fn prices(
        &self,
        node: Option<&Node>,
        ctx: &mut Ctx<'_>,
        names: &mut Names,
    ) -> Option<PricesConfig> {
        let mut prices = PricesConfig {
            sources: vec![PriceSource::Peach],
            peach_url: Url::parse(DEFAULT_PEACH_URL).ok()?,
            bitpay_url: Url::parse(DEFAULT_BITPAY_URL).ok()?,
            max_age: std::time::Duration::from_secs(300),
            sanity_percent: None,
        };
        names.price_source = Some(PriceSource::Peach);
        let Some(node) = node else {
            return Some(prices);
        };
        let mut m = MapReader::new(node, "prices", ctx)?;
        let mut ok = true;
        // `source: peach` is a list of one; `sources: [peach, bitpay]` is asked in order.
        let one = m.get("source").map(|n| ("prices.source", vec![n]));
        let many = m.get("sources").map(|n| ("prices.sources", list_or_one(n)));
        if let (Some(_), Some((_, items))) = (&one, &many) {
            ctx.error(
                items.first().map_or(node.pos, |n| n.pos),
                "prices: write either `source: peach` or `sources: [peach, bitpay]`, not both"
                    .to_string(),
            );
            ok = false;
        }
        if let Some((field, items)) = many.or(one) {
            let mut sources = Vec::new();
            for n in &items {
                let text = string(n, field, ctx);
                let source = match text.as_deref() {
                    Some("peach") => PriceSource::Peach,
                    Some("bitpay") => PriceSource::Bitpay,
                    Some(other) => {
                        ctx.error(
                            n.pos,
                            format!(
                                "{field}: {} is not a price source; accepted: peach, bitpay",
                                describe(other)
                            ),
                        );
                        ok = false;
                        continue;
                    }
                    None => {
                        ok = false;
                        continue;
                    }
                };
                if sources.contains(&source) {
                    ctx.error(
                        n.pos,
                        format!(
                            "{field}: {} is listed twice; name each source once, in the order to ask them",
                            describe(text.as_deref().unwrap_or_default())
                        ),
                    );
                    ok = false;
                }
                sources.push(source);
            }
            if items.is_empty() {
                ctx.error(
                    node.pos,
                    format!("{field}: the list is empty; name at least one of peach, bitpay"),
                );
                ok = false;
            }
            if ok {
                prices.sources = sources;
            }
            names.price_source = ok.then(|| prices.sources[0]);
        }
        for (key, slot) in [
            ("peach_url", &mut prices.peach_url),
            ("bitpay_url", &mut prices.bitpay_url),
        ] {
            if let Some(n) = m.get(key) {
                match http_url(n, &format!("prices.{key}"), ctx) {
                    Some(url) => *slot = url,
                    None => ok = false,
                }
            }
        }
        if let Some(n) = m.get("max_age") {
            match duration(n, "prices.max_age", bounds::PRICES_MAX_AGE, ctx) {
                Some(d) => prices.max_age = d,
                None => ok = false,
            }
        }
        if let Some(n) = m.get("sanity_percent") {
            let text = crate::source::reader::scalar(n, "prices.sanity_percent", ctx)
                .map(|s| s.value.clone());
            match text
                .as_deref()
                .map(|t| (t, rust_decimal::Decimal::from_str_exact(t)))
            {
                Some((_, Ok(d)))
                    if d > rust_decimal::Decimal::ZERO
                        && d <= rust_decimal::Decimal::ONE_HUNDRED =>
                {
                    prices.sanity_percent = Some(d)
                }
                Some((t, _)) => {
                    ctx.error(
                        n.pos,
                        format!("prices.sanity_percent: {} is not a percentage; write a number above 0 and at most 100, e.g. 5", describe(t)),
                    );
                    ok = false;
                }
                None => ok = false,
            }
        }
        m.finish(ctx);
        ok.then_some(prices)
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
        m.finish(ctx);
        engine
    }

    pub fn alerts(&self, node: Option<&Node>, ctx: &mut Ctx<'_>) -> BTreeSet<Alert> {
        let Some(node) = node else {
            return Alert::ALL.into_iter().collect();
        };
        let Kind::Seq(items) = &node.kind else {
            ctx.error(
                node.pos,
                "alerts: expected a list, e.g. alerts: [interrupted, refunded] (or [] for none)",
            );
            return BTreeSet::new();
        };
        let accepted: Vec<&str> = Alert::ALL.iter().map(|a| a.name()).collect();
        let mut out = BTreeSet::new();
        for item in items {
            let Some(name) = string(item, "alerts", ctx) else {
                continue;
            };
            match Alert::ALL.into_iter().find(|a| a.name() == name) {
                Some(alert) => {
                    out.insert(alert);
                }
                None => {
                    let hint = did_you_mean(&name, &accepted);
                    ctx.error(
                        item.pos,
                        format!(
                            "alerts: {} is not a built-in alert; {hint}accepted: {}",
                            describe(&name),
                            accepted.join(", ")
                        ),
                    );
                }
            }
        }
        out
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

/// A withdrawal provider `lnd: { node }` must name a configured LND node.
pub fn check_withdraw_nodes(
    withdraw: &BTreeMap<String, (Pos, WithdrawProvider)>,
    names: &Names,
    ctx: &mut Ctx<'_>,
) {
    for (name, (pos, provider)) in withdraw {
        let WithdrawProvider::Lnd { node } = provider else {
            continue;
        };
        match names.nodes.get(node) {
            Some(Some(NodeKind::Lnd)) | Some(None) => {}
            Some(Some(_)) => ctx.error(
                *pos,
                format!("withdraw.{name}.lnd.node: `{node}` is not an LND node; only an LND node's on-chain wallet can be swept"),
            ),
            None => ctx.error(
                *pos,
                format!(
                    "withdraw.{name}.lnd.node: no Lightning node named `{node}` in `lightning:`; defined: {}",
                    list_names(names.nodes.keys())
                ),
            ),
        }
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
            named.sort();
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

fn smtp_url(node: &Node, ctx: &mut Ctx<'_>) -> Option<SecretString> {
    let s = scalar(node, "email.smtp_url", ctx)?;
    // The URL may carry a password: say what is wrong without showing it.
    let problem = match Url::parse(&s.value) {
        Err(err) => Some(err.to_string()),
        Ok(url) if !matches!(url.scheme(), "smtp" | "smtps") => {
            Some(format!("the scheme is `{}`", url.scheme()))
        }
        Ok(url) if url.host_str().is_none_or(str::is_empty) => Some("it names no host".to_string()),
        Ok(_) => None,
    };
    if problem.is_none()
        && let Some(problem) = control_character(&s.value)
    {
        ctx.error(
            node.pos,
            format!("email.smtp_url: {problem}; write the URL on one line"),
        );
        return None;
    }
    match problem {
        None => {
            let url = Url::parse(&s.value).ok()?;
            smtp_tls(url, node, ctx).map(SecretString::from)
        }
        Some(problem) => {
            ctx.error(
                node.pos,
                format!("email.smtp_url: not an SMTP URL ({problem}); write smtp://user:password@host:587?tls=required or smtps://user:password@host:465"),
            );
            None
        }
    }
}

/// Refuses an `smtp://` URL that would send the password and the emails in clear text over a
/// network, unless `tls=none` says it is meant; returns the URL as lettre reads it.
fn smtp_tls(mut url: Url, node: &Node, ctx: &mut Ctx<'_>) -> Option<String> {
    if url.scheme() != "smtp" {
        return Some(url.to_string());
    }
    let host = url.host_str().unwrap_or_default().to_string();
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        // `smtp:` is not a scheme the URL standard knows, so an IPv4 host arrives as text.
        Some(url::Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost")
                || d.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    };
    let tls = url
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    let fix = format!(
        "write smtp://user:password@{host}:587?tls=required (STARTTLS) or smtps://user:password@{host}:465"
    );
    match tls.as_deref() {
        Some("required") => Some(url.to_string()),
        None if loopback => Some(url.to_string()),
        Some("none") => {
            // lettre knows no `tls=none`: without a `tls` parameter it connects in clear.
            let rest: Vec<(String, String)> = url
                .query_pairs()
                .filter(|(k, _)| k != "tls")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            if rest.is_empty() {
                url.set_query(None);
            } else {
                url.query_pairs_mut().clear().extend_pairs(rest);
            }
            Some(url.to_string())
        }
        None => {
            ctx.error(
                node.pos,
                format!("email.smtp_url: smtp:// to {host} without TLS would send the password (AUTH PLAIN) and every email in clear text across the network; {fix}, or add `tls=none` if an unencrypted connection is really meant (a relay on your own network)"),
            );
            None
        }
        Some("opportunistic") if !loopback => {
            ctx.error(
                node.pos,
                format!("email.smtp_url: `tls=opportunistic` falls back to clear text whenever STARTTLS is missing, which anyone on the path can arrange, and the password would then travel in clear; {fix}, or write `tls=none` if an unencrypted connection is really meant"),
            );
            None
        }
        Some("opportunistic") => Some(url.to_string()),
        Some(other) => {
            ctx.error(
                node.pos,
                format!(
                    "email.smtp_url: `tls={}` is not a TLS mode; accepted: tls=required (STARTTLS), tls=opportunistic (loopback only), tls=none (clear text, on purpose); or use smtps://",
                    describe(other)
                ),
            );
            None
        }
    }
}

fn mailbox(node: &Node, field: &str, ctx: &mut Ctx<'_>) -> Option<Mailbox> {
    let text = string(node, field, ctx)?;
    match text.parse::<Mailbox>() {
        Ok(m) => Some(m),
        Err(_) => {
            ctx.error(
                node.pos,
                format!("{field}: {} is not an email address; write me@example.com or \"Name <me@example.com>\"", describe(&text)),
            );
            None
        }
    }
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

fn pubkey(text: &str) -> Result<PublicKey, String> {
    if text.len() != 66 || !text.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "{} is not a node public key; expected 66 hex characters starting with 02 or 03",
            describe(text)
        ));
    }
    PublicKey::from_str(text)
        .map_err(|_| format!("{} is not a valid secp256k1 public key", describe(text)))
}

fn is_lightning_address(text: &str) -> bool {
    match text.split_once('@') {
        Some((user, domain)) => {
            !user.is_empty()
                && user
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c))
                && domain.contains('.')
                && !domain.starts_with('.')
                && domain
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.:".contains(c))
        }
        None => false,
    }
}

/// The merchant's signing key from `path`. The refusal never shows the file's content.
fn read_merchant_key(path: &std::path::Path) -> Result<crate::domain::MerchantKey, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.parse()
        .map_err(|e: crate::domain::MerchantKeyError| format!("{} {e}", path.display()))
}
