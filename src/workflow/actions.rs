//! The action catalogue: what each `uses:` accepts under `with:`, as typed parameters, and what
//! it outputs for later steps.
//!
//! This is the whole vocabulary of a workflow. Parameters are parsed into domain types here so
//! that `check` refuses a bad fee rate or IBAN before anything runs; what the actions *do*
//! lives with their integrations (pocket/, wallet/, withdraw/, price/, notify/).

use std::str::FromStr;
use std::time::Duration;

use bitcoin::bip32::DerivationPath;
use lettre::message::Mailbox;
use rust_decimal::Decimal;
use serde_json::Value;
use url::Url;

use crate::config::{Names, NodeKind, PriceSource, list_names};
use crate::domain::{Currency, FeeRate, HumanDuration, Iban};
use crate::notify::templates;
use crate::source::reader::to_json;
use crate::source::reader::{
    boolean, describe, did_you_mean, list_or_one, scalar, string, unsigned,
};
use crate::source::{Ctx, Kind, MapReader, Node, Pos};

use super::expr::{self, Scope};

/// A value given literally (checked now) or as a template (rendered and checked when the step runs).
#[derive(Debug, Clone, PartialEq)]
pub enum Param<T> {
    Value(T),
    Template(String),
}

/// `true`/`false`, or an expression decided when the step runs (`active:` of an order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    Fixed(bool),
    Expression(String),
}

#[derive(Debug, Clone)]
pub enum Action {
    PocketOrder(PocketOrder),
    PocketPayout(PocketPayout),
    PocketRefresh(PocketRefresh),
    WalletAddress(WalletAddress),
    Withdraw(Withdraw),
    PriceQuote(PriceQuote),
    Email(Email),
    HttpPost(HttpPost),
}

/// Ensure the workflow's standing order exists and matches; patch `active`/`fee_rate`.
#[derive(Debug, Clone)]
pub struct PocketOrder {
    pub currency: Param<Currency>,
    pub fee_rate: Param<FeeRate>,
    pub debitor_iban: Param<Iban>,
    pub payout: Payout,
    /// Where the payout's wallet or node is named, for problems found across workflows.
    pub payout_pos: Pos,
    pub active: Condition,
    pub affiliate_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Payout {
    /// On-chain to the wallet; with an xpub, Pocket rotates addresses from `derivation_path`.
    Wallet {
        wallet: String,
        derivation_path: Option<DerivationPath>,
    },
    Lightning {
        node: String,
        lightning_address: Option<String>,
    },
}

/// Patch a Lightning exchange with an invoice (or a channel) from the user's node.
#[derive(Debug, Clone)]
pub struct PocketPayout {
    pub node: Option<String>,
    pub channel_fallback: bool,
    pub node_address: Option<String>,
}

/// Re-read an exchange from Pocket.
#[derive(Debug, Clone)]
pub struct PocketRefresh {
    pub exchange: Option<Param<String>>,
}

/// Reserve the next unused address of a wallet.
#[derive(Debug, Clone)]
pub struct WalletAddress {
    pub wallet: String,
}

/// Move a custodial balance to cold storage, under a fee policy.
#[derive(Debug, Clone)]
pub struct Withdraw {
    pub from: String,
    pub to_wallet: String,
    pub min_amount_sat: u64,
    pub max_fee_percent: Option<Decimal>,
    pub max_fee_rate: Option<Decimal>,
    pub keep_sat: u64,
}

/// The BTC price in a fiat currency.
#[derive(Debug, Clone)]
pub struct PriceQuote {
    pub currency: Param<Currency>,
    pub source: Option<PriceSource>,
    pub max_age: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct Email {
    pub content: EmailContent,
    pub to: Vec<Param<Mailbox>>,
}

/// POST a JSON document to a URL (a home-automation hook, a chat bot, a ledger), through the
/// outbox with an `Idempotency-Key` header; the step waits for the answer.
#[derive(Debug, Clone)]
pub struct HttpPost {
    pub url: Param<Url>,
    /// The values `${…}` put into the URL (tokens, often): never shown, see `source::redact`.
    pub url_secrets: Vec<String>,
    /// The body; string values may be templates.
    pub json: Value,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum EmailContent {
    Inline { subject: String, body: String },
    Template(String),
}

/// Every action name, for "accepted: …" messages.
pub const NAMES: [&str; 8] = [
    "pocket.order",
    "pocket.payout",
    "pocket.refresh",
    "wallet.address",
    "withdraw",
    "price.quote",
    "email",
    "http.post",
];

/// What each action makes available as `steps.<id>.<output>`.
pub fn outputs(uses: &str) -> &'static [&'static str] {
    match uses {
        "pocket.order" => &[
            "order_id",
            "created",
            "patched",
            "active",
            "fee_rate",
            "currency",
            "creditor_name",
            "creditor_iban",
            "creditor_bic",
            "creditor_reference",
        ],
        "pocket.payout" => &["method", "invoice", "amount_msat", "patched"],
        "pocket.refresh" => &["exchange_id", "state", "changed"],
        "wallet.address" => &["wallet", "index", "address"],
        "withdraw" => &[
            "withdrawn",
            "skipped",
            "reason",
            "amount_sat",
            "fee_sat",
            "address",
            "txid",
            "withdrawal_id",
        ],
        "price.quote" => &["price", "currency", "source", "fetched_at"],
        "email" => &["message_id"],
        "http.post" => &["status", "body"],
        _ => &[],
    }
}

/// Reads a step's `with:` for the action `uses`.
pub struct ActionReader<'a, 'c> {
    pub ctx: &'a mut Ctx<'c>,
    pub names: &'a Names,
    pub env: &'a minijinja::Environment<'static>,
    pub scope: Scope<'a>,
    /// The field path of `with`, e.g. `steps[1].with`.
    pub prefix: String,
}

impl ActionReader<'_, '_> {
    /// `with_node` is `None` when the step has no `with:`. `uses_pos` locates refusals that
    /// concern the action as a whole.
    pub fn read(
        &mut self,
        uses: &str,
        uses_pos: Pos,
        with_node: Option<&Node>,
        uses_field: &str,
    ) -> Option<Action> {
        let empty = Node {
            pos: uses_pos,
            kind: Kind::Map(Vec::new()),
        };
        let node = with_node.unwrap_or(&empty);
        let what = self.prefix.clone();
        let mut m = MapReader::new(node, what, self.ctx)?;
        let needs_pocket = uses.starts_with("pocket.");
        if needs_pocket && !self.names.has_pocket {
            self.ctx.error(
                uses_pos,
                format!("{uses_field}: {uses} talks to Pocket, but satflow.yaml has no `pocket` section; add pocket: {{ client_id: ${{POCKET_CLIENT_ID}} }}"),
            );
        }
        if uses == "email" && !self.names.has_email {
            self.ctx.error(
                uses_pos,
                format!("{uses_field}: email needs the `email` section of satflow.yaml (smtp_url or dir, from, to); add it"),
            );
        }
        let action = match uses {
            "pocket.order" => self.pocket_order(&mut m).map(Action::PocketOrder),
            "pocket.payout" => self.pocket_payout(&mut m).map(Action::PocketPayout),
            "pocket.refresh" => Some(Action::PocketRefresh(PocketRefresh {
                exchange: m
                    .get("exchange")
                    .and_then(|n| self.param(n, "exchange", |s| Ok::<_, String>(s.to_string()))),
            })),
            "wallet.address" => self.wallet_address(&mut m).map(Action::WalletAddress),
            "withdraw" => self.withdraw(&mut m).map(Action::Withdraw),
            "price.quote" => self.price_quote(&mut m).map(Action::PriceQuote),
            "email" => self.email(&mut m).map(Action::Email),
            "http.post" => self.http_post(&mut m).map(Action::HttpPost),
            _ => None,
        };
        m.finish(self.ctx);
        action
    }

    fn field(&self, key: &str) -> String {
        format!("{}.{key}", self.prefix)
    }

    /// A literal parsed by `parse`, or a template compiled and checked now, parsed at run time.
    fn param<T, E: std::fmt::Display>(
        &mut self,
        node: &Node,
        key: &str,
        parse: impl Fn(&str) -> Result<T, E>,
    ) -> Option<Param<T>> {
        let field = self.field(key);
        let s = scalar(node, &field, self.ctx)?;
        if s.is_template() {
            return match expr::check_template(self.env, &s.value, &self.scope) {
                Ok(()) => Some(Param::Template(s.value.clone())),
                Err(e) => {
                    self.ctx.error(node.pos, format!("{field}: {e}"));
                    None
                }
            };
        }
        match parse(&s.value) {
            Ok(v) => Some(Param::Value(v)),
            Err(e) => {
                self.ctx.error(node.pos, format!("{field}: {e}"));
                None
            }
        }
    }

    /// A name defined in satflow.yaml (a wallet, node or provider); never a template.
    fn reference(
        &mut self,
        node: &Node,
        key: &str,
        section: &str,
        defined: &mut dyn Iterator<Item = &String>,
    ) -> Option<String> {
        let field = self.field(key);
        let name = string(node, &field, self.ctx)?;
        let defined: Vec<&String> = defined.collect();
        if defined.iter().any(|d| **d == name) {
            return Some(name);
        }
        self.ctx.error(
            node.pos,
            format!(
                "{field}: {} is not defined under `{section}:` in satflow.yaml; defined: {}",
                describe(&name),
                list_names(defined.into_iter())
            ),
        );
        None
    }

    fn condition(&mut self, node: &Node, key: &str) -> Option<Condition> {
        let field = self.field(key);
        let s = scalar(node, &field, self.ctx)?;
        if s.style == crate::source::ScalarStyle::Plain && !s.is_template() {
            return boolean(node, &field, self.ctx).map(Condition::Fixed);
        }
        match expr::check_condition(self.env, &s.value, &self.scope) {
            Ok(()) => Some(Condition::Expression(s.value.clone())),
            Err(e) => {
                self.ctx.error(node.pos, format!("{field}: {e}"));
                None
            }
        }
    }

    fn pocket_order(&mut self, m: &mut MapReader<'_>) -> Option<PocketOrder> {
        let currency = m
            .required(
                "currency",
                "write the currency of your bank payments: eur, chf or gbp",
                self.ctx,
            )
            .and_then(|n| self.param(n, "currency", Currency::from_str));
        let fee_rate = m
            .required(
                "fee_rate",
                "write Pocket's fee as a fraction from 0.012 to 0.045, e.g. fee_rate: \"0.015\"",
                self.ctx,
            )
            .and_then(|n| self.param(n, "fee_rate", FeeRate::from_str));
        let iban = m
            .required(
                "debitor_iban",
                "write the IBAN you pay from, e.g. debitor_iban: ${MY_IBAN}",
                self.ctx,
            )
            .and_then(|n| self.param(n, "debitor_iban", Iban::from_str));
        let payout = m
            .required(
                "payout",
                "write payout: { wallet: NAME } for on-chain, or payout: { lightning: NODE }",
                self.ctx,
            )
            .and_then(|n| self.payout(n));
        let active = match m.get("active") {
            Some(n) => self.condition(n, "active"),
            None => Some(Condition::Fixed(true)),
        };
        let affiliate_id = m
            .get("affiliate_id")
            .and_then(|n| string(n, &self.field("affiliate_id"), self.ctx));
        let payout = payout?;
        Some(PocketOrder {
            currency: currency?,
            fee_rate: fee_rate?,
            debitor_iban: iban?,
            payout: payout.0,
            payout_pos: payout.1,
            active: active?,
            affiliate_id,
        })
    }

    /// The payout and where its wallet or node is named.
    fn payout(&mut self, node: &Node) -> Option<(Payout, Pos)> {
        let field = self.field("payout");
        let mut p = MapReader::new(node, field.clone(), self.ctx)?;
        let wallet = p.get("wallet");
        let lightning = p.get("lightning");
        let payout = match (wallet, lightning) {
            (Some(w), None) => {
                let wallet = self.reference(
                    w,
                    "payout.wallet",
                    "wallets",
                    &mut self.names.wallets.iter(),
                );
                if let Some(name) = &wallet
                    && self.names.taproot_wallets.contains(name)
                {
                    self.ctx.error(
                        w.pos,
                        format!("{field}.wallet: `{name}` is a taproot wallet; Pocket needs a signed message to prove ownership, which taproot addresses cannot give; use a p2wpkh (zpub) wallet"),
                    );
                }
                let derivation_path = p.get("derivation_path").and_then(|n| {
                    let text = string(n, "derivation_path", self.ctx)?;
                    DerivationPath::from_str(&text)
                        .map_err(|_| {
                            self.ctx.error(
                                n.pos,
                                format!("{field}.derivation_path: {} is not a derivation path; write e.g. m/84'/0'/0'/0/0 or 0/0", describe(&text)),
                            )
                        })
                        .ok()
                });
                wallet.map(|wallet| {
                    let payout = Payout::Wallet {
                        wallet,
                        derivation_path,
                    };
                    (payout, w.pos)
                })
            }
            (None, Some(l)) => {
                let node = self.reference(
                    l,
                    "payout.lightning",
                    "lightning",
                    &mut self.names.nodes.keys(),
                );
                let lightning_address = p
                    .get("lightning_address")
                    .and_then(|n| string(n, "lightning_address", self.ctx));
                node.map(|node| {
                    let payout = Payout::Lightning {
                        node,
                        lightning_address,
                    };
                    (payout, l.pos)
                })
            }
            (Some(w), Some(_)) => {
                self.ctx.error(w.pos, format!("{field}: both `wallet` and `lightning` are set; an order pays out one way, keep one"));
                None
            }
            (None, None) => {
                self.ctx.error(p.pos, format!("{field}: write {{ wallet: NAME }} for on-chain or {{ lightning: NODE }} for Lightning"));
                None
            }
        };
        p.finish(self.ctx);
        payout
    }

    fn pocket_payout(&mut self, m: &mut MapReader<'_>) -> Option<PocketPayout> {
        let node = m
            .get("node")
            .map(|n| self.reference(n, "node", "lightning", &mut self.names.nodes.keys()));
        let fallback_node = m.get("channel_fallback");
        let channel_fallback = match fallback_node {
            Some(n) => boolean(n, &self.field("channel_fallback"), self.ctx)?,
            None => false,
        };
        let node_address = m
            .get("node_address")
            .and_then(|n| string(n, "node_address", self.ctx));
        if let (Some(Some(name)), Some(n)) = (&node, fallback_node)
            && channel_fallback
            && node_address.is_none()
            && matches!(
                self.names.nodes.get(name),
                Some(Some(NodeKind::LightningAddress))
            )
        {
            self.ctx.error(
                n.pos,
                format!(
                    "{}: a channel needs a node to open it to, and `{name}` is a Lightning address; set node_address (PUBKEY@HOST:PORT) or channel_fallback: false",
                    self.field("channel_fallback")
                ),
            );
        }
        Some(PocketPayout {
            node: match node {
                Some(n) => Some(n?),
                None => None,
            },
            channel_fallback,
            node_address,
        })
    }

    fn wallet_address(&mut self, m: &mut MapReader<'_>) -> Option<WalletAddress> {
        let wallet = m
            .required("wallet", "name a wallet defined under `wallets:`", self.ctx)
            .and_then(|n| self.reference(n, "wallet", "wallets", &mut self.names.wallets.iter()));
        Some(WalletAddress { wallet: wallet? })
    }

    fn withdraw(&mut self, m: &mut MapReader<'_>) -> Option<Withdraw> {
        let from = m
            .required(
                "from",
                "name a provider defined under `withdraw:`",
                self.ctx,
            )
            .and_then(|n| self.reference(n, "from", "withdraw", &mut self.names.providers.iter()));
        let to_wallet = m
            .required("to", "write to: { wallet: NAME }", self.ctx)
            .and_then(|n| {
                let mut t = MapReader::new(n, self.field("to"), self.ctx)?;
                let w = t
                    .required("wallet", "name a wallet defined under `wallets:`", self.ctx)
                    .and_then(|w| {
                        self.reference(w, "to.wallet", "wallets", &mut self.names.wallets.iter())
                    });
                t.finish(self.ctx);
                w
            });
        let min_node = m.required(
            "min_amount_sat",
            "write the smallest balance worth moving, in satoshis, e.g. min_amount_sat: 100000",
            self.ctx,
        );
        let min_amount_sat =
            min_node.and_then(|n| unsigned(n, &self.field("min_amount_sat"), self.ctx));
        let max_fee_percent = m.get("max_fee_percent").and_then(|n| {
            self.decimal(
                n,
                "max_fee_percent",
                Decimal::ZERO,
                Decimal::ONE_HUNDRED,
                "0 to 100 (percent of the amount)",
            )
        });
        let max_fee_rate = m.get("max_fee_rate").and_then(|n| {
            self.decimal(
                n,
                "max_fee_rate",
                Decimal::ONE,
                Decimal::from(10_000),
                "1 to 10000 (sat/vB)",
            )
        });
        let keep_sat = match m.get("keep_sat") {
            Some(n) => {
                let keep = unsigned(n, &self.field("keep_sat"), self.ctx)?;
                if keep > 0
                    && from
                        .as_ref()
                        .is_some_and(|f| self.names.hub_providers.contains(f))
                {
                    self.ctx.error(
                        n.pos,
                        format!("{}: the Lightning Peach hub withdraws its whole balance, so nothing can be kept behind; remove keep_sat or withdraw from an `lnd` provider", self.field("keep_sat")),
                    );
                }
                keep
            }
            None => 0,
        };
        if let (Some(min), Some(n)) = (min_amount_sat, min_node)
            && min < 1000
        {
            // The hub refuses withdrawals under 1000 sat (seed 003); say so now rather than weekly.
            self.ctx.error(
                n.pos,
                format!("{}.min_amount_sat: {min} is below 1000 sat, the smallest withdrawal a provider accepts; write at least 1000", self.prefix),
            );
        }
        Some(Withdraw {
            from: from?,
            to_wallet: to_wallet?,
            min_amount_sat: min_amount_sat?,
            max_fee_percent,
            max_fee_rate,
            keep_sat,
        })
    }

    fn decimal(
        &mut self,
        node: &Node,
        key: &str,
        min: Decimal,
        max: Decimal,
        accepted: &str,
    ) -> Option<Decimal> {
        let field = self.field(key);
        let text = string(node, &field, self.ctx)?;
        match Decimal::from_str_exact(text.trim()) {
            Ok(d) if d >= min && d <= max => Some(d),
            _ => {
                self.ctx.error(
                    node.pos,
                    format!(
                        "{field}: {} is not a number in range; accepted: {accepted}",
                        describe(&text)
                    ),
                );
                None
            }
        }
    }

    fn price_quote(&mut self, m: &mut MapReader<'_>) -> Option<PriceQuote> {
        let currency = m
            .required(
                "currency",
                "write the fiat currency to quote: eur, chf or gbp",
                self.ctx,
            )
            .and_then(|n| self.param(n, "currency", Currency::from_str));
        let source = match m.get("source") {
            None => Some(None),
            Some(n) => match string(n, &self.field("source"), self.ctx).as_deref() {
                Some("peach") => Some(Some(PriceSource::Peach)),
                Some("bitpay") => Some(Some(PriceSource::Bitpay)),
                Some(other) => {
                    self.ctx.error(
                        n.pos,
                        format!(
                            "{}: {} is not a price source; accepted: peach, bitpay",
                            self.field("source"),
                            describe(other)
                        ),
                    );
                    None
                }
                None => None,
            },
        };
        let max_age = match m.get("max_age") {
            None => Some(None),
            Some(n) => {
                let field = self.field("max_age");
                string(n, &field, self.ctx).and_then(|t| match t.parse::<HumanDuration>() {
                    // A quote older than a day says nothing about today's price.
                    Ok(d) if d.0 >= Duration::from_secs(1) && d.0 <= Duration::from_secs(86_400) => {
                        Some(Some(d.0))
                    }
                    Ok(_) => {
                        self.ctx.error(
                            n.pos,
                            format!("{field}: {} is out of range; accepted: 1s to 24h (a quote older than a day says nothing about today's price)", describe(&t)),
                        );
                        None
                    }
                    Err(e) => {
                        self.ctx.error(n.pos, format!("{field}: {e}"));
                        None
                    }
                })
            }
        };
        Some(PriceQuote {
            currency: currency?,
            source: source?,
            max_age: max_age?,
        })
    }

    fn email(&mut self, m: &mut MapReader<'_>) -> Option<Email> {
        let subject = m.get("subject");
        let body = m.get("body");
        let template = m.get("template");
        let content = match (template, subject, body) {
            (Some(t), None, None) => {
                let field = self.field("template");
                let name = string(t, &field, self.ctx)?;
                match templates::find(&name, &self.names.templates) {
                    Some(Ok(source)) => {
                        for (part, text) in [
                            ("subject", source.subject.as_str()),
                            ("body", source.body.as_str()),
                        ] {
                            let extra = templates::extra_roots(&name);
                            if let Err(e) =
                                expr::check_template_with(self.env, text, &self.scope, extra)
                            {
                                self.ctx.error(
                                    t.pos,
                                    format!(
                                        "{field}: the {part} of template `{name}` ({}): {e}",
                                        source.origin
                                    ),
                                );
                            }
                        }
                        Some(EmailContent::Template(name))
                    }
                    Some(Err(e)) => {
                        self.ctx
                            .error(t.pos, format!("{field}: template `{name}`: {e}"));
                        None
                    }
                    None => {
                        let mut known: Vec<&str> = templates::BUILT_IN_NAMES.to_vec();
                        known.extend(self.names.templates.keys().map(String::as_str));
                        let hint = did_you_mean(&name, &known);
                        self.ctx.error(
                            t.pos,
                            format!(
                                "{field}: there is no email template {}; {hint}built in: {}{}",
                                describe(&name),
                                templates::BUILT_IN_NAMES.join(", "),
                                user_templates(self.names)
                            ),
                        );
                        None
                    }
                }
            }
            (None, Some(s), Some(b)) => {
                let subject = self.template_text(s, "subject");
                let body = self.template_text(b, "body");
                Some(EmailContent::Inline {
                    subject: subject?,
                    body: body?,
                })
            }
            (Some(t), _, _) => {
                self.ctx.error(
                    t.pos,
                    format!(
                        "{}: `template` and `subject`/`body` are both set; use one",
                        self.prefix
                    ),
                );
                None
            }
            _ => {
                self.ctx.error(
                    m.pos,
                    format!(
                        "{}: write `subject` and `body`, or `template: NAME`",
                        self.prefix
                    ),
                );
                None
            }
        };
        let to = match m.get("to") {
            None => Vec::new(),
            Some(n) => list_or_one(n)
                .into_iter()
                .filter_map(|item| {
                    self.param(item, "to", |s| {
                        s.parse::<Mailbox>().map_err(|_| {
                            format!("{} is not an email address; write me@example.com or \"Name <me@example.com>\"", describe(s))
                        })
                    })
                })
                .collect(),
        };
        Some(Email {
            content: content?,
            to,
        })
    }

    fn http_post(&mut self, m: &mut MapReader<'_>) -> Option<HttpPost> {
        let url_node = m.required(
            "url",
            "write where to POST, e.g. url: https://hooks.example.com/satflow",
            self.ctx,
        );
        // What `${…}` put into the URL: hidden wherever the URL is shown.
        let url_secrets = url_node
            .and_then(|n| n.scalar())
            .map(|s| s.expanded.clone())
            .unwrap_or_default();
        let url = url_node.and_then(|n| {
            self.param(n, "url", |s| match Url::parse(s) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(u),
                _ => Err(format!(
                    "{} is not an http(s) URL; write e.g. https://example.com/hook",
                    describe(s)
                )),
            })
        });
        let json = match m.get("json") {
            Some(n) => {
                let json = to_json(n);
                let mut ok = true;
                self.check_json_templates(n, &mut ok);
                ok.then_some(json)
            }
            None => Some(Value::Object(Default::default())),
        };
        let headers = match m.get("headers") {
            None => Some(Vec::new()),
            Some(n) => match &n.kind {
                Kind::Map(entries) => {
                    let mut ok = true;
                    let mut headers = Vec::new();
                    for (k, v) in entries {
                        let Some(name) = k.scalar().map(|s| s.raw.clone()) else {
                            continue;
                        };
                        let field = self.field(&format!("headers.{name}"));
                        if !is_header_name(&name) {
                            self.ctx.error(
                                k.pos,
                                format!("{field}: {} is not an HTTP header name; use letters, digits and `-`, e.g. Authorization or X-Api-Key", describe(&name)),
                            );
                            ok = false;
                            continue;
                        }
                        match string(v, &field, self.ctx) {
                            // A line break would end the header and start another one (header
                            // injection); other control characters are refused by HTTP itself.
                            Some(value)
                                if value.chars().any(|c| {
                                    ((c as u32) < 0x20 && c != '\t') || c as u32 == 0x7f
                                }) =>
                            {
                                self.ctx.error(
                                    v.pos,
                                    format!("{field}: the value holds a line break or another control character, which would end the header and start another one; write it on one line"),
                                );
                                ok = false;
                            }
                            Some(value) => headers.push((name, value)),
                            None => ok = false,
                        }
                    }
                    ok.then_some(headers)
                }
                _ => {
                    self.ctx.error(
                        n.pos,
                        format!(
                            "{}: expected a mapping of header names to values",
                            self.field("headers")
                        ),
                    );
                    None
                }
            },
        };
        let timeout = match m.get("timeout") {
            None => Some(Duration::from_secs(10)),
            Some(n) => {
                let field = self.field("timeout");
                string(n, &field, self.ctx).and_then(|t| match t.parse::<HumanDuration>() {
                    Ok(d) if !d.0.is_zero() && d.0 <= Duration::from_secs(120) => Some(d.0),
                    Ok(_) => {
                        self.ctx.error(
                            n.pos,
                            format!(
                                "{field}: {} is out of range; accepted: more than 0, at most 2m",
                                describe(&t)
                            ),
                        );
                        None
                    }
                    Err(e) => {
                        self.ctx.error(n.pos, format!("{field}: {e}"));
                        None
                    }
                })
            }
        };
        Some(HttpPost {
            url: url?,
            url_secrets,
            json: json?,
            headers: headers?,
            timeout: timeout?,
        })
    }

    /// Compiles every templated string inside a `json:` value.
    fn check_json_templates(&mut self, node: &Node, ok: &mut bool) {
        match &node.kind {
            Kind::Scalar(s) if s.is_template() => {
                if let Err(e) = expr::check_template(self.env, &s.value, &self.scope) {
                    self.ctx
                        .error(node.pos, format!("{}: {e}", self.field("json")));
                    *ok = false;
                }
            }
            Kind::Seq(items) => items.iter().for_each(|n| self.check_json_templates(n, ok)),
            Kind::Map(entries) => entries
                .iter()
                .for_each(|(_, v)| self.check_json_templates(v, ok)),
            _ => {}
        }
    }

    fn template_text(&mut self, node: &Node, key: &str) -> Option<String> {
        let field = self.field(key);
        let text = string(node, &field, self.ctx)?;
        match expr::check_template(self.env, &text, &self.scope) {
            Ok(()) => Some(text),
            Err(e) => {
                self.ctx.error(node.pos, format!("{field}: {e}"));
                None
            }
        }
    }
}

/// An HTTP header name (RFC 9110 token characters).
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
}

fn user_templates(names: &Names) -> String {
    if names.templates.is_empty() {
        String::new()
    } else {
        let list: Vec<&str> = names.templates.keys().map(String::as_str).collect();
        format!("; yours: {}", list.join(", "))
    }
}
