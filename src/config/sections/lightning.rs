//! `lightning:` — each node's invoice source (LND, Core Lightning, a Lightning address), its
//! credentials and pinned certificate, and its key. Never echoes a rune or a macaroon.

use super::*;

impl Reader<'_> {
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
