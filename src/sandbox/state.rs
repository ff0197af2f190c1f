//! The sandbox's memory: challenges, orders and exchanges, with the rules Pocket applies to
//! them. Pure functions of the state and the request; no HTTP here.

use std::collections::HashMap;
use std::str::FromStr;

use bitcoin::bip32::{ChildNumber, DerivationPath};
use bitcoin::{Address, Network};
use chrono::{DateTime, Duration, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{Value, json};

use crate::domain::{Currency, FeeRate, Iban};
use crate::lightning::signmessage::verify_node_signature;
use crate::pocket::types::{Challenge, ExchangeState, number};
use crate::wallet::address_at_path;
use crate::wallet::proof::verify_message;

/// A refusal, as Pocket answers it: an HTTP status and an error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            status: 400,
            code,
            message: message.into(),
        }
    }

    pub fn not_found(what: &str, id: &str) -> Self {
        Refusal {
            status: 404,
            code: "not_found",
            message: format!("there is no {what} {id}"),
        }
    }
}

/// How an order pays out, as the sandbox needs to know it to settle.
#[derive(Debug, Clone)]
pub enum Payout {
    Address(String),
    /// Rotation through an xpub: the next payout goes to `next` on the path's chain.
    Xpub {
        extended_public_key: String,
        chain: DerivationPath,
        next: u32,
    },
    Lightning {
        node_pubkey: bitcoin::secp256k1::PublicKey,
    },
}

#[derive(Debug, Clone)]
pub struct SandboxOrder {
    pub json: Value,
    pub payout: Payout,
    pub currency: Currency,
}

#[derive(Debug, Clone)]
pub struct SandboxExchange {
    pub json: Value,
    pub order_id: String,
}

impl SandboxExchange {
    pub fn state(&self) -> ExchangeState {
        // The same reading as satflow's of a read-back: payout, then action, then reason.
        let set = |k: &str| !self.json[k].is_null();
        if set("payout") {
            ExchangeState::Settled
        } else if set("action") {
            ExchangeState::Interrupted
        } else if set("reason") {
            ExchangeState::Refunded
        } else {
            ExchangeState::Executed
        }
    }
}

pub struct State {
    pub network: Network,
    pub challenges: HashMap<String, Challenge>,
    pub orders: HashMap<String, SandboxOrder>,
    pub exchanges: HashMap<String, SandboxExchange>,
    /// BTC price per currency, for new exchanges.
    pub prices: HashMap<Currency, Decimal>,
    /// Lightning payouts accepted but not finished (while payouts are held), by exchange.
    pub payouts_in_progress: HashMap<String, Value>,
}

impl State {
    pub fn new(network: Network) -> Self {
        let prices = [
            (Currency::Eur, Decimal::new(60_000, 0)),
            (Currency::Chf, Decimal::new(57_000, 0)),
            (Currency::Gbp, Decimal::new(52_000, 0)),
        ]
        .into_iter()
        .collect();
        State {
            network,
            challenges: HashMap::new(),
            orders: HashMap::new(),
            exchanges: HashMap::new(),
            prices,
            payouts_in_progress: HashMap::new(),
        }
    }

    pub fn create_challenge(&mut self, now: DateTime<Utc>) -> Challenge {
        let challenge = Challenge {
            id: random_uuid(),
            token: random_token(8),
            expires_on: now + Duration::hours(24),
            completed_on: None,
        };
        self.challenges
            .insert(challenge.id.clone(), challenge.clone());
        challenge
    }

    /// Creates a buy order after Pocket's checks: fee range, currency, IBAN, a challenge that
    /// exists, is unused and unexpired, and a signature that verifies for the payout.
    pub fn create_order(&mut self, body: &Value, now: DateTime<Utc>) -> Result<Value, Refusal> {
        if body["type"] == "sell" {
            return Err(Refusal::bad(
                "sell_not_enabled",
                "sell orders must be enabled for your client id first; contact Pocket",
            ));
        }
        let fee_rate = match &body["fee_rate"] {
            Value::Number(n) => FeeRate::from_str(&n.to_string())
                .map_err(|e| Refusal::bad("fee_rate", format!("fee_rate: {e}")))?,
            other => {
                return Err(Refusal::bad(
                    "fee_rate",
                    format!("fee_rate must be a number, got {other}"),
                ));
            }
        };
        let pm = &body["payment_method"];
        let currency = pm["currency"]
            .as_str()
            .ok_or_else(|| Refusal::bad("currency", "payment_method.currency is missing"))
            .and_then(|c| {
                if c != c.to_ascii_lowercase() {
                    return Err(Refusal::bad(
                        "currency",
                        format!("payment_method.currency must be lowercase, got {c}"),
                    ));
                }
                Currency::from_str(c)
                    .map_err(|e| Refusal::bad("currency", format!("payment_method.currency: {e}")))
            })?;
        let iban = pm["debitor_iban"]
            .as_str()
            .ok_or_else(|| Refusal::bad("debitor_iban", "payment_method.debitor_iban is missing"))
            .and_then(|i| {
                Iban::from_str(i).map_err(|e| {
                    Refusal::bad("debitor_iban", format!("payment_method.debitor_iban: {e}"))
                })
            })?;
        let po = &body["payout_method"];
        let message = po["message"]
            .as_str()
            .ok_or_else(|| Refusal::bad("message", "payout_method.message is missing"))?;
        let signature = po["signature"]
            .as_str()
            .ok_or_else(|| Refusal::bad("signature", "payout_method.signature is missing"))?;
        let challenge_id = self.challenge_in(message, now)?;

        let payout = if let Some(node) = po["node_pubkey"].as_str() {
            let key = bitcoin::secp256k1::PublicKey::from_str(node).map_err(|_| {
                Refusal::bad(
                    "node_pubkey",
                    format!("payout_method.node_pubkey {node} is not a public key"),
                )
            })?;
            verify_node_signature(message, signature, &key).map_err(|e| {
                Refusal::bad(
                    "invalid_signature",
                    format!("the signature does not prove the node key: {e}"),
                )
            })?;
            Payout::Lightning { node_pubkey: key }
        } else {
            let address_text = po["bitcoin_address"].as_str().ok_or_else(|| {
                Refusal::bad(
                    "bitcoin_address",
                    "payout_method needs bitcoin_address or node_pubkey",
                )
            })?;
            let address = Address::from_str(address_text)
                .ok()
                .and_then(|a| a.require_network(self.network).ok())
                .ok_or_else(|| {
                    Refusal::bad(
                        "bitcoin_address",
                        format!("{address_text} is not a {} address", self.network),
                    )
                })?;
            verify_message(&address, message, signature).map_err(|e| {
                Refusal::bad(
                    "invalid_signature",
                    format!("the signature does not prove the address: {e}"),
                )
            })?;
            match po["extended_public_key"].as_str() {
                Some(xpub) => {
                    let path_text = po["derivation_path"].as_str().ok_or_else(|| {
                        Refusal::bad(
                            "derivation_path",
                            "extended_public_key needs derivation_path",
                        )
                    })?;
                    let path = DerivationPath::from_str(path_text).map_err(|_| {
                        Refusal::bad(
                            "derivation_path",
                            format!("{path_text} is not a derivation path"),
                        )
                    })?;
                    let derived = address_at_path(xpub, &path, self.network).map_err(|e| {
                        Refusal::bad("extended_public_key", format!("extended_public_key: {e}"))
                    })?;
                    if derived != address {
                        return Err(Refusal::bad(
                            "derivation_path",
                            format!(
                                "{address_text} is not the address at {path_text} under the extended public key (that is {derived})"
                            ),
                        ));
                    }
                    let children: Vec<ChildNumber> = path.into_iter().copied().collect();
                    let (last, chain) = children
                        .split_last()
                        .expect("a derivable path has a last step");
                    let ChildNumber::Normal { index } = last else {
                        unreachable!("address_at_path refuses hardened ends")
                    };
                    Payout::Xpub {
                        extended_public_key: xpub.to_string(),
                        chain: DerivationPath::from(chain.to_vec()),
                        next: *index,
                    }
                }
                None => Payout::Address(address_text.to_string()),
            }
        };

        let id = random_uuid();
        let mut order = json!({
            "id": id,
            "active": body["active"].as_bool().unwrap_or(true),
            "created_on": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "fee_rate": number(fee_rate.value()),
            "payment_method": payment_method(currency, &iban),
            "payout_method": po.clone(),
        });
        if let Some(affiliate) = body.get("affiliate_id") {
            order["affiliate_id"] = affiliate.clone();
        }
        self.challenges
            .get_mut(&challenge_id)
            .expect("checked above")
            .completed_on = Some(now);
        self.orders.insert(
            id,
            SandboxOrder {
                json: order.clone(),
                payout,
                currency,
            },
        );
        Ok(order)
    }

    /// The challenge whose token the message carries; it must be unused and unexpired.
    fn challenge_in(&self, message: &str, now: DateTime<Utc>) -> Result<String, Refusal> {
        let challenge = self
            .challenges
            .values()
            .find(|c| message.contains(&c.token))
            .ok_or_else(|| {
                Refusal::bad(
                    "challenge_not_found",
                    "the message contains no token of a challenge of yours",
                )
            })?;
        if challenge.completed_on.is_some() {
            return Err(Refusal::bad(
                "challenge_used",
                "this challenge was already used for an order; create a new one",
            ));
        }
        if challenge.expires_on <= now {
            return Err(Refusal::bad(
                "challenge_expired",
                "this challenge has expired; create a new one",
            ));
        }
        Ok(challenge.id.clone())
    }

    pub fn patch_order(&mut self, id: &str, body: &Value) -> Result<Value, Refusal> {
        let order = self
            .orders
            .get_mut(id)
            .ok_or_else(|| Refusal::not_found("order", id))?;
        let Some(fields) = body.as_object() else {
            return Err(Refusal::bad("invalid_body", "expected a JSON object"));
        };
        if let Some(other) = fields
            .keys()
            .find(|k| !matches!(k.as_str(), "active" | "fee_rate"))
        {
            return Err(Refusal::bad(
                "not_patchable",
                format!("{other} cannot be changed; only active and fee_rate can"),
            ));
        }
        if let Some(active) = fields.get("active") {
            let active = active
                .as_bool()
                .ok_or_else(|| Refusal::bad("active", "active must be true or false"))?;
            order.json["active"] = json!(active);
        }
        if let Some(rate) = fields.get("fee_rate") {
            let rate = FeeRate::from_str(&rate.to_string())
                .map_err(|e| Refusal::bad("fee_rate", format!("fee_rate: {e}")))?;
            order.json["fee_rate"] = number(rate.value());
        }
        Ok(order.json.clone())
    }

    /// A bank payment arrives for an order: the exchange executes at the current price, or,
    /// with `interrupt`, Pocket holds it before executing (`executed_on`, `amount`, `rate`,
    /// `fee` null) until the buyer identifies.
    pub fn pay(
        &mut self,
        order_id: &str,
        cost: Decimal,
        now: DateTime<Utc>,
        interrupt: Option<&str>,
    ) -> Result<Value, Refusal> {
        let order = self
            .orders
            .get(order_id)
            .ok_or_else(|| Refusal::not_found("order", order_id))?;
        if cost <= Decimal::ZERO {
            return Err(Refusal::bad("amount", "the payment must be more than 0"));
        }
        let cost = fixed(cost.round_dp(2), 2);
        let fee_rate =
            Decimal::from_str_exact(&order.json["fee_rate"].to_string()).unwrap_or(Decimal::ZERO);
        let id = random_uuid();
        let mut json = json!({
            "id": id,
            "order_id": order_id,
            "fee_rate": number(fee_rate),
            "pair": format!("btc/{}", order.currency.code()),
            "type": "buy",
            "cost": number(cost),
            "executed_on": null,
            "amount": null,
            "rate": null,
            "fee": null,
            "action": null,
            "reason": null,
            "payout": null,
        });
        if !order.json["active"].as_bool().unwrap_or(true) {
            // An inactive order does not buy: the payment goes back.
            json["reason"] = json!({ "code": "order_inactive" });
        } else if let Some(variant) = interrupt {
            set_action(&mut json, variant);
        } else {
            execute(&mut json, self.prices[&order.currency], now);
        }
        self.exchanges.insert(
            id,
            SandboxExchange {
                json: json.clone(),
                order_id: order_id.to_string(),
            },
        );
        Ok(json)
    }

    /// Pocket interrupts an exchange that has not executed: it is held (its execution fields
    /// null) until the buyer does what the action asks.
    pub fn interrupt(&mut self, id: &str, variant: &str) -> Result<Value, Refusal> {
        let exchange = self.open_exchange(id)?;
        for field in ["executed_on", "amount", "rate", "fee"] {
            exchange.json[field] = Value::Null;
        }
        set_action(&mut exchange.json, variant);
        Ok(exchange.json.clone())
    }

    /// The buyer identified: the interrupted exchange executes now, at the current price.
    pub fn identify(&mut self, id: &str, now: DateTime<Utc>) -> Result<Value, Refusal> {
        let exchange = self
            .exchanges
            .get(id)
            .ok_or_else(|| Refusal::not_found("exchange", id))?;
        if exchange.state() != ExchangeState::Interrupted {
            return Err(Refusal::bad(
                "not_interrupted",
                format!(
                    "exchange {id} is {}, not interrupted",
                    exchange.state().name()
                ),
            ));
        }
        let currency = self
            .orders
            .get(&exchange.order_id)
            .map(|o| o.currency)
            .ok_or_else(|| Refusal::not_found("order", &exchange.order_id))?;
        let price = self.prices[&currency];
        let exchange = self.exchanges.get_mut(id).expect("checked above");
        exchange.json["action"] = Value::Null;
        exchange.json["reason"] = Value::Null;
        execute(&mut exchange.json, price, now);
        Ok(exchange.json.clone())
    }

    pub fn refund(&mut self, id: &str, reason: &str) -> Result<Value, Refusal> {
        let exchange = self.open_exchange(id)?;
        exchange.json["action"] = Value::Null;
        exchange.json["reason"] = json!({ "code": reason });
        Ok(exchange.json.clone())
    }

    /// Settles an on-chain exchange: a payout to the order's address, or to the next address
    /// of its xpub.
    pub fn settle(&mut self, id: &str, now: DateTime<Utc>) -> Result<Value, Refusal> {
        let network = self.network;
        let order_id = self.open_exchange(id)?.order_id.clone();
        let order = self
            .orders
            .get_mut(&order_id)
            .ok_or_else(|| Refusal::not_found("order", &order_id))?;
        let (address, path) = match &mut order.payout {
            Payout::Address(address) => (address.clone(), Value::Null),
            Payout::Xpub {
                extended_public_key,
                chain,
                next,
            } => {
                let path = chain.child(ChildNumber::Normal { index: *next });
                let address = address_at_path(extended_public_key, &path, network)
                    .map_err(|e| Refusal::bad("derivation", e.to_string()))?;
                *next += 1;
                (address.to_string(), json!(path.to_string()))
            }
            Payout::Lightning { .. } => {
                // A held Lightning payout completes now.
                let payout = self.payouts_in_progress.remove(id).ok_or_else(|| {
                    Refusal::bad(
                        "lightning_order",
                        "exchanges of Lightning orders settle when they are patched with an invoice or a channel",
                    )
                })?;
                let exchange = self.exchanges.get_mut(id).expect("checked above");
                exchange.json["payout"] = payout;
                return Ok(exchange.json.clone());
            }
        };
        let currency = order.currency;
        let price = self.prices[&currency];
        let exchange = self.exchanges.get_mut(id).expect("checked above");
        if exchange.json["executed_on"].is_null() {
            // Interrupted -> settled: Pocket executes and pays out at once; the old action
            // stays in the exchange, as it does at Pocket.
            execute(&mut exchange.json, price, now);
        }
        let amount =
            Decimal::from_str_exact(&exchange.json["amount"].to_string()).unwrap_or_default();
        let network_fee = Decimal::new(190, 8);
        exchange.json["payout"] = json!({
            "txid": random_hex(32),
            "outpoint": 1,
            "bitcoin_address": address,
            "derivation_path": path,
            "block_height": null,
            "confirmed": false,
            "fee": number(network_fee),
            "amount": number((amount - network_fee).max(Decimal::ZERO)),
        });
        Ok(exchange.json.clone())
    }

    /// An exchange that may still change (executed or interrupted).
    fn open_exchange(&mut self, id: &str) -> Result<&mut SandboxExchange, Refusal> {
        let exchange = self
            .exchanges
            .get_mut(id)
            .ok_or_else(|| Refusal::not_found("exchange", id))?;
        match exchange.state() {
            ExchangeState::Executed | ExchangeState::Interrupted => Ok(exchange),
            state => Err(Refusal::bad(
                "already_completed",
                format!("exchange {id} is already {}", state.name()),
            )),
        }
    }
}

/// Fiat with 2 decimals, bitcoin with 8, as Pocket writes them.
fn fixed(mut d: Decimal, scale: u32) -> Decimal {
    d.rescale(scale);
    d
}

/// Executes `exchange` (its `cost` and `fee_rate` set) at `price`, as the reference's
/// arithmetic does: the fee is taken from the cost, the rest buys bitcoin, rounded down.
fn execute(exchange: &mut Value, price: Decimal, now: DateTime<Utc>) {
    let cost = Decimal::from_str_exact(&exchange["cost"].to_string()).unwrap_or(Decimal::ZERO);
    let fee_rate =
        Decimal::from_str_exact(&exchange["fee_rate"].to_string()).unwrap_or(Decimal::ZERO);
    let rate = fixed(price, 2);
    let fee = fixed(
        (cost * fee_rate).round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero),
        2,
    );
    let amount = fixed(
        ((cost - fee) / rate).round_dp_with_strategy(8, RoundingStrategy::ToZero),
        8,
    );
    exchange["executed_on"] = json!(now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    exchange["amount"] = number(amount);
    exchange["rate"] = number(rate);
    exchange["fee"] = number(fee);
}

/// The action of an interrupted exchange, in one of the two documented shapes.
fn set_action(exchange: &mut Value, variant: &str) {
    exchange["action"] = match variant {
        // The shape of the official Postman collection, which also sets a reason.
        "identify" => {
            json!({ "code": "identify", "url": "https://app.pocketbitcoin.com/onboarding" })
        }
        // The shape of the developer walkthrough (seed 001).
        _ => json!({ "code": "identification_required", "identification_id": random_uuid() }),
    };
    exchange["reason"] = if variant == "identify" {
        json!({ "code": "identification_required" })
    } else {
        Value::Null
    };
}

/// Pocket's bank details (from the reference's example order) with a fresh creditor reference.
fn payment_method(currency: Currency, debitor: &Iban) -> Value {
    let reference = creditor_reference();
    let creditor_iban = "CH9400778214768302002";
    let swiss = (currency == Currency::Chf).then(|| {
        [
            "SPC",
            "0200",
            "1",
            creditor_iban,
            "S",
            "Pocket App",
            "Industriestrasse",
            "33",
            "5242",
            "Lupfig",
            "CH",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "CHF",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "SCOR",
            &reference,
            "Pocket standing order",
            "EPD",
        ]
        .join("\n")
    });
    json!({
        "currency": currency.code(),
        "debitor_iban": debitor.as_str(),
        "creditor_reference": reference,
        "creditor_iban": creditor_iban,
        "creditor_bank_name": "Luzerner Kantonalbank",
        "creditor_bank_street": "Pilatusstrasse 12",
        "creditor_bank_postal_code": "6002",
        "creditor_bank_town": "Luzern",
        "creditor_bank_country": "CH",
        "creditor_bank_bic": "LUKBCH2260A",
        "creditor_name": "Pocket App",
        "creditor_street": "Industriestrasse 33",
        "creditor_postal_code": "5242",
        "creditor_town": "Lupfig",
        "creditor_country": "CH",
        "swiss_qr_bill_payload": swiss,
    })
}

/// An ISO 11649 creditor reference (`RF` + check digits + reference), as banks validate it.
pub fn creditor_reference() -> String {
    let body = random_token(8).to_ascii_uppercase();
    let numeric: String = format!("{body}RF00")
        .chars()
        .map(|c| match c.to_digit(36) {
            Some(d) => d.to_string(),
            None => String::new(),
        })
        .collect();
    let remainder = numeric
        .bytes()
        .fold(0u32, |acc, b| (acc * 10 + u32::from(b - b'0')) % 97);
    format!("RF{:02}{body}", 98 - remainder)
}

/// Randomness for ids and tokens: the standard library's randomly keyed hasher is enough for a
/// simulator (nothing here protects money).
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(crate::clock::system_since_epoch().as_nanos());
    h.finish()
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", random_u64() as u8))
        .collect()
}

pub fn random_uuid() -> String {
    let h = random_hex(16);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    (0..len)
        .map(|_| ALPHABET[(random_u64() % ALPHABET.len() as u64) as usize] as char)
        .collect()
}

/// The sandbox's memory as JSON, for the file that lets `satflow sandbox` restart without
/// forgetting the user's orders (`to_json` / `from_json` read each other back exactly).
impl State {
    pub fn to_json(&self) -> Value {
        let orders: serde_json::Map<String, Value> = self
            .orders
            .iter()
            .map(|(id, o)| {
                let payout = match &o.payout {
                    Payout::Address(a) => json!({ "address": a }),
                    Payout::Xpub {
                        extended_public_key,
                        chain,
                        next,
                    } => json!({ "xpub": extended_public_key, "chain": chain.to_string(), "next": next }),
                    Payout::Lightning { node_pubkey } => {
                        json!({ "node_pubkey": node_pubkey.to_string() })
                    }
                };
                (
                    id.clone(),
                    json!({ "json": o.json, "payout": payout, "currency": o.currency.code() }),
                )
            })
            .collect();
        let exchanges: serde_json::Map<String, Value> = self
            .exchanges
            .iter()
            .map(|(id, e)| {
                (
                    id.clone(),
                    json!({ "json": e.json, "order_id": e.order_id }),
                )
            })
            .collect();
        let prices: serde_json::Map<String, Value> = self
            .prices
            .iter()
            .map(|(c, p)| (c.code().to_string(), Value::String(p.to_string())))
            .collect();
        json!({
            "challenges": self.challenges,
            "orders": orders,
            "exchanges": exchanges,
            "prices": prices,
            "payouts_in_progress": self.payouts_in_progress,
        })
    }

    /// Replaces the memory with a `to_json` document; what is malformed is named.
    pub fn restore(&mut self, doc: &Value) -> Result<(), String> {
        let challenges: HashMap<String, Challenge> =
            serde_json::from_value(doc["challenges"].clone())
                .map_err(|e| format!("challenges: {e}"))?;
        let mut orders = HashMap::new();
        for (id, o) in doc["orders"].as_object().into_iter().flatten() {
            let bad = |what: &str| format!("orders.{id}: {what}");
            let p = &o["payout"];
            let payout = if let Some(a) = p["address"].as_str() {
                Payout::Address(a.to_string())
            } else if let Some(xpub) = p["xpub"].as_str() {
                Payout::Xpub {
                    extended_public_key: xpub.to_string(),
                    chain: p["chain"]
                        .as_str()
                        .and_then(|c| DerivationPath::from_str(c).ok())
                        .ok_or_else(|| bad("payout.chain is not a derivation path"))?,
                    next: p["next"]
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| bad("payout.next is not an index"))?,
                }
            } else {
                Payout::Lightning {
                    node_pubkey: p["node_pubkey"]
                        .as_str()
                        .and_then(|k| bitcoin::secp256k1::PublicKey::from_str(k).ok())
                        .ok_or_else(|| bad("payout has no address, xpub or node_pubkey"))?,
                }
            };
            let currency = o["currency"]
                .as_str()
                .and_then(|c| Currency::from_str(c).ok())
                .ok_or_else(|| bad("currency is not eur, chf or gbp"))?;
            orders.insert(
                id.clone(),
                SandboxOrder {
                    json: o["json"].clone(),
                    payout,
                    currency,
                },
            );
        }
        let mut exchanges = HashMap::new();
        for (id, e) in doc["exchanges"].as_object().into_iter().flatten() {
            let order_id = e["order_id"]
                .as_str()
                .ok_or_else(|| format!("exchanges.{id}: order_id is missing"))?;
            exchanges.insert(
                id.clone(),
                SandboxExchange {
                    json: e["json"].clone(),
                    order_id: order_id.to_string(),
                },
            );
        }
        let mut prices = self.prices.clone();
        for (code, p) in doc["prices"].as_object().into_iter().flatten() {
            let currency = Currency::from_str(code).map_err(|e| format!("prices.{code}: {e}"))?;
            let price = p
                .as_str()
                .and_then(|p| Decimal::from_str(p).ok())
                .ok_or_else(|| format!("prices.{code} is not a number"))?;
            prices.insert(currency, price);
        }
        let payouts_in_progress: HashMap<String, Value> =
            serde_json::from_value(doc["payouts_in_progress"].clone())
                .map_err(|e| format!("payouts_in_progress: {e}"))?;
        self.challenges = challenges;
        self.orders = orders;
        self.exchanges = exchanges;
        self.prices = prices;
        self.payouts_in_progress = payouts_in_progress;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creditor_references_pass_the_iso_11649_check() {
        for _ in 0..20 {
            let r = creditor_reference();
            let moved = format!("{}{}", &r[4..], &r[..4]);
            let numeric: String = moved
                .chars()
                .map(|c| c.to_digit(36).unwrap().to_string())
                .collect();
            let rem = numeric
                .bytes()
                .fold(0u32, |acc, b| (acc * 10 + u32::from(b - b'0')) % 97);
            assert_eq!(rem, 1, "{r}");
        }
        // The reference in Pocket's walkthrough passes the same check.
        let numeric: String = "GW8K79RF18"
            .chars()
            .map(|c| c.to_digit(36).unwrap().to_string())
            .collect();
        assert_eq!(
            numeric
                .bytes()
                .fold(0u32, |acc, b| (acc * 10 + u32::from(b - b'0')) % 97),
            1
        );
    }

    #[test]
    fn an_executed_exchange_follows_the_reference_arithmetic() {
        let mut state = State::new(Network::Bitcoin);
        state.prices.insert(Currency::Eur, Decimal::new(20_000, 0));
        state.orders.insert(
            "o".into(),
            SandboxOrder {
                json: json!({"id": "o", "active": true, "fee_rate": number(Decimal::new(12, 3))}),
                payout: Payout::Address("bc1q5a7uxjq6z5l2wguzu77rzmzk6tyx24yvq5r4fj".into()),
                currency: Currency::Eur,
            },
        );
        let e = state
            .pay(
                "o",
                Decimal::new(10000, 2),
                crate::clock::system_now(),
                None,
            )
            .unwrap();
        assert_eq!(e["fee"].to_string(), "1.20");
        assert_eq!(e["amount"].to_string(), "0.00494000");
        assert_eq!(e["rate"].to_string(), "20000.00");
        assert_eq!(e["cost"].to_string(), "100.00");
    }
}
