//! `pocket:` — the Pocket API's base URL, client id and webhook settings. Reads and reports;
//! never calls Pocket.

use super::*;

impl Reader<'_> {
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
}
