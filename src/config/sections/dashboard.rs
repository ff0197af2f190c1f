//! The `dashboard:` section: where the dashboard listens (by default with everything else on
//! `listen`) and whether its cookies are marked `Secure` (behind a TLS proxy).

use std::net::SocketAddr;

use super::super::DashboardConfig;
use crate::source::reader::{boolean, describe, string};
use crate::source::{Ctx, MapReader, Node};

pub fn read(node: Option<&Node>, ctx: &mut Ctx<'_>) -> DashboardConfig {
    let mut dashboard = DashboardConfig::default();
    let Some(mut m) = node.and_then(|n| MapReader::new(n, "dashboard", ctx)) else {
        return dashboard;
    };
    if let Some(n) = m.get("listen")
        && let Some(text) = string(n, "dashboard.listen", ctx)
    {
        match text.parse::<SocketAddr>() {
            Ok(addr) => dashboard.listen = Some(addr),
            Err(_) => ctx.error(
                n.pos,
                format!(
                    "dashboard.listen: {} is not an address to listen on; write IP:PORT, e.g. 127.0.0.1:8421 (leave it out to serve the dashboard on `listen`)",
                    describe(&text)
                ),
            ),
        }
    }
    if let Some(n) = m.get("secure_cookies")
        && let Some(b) = boolean(n, "dashboard.secure_cookies", ctx)
    {
        dashboard.secure_cookies = b;
    }
    m.finish(ctx);
    dashboard
}
