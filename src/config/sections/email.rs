//! `email:` — the SMTP URL (or a folder of `.eml` files), sender and recipients. Never echoes
//! the SMTP URL, which may hold a password.

use super::*;

impl Reader<'_> {
    pub fn email(&self, node: &Node, ctx: &mut Ctx<'_>, names: &mut Names) -> Option<EmailConfig> {
        names.has_email = true;
        let mut m = MapReader::new(node, "email", ctx)?;
        let smtp = m.get("smtp_url");
        let dir = m.get("dir");
        let transport = match (smtp, dir) {
            (Some(n), None) => smtp_url(n, ctx).map(EmailTransport::Smtp),
            (None, Some(n)) => string(n, "email.dir", ctx).and_then(|d| {
                let path = resolve_path(self.dir, Path::new(&d));
                // A missing folder is created when the first email is written; anything else
                // in its place would make every email fail at run time.
                match std::fs::metadata(&path) {
                    Ok(meta) if !meta.is_dir() => {
                        ctx.error(
                            n.pos,
                            format!(
                                "email.dir: {} is not a folder; name a folder for the .eml files (it is created when missing)",
                                path.display()
                            ),
                        );
                        None
                    }
                    _ => Some(EmailTransport::Dir(path)),
                }
            }),
            (Some(n), Some(_)) => {
                ctx.error(
                    n.pos,
                    "email: both `smtp_url` and `dir` are set; keep one (smtp_url sends the emails, dir writes them as .eml files)",
                );
                None
            }
            (None, None) => {
                ctx.error(
                    m.pos,
                    "email: missing required key `smtp_url`; write smtp_url: smtp://user:${SMTP_PASSWORD}@mail.example.com:587?tls=required (or `dir: FOLDER` to write .eml files)",
                );
                None
            }
        };
        let from = m
            .required(
                "from",
                "write the sender, e.g. from: \"satflow <satflow@example.com>\"",
                ctx,
            )
            .and_then(|n| mailbox(n, "email.from", ctx));
        let to = m
            .required(
                "to",
                "write who receives alerts, e.g. to: [me@example.com]",
                ctx,
            )
            .and_then(|n| {
                let items = list_or_one(n);
                if matches!(&n.kind, Kind::Seq(list) if list.is_empty()) {
                    ctx.error(
                        n.pos,
                        "email.to: the list is empty; alerts and emails need at least one recipient, e.g. to: [me@example.com]",
                    );
                    return None;
                }
                let count = items.len();
                let to: Vec<_> = items
                    .into_iter()
                    .filter_map(|item| mailbox(item, "email.to", ctx))
                    .collect();
                (to.len() == count).then_some(to)
            });
        m.finish(ctx);
        Some(EmailConfig {
            transport: transport?,
            from: from?,
            to: to.filter(|t| !t.is_empty())?,
        })
    }
}

fn smtp_url(node: &Node, ctx: &mut Ctx<'_>) -> Option<SecretString> {
    let s = scalar(node, "email.smtp_url", ctx)?;
    // The URL may carry a password: say what is wrong without showing it.
    let problem = match Url::parse(&s.value) {
        Err(err) => Some(err.to_string()),
        Ok(url) if !matches!(url.scheme(), "smtp" | "smtps") => {
            Some(format!("the scheme is `{}`", url.scheme()))
        }
        Ok(url) if url.host_str().is_none_or(str::is_empty) => Some("it names no host".to_string()),
        Ok(_) => None,
    };
    if problem.is_none()
        && let Some(problem) = control_character(&s.value)
    {
        ctx.error(
            node.pos,
            format!("email.smtp_url: {problem}; write the URL on one line"),
        );
        return None;
    }
    match problem {
        None => {
            let url = Url::parse(&s.value).ok()?;
            smtp_tls(url, node, ctx).map(SecretString::from)
        }
        Some(problem) => {
            ctx.error(
                node.pos,
                format!("email.smtp_url: not an SMTP URL ({problem}); write smtp://user:password@host:587?tls=required or smtps://user:password@host:465"),
            );
            None
        }
    }
}

/// Refuses an `smtp://` URL that would send the password and the emails in clear text over a
/// network, unless `tls=none` says it is meant; returns the URL as lettre reads it.
fn smtp_tls(mut url: Url, node: &Node, ctx: &mut Ctx<'_>) -> Option<String> {
    if url.scheme() != "smtp" {
        return Some(url.to_string());
    }
    let host = url.host_str().unwrap_or_default().to_string();
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        // `smtp:` is not a scheme the URL standard knows, so an IPv4 host arrives as text.
        Some(url::Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost")
                || d.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    };
    let tls = url
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    let fix = format!(
        "write smtp://user:password@{host}:587?tls=required (STARTTLS) or smtps://user:password@{host}:465"
    );
    match tls.as_deref() {
        Some("required") => Some(url.to_string()),
        None if loopback => Some(url.to_string()),
        Some("none") => {
            // lettre knows no `tls=none`: without a `tls` parameter it connects in clear.
            let rest: Vec<(String, String)> = url
                .query_pairs()
                .filter(|(k, _)| k != "tls")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            if rest.is_empty() {
                url.set_query(None);
            } else {
                url.query_pairs_mut().clear().extend_pairs(rest);
            }
            Some(url.to_string())
        }
        None => {
            ctx.error(
                node.pos,
                format!("email.smtp_url: smtp:// to {host} without TLS would send the password (AUTH PLAIN) and every email in clear text across the network; {fix}, or add `tls=none` if an unencrypted connection is really meant (a relay on your own network)"),
            );
            None
        }
        Some("opportunistic") if !loopback => {
            ctx.error(
                node.pos,
                format!("email.smtp_url: `tls=opportunistic` falls back to clear text whenever STARTTLS is missing, which anyone on the path can arrange, and the password would then travel in clear; {fix}, or write `tls=none` if an unencrypted connection is really meant"),
            );
            None
        }
        Some("opportunistic") => Some(url.to_string()),
        Some(other) => {
            ctx.error(
                node.pos,
                format!(
                    "email.smtp_url: `tls={}` is not a TLS mode; accepted: tls=required (STARTTLS), tls=opportunistic (loopback only), tls=none (clear text, on purpose); or use smtps://",
                    describe(other)
                ),
            );
            None
        }
    }
}

fn mailbox(node: &Node, field: &str, ctx: &mut Ctx<'_>) -> Option<Mailbox> {
    let text = string(node, field, ctx)?;
    match text.parse::<Mailbox>() {
        Ok(m) => Some(m),
        Err(_) => {
            ctx.error(
                node.pos,
                format!("{field}: {} is not an email address; write me@example.com or \"Name <me@example.com>\"", describe(&text)),
            );
            None
        }
    }
}
