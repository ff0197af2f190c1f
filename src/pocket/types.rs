//! Pocket's resources as satflow reads and writes them: challenges, orders, exchanges, and the
//! error codes of its API.
//!
//! Responses are read tolerantly (unknown fields are kept, both shapes of an interrupted
//! exchange are understood) and exactly (money is a `Decimal` made from the JSON number's own
//! text). Requests write money as JSON numbers from the decimal's text, never through f64.
//! Key names that no public source confirms are kept in one place, marked "Assumed".

use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value, json};

use crate::domain::{Currency, FeeRate, Iban};

/// A one-time token to include in the message that proves ownership of a payout address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    pub id: String,
    pub token: String,
    pub expires_on: DateTime<Utc>,
    pub completed_on: Option<DateTime<Utc>>,
}

impl Challenge {
    /// The message the user signs: it must contain the token.
    pub fn message(&self) -> String {
        format!("I confirm my bitcoin wallet. [{}]", self.token)
    }
}

/// How an order's bitcoin is paid out, with the proof that the user controls it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewPayout {
    Address {
        bitcoin_address: String,
        message: String,
        signature: String,
    },
    /// Pocket derives a fresh address for every payout from the xpub, starting at
    /// `derivation_path` (the path of `bitcoin_address`).
    Xpub {
        bitcoin_address: String,
        message: String,
        signature: String,
        extended_public_key: String,
        derivation_path: String,
    },
    Lightning {
        node_pubkey: String,
        message: String,
        signature: String,
        lightning_address: Option<String>,
    },
}

impl NewPayout {
    fn to_json(&self) -> Value {
        match self {
            NewPayout::Address {
                bitcoin_address,
                message,
                signature,
            } => {
                json!({ "bitcoin_address": bitcoin_address, "message": message, "signature": signature })
            }
            NewPayout::Xpub {
                bitcoin_address,
                message,
                signature,
                extended_public_key,
                derivation_path,
            } => json!({
                "bitcoin_address": bitcoin_address, "message": message, "signature": signature,
                "extended_public_key": extended_public_key, "derivation_path": derivation_path,
            }),
            NewPayout::Lightning {
                node_pubkey,
                message,
                signature,
                lightning_address,
            } => {
                let mut v = json!({ "node_pubkey": node_pubkey, "message": message, "signature": signature });
                if let Some(address) = lightning_address {
                    v["lightning_address"] = json!(address);
                }
                v
            }
        }
    }
}

/// A buy order to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBuyOrder {
    pub active: bool,
    pub fee_rate: FeeRate,
    pub currency: Currency,
    pub debitor_iban: Iban,
    pub payout: NewPayout,
    pub affiliate_id: Option<String>,
}

impl NewBuyOrder {
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "active": self.active,
            "fee_rate": number(self.fee_rate.value()),
            "payment_method": { "currency": self.currency.code(), "debitor_iban": self.debitor_iban.as_str() },
            "payout_method": self.payout.to_json(),
        });
        if let Some(id) = &self.affiliate_id {
            v["affiliate_id"] = json!(id);
        }
        v
    }
}

/// A one-time sell order. Assumed shape (the reference shows no example): the bitcoin comes
/// from the user, the fiat goes to `creditor_iban`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSellOrder {
    pub fee_rate: FeeRate,
    pub currency: Currency,
    pub creditor_iban: Iban,
    pub affiliate_id: Option<String>,
}

impl NewSellOrder {
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "type": "sell",
            "fee_rate": number(self.fee_rate.value()),
            "payment_method": { "currency": self.currency.code() },
            "payout_method": { "iban": self.creditor_iban.as_str() },
        });
        if let Some(id) = &self.affiliate_id {
            v["affiliate_id"] = json!(id);
        }
        v
    }
}

/// The two fields of an order that can change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OrderPatch {
    pub active: Option<bool>,
    pub fee_rate: Option<FeeRate>,
}

impl OrderPatch {
    pub fn is_empty(&self) -> bool {
        self.active.is_none() && self.fee_rate.is_none()
    }

    pub fn to_json(&self) -> Value {
        let mut v = Map::new();
        if let Some(active) = self.active {
            v.insert("active".into(), json!(active));
        }
        if let Some(rate) = self.fee_rate {
            v.insert("fee_rate".into(), number(rate.value()));
        }
        Value::Object(v)
    }
}

/// How an exchange of a Lightning order is to be paid out. Assumed key names (no public source
/// shows the bodies): kept here and nowhere else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExchangePayout {
    Invoice(String),
    /// Open a channel to `PUBKEY@HOST:PORT` and push the amount.
    Channel(String),
}

impl ExchangePayout {
    pub fn to_json(&self) -> Value {
        match self {
            ExchangePayout::Invoice(invoice) => json!({ "invoice": invoice }),
            ExchangePayout::Channel(address) => json!({ "node_address": address }),
        }
    }
}

/// An order as Pocket returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    #[serde(default)]
    pub active: bool,
    pub created_on: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "money")]
    pub fee_rate: Option<Decimal>,
    #[serde(default)]
    pub payment_method: Value,
    #[serde(default)]
    pub payout_method: Value,
    /// Everything else Pocket sent, kept as received.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Order {
    pub fn currency(&self) -> Option<&str> {
        self.payment_method["currency"].as_str()
    }
}

/// Where an exchange stands in Pocket's lifecycle:
///
/// ```text
///             ┌──────────────► refunded (final)
///  interrupted ──► executed ──► settled (final)
///       └──────────────────────► settled
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExchangeState {
    Executed,
    Settled,
    Interrupted,
    Refunded,
}

impl ExchangeState {
    pub const ALL: [ExchangeState; 4] = [
        ExchangeState::Interrupted,
        ExchangeState::Executed,
        ExchangeState::Settled,
        ExchangeState::Refunded,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ExchangeState::Executed => "executed",
            ExchangeState::Settled => "settled",
            ExchangeState::Interrupted => "interrupted",
            ExchangeState::Refunded => "refunded",
        }
    }

    /// The state a webhook event names (`exchange.settled` …); `None` for an event satflow does
    /// not know, whose exchange then follows its fields.
    pub fn of_event(event: &str) -> Option<ExchangeState> {
        let name = event.strip_prefix("exchange.")?;
        ExchangeState::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The webhook event that announces this state.
    pub fn event(self) -> &'static str {
        match self {
            ExchangeState::Executed => "exchange.executed",
            ExchangeState::Settled => "exchange.settled",
            ExchangeState::Interrupted => "exchange.interrupted",
            ExchangeState::Refunded => "exchange.refunded",
        }
    }

    /// How far along the lifecycle: a state never moves to a lower rank. Pocket interrupts
    /// *before* it executes, so interrupted is the lowest; settled and refunded are both final
    /// (of two final states, the first one learned stays).
    pub fn rank(self) -> u8 {
        match self {
            ExchangeState::Interrupted => 0,
            ExchangeState::Executed => 1,
            ExchangeState::Settled | ExchangeState::Refunded => 2,
        }
    }

    pub fn is_final(self) -> bool {
        self.rank() == 2
    }

    /// The stages an exchange in this state has certainly been through besides this one:
    /// a settled exchange was executed (Pocket pays out what it bought), even when the
    /// `executed` webhook never came or comes later.
    pub fn implies(self) -> &'static [ExchangeState] {
        match self {
            ExchangeState::Settled => &[ExchangeState::Executed],
            _ => &[],
        }
    }
}

/// An exchange as Pocket returns it (GET) or sends it (webhook payloads, which call the id
/// `exchange_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exchange {
    #[serde(alias = "exchange_id")]
    pub id: String,
    pub order_id: Option<String>,
    #[serde(default, deserialize_with = "money")]
    pub fee_rate: Option<Decimal>,
    pub pair: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "money")]
    pub cost: Option<Decimal>,
    pub executed_on: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "money")]
    pub amount: Option<Decimal>,
    #[serde(default, deserialize_with = "money")]
    pub rate: Option<Decimal>,
    #[serde(default, deserialize_with = "money")]
    pub fee: Option<Decimal>,
    pub action: Option<Action>,
    pub reason: Option<Reason>,
    pub payout: Option<Payout>,
    #[serde(rename = "welcomeReward")]
    pub welcome_reward: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Exchange {
    /// The state read from which fields are set, for a read-back (`GET /v1/exchanges/{id}`,
    /// which names no state): a `payout` means settled even when an old `action` is still
    /// there; a `reason` without an `action` means refunded (Pocket's own interrupted example
    /// carries both); an `action` means interrupted; none of them: executed. A webhook's event
    /// name is authoritative instead (see [`ExchangeState::of_event`]).
    pub fn state(&self) -> ExchangeState {
        // A JSON null reads as `None`: only a field with a value counts.
        if self.payout.is_some() {
            ExchangeState::Settled
        } else if self.action.is_some() {
            ExchangeState::Interrupted
        } else if self.reason.is_some() {
            ExchangeState::Refunded
        } else {
            ExchangeState::Executed
        }
    }

    /// Refuses what no real Pocket exchange looks like, before it reaches the state machine:
    /// ids that are not UUIDs (they end up in Pocket's URLs), BTC amounts that are negative,
    /// above 21 million or finer than a millisatoshi, fiat amounts that are negative or beyond
    /// any bank transfer, a fee rate outside 0..1.
    pub fn check(&self) -> Result<(), Refused> {
        if !is_uuid(&self.id) {
            return Err(Refused::new(
                "exchange_id",
                &self.id,
                "a UUID such as a2d75998-5ee5-4501-a4cf-4e3788732b7a",
            ));
        }
        if let Some(order) = &self.order_id
            && !is_uuid(order)
        {
            return Err(Refused::new(
                "order_id",
                order,
                "a UUID such as 64decab6-4129-4fe7-9f6e-1db68283f5ce",
            ));
        }
        check_btc("amount", self.amount)?;
        for (field, value) in [("cost", self.cost), ("rate", self.rate), ("fee", self.fee)] {
            check_fiat(field, value)?;
        }
        if let Some(rate) = self.fee_rate
            && (rate.is_sign_negative() || rate >= Decimal::ONE)
        {
            return Err(Refused::new(
                "fee_rate",
                &rate.to_string(),
                "a fraction between 0 and 1, such as 0.012",
            ));
        }
        for (name, object) in [
            ("payout", self.payout.as_ref().map(Payout::as_json)),
            ("welcomeReward", self.welcome_reward.as_ref()),
        ] {
            let Some(Value::Object(fields)) = object else {
                continue;
            };
            for key in ["amount", "fee"] {
                match fields.get(key) {
                    None | Some(Value::Null) => {}
                    Some(v @ (Value::Number(_) | Value::String(_))) => {
                        let text = match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        let field = format!("{name}.{key}");
                        let amount = parse_decimal(&text).map_err(|_| {
                            Refused::new(&field, &text, "an amount in BTC such as 0.00049381")
                        })?;
                        check_btc(&field, Some(amount))?;
                    }
                    Some(other) => {
                        return Err(Refused::new(
                            &format!("{name}.{key}"),
                            &other.to_string(),
                            "an amount in BTC such as 0.00049381",
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// How Pocket paid a settled exchange out (its `payout`): on chain (`txid`, `bitcoin_address`,
/// `outpoint`, …) or over Lightning. Kept exactly as received, unknown fields and all, and
/// written back byte for byte: the typed fields are read from it, never the other way round.
/// Reading never fails; amounts that are not amounts are refused by [`Exchange::check`], which
/// names the field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "Value", into = "Value")]
pub struct Payout {
    /// Pocket's name of the payout method (`type`), when it gives one (Lightning payouts).
    pub kind: Option<String>,
    /// The Lightning invoice Pocket paid, when it gives it.
    pub invoice: Option<String>,
    pub txid: Option<String>,
    pub bitcoin_address: Option<String>,
    /// In BTC, with every digit Pocket sent.
    pub amount: Option<Decimal>,
    /// In BTC, with every digit Pocket sent.
    pub fee: Option<Decimal>,
    raw: Value,
}

impl Payout {
    /// The payout as Pocket sent it.
    pub fn as_json(&self) -> &Value {
        &self.raw
    }

    /// Whether this is an on-chain payout (it names the address it paid).
    pub fn is_on_chain(&self) -> bool {
        self.bitcoin_address.is_some()
    }
}

impl From<Value> for Payout {
    fn from(raw: Value) -> Self {
        Payout {
            kind: text_field(&raw, "type"),
            invoice: text_field(&raw, "invoice"),
            txid: text_field(&raw, "txid"),
            bitcoin_address: text_field(&raw, "bitcoin_address"),
            amount: decimal_field(&raw, "amount"),
            fee: decimal_field(&raw, "fee"),
            raw,
        }
    }
}

impl From<Payout> for Value {
    fn from(p: Payout) -> Self {
        p.raw
    }
}

/// What Pocket asks of the user before an interrupted exchange can go on (its `action`). Both
/// shapes known are read: `{"code": "identify", "url": …}` (Pocket's Postman collection) and
/// `{"code": "identification_required", "identification_id": …}` (the API walkthrough). Kept
/// exactly as received; an action with a code satflow does not know keeps it in
/// [`ActionCode::Other`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "Value", into = "Value")]
pub struct Action {
    pub code: Option<ActionCode>,
    pub url: Option<String>,
    pub identification_id: Option<String>,
    raw: Value,
}

impl Action {
    /// The action as Pocket sent it.
    pub fn as_json(&self) -> &Value {
        &self.raw
    }
}

impl From<Value> for Action {
    fn from(raw: Value) -> Self {
        Action {
            code: text_field(&raw, "code").map(|c| ActionCode::from(c.as_str())),
            url: text_field(&raw, "url"),
            identification_id: text_field(&raw, "identification_id"),
            raw,
        }
    }
}

impl From<Action> for Value {
    fn from(a: Action) -> Self {
        a.raw
    }
}

/// An action's `code`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ActionCode {
    /// The Postman collection's code: identify at `url`.
    Identify,
    /// The walkthrough's code, with an `identification_id`.
    IdentificationRequired,
    /// A code satflow does not know, verbatim.
    Other(String),
}

impl ActionCode {
    pub fn as_str(&self) -> &str {
        match self {
            ActionCode::Identify => "identify",
            ActionCode::IdentificationRequired => "identification_required",
            ActionCode::Other(code) => code,
        }
    }
}

impl From<&str> for ActionCode {
    fn from(code: &str) -> Self {
        match code {
            "identify" => ActionCode::Identify,
            "identification_required" => ActionCode::IdentificationRequired,
            other => ActionCode::Other(other.to_string()),
        }
    }
}

/// Why Pocket refunded an exchange, failed its payout, or interrupted it (its `reason`). Kept
/// exactly as received; a code satflow does not know keeps it in [`ReasonCode::Other`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "Value", into = "Value")]
pub struct Reason {
    pub code: Option<ReasonCode>,
    raw: Value,
}

impl Reason {
    /// The reason as Pocket sent it.
    pub fn as_json(&self) -> &Value {
        &self.raw
    }
}

impl From<Value> for Reason {
    fn from(raw: Value) -> Self {
        Reason {
            code: text_field(&raw, "code").map(|c| ReasonCode::from(c.as_str())),
            raw,
        }
    }
}

impl From<Reason> for Value {
    fn from(r: Reason) -> Self {
        r.raw
    }
}

/// A reason's `code`: the refund and failure codes API-NOTES.md lists, the interruption code of
/// the Postman collection, and anything else verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReasonCode {
    ThresholdExceeded,
    OrderInactive,
    CompaniesUnsupported,
    CountryUnsupported,
    OtherRiskDetected,
    CustomerRequested,
    AccountNotMatching,
    PayoutExpired,
    /// Lightning payout failures, worth retrying.
    NoRoute,
    InvoiceExpired,
    Error,
    IdentificationRequired,
    /// A code satflow does not know, verbatim.
    Other(String),
}

impl ReasonCode {
    const KNOWN: [(ReasonCode, &'static str); 12] = [
        (ReasonCode::ThresholdExceeded, "threshold_exceeded"),
        (ReasonCode::OrderInactive, "order_inactive"),
        (ReasonCode::CompaniesUnsupported, "companies_unsupported"),
        (ReasonCode::CountryUnsupported, "country_unsupported"),
        (ReasonCode::OtherRiskDetected, "other_risk_detected"),
        (ReasonCode::CustomerRequested, "customer_requested"),
        (ReasonCode::AccountNotMatching, "account_not_matching"),
        (ReasonCode::PayoutExpired, "payout_expired"),
        (ReasonCode::NoRoute, "no_route"),
        (ReasonCode::InvoiceExpired, "invoice_expired"),
        (ReasonCode::Error, "error"),
        (
            ReasonCode::IdentificationRequired,
            "identification_required",
        ),
    ];

    pub fn as_str(&self) -> &str {
        match self {
            ReasonCode::Other(code) => code,
            known => ReasonCode::KNOWN
                .iter()
                .find(|(c, _)| c == known)
                .map_or("", |(_, text)| text),
        }
    }
}

impl From<&str> for ReasonCode {
    fn from(code: &str) -> Self {
        ReasonCode::KNOWN
            .into_iter()
            .find(|(_, text)| *text == code)
            .map_or_else(|| ReasonCode::Other(code.to_string()), |(c, _)| c)
    }
}

/// `object[key]` when it is a string.
fn text_field(object: &Value, key: &str) -> Option<String> {
    object.get(key).and_then(Value::as_str).map(str::to_string)
}

/// `object[key]` when it is an amount (a JSON number or a decimal string), with its digits.
fn decimal_field(object: &Value, key: &str) -> Option<Decimal> {
    match object.get(key)? {
        Value::Number(n) => parse_decimal(&n.to_string()).ok(),
        Value::String(s) => parse_decimal(s).ok(),
        _ => None,
    }
}

/// A field of an exchange refused at the edge: which, its value, and what would be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} is {value}; expected {expected}")]
pub struct Refused {
    pub field: String,
    pub value: String,
    pub expected: &'static str,
}

impl Refused {
    fn new(field: &str, value: &str, expected: &'static str) -> Self {
        // A hostile value is shown, but never at length.
        let value: String = value.chars().take(80).collect();
        Refused {
            field: field.to_string(),
            value: format!("{value:?}"),
            expected,
        }
    }
}

/// No more than 21 million bitcoin will ever exist.
pub const MAX_BTC: Decimal = Decimal::from_parts(21_000_000, 0, 0, false, 0);

/// Beyond any single bank transfer Pocket accepts, by orders of magnitude.
const MAX_FIAT: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);

fn check_btc(field: &str, amount: Option<Decimal>) -> Result<(), Refused> {
    let Some(amount) = amount else {
        return Ok(());
    };
    if amount.is_sign_negative() && !amount.is_zero()
        || amount > MAX_BTC
        || amount.normalize().scale() > 11
    {
        return Err(Refused::new(
            field,
            &amount.to_string(),
            "an amount in BTC between 0 and 21000000 with at most 11 decimals",
        ));
    }
    Ok(())
}

fn check_fiat(field: &str, amount: Option<Decimal>) -> Result<(), Refused> {
    let Some(amount) = amount else {
        return Ok(());
    };
    if amount.is_sign_negative() && !amount.is_zero()
        || amount > MAX_FIAT
        || amount.normalize().scale() > 8
    {
        return Err(Refused::new(
            field,
            &amount.to_string(),
            "an amount in the quote currency between 0 and 1000000000",
        ));
    }
    Ok(())
}

/// Pocket's ids are UUIDs (8-4-4-4-12 hexadecimal digits, either case).
pub fn is_uuid(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The documented error codes of Pocket's API (PATCH exchange), and any other as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiCode {
    InProgress,
    AlreadyCompleted,
    InvoiceAmount,
    InvoiceNetwork,
    InvoiceExpired,
    UnexpectedNodePubkey,
    InvalidInvoice,
    ChannelPayoutNotAllowed,
    NodeAddressRequired,
    Connect,
    Other(String),
}

impl ApiCode {
    pub fn parse(code: &str) -> ApiCode {
        match code {
            "in_progress" => ApiCode::InProgress,
            "already_completed" => ApiCode::AlreadyCompleted,
            "invoice_amount" => ApiCode::InvoiceAmount,
            "invoice_network" => ApiCode::InvoiceNetwork,
            "invoice_expired" => ApiCode::InvoiceExpired,
            "unexpected_node_pubkey" => ApiCode::UnexpectedNodePubkey,
            "invalid_invoice" => ApiCode::InvalidInvoice,
            "channel_payout_not_allowed" => ApiCode::ChannelPayoutNotAllowed,
            "node_address_required" => ApiCode::NodeAddressRequired,
            "connect" => ApiCode::Connect,
            other => ApiCode::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            ApiCode::InProgress => "in_progress",
            ApiCode::AlreadyCompleted => "already_completed",
            ApiCode::InvoiceAmount => "invoice_amount",
            ApiCode::InvoiceNetwork => "invoice_network",
            ApiCode::InvoiceExpired => "invoice_expired",
            ApiCode::UnexpectedNodePubkey => "unexpected_node_pubkey",
            ApiCode::InvalidInvoice => "invalid_invoice",
            ApiCode::ChannelPayoutNotAllowed => "channel_payout_not_allowed",
            ApiCode::NodeAddressRequired => "node_address_required",
            ApiCode::Connect => "connect",
            ApiCode::Other(code) => code,
        }
    }

    /// The code in an error body, at the top level (`{"code": …}`, `{"error": "…"}`) or nested
    /// (`{"error": {"code": …, "message": …}}`), read by the shared rule.
    pub fn from_body(body: &str) -> Option<(ApiCode, Option<String>)> {
        let (code, message) = crate::outcome::body_code(body)?;
        Some((ApiCode::parse(&code), message))
    }
}

/// A decimal as a JSON number with exactly its digits.
pub fn number(d: Decimal) -> Value {
    // With serde_json's arbitrary precision a number keeps its text; a decimal's text is
    // always a valid JSON number.
    Value::Number(
        serde_json::Number::from_str(&d.to_string()).expect("a decimal's text is a JSON number"),
    )
}

/// Money from a JSON number (read from its text, never through f64), a numeric string, or null.
pub fn money<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => parse_decimal(&n.to_string())
            .map(Some)
            .map_err(serde::de::Error::custom),
        Some(Value::String(s)) => parse_decimal(&s)
            .map(Some)
            .map_err(serde::de::Error::custom),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected an amount, found {other}"
        ))),
    }
}

/// A decimal from a JSON number's or string's text, plain or in scientific notation.
pub fn parse_decimal(text: &str) -> Result<Decimal, String> {
    Decimal::from_str_exact(text)
        .or_else(|_| Decimal::from_scientific(text))
        .map_err(|_| format!("\"{text}\" is not an amount"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_keeps_every_digit_of_the_json_text() {
        let e: Exchange = serde_json::from_str(
            r#"{"id":"x","order_id":"o","cost":100.00,"amount":0.00494000,"rate":20000.00,"fee":1.20,"fee_rate":0.012,
                "action":null,"reason":null,"payout":null,"welcomeReward":{"amount":0.0001},"surprise":[1]}"#,
        )
        .unwrap();
        assert_eq!(e.amount.unwrap().to_string(), "0.00494000");
        assert_eq!(e.cost.unwrap().to_string(), "100.00");
        assert_eq!(e.fee_rate.unwrap().to_string(), "0.012");
        assert_eq!(e.state(), ExchangeState::Executed);
        assert!(e.welcome_reward.is_some());
        assert_eq!(e.extra["surprise"], json!([1]));
        // Kept fields are written back as they came.
        let again = serde_json::to_value(&e).unwrap();
        assert_eq!(again["surprise"], json!([1]));
        assert_eq!(again["welcomeReward"]["amount"].to_string(), "0.0001");
    }

    #[test]
    fn state_follows_which_fields_are_set_and_action_wins() {
        let settled: Exchange =
            serde_json::from_str(r#"{"id":"x","payout":{"txid":"ab","amount":0.00049381}}"#)
                .unwrap();
        assert_eq!(settled.state(), ExchangeState::Settled);
        let both: Exchange = serde_json::from_str(
            r#"{"exchange_id":"x","action":{"code":"identify","url":"https://x/onboarding"},"reason":{"code":"identification_required"}}"#,
        )
        .unwrap();
        assert_eq!(both.id, "x");
        assert_eq!(both.state(), ExchangeState::Interrupted);
        let refunded: Exchange =
            serde_json::from_str(r#"{"id":"x","reason":{"code":"threshold_exceeded"}}"#).unwrap();
        assert_eq!(refunded.state(), ExchangeState::Refunded);
        let executed: Exchange =
            serde_json::from_str(r#"{"id":"x","action":null,"reason":null,"payout":null}"#)
                .unwrap();
        assert_eq!(executed.state(), ExchangeState::Executed);
    }

    #[test]
    fn a_read_back_with_a_payout_is_settled_even_with_an_old_action() {
        let e: Exchange = serde_json::from_str(
            r#"{"id":"x","action":{"code":"identify","url":"https://x/onboarding"},"reason":{"code":"identification_required"},
                "payout":{"txid":"ab","amount":0.1}}"#,
        )
        .unwrap();
        assert_eq!(e.state(), ExchangeState::Settled);
        assert_eq!(
            ExchangeState::of_event("exchange.interrupted"),
            Some(ExchangeState::Interrupted)
        );
        assert_eq!(ExchangeState::of_event("exchange.payout_scheduled"), None);
        assert!(ExchangeState::Interrupted.rank() < ExchangeState::Executed.rank());
        assert!(ExchangeState::Executed.rank() < ExchangeState::Settled.rank());
        assert!(ExchangeState::Refunded.is_final() && ExchangeState::Settled.is_final());
    }

    /// The payloads of Pocket's public documents (tests/fixtures/pocket/README.md says where
    /// each comes from) parse exactly, pass the edge and show the state they document.
    #[test]
    fn the_documented_payloads_parse_exactly_and_pass_the_edge() {
        let payload = |text: &str| -> (Option<String>, Exchange) {
            let v: Value = serde_json::from_str(text).unwrap();
            match v.get("event") {
                Some(event) => (
                    event.as_str().map(str::to_string),
                    serde_json::from_value(v["payload"].clone()).unwrap(),
                ),
                None => (None, serde_json::from_value(v).unwrap()),
            }
        };
        for (text, event, state) in [
            (
                include_str!("../../tests/fixtures/pocket/executed_exchange.json"),
                None,
                ExchangeState::Executed,
            ),
            (
                include_str!("../../tests/fixtures/pocket/settled_exchange.json"),
                None,
                ExchangeState::Settled,
            ),
            (
                include_str!("../../tests/fixtures/pocket/interrupted_webhook.json"),
                Some("exchange.interrupted"),
                ExchangeState::Interrupted,
            ),
            (
                include_str!("../../tests/fixtures/pocket/refunded_webhook.json"),
                Some("exchange.refunded"),
                ExchangeState::Refunded,
            ),
            (
                include_str!("../../tests/fixtures/pocket/interrupted_exchange_postman.json"),
                None,
                ExchangeState::Interrupted,
            ),
            (
                include_str!("../../tests/fixtures/pocket/executed_webhook_welcome_reward.json"),
                Some("exchange.executed"),
                ExchangeState::Executed,
            ),
        ] {
            assert!(text.contains('\t'), "the fixtures keep the documents' tabs");
            let (got_event, e) = payload(text);
            assert_eq!(got_event.as_deref(), event);
            assert_eq!(e.state(), state, "{text}");
            if let Some(event) = event {
                assert_eq!(ExchangeState::of_event(event), Some(state));
            }
            assert_eq!(e.id, "a2d75998-5ee5-4501-a4cf-4e3788732b7a");
            assert_eq!(e.cost.unwrap().to_string(), "100.00");
            assert_eq!(e.fee_rate.unwrap().to_string(), "0.012");
            e.check().unwrap();
            if state == ExchangeState::Executed || state == ExchangeState::Settled {
                assert_eq!(e.amount.unwrap().to_string(), "0.00494000");
                assert_eq!(e.rate.unwrap().to_string(), "20000.00");
                assert_eq!(e.fee.unwrap().to_string(), "1.20");
            } else {
                assert!(
                    e.amount.is_none() && e.executed_on.is_none(),
                    "interrupted and refunded exchanges did not execute"
                );
            }
            if state == ExchangeState::Settled {
                let payout = e.payout.as_ref().unwrap();
                assert_eq!(payout.as_json()["fee"].to_string(), "0.00000190");
                assert_eq!(payout.as_json()["amount"].to_string(), "0.00049381");
                assert_eq!(payout.fee.unwrap().to_string(), "0.00000190");
                assert_eq!(payout.amount.unwrap().to_string(), "0.00049381");
                assert_eq!(
                    payout.txid.as_deref(),
                    Some("c01c7a0fd270aa3876119098c0e2d51687a795efab99787e214d8a93ab9f8342")
                );
                assert_eq!(
                    payout.bitcoin_address.as_deref(),
                    Some("bc1q5a7uxjq6z5l2wguzu77rzmzk6tyx24yvq5r4fj")
                );
            }
            // Written back, every kept field is still there with its digits.
            let again = serde_json::to_string(&e).unwrap();
            assert!(
                again.contains("0.012") && again.contains("100.00"),
                "{again}"
            );
        }
        let (_, rewarded) = payload(include_str!(
            "../../tests/fixtures/pocket/executed_webhook_welcome_reward.json"
        ));
        assert_eq!(
            rewarded.welcome_reward.as_ref().unwrap()["amount"].to_string(),
            "0.00001000"
        );
        assert_eq!(rewarded.extra["affiliate"]["fee"].to_string(), "0.30");
    }

    #[test]
    fn the_edge_refuses_ids_and_amounts_no_real_exchange_has() {
        let good = r#"{"exchange_id":"A2D75998-5EE5-4501-A4CF-4E3788732B7A","order_id":"64decab6-4129-4fe7-9f6e-1db68283f5ce","amount":0.00494000,"cost":100.00}"#;
        let e: Exchange = serde_json::from_str(good).unwrap();
        e.check()
            .expect("a UUID in capitals is still Pocket's shape");
        let refused = |patch: Value| -> Refused {
            let mut v: Value = serde_json::from_str(good).unwrap();
            for (k, val) in patch.as_object().unwrap() {
                v[k] = val.clone();
            }
            let e: Exchange = serde_json::from_value(v).unwrap();
            e.check().unwrap_err()
        };
        assert_eq!(
            refused(json!({"exchange_id": "../../../etc/passwd"})).field,
            "exchange_id"
        );
        assert_eq!(
            refused(json!({"exchange_id": "abc?admin=1#frag"})).field,
            "exchange_id"
        );
        assert_eq!(refused(json!({"order_id": "o-1"})).field, "order_id");
        let huge: Value = serde_json::from_str("10000000000000000000000000000").unwrap();
        let r = refused(json!({"amount": huge}));
        assert_eq!(r.field, "amount");
        assert!(r.to_string().contains("21000000"), "{r}");
        assert_eq!(
            refused(json!({"amount": "21000000.00000001"})).field,
            "amount"
        );
        assert_eq!(refused(json!({"amount": -0.1})).field, "amount");
        assert_eq!(refused(json!({"amount": "0.000000000001"})).field, "amount");
        assert_eq!(refused(json!({"cost": -5})).field, "cost");
        assert_eq!(refused(json!({"fee_rate": 1.5})).field, "fee_rate");
        assert_eq!(
            refused(json!({"payout": {"amount": 22000000}})).field,
            "payout.amount"
        );
        assert_eq!(
            refused(json!({"payout": {"fee": "lots"}})).field,
            "payout.fee"
        );
        assert_eq!(
            refused(json!({"payout": {"amount": [1]}})).field,
            "payout.amount"
        );
        // Exactly 21 million is still possible.
        let mut v: Value = serde_json::from_str(good).unwrap();
        v["amount"] = json!("21000000");
        serde_json::from_value::<Exchange>(v)
            .unwrap()
            .check()
            .unwrap();
    }

    #[test]
    fn requests_write_money_as_numbers_from_the_decimal_text() {
        let order = NewBuyOrder {
            active: true,
            fee_rate: "0.015".parse().unwrap(),
            currency: Currency::Chf,
            debitor_iban: "CH9300762011623852957".parse().unwrap(),
            payout: NewPayout::Address {
                bitcoin_address: "bc1q5a7uxjq6z5l2wguzu77rzmzk6tyx24yvq5r4fj".into(),
                message: "m".into(),
                signature: "s".into(),
            },
            affiliate_id: None,
        };
        let text = order.to_json().to_string();
        assert!(text.contains("\"fee_rate\":0.015"), "{text}");
        assert!(text.contains("\"currency\":\"chf\""), "{text}");
        let patch = OrderPatch {
            active: Some(false),
            fee_rate: Some("0.0120".parse().unwrap()),
        };
        assert_eq!(
            patch.to_json().to_string(),
            r#"{"active":false,"fee_rate":0.012}"#
        );
    }

    #[test]
    fn error_bodies_give_their_documented_codes() {
        assert_eq!(
            ApiCode::from_body(r#"{"code":"invoice_expired"}"#)
                .unwrap()
                .0,
            ApiCode::InvoiceExpired
        );
        assert_eq!(
            ApiCode::from_body(r#"{"error":"something_new","message":"hm"}"#).unwrap(),
            (ApiCode::Other("something_new".into()), Some("hm".into()))
        );
        assert!(ApiCode::from_body("<html>").is_none());
        assert_eq!(
            ApiCode::from_body(r#"{"error":{"code":"already_completed","message":"paid"}}"#)
                .unwrap(),
            (ApiCode::AlreadyCompleted, Some("paid".into()))
        );
        assert_eq!(
            ApiCode::from_body(r#"{"error":{"code":"in_progress"}}"#)
                .unwrap()
                .0,
            ApiCode::InProgress
        );
    }

    #[test]
    fn the_fuzzers_absurd_amount_is_refused_not_multiplied() {
        // fuzz/regressions/webhook/btc-sats-overflow: the signature line, then the body whose
        // amount once panicked `Btc::sats` with "Multiplication overflowed".
        let input = include_str!("../../fuzz/regressions/webhook/btc-sats-overflow");
        let (_, body) = input.split_once('\n').unwrap();
        let doc: Value = serde_json::from_str(body).unwrap();
        let exchange: Exchange = serde_json::from_value(doc["payload"].clone()).unwrap();
        let refused = check_btc("amount", exchange.amount).unwrap_err();
        assert_eq!(refused.field, "amount");
        assert!(crate::domain::Btc::new(exchange.amount.unwrap()).is_err());
        let event = crate::exchanges::ExchangeEvent::new(
            "exchange.executed",
            exchange.state(),
            exchange.state(),
            &exchange,
            None,
        )
        .to_json();
        let refused = crate::actions::pocket_payout::payout_amount(&event).unwrap_err();
        assert!(
            refused.contains("more than the 21,000,000 BTC"),
            "{refused}"
        );
    }
}
