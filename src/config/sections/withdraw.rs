//! `withdraw:` — the providers cold-storage withdrawals take funds from (the hub, an LND
//! node's on-chain wallet), and the check that an `lnd` provider names an LND node.

use super::*;

impl Reader<'_> {
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

/// The merchant's signing key from `path`. The refusal never shows the file's content.
fn read_merchant_key(path: &std::path::Path) -> Result<crate::domain::MerchantKey, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.parse()
        .map_err(|e: crate::domain::MerchantKeyError| format!("{} {e}", path.display()))
}
