//! An Electrum server's address as a wallet writes it (`tcp://host:port`, `ssl://host:port`),
//! parsed once at the edge. Nothing here connects to it.

use std::fmt;

/// `tcp://host:port` or `ssl://host:port`, as Electrum wallets write a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectrumUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl ElectrumUrl {
    /// Parses `tcp://host:port` or `ssl://host:port` (an IPv6 host in brackets); the refusal says
    /// what would be accepted.
    pub fn parse(text: &str) -> Result<ElectrumUrl, String> {
        const ACCEPTED: &str = "accepted: tcp://host:port or ssl://host:port, e.g. tcp://umbrel.local:50001 or ssl://127.0.0.1:50002";
        let (tls, rest) = if let Some(rest) = text.strip_prefix("tcp://") {
            (false, rest)
        } else if let Some(rest) = text.strip_prefix("ssl://") {
            (true, rest)
        } else {
            return Err(format!("the scheme must be tcp or ssl; {ACCEPTED}"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("a port is needed; {ACCEPTED}"))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("`{port}` is not a port (1 to 65535); {ACCEPTED}"))?;
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let valid = !bare.is_empty()
            && if bare.len() == host.len() {
                bare.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
            } else {
                bare.parse::<std::net::Ipv6Addr>().is_ok()
            };
        if !valid {
            return Err(format!(
                "`{host}` is not a host name or address; {ACCEPTED}"
            ));
        }
        Ok(ElectrumUrl {
            tls,
            host: bare.to_string(),
            port,
        })
    }
}

impl ElectrumUrl {
    /// The host as a URL host: an IP address, or a name.
    pub fn url_host(&self) -> url::Host<&str> {
        if let Ok(ip) = self.host.parse::<std::net::Ipv4Addr>() {
            url::Host::Ipv4(ip)
        } else if let Ok(ip) = self.host.parse::<std::net::Ipv6Addr>() {
            url::Host::Ipv6(ip)
        } else {
            url::Host::Domain(&self.host)
        }
    }
}

impl fmt::Display for ElectrumUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "ssl" } else { "tcp" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}
