//! A client for the Electrum protocol (Electrs, Fulcrum, ElectrumX: the server a node runner's
//! Umbrel, Start9 or RaspiBlitz already has): whether an address was ever used, how deep a
//! transaction is buried, and the node's fee estimate.
//!
//! Written here rather than taken from the `electrum-client` crate: its rustls feature turns on
//! rustls' default provider (aws-lc-rs, a C library built with cmake) next to the ring provider
//! satflow uses, and it is blocking. What satflow needs is three read-only calls of
//! newline-delimited JSON-RPC over TCP or TLS, one short connection per call.
//!
//! Only public data is asked for (a script hash, a txid); never a wallet's keys or its addresses
//! as a whole. A server that cannot be asked is an error, never "unused". Every call is a read;
//! its outcomes are written once, in [`ElectrumError::class`]:
//!
//! | failure                                                  | class      |
//! |----------------------------------------------------------|------------|
//! | connection refused, DNS, TLS handshake, timeout, cut     | transient  |
//! | `ssl://`: the server's certificate refused (not the pinned one, or unsigned by a public authority without one) | permanent |
//! | the server has no fee estimate yet (`-1`)                | transient  |
//! | a JSON-RPC error (unknown txid, a request it refuses)    | permanent  |
//! | an answer that cannot be read                            | permanent  |

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bitcoin::hashes::{Hash, sha256};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use crate::outcome::Class;

pub use super::esplora::{CONNECT_TIMEOUT, TIMEOUT};

/// The longest answer line read: a much-used address's history fits many times over, and a
/// server that sends without end cannot fill the memory.
const MAX_LINE: u64 = 8 * 1024 * 1024;

pub use crate::domain::ElectrumUrl;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElectrumError {
    #[error("cannot ask the Electrum server: {0}")]
    Config(String),
    #[error("cannot reach the Electrum server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The TLS handshake refused the server's certificate: nothing was asked, and the same
    /// certificate is refused on every attempt.
    #[error(
        "the Electrum server at {url} presented a certificate satflow does not trust: {reason}"
    )]
    Certificate { url: String, reason: String },
    #[error("the Electrum server at {url} refused {method}: {message}")]
    Rpc {
        url: String,
        method: String,
        message: String,
    },
    #[error("the Electrum server at {url} has no fee estimate yet")]
    NoEstimate { url: String },
    #[error("the Electrum server at {url} answered something satflow cannot read: {body}")]
    Decode { url: String, body: String },
}

impl ElectrumError {
    /// The outcome of the failed call: the table in this module's header, in code.
    pub fn class(&self) -> Class {
        match self {
            ElectrumError::Unreachable { .. } | ElectrumError::NoEstimate { .. } => {
                Class::TRANSIENT
            }
            ElectrumError::Config(_)
            | ElectrumError::Certificate { .. }
            | ElectrumError::Rpc { .. }
            | ElectrumError::Decode { .. } => Class::Permanent,
        }
    }
}

/// The Electrum protocol's name for an output script: sha256 of the script, bytes reversed, hex.
pub fn script_hash(script: &bitcoin::Script) -> String {
    let mut bytes = sha256::Hash::hash(script.as_bytes()).to_byte_array();
    bytes.reverse();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Clone)]
pub struct Electrum {
    url: ElectrumUrl,
    network: bitcoin::Network,
    connect: Duration,
    total: Duration,
    /// For `ssl://`: the server's own certificate (or CA), trusted alone; public authorities
    /// otherwise.
    pinned: Option<PathBuf>,
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

impl Electrum {
    /// A server for addresses of `network` (script hashes are made from them).
    pub fn new(url: &ElectrumUrl, network: bitcoin::Network) -> Self {
        Electrum::with_timeouts(url, network, CONNECT_TIMEOUT, TIMEOUT)
    }

    /// With other timeouts: `connect` for a connection to open, `total` for a whole call.
    pub fn with_timeouts(
        url: &ElectrumUrl,
        network: bitcoin::Network,
        connect: Duration,
        total: Duration,
    ) -> Self {
        Electrum {
            url: url.clone(),
            network,
            connect,
            total,
            pinned: None,
        }
    }

    /// Trusting only the certificate (or CA) in `cert_file` for an `ssl://` server (the
    /// wallet's `tls_cert_file`); `None` trusts public authorities.
    pub fn pinning(mut self, cert_file: Option<PathBuf>) -> Self {
        self.pinned = cert_file;
        self
    }

    fn unreachable(&self, reason: impl fmt::Display) -> ElectrumError {
        ElectrumError::Unreachable {
            url: self.url.to_string(),
            reason: reason.to_string(),
        }
    }

    async fn open(&self) -> Result<Box<dyn Stream>, ElectrumError> {
        let tcp = tokio::time::timeout(
            self.connect,
            tokio::net::TcpStream::connect((self.url.host.as_str(), self.url.port)),
        )
        .await
        .map_err(|_| self.unreachable("the connection did not open in time"))?
        .map_err(|e| self.unreachable(e))?;
        if !self.url.tls {
            return Ok(Box::new(tcp));
        }
        let config = match &self.pinned {
            Some(file) => {
                let pem = std::fs::read(file).map_err(|e| {
                    ElectrumError::Config(format!("cannot read {}: {e}", file.display()))
                })?;
                crate::lightning::tls::pinned_config(&pem)
                    .map_err(|e| ElectrumError::Config(format!("{}: {e}", file.display())))?
            }
            None => {
                let roots = rustls::RootCertStore::from_iter(
                    webpki_roots::TLS_SERVER_ROOTS.iter().cloned(),
                );
                rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(|e| ElectrumError::Config(e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth()
            }
        };
        let name = rustls::pki_types::ServerName::try_from(self.url.host.clone())
            .map_err(|e| ElectrumError::Config(format!("{}: {e}", self.url.host)))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| match crate::outcome::refused_certificate(&e) {
                Some(refused) => self.certificate_refused(refused),
                None => self.unreachable(format!("TLS: {e}")),
            })?;
        Ok(Box::new(tls))
    }

    /// Why the server's certificate was refused, and which setting to change.
    fn certificate_refused(&self, refused: &rustls::CertificateError) -> ElectrumError {
        let problem = crate::lightning::tls::problem(refused);
        let reason = match &self.pinned {
            Some(file) => format!(
                "the server's certificate is not the one in tls_cert_file {} nor signed by it ({problem}); set tls_cert_file to the certificate the Electrum server presents (Fulcrum: the file its `cert` setting names; Electrs: its TLS proxy's certificate)",
                file.display()
            ),
            None => format!(
                "the server's certificate is not signed by a public authority ({problem}); set tls_cert_file to the certificate the Electrum server presents"
            ),
        };
        ElectrumError::Certificate {
            url: self.url.to_string(),
            reason,
        }
    }

    /// One call on its own connection, after the `server.version` handshake the protocol asks
    /// to come first; bounded by the whole-call timeout.
    async fn call(&self, method: &str, params: Value) -> Result<Value, ElectrumError> {
        tokio::time::timeout(self.total, self.exchange(method, params))
            .await
            .map_err(|_| self.unreachable(format!("no answer to {method} in time")))?
    }

    async fn exchange(&self, method: &str, params: Value) -> Result<Value, ElectrumError> {
        let stream = self.open().await?;
        let mut stream = BufReader::new(stream);
        let mut request = json!({"jsonrpc": "2.0", "id": 0, "method": "server.version",
            "params": [concat!("satflow/", env!("CARGO_PKG_VERSION")), "1.4"]})
        .to_string();
        request.push('\n');
        request.push_str(
            &json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string(),
        );
        request.push('\n');
        stream
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .map_err(|e| self.unreachable(e))?;
        stream
            .get_mut()
            .flush()
            .await
            .map_err(|e| self.unreachable(e))?;
        loop {
            let mut line = Vec::new();
            let n = (&mut stream)
                .take(MAX_LINE)
                .read_until(b'\n', &mut line)
                .await
                .map_err(|e| self.unreachable(e))?;
            if n == 0 {
                return Err(self.unreachable("the server closed the connection"));
            }
            if line.last() != Some(&b'\n') && n as u64 >= MAX_LINE {
                return Err(self.decode("an answer longer than satflow reads"));
            }
            let v: Value = serde_json::from_slice(&line)
                .map_err(|_| self.decode(String::from_utf8_lossy(&line)))?;
            // The version's answer and any notification are not the answer asked for.
            if v["id"].as_u64() != Some(1) {
                if v["id"].as_u64() == Some(0) && !v["error"].is_null() {
                    return Err(self.rpc("server.version", &v["error"]));
                }
                continue;
            }
            if !v["error"].is_null() {
                return Err(self.rpc(method, &v["error"]));
            }
            return Ok(v["result"].clone());
        }
    }

    fn decode(&self, body: impl fmt::Display) -> ElectrumError {
        ElectrumError::Decode {
            url: self.url.to_string(),
            body: body.to_string().chars().take(200).collect(),
        }
    }

    fn rpc(&self, method: &str, error: &Value) -> ElectrumError {
        let message = error["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| error.to_string());
        ElectrumError::Rpc {
            url: self.url.to_string(),
            method: method.to_string(),
            message: message.chars().take(200).collect(),
        }
    }

    /// Whether any transaction (confirmed or in the mempool) touches `address`.
    pub async fn address_used(&self, address: &str) -> Result<bool, ElectrumError> {
        let script = address
            .parse::<bitcoin::Address<_>>()
            .ok()
            .and_then(|a| a.require_network(self.network).ok())
            .ok_or_else(|| {
                ElectrumError::Config(format!("{address} is not an address of {}", self.network))
            })?
            .script_pubkey();
        let history = self
            .call(
                "blockchain.scripthash.get_history",
                json!([script_hash(&script)]),
            )
            .await?;
        match history.as_array() {
            Some(txs) => Ok(!txs.is_empty()),
            None => Err(self.decode(history)),
        }
    }

    /// How many confirmations `txid` has: 0 while it waits in the mempool. From the verbose
    /// transaction, which Electrs and Fulcrum take from the node.
    pub async fn confirmations(&self, txid: &str) -> Result<u64, ElectrumError> {
        if txid.len() != 64 || !txid.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ElectrumError::Config(format!("{txid} is not a txid")));
        }
        let tx = self
            .call("blockchain.transaction.get", json!([txid, true]))
            .await?;
        if !tx.is_object() {
            return Err(self.decode(tx));
        }
        match &tx["confirmations"] {
            Value::Null => Ok(0),
            n => n.as_u64().ok_or_else(|| self.decode(&tx)),
        }
    }

    /// The node's fee rate for confirmation within 3 blocks, in whole sat/vB rounded up (the
    /// protocol answers BTC per kvB; 1 BTC/kvB = 100 000 sat/vB).
    pub async fn fee_rate(&self) -> Result<u64, ElectrumError> {
        let v = self.call("blockchain.estimatefee", json!([3])).await?;
        let per_kvb = v
            .as_number()
            .and_then(|n| {
                let text = n.to_string();
                Decimal::from_str_exact(&text)
                    .or_else(|_| Decimal::from_scientific(&text))
                    .ok()
            })
            .ok_or_else(|| self.decode(&v))?;
        if per_kvb.is_sign_negative() {
            return Err(ElectrumError::NoEstimate {
                url: self.url.to_string(),
            });
        }
        per_kvb
            .checked_mul(Decimal::from(100_000u32))
            .and_then(|d| u64::try_from(d.ceil()).ok())
            .filter(|rate| *rate > 0)
            .ok_or_else(|| self.decode(&v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_hash_matches_the_protocol_docs() {
        // The Electrum protocol docs' example (electrumx "Script Hashes"): the P2PKH address
        // 1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa, script
        // 76a91462e907b15cbf27d5425399ebf6f0fb50ebb88f1888ac, has this script hash.
        let address: bitcoin::Address = "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"
            .parse::<bitcoin::Address<_>>()
            .unwrap()
            .assume_checked();
        let script = address.script_pubkey();
        assert_eq!(
            script
                .as_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            "76a91462e907b15cbf27d5425399ebf6f0fb50ebb88f1888ac"
        );
        assert_eq!(
            script_hash(&script),
            "8b01df4e368ea28f8dc0423bcf7a4923e3a12d307c875e47a0cfbf90b5c39161"
        );
    }

    #[test]
    fn urls_are_parsed_and_refused_with_what_is_accepted() {
        assert_eq!(
            ElectrumUrl::parse("tcp://umbrel.local:50001").unwrap(),
            ElectrumUrl {
                tls: false,
                host: "umbrel.local".into(),
                port: 50001
            }
        );
        let v6 = ElectrumUrl::parse("ssl://[::1]:50002").unwrap();
        assert_eq!((v6.tls, v6.host.as_str(), v6.port), (true, "::1", 50002));
        assert_eq!(v6.to_string(), "ssl://[::1]:50002");
        for bad in [
            "http://host:50001",
            "tcp://host",
            "tcp://host:0",
            "tcp://host:70000",
            "tcp://:50001",
            "tcp://ho st:50001",
            "tcp://user@host:50001",
        ] {
            let err = ElectrumUrl::parse(bad).unwrap_err();
            assert!(err.contains("tcp://host:port"), "{bad}: {err}");
        }
    }

    #[test]
    fn classes() {
        let u = || "tcp://h:1".to_string();
        assert_eq!(
            ElectrumError::Unreachable {
                url: u(),
                reason: "x".into()
            }
            .class(),
            Class::TRANSIENT
        );
        assert_eq!(
            ElectrumError::NoEstimate { url: u() }.class(),
            Class::TRANSIENT
        );
        assert_eq!(
            ElectrumError::Rpc {
                url: u(),
                method: "m".into(),
                message: "x".into()
            }
            .class(),
            Class::Permanent
        );
        assert_eq!(
            ElectrumError::Decode {
                url: u(),
                body: "x".into()
            }
            .class(),
            Class::Permanent
        );
    }
}
