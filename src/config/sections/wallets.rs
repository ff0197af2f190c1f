//! `wallets:` — each wallet's public key or descriptor, network and chain source (Esplora, or
//! the user's own Electrum server with its pinned certificate). Never accepts a private key.

use super::*;

impl Reader<'_> {
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
            crate::domain::ElectrumUrl::parse(&text)
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
}
