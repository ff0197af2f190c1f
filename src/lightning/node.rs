//! Invoice sources: LND's REST API (macaroon, pinned `tls.cert`), Core Lightning's `clnrest`
//! (rune, pinned `ca.pem` or `server.pem`), or a Lightning address (LUD-16 / LNURL-pay,
//! LUD-06). Also the node's own key and message signatures, and (LND) its inbound liquidity
//! for channel payouts.
//!
//! A source only talks to the node; whether an invoice is good enough to hand to Pocket is
//! decided by `lightning::invoice::verify`. How each failure of each call is classified is
//! written once, in [`NodeError::class`], below the table of outcomes; nothing here decides an
//! outcome from error text, and no path segment built from data reaches a URL unescaped.
//!
//! Outcomes (LND, Core Lightning, LNURL; every call is a read but `send_onchain`):
//!
//! | failure                                   | reads (invoice, balances, getinfo, signmessage, transactions, LNURL) | `send_onchain` |
//! |-------------------------------------------|------------------------------------|-----------------|
//! | connection refused, DNS, connect/TLS timeout | transient                       | transient       |
//! | certificate refused: not pinned nor signed by the pinned CA, or (no pin) by no public authority (LND, CLN; `Certificate`) | permanent | permanent |
//! | timeout or cut after the request was sent | transient                          | **unknown**     |
//! | 408, 425, 429 (Retry-After kept), any 5xx, JSON or HTML | transient            | transient       |
//! | other 4xx (LND 400 bad argument, 401/403 macaroon, 404; CLN 401/403 rune) | permanent | permanent |
//! | 2xx that cannot be read                   | permanent                          | **unknown**     |
//! | LNURL `{"status":"ERROR"}`, amount outside its bounds | permanent              | —               |
//!
//! A second invoice or a second signature is harmless, so only a send is a write: its lost
//! answer is reconciled through the transaction's label before anything is sent again.

use bitcoin::hex::DisplayHex;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use bitcoin::secp256k1::PublicKey;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use url::Url;

use super::tls::pinned_client;
use crate::config::{InvoiceSource, LightningNode};
use crate::outcome::{self, Call, Class};

/// How long a connection (TCP and TLS) may take to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one call may take in all: shorter than the outbox's bound on a handler under the
/// default lease (3/4 of 30 s), so the client's own timeout, whose class is known, fires first.
pub const TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    #[error("cannot use the node's settings: {0}")]
    Config(String),
    /// No answer: `class` is decided from the transport error's own predicates.
    #[error("{}", transport_message("the node", url, reason, *class))]
    Unreachable {
        url: String,
        reason: String,
        class: Class,
    },
    /// The TLS handshake refused the node's certificate: nothing was sent, and the same
    /// certificate is refused on every attempt.
    #[error("the node at {url} presented a certificate satflow does not trust: {reason}")]
    Certificate { url: String, reason: String },
    #[error("the node at {url} refused ({status}): {body}")]
    Refused {
        url: String,
        status: u16,
        body: String,
        retry_after: Option<Duration>,
    },
    #[error("{}", decode_message(url, body, *call))]
    Decode {
        url: String,
        body: String,
        call: Call,
    },
    #[error("the Lightning address {address} refused: {reason}")]
    Lnurl { address: String, reason: String },
    #[error("{0} cannot do this")]
    Unsupported(&'static str),
}

impl NodeError {
    /// The outcome of the failed call: the table in this module's header, in code.
    pub fn class(&self) -> Class {
        match self {
            NodeError::Config(_)
            | NodeError::Unsupported(_)
            | NodeError::Lnurl { .. }
            | NodeError::Certificate { .. } => Class::Permanent,
            NodeError::Unreachable { class, .. } => *class,
            NodeError::Refused {
                status,
                retry_after,
                ..
            } => outcome::of_status(*status, *retry_after).unwrap_or(Class::Permanent),
            // The node said yes to a send in words satflow cannot read: it may have sent.
            NodeError::Decode {
                call: Call::Write, ..
            } => Class::Unknown,
            NodeError::Decode { .. } => Class::Permanent,
        }
    }

    pub fn http_status(&self) -> Option<u16> {
        match self {
            NodeError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The words for a call that got no answer; they say when the request may have been applied.
pub(crate) fn transport_message(who: &str, url: &str, reason: &str, class: Class) -> String {
    match class {
        Class::Unknown => format!(
            "no answer from {who} at {url} in time ({reason}); the request may have been applied"
        ),
        _ => format!("cannot reach {who} at {url}: {reason}"),
    }
}

fn decode_message(url: &str, body: &str, call: Call) -> String {
    match call {
        Call::Write => format!(
            "the node at {url} accepted the request but answered something satflow cannot read (it may have been applied): {body}"
        ),
        Call::Read => format!("the node at {url} answered something satflow cannot read: {body}"),
    }
}

/// A transport error with its causes, for people (never to decide anything).
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `base` with `segments` appended, each percent-encoded (a `/`, `?` or `#` in data stays
/// data); a segment that is empty, `.` or `..` is refused, since a URL would drop or resolve it.
pub fn with_segments(base: &Url, segments: &[&str]) -> Result<Url, String> {
    if let Some(bad) = segments
        .iter()
        .find(|s| s.is_empty() || **s == "." || **s == "..")
    {
        return Err(format!(
            "`{bad}` cannot be a part of a URL's path; expected a name or an id"
        ));
    }
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| format!("{base} cannot have a path"))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// An invoice from the node, with what it must be checked against.
#[derive(Debug, Clone)]
pub struct NodeInvoice {
    pub bolt11: String,
    /// For LNURL: SHA-256 of the metadata string exactly as received.
    pub description_hash: Option<[u8; 32]>,
}

#[derive(Clone)]
enum Kind {
    Lnd { macaroon: SecretString },
    Cln { rune: SecretString },
    Address { address: String },
}

/// Cheap to clone: the HTTP client is a handle onto one connection pool.
#[derive(Clone)]
pub struct Node {
    http: reqwest::Client,
    base: Url,
    kind: Kind,
    timeout: Duration,
    /// The `tls_cert_file` the client trusts (alone), for an https node; named when the node's
    /// certificate is refused.
    pinned: Option<PathBuf>,
}

/// A client that trusts only the certificate or CA in `file`.
fn pinned_from(file: &std::path::Path, connect: Duration) -> Result<reqwest::Client, NodeError> {
    let pem = std::fs::read(file)
        .map_err(|e| NodeError::Config(format!("cannot read {}: {e}", file.display())))?;
    pinned_client(&pem, connect).map_err(|e| NodeError::Config(format!("{}: {e}", file.display())))
}

fn plain_client(connect: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("satflow/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(connect)
        .build()
        .expect("the HTTP client's settings are valid")
}

impl Node {
    pub fn from_config(node: &LightningNode) -> Result<Node, NodeError> {
        Node::from_config_with(node, CONNECT_TIMEOUT, TIMEOUT)
    }

    /// With other timeouts: `connect` for a connection to open, `total` for a whole call.
    pub fn from_config_with(
        node: &LightningNode,
        connect: Duration,
        total: Duration,
    ) -> Result<Node, NodeError> {
        let mut made = Node::build(node, connect)?;
        made.timeout = total;
        Ok(made)
    }

    /// Every later call bounded by `total` (e.g. inside an outbox handler's lease).
    pub fn with_timeout(mut self, total: Duration) -> Node {
        self.timeout = total;
        self
    }

    fn build(node: &LightningNode, connect: Duration) -> Result<Node, NodeError> {
        match &node.source {
            InvoiceSource::Lnd {
                url,
                macaroon_file,
                tls_cert_file,
            } => {
                let macaroon = std::fs::read(macaroon_file).map_err(|e| {
                    NodeError::Config(format!("cannot read {}: {e}", macaroon_file.display()))
                })?;
                let hex = macaroon.to_lower_hex_string();
                let pinned = (url.scheme() == "https").then(|| tls_cert_file.clone());
                let http = match &pinned {
                    Some(file) => pinned_from(file, connect)?,
                    None => plain_client(connect),
                };
                Ok(Node {
                    http,
                    base: url.clone(),
                    kind: Kind::Lnd {
                        macaroon: SecretString::from(hex),
                    },
                    timeout: TIMEOUT,
                    pinned,
                })
            }
            InvoiceSource::Cln {
                url,
                rune,
                tls_cert_file,
            } => {
                let pinned = tls_cert_file.clone().filter(|_| url.scheme() == "https");
                let http = match &pinned {
                    Some(file) => pinned_from(file, connect)?,
                    // http on loopback, or https behind a publicly signed certificate.
                    None => plain_client(connect),
                };
                Ok(Node {
                    http,
                    base: url.clone(),
                    kind: Kind::Cln { rune: rune.clone() },
                    timeout: TIMEOUT,
                    pinned,
                })
            }
            InvoiceSource::LightningAddress(address) => {
                let (user, domain) = address.split_once('@').ok_or_else(|| {
                    NodeError::Config(format!("{address} is not a Lightning address"))
                })?;
                // LUD-16 asks for https; a loopback domain (a node on this machine, a test) is
                // reached over plain http.
                let host = domain.split(':').next().unwrap_or(domain);
                let scheme = if matches!(host, "localhost" | "127.0.0.1") {
                    "http"
                } else {
                    "https"
                };
                let root = Url::parse(&format!("{scheme}://{domain}/"))
                    .ok()
                    .filter(|u| u.path() == "/" && u.query().is_none())
                    .ok_or_else(|| {
                        NodeError::Config(format!("{address}: `{domain}` is not a domain"))
                    })?;
                let base = with_segments(&root, &[".well-known", "lnurlp", user])
                    .map_err(|e| NodeError::Config(format!("{address}: {e}")))?;
                Ok(Node {
                    http: plain_client(connect),
                    base,
                    kind: Kind::Address {
                        address: address.clone(),
                    },
                    timeout: TIMEOUT,
                    pinned: None,
                })
            }
        }
    }

    /// Why the node's certificate was refused, and which setting to change.
    fn certificate_reason(&self, refused: &rustls::CertificateError) -> String {
        let problem = super::tls::problem(refused);
        let which = match self.kind {
            Kind::Cln { .. } => {
                "clnrest's ca.pem or server.pem, in the node's network folder, e.g. ~/.lightning/bitcoin/ca.pem"
            }
            _ => "LND's tls.cert, e.g. ~/.lnd/tls.cert",
        };
        match &self.pinned {
            Some(file) => format!(
                "the node's certificate is not the one in tls_cert_file {} nor signed by it ({problem}); set tls_cert_file to the node's own certificate or CA ({which})",
                file.display()
            ),
            None => format!(
                "the node's certificate is not signed by a public authority ({problem}); set tls_cert_file to the node's own certificate or CA ({which})"
            ),
        }
    }

    fn url(&self, segments: &[&str]) -> Result<Url, NodeError> {
        with_segments(&self.base, segments).map_err(NodeError::Config)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        url: &Url,
        body: Option<Value>,
        call: Call,
    ) -> Result<Value, NodeError> {
        let shown = || url.to_string();
        let unreachable = |e: reqwest::Error| {
            let own_node = matches!(self.kind, Kind::Lnd { .. } | Kind::Cln { .. });
            match outcome::refused_certificate(&e) {
                // The user's own node: a refused certificate stays refused until someone
                // changes the setting or the node (permanent, see `NodeError::class`).
                Some(refused) if own_node => NodeError::Certificate {
                    url: shown(),
                    reason: self.certificate_reason(refused),
                },
                _ => NodeError::Unreachable {
                    url: shown(),
                    reason: describe(&e),
                    class: outcome::of_transport(&e, call),
                },
            }
        };
        let mut request = self.http.request(method, url.clone()).timeout(self.timeout);
        request = match &self.kind {
            Kind::Lnd { macaroon } => {
                request.header("Grpc-Metadata-macaroon", macaroon.expose_secret())
            }
            Kind::Cln { rune } => request.header("Rune", rune.expose_secret()),
            Kind::Address { .. } => request,
        };
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let retry_after = outcome::retry_after(response.headers(), crate::clock::system_now());
        if !status.is_success() {
            // The status decides; the body is only shown (it may be a proxy's HTML page).
            let text = response.text().await.unwrap_or_default();
            return Err(NodeError::Refused {
                url: shown(),
                status: status.as_u16(),
                body: text.chars().take(300).collect(),
                retry_after,
            });
        }
        let text = response.text().await.map_err(unreachable)?;
        serde_json::from_str(&text).map_err(|_| NodeError::Decode {
            url: shown(),
            body: text.chars().take(300).collect(),
            call,
        })
    }

    fn field(&self, url: &Url, v: &Value, name: &str, call: Call) -> Result<String, NodeError> {
        v[name]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| NodeError::Decode {
                url: url.to_string(),
                body: v.to_string().chars().take(300).collect(),
                call,
            })
    }

    /// An invoice for exactly `amount_msat`, valid for `expiry`.
    pub async fn invoice(
        &self,
        amount_msat: u64,
        memo: &str,
        expiry: Duration,
    ) -> Result<NodeInvoice, NodeError> {
        match &self.kind {
            Kind::Lnd { .. } => {
                let url = self.url(&["v1", "invoices"])?;
                let body = json!({ "value_msat": amount_msat.to_string(), "memo": memo, "expiry": expiry.as_secs().to_string() });
                let v = self
                    .call(reqwest::Method::POST, &url, Some(body), Call::Read)
                    .await?;
                Ok(NodeInvoice {
                    bolt11: self.field(&url, &v, "payment_request", Call::Read)?,
                    description_hash: None,
                })
            }
            Kind::Cln { .. } => {
                let url = self.url(&["v1", "invoice"])?;
                // Labels must be unique on the node; the memo names the exchange, the time the attempt.
                let label = format!(
                    "{memo} {}",
                    crate::clock::system_now()
                        .timestamp_nanos_opt()
                        .unwrap_or_default()
                );
                let body = json!({ "amount_msat": amount_msat, "label": label, "description": memo, "expiry": expiry.as_secs() });
                let v = self
                    .call(reqwest::Method::POST, &url, Some(body), Call::Read)
                    .await?;
                Ok(NodeInvoice {
                    bolt11: self.field(&url, &v, "bolt11", Call::Read)?,
                    description_hash: None,
                })
            }
            Kind::Address { address } => self.lnurl_invoice(address, amount_msat).await,
        }
    }

    async fn lnurl_invoice(
        &self,
        address: &str,
        amount_msat: u64,
    ) -> Result<NodeInvoice, NodeError> {
        let refused = |reason: String| NodeError::Lnurl {
            address: address.to_string(),
            reason,
        };
        let url = self.base.clone();
        let params = self
            .call(reqwest::Method::GET, &url, None, Call::Read)
            .await?;
        if params["status"] == "ERROR" {
            return Err(refused(
                params["reason"]
                    .as_str()
                    .unwrap_or("no reason given")
                    .to_string(),
            ));
        }
        if params["tag"] != "payRequest" {
            return Err(refused(format!("not a payRequest: {params}")));
        }
        let (min, max) = (
            params["minSendable"].as_u64(),
            params["maxSendable"].as_u64(),
        );
        if min.is_some_and(|m| amount_msat < m) || max.is_some_and(|m| amount_msat > m) {
            return Err(refused(format!(
                "{amount_msat} msat is outside what it accepts ({} to {} msat)",
                min.unwrap_or(0),
                max.unwrap_or(u64::MAX)
            )));
        }
        // The hash is taken over the metadata exactly as received: re-serialising could change it.
        let metadata = self.field(&url, &params, "metadata", Call::Read)?;
        let hash: [u8; 32] = Sha256::digest(metadata.as_bytes()).into();
        let callback = self.field(&url, &params, "callback", Call::Read)?;
        let mut callback = Url::parse(&callback)
            .ok()
            .filter(|u| matches!(u.scheme(), "https" | "http"))
            .ok_or_else(|| refused(format!("its callback `{callback}` is not a URL")))?;
        callback
            .query_pairs_mut()
            .append_pair("amount", &amount_msat.to_string());
        let answer = self
            .call(reqwest::Method::GET, &callback, None, Call::Read)
            .await?;
        if answer["status"] == "ERROR" {
            return Err(refused(
                answer["reason"]
                    .as_str()
                    .unwrap_or("no reason given")
                    .to_string(),
            ));
        }
        Ok(NodeInvoice {
            bolt11: self.field(&callback, &answer, "pr", Call::Read)?,
            description_hash: Some(hash),
        })
    }

    /// Signs `message` with the node key (LND / Core Lightning `signmessage`, zbase32).
    pub async fn sign_message(&self, message: &str) -> Result<String, NodeError> {
        use bitcoin::base64::Engine;
        let url = self.url(&["v1", "signmessage"])?;
        let (body, name) = match &self.kind {
            Kind::Lnd { .. } => (
                json!({ "msg": bitcoin::base64::engine::general_purpose::STANDARD.encode(message.as_bytes()) }),
                "signature",
            ),
            Kind::Cln { .. } => (json!({ "message": message }), "zbase"),
            Kind::Address { .. } => return Err(NodeError::Unsupported("a Lightning address")),
        };
        let v = self
            .call(reqwest::Method::POST, &url, Some(body), Call::Read)
            .await?;
        self.field(&url, &v, name, Call::Read)
    }

    /// The node's public key (`getinfo`).
    pub async fn pubkey(&self) -> Result<PublicKey, NodeError> {
        let url = self.url(&["v1", "getinfo"])?;
        let (method, body, name) = match &self.kind {
            Kind::Lnd { .. } => (reqwest::Method::GET, None, "identity_pubkey"),
            Kind::Cln { .. } => (reqwest::Method::POST, Some(json!({})), "id"),
            Kind::Address { .. } => return Err(NodeError::Unsupported("a Lightning address")),
        };
        let v = self.call(method, &url, body, Call::Read).await?;
        let text = self.field(&url, &v, name, Call::Read)?;
        PublicKey::from_str(&text).map_err(|_| NodeError::Decode {
            url: url.to_string(),
            body: text,
            call: Call::Read,
        })
    }

    /// LND's on-chain wallet: the confirmed balance in sat.
    pub async fn onchain_balance(&self) -> Result<u64, NodeError> {
        let Kind::Lnd { .. } = &self.kind else {
            return Err(NodeError::Unsupported("only LND's on-chain wallet"));
        };
        let url = self.url(&["v1", "balance", "blockchain"])?;
        let v = self
            .call(reqwest::Method::GET, &url, None, Call::Read)
            .await?;
        let text = self.field(&url, &v, "confirmed_balance", Call::Read)?;
        text.parse().map_err(|_| NodeError::Decode {
            url: url.to_string(),
            body: text,
            call: Call::Read,
        })
    }

    /// Sends `amount` sat (or everything, with `None`) to `address` at `sat_per_vbyte`, with
    /// `label` so the transaction can be found again. Returns the txid. The one write here:
    /// a lost answer is [`Class::Unknown`].
    pub async fn send_onchain(
        &self,
        address: &str,
        amount: Option<u64>,
        sat_per_vbyte: u64,
        label: &str,
    ) -> Result<String, NodeError> {
        let Kind::Lnd { .. } = &self.kind else {
            return Err(NodeError::Unsupported("only LND's on-chain wallet"));
        };
        let url = self.url(&["v1", "transactions"])?;
        let mut body =
            json!({ "addr": address, "sat_per_vbyte": sat_per_vbyte.to_string(), "label": label });
        match amount {
            Some(sat) => body["amount"] = json!(sat.to_string()),
            None => body["send_all"] = json!(true),
        }
        let v = self
            .call(reqwest::Method::POST, &url, Some(body), Call::Write)
            .await?;
        self.field(&url, &v, "txid", Call::Write)
    }

    /// The transaction labelled `label`, if the node's wallet has one: `(txid, fee in sat)`.
    pub async fn labelled_transaction(
        &self,
        label: &str,
    ) -> Result<Option<(String, Option<u64>)>, NodeError> {
        let Kind::Lnd { .. } = &self.kind else {
            return Err(NodeError::Unsupported("only LND's on-chain wallet"));
        };
        let url = self.url(&["v1", "transactions"])?;
        let v = self
            .call(reqwest::Method::GET, &url, None, Call::Read)
            .await?;
        let decode = || NodeError::Decode {
            url: url.to_string(),
            body: v.to_string().chars().take(300).collect(),
            call: Call::Read,
        };
        let Some(found) = v["transactions"]
            .as_array()
            .ok_or_else(decode)?
            .iter()
            .find(|t| t["label"] == label)
        else {
            return Ok(None);
        };
        // A labelled transaction without its id would lose the withdrawal's txid.
        let txid = found["tx_hash"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(decode)?;
        let fee = found["total_fees"].as_str().and_then(|f| f.parse().ok());
        Ok(Some((txid.to_string(), fee)))
    }

    /// How much the node can receive over its channels, in msat; `None` when the source cannot
    /// tell (only LND reports it).
    pub async fn inbound_msat(&self) -> Result<Option<u64>, NodeError> {
        match &self.kind {
            Kind::Lnd { .. } => {
                let url = self.url(&["v1", "balance", "channels"])?;
                let v = self
                    .call(reqwest::Method::GET, &url, None, Call::Read)
                    .await?;
                let remote = &v["remote_balance"];
                let msat = remote["msat"]
                    .as_str()
                    .and_then(|s| s.parse::<u64>().ok())
                    .or_else(|| {
                        remote["sat"]
                            .as_str()
                            .and_then(|s| s.parse::<u64>().ok())
                            .and_then(|s| s.checked_mul(1000))
                    });
                Ok(Some(msat.ok_or_else(|| NodeError::Decode {
                    url: url.to_string(),
                    body: v.to_string(),
                    call: Call::Read,
                })?))
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_in_a_path_stays_one_segment() {
        let base = Url::parse("https://node.example/api/").unwrap();
        let url = with_segments(&base, &["tx", "../../etc/passwd?admin=1#frag", "status"]).unwrap();
        assert_eq!(
            url.as_str(),
            "https://node.example/api/tx/..%2F..%2Fetc%2Fpasswd%3Fadmin=1%23frag/status"
        );
        for bad in ["..", ".", ""] {
            assert!(with_segments(&base, &["tx", bad]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_send_without_a_readable_answer_is_unknown_and_a_read_is_permanent() {
        let decode = |call| NodeError::Decode {
            url: "u".into(),
            body: "b".into(),
            call,
        };
        assert_eq!(decode(Call::Write).class(), Class::Unknown);
        assert_eq!(decode(Call::Read).class(), Class::Permanent);
        let refused = |status, retry_after| NodeError::Refused {
            url: "u".into(),
            status,
            body: String::new(),
            retry_after,
        };
        let six = Some(Duration::from_secs(6));
        assert_eq!(
            refused(429, six).class(),
            Class::Transient { retry_after: six }
        );
        assert_eq!(refused(500, None).class(), Class::TRANSIENT);
        assert_eq!(refused(401, None).class(), Class::Permanent);
    }
}
