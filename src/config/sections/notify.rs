//! `notify:`, `alerts:` and `healthcheck:` — the notification targets besides email (ntfy,
//! Telegram, Standard Webhooks), where each alert goes, and the URL that is pinged while the
//! daemon lives. Reads and reports; never calls a target, and never echoes a token, a bot
//! token, a webhook secret, an ntfy topic or a healthcheck URL in a message.

use bitcoin::base64::Engine;

use super::*;
use crate::config::{EMAIL_TARGET, url_origin};

/// What `alerts:` routes to when it is left out: every alert, by email.
fn all_by_email() -> BTreeMap<Alert, Vec<String>> {
    Alert::ALL
        .into_iter()
        .map(|a| (a, vec![EMAIL_TARGET.to_string()]))
        .collect()
}

/// The Telegram Bot API, unless `api_url` says otherwise.
const TELEGRAM_API: &str = "https://api.telegram.org";

/// The size Standard Webhooks asks of a signing key (its specification: 24 to 64 bytes).
const WEBHOOK_KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

impl Reader<'_> {
    pub fn notify(
        &self,
        node: &Node,
        ctx: &mut Ctx<'_>,
        names: &mut Names,
    ) -> BTreeMap<String, NotifyTarget> {
        let mut out = BTreeMap::new();
        for (name, settings) in named_entries(node, "notify", ctx) {
            let prefix = format!("notify.{name}");
            if name == EMAIL_TARGET {
                ctx.error(
                    settings.pos,
                    format!("{prefix}: `email` is the built-in target (the `email` section); give this target another name, e.g. phone or team"),
                );
                continue;
            }
            let Some(mut m) = MapReader::new(settings, prefix.clone(), ctx) else {
                continue;
            };
            let ntfy = m.get("ntfy");
            let telegram = m.get("telegram");
            let webhook = m.get("webhook");
            let target = match (ntfy, telegram, webhook) {
                (Some(n), None, None) => {
                    names.notify_targets.insert(name.clone(), ChannelKind::Ntfy);
                    read_ntfy(n, &format!("{prefix}.ntfy"), ctx)
                }
                (None, Some(n), None) => {
                    names
                        .notify_targets
                        .insert(name.clone(), ChannelKind::Telegram);
                    read_telegram(n, &format!("{prefix}.telegram"), ctx)
                }
                (None, None, Some(n)) => {
                    names
                        .notify_targets
                        .insert(name.clone(), ChannelKind::Webhook);
                    read_webhook(n, &format!("{prefix}.webhook"), ctx)
                }
                (None, None, None) => {
                    ctx.error(
                        m.pos,
                        format!("{prefix}: say what kind of target it is; accepted: ntfy, telegram, webhook, e.g. {name}: {{ ntfy: {{ url: https://ntfy.sh/mytopic }} }}"),
                    );
                    None
                }
                _ => {
                    ctx.error(
                        m.pos,
                        format!("{prefix}: more than one of ntfy, telegram, webhook is set; one target is one channel (make another target for the other)"),
                    );
                    None
                }
            };
            m.finish(ctx);
            if let Some(target) = target {
                out.insert(name, target);
            }
        }
        out
    }

    /// `alerts:` as a list (those alerts, by email), as a map of alert kinds to targets, or
    /// left out (every alert, by email). Targets are checked against `notify:`.
    pub fn alerts(
        &self,
        node: Option<&Node>,
        names: &Names,
        ctx: &mut Ctx<'_>,
    ) -> BTreeMap<Alert, Vec<String>> {
        let Some(node) = node else {
            return all_by_email();
        };
        let mut out = BTreeMap::new();
        match &node.kind {
            Kind::Seq(items) => {
                for item in items {
                    if let Some(alert) = alert_kind(item, ctx) {
                        out.insert(alert, vec![EMAIL_TARGET.to_string()]);
                    }
                }
            }
            Kind::Map(entries) => {
                for (k, v) in entries {
                    let Some(alert) = alert_kind(k, ctx) else {
                        continue;
                    };
                    let field = format!("alerts.{}", alert.name());
                    let mut targets = Vec::new();
                    for t in list_or_one(v) {
                        let Some(target) = string(t, &field, ctx) else {
                            continue;
                        };
                        if target != EMAIL_TARGET && !names.notify_targets.contains_key(&target) {
                            let mut accepted = vec![EMAIL_TARGET];
                            accepted.extend(names.notify_targets.keys().map(String::as_str));
                            let hint = did_you_mean(&target, &accepted);
                            ctx.error(
                                t.pos,
                                format!(
                                    "{field}: {} is not a notification target; {hint}accepted: {} (targets are defined under `notify:`)",
                                    describe(&target),
                                    accepted.join(", ")
                                ),
                            );
                            continue;
                        }
                        if !targets.contains(&target) {
                            targets.push(target);
                        }
                    }
                    if !targets.is_empty() {
                        out.insert(alert, targets);
                    }
                }
            }
            Kind::Invalid => {}
            _ => ctx.error(
                node.pos,
                "alerts: expected a list, e.g. alerts: [interrupted, refunded] (or [] for none), or a mapping of alerts to targets, e.g. alerts: { interrupted: [email, phone] }",
            ),
        }
        out
    }

    pub fn healthcheck(&self, node: &Node, ctx: &mut Ctx<'_>) -> Option<HealthcheckUrl> {
        let mut m = MapReader::new(node, "healthcheck", ctx)?;
        let url = m
            .required(
                "url",
                "write the check's ping URL, e.g. url: https://hc-ping.com/${HEALTHCHECK_UUID}",
                ctx,
            )
            .and_then(|n| secret_url(n, "healthcheck.url", ctx));
        m.finish(ctx);
        url.map(HealthcheckUrl)
    }
}

/// One alert kind of `alerts:`.
fn alert_kind(node: &Node, ctx: &mut Ctx<'_>) -> Option<Alert> {
    let name = string(node, "alerts", ctx)?;
    let found = Alert::ALL.into_iter().find(|a| a.name() == name);
    if found.is_none() {
        let accepted: Vec<&str> = Alert::ALL.iter().map(|a| a.name()).collect();
        let hint = did_you_mean(&name, &accepted);
        ctx.error(
            node.pos,
            format!(
                "alerts: {} is not a built-in alert; {hint}accepted: {}",
                describe(&name),
                accepted.join(", ")
            ),
        );
    }
    found
}

/// An http(s) URL that is a secret of its own (an ntfy topic, a webhook path, a ping UUID):
/// a refusal names the field and what is wrong, never the URL.
fn secret_url(node: &Node, field: &str, ctx: &mut Ctx<'_>) -> Option<Url> {
    let text = string(node, field, ctx)?;
    let problem = match Url::parse(text.trim()) {
        Err(e) => e.to_string(),
        Ok(url) if !matches!(url.scheme(), "http" | "https") => {
            format!("the scheme is `{}`", url.scheme())
        }
        Ok(url) if url.host_str().is_none_or(str::is_empty) => "it names no host".to_string(),
        Ok(url) => return Some(url),
    };
    ctx.error(
        node.pos,
        format!("{field}: not an http(s) URL ({problem}); write e.g. https://example.com/PATH"),
    );
    None
}

fn read_ntfy(node: &Node, prefix: &str, ctx: &mut Ctx<'_>) -> Option<NotifyTarget> {
    let mut m = MapReader::new(node, prefix.to_string(), ctx)?;
    let url = m
        .required(
            "url",
            "write the topic URL, e.g. url: https://ntfy.sh/mytopic",
            ctx,
        )
        .and_then(|n| {
            let field = format!("{prefix}.url");
            let url = secret_url(n, &field, ctx)?;
            if url.path().trim_matches('/').is_empty() {
                ctx.error(
                    n.pos,
                    format!("{field}: the URL ({}) names no topic; write the server and the topic, e.g. https://ntfy.sh/mytopic", url_origin(&url)),
                );
                return None;
            }
            Some(url)
        });
    let token = m
        .get("token")
        .map(|n| secret(n, &format!("{prefix}.token"), ctx));
    let priority = match m.get("priority") {
        None => Some(None),
        Some(n) => {
            let field = format!("{prefix}.priority");
            string(n, &field, ctx).and_then(|p| match ntfy_priority(&p) {
                Some(level) => Some(Some(level)),
                None => {
                    ctx.error(
                        n.pos,
                        format!("{field}: {} is not an ntfy priority; accepted: 1 to 5, or min, low, default, high, max, urgent", describe(&p)),
                    );
                    None
                }
            })
        }
    };
    m.finish(ctx);
    let token = match token {
        None => None,
        Some(t) => Some(t?),
    };
    Some(NotifyTarget::Ntfy {
        url: url?,
        token,
        priority: priority?,
    })
}

/// ntfy's priorities: 1 to 5, or their names.
fn ntfy_priority(text: &str) -> Option<u8> {
    match text.trim() {
        "1" | "min" => Some(1),
        "2" | "low" => Some(2),
        "3" | "default" => Some(3),
        "4" | "high" => Some(4),
        "5" | "max" | "urgent" => Some(5),
        _ => None,
    }
}

fn read_telegram(node: &Node, prefix: &str, ctx: &mut Ctx<'_>) -> Option<NotifyTarget> {
    let mut m = MapReader::new(node, prefix.to_string(), ctx)?;
    let bot_token = m
        .required(
            "bot_token",
            "write the bot's token (from @BotFather), e.g. bot_token: ${TELEGRAM_BOT_TOKEN}",
            ctx,
        )
        .and_then(|n| {
            let field = format!("{prefix}.bot_token");
            let token = secret(n, &field, ctx)?;
            use secrecy::ExposeSecret;
            // It goes into the URL path: a `/`, `?` or `#` would change which URL is called.
            if token
                .expose_secret()
                .chars()
                .any(|c| matches!(c, '/' | '?' | '#' | ' '))
            {
                ctx.error(
                    n.pos,
                    format!("{field}: holds a `/`, `?`, `#` or a space, which a bot token never does; it looks like 123456:ABC-DEF… (check the variable it comes from)"),
                );
                return None;
            }
            Some(token)
        });
    let chat_id = m
        .required(
            "chat_id",
            "write the chat to post to, e.g. chat_id: 123456789 (or @mychannel)",
            ctx,
        )
        .and_then(|n| {
            let field = format!("{prefix}.chat_id");
            let id = string(n, &field, ctx)?;
            let id = id.trim().to_string();
            let numeric = id
                .strip_prefix('-')
                .unwrap_or(&id)
                .chars()
                .all(|c| c.is_ascii_digit())
                && !id.trim_start_matches('-').is_empty();
            let channel = id.strip_prefix('@').is_some_and(|u| {
                u.len() >= 5 && u.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            });
            if numeric || channel {
                Some(id)
            } else {
                ctx.error(
                    n.pos,
                    format!("{field}: {} is not a chat id; accepted: a number (negative for groups, e.g. -1001234567890) or @channelusername", describe(&id)),
                );
                None
            }
        });
    let api_url = match m.get("api_url") {
        Some(n) => http_url(n, &format!("{prefix}.api_url"), ctx),
        None => Url::parse(TELEGRAM_API).ok(),
    };
    m.finish(ctx);
    Some(NotifyTarget::Telegram {
        bot_token: bot_token?,
        chat_id: chat_id?,
        api_url: api_url?,
    })
}

fn read_webhook(node: &Node, prefix: &str, ctx: &mut Ctx<'_>) -> Option<NotifyTarget> {
    let mut m = MapReader::new(node, prefix.to_string(), ctx)?;
    let url = m
        .required(
            "url",
            "write where to POST, e.g. url: https://hooks.example.com/satflow",
            ctx,
        )
        .and_then(|n| secret_url(n, &format!("{prefix}.url"), ctx));
    let secret = m
        .required(
            "secret",
            "write the signing secret, e.g. secret: ${WEBHOOK_SECRET} (whsec_ and base64, as Standard Webhooks receivers give it)",
            ctx,
        )
        .and_then(|n| {
            let field = format!("{prefix}.secret");
            let s = secret(n, &field, ctx)?;
            match webhook_key(&s) {
                Ok(_) => Some(s),
                Err(problem) => {
                    ctx.error(n.pos, format!("{field}: {problem}"));
                    None
                }
            }
        });
    m.finish(ctx);
    Some(NotifyTarget::Webhook {
        url: url?,
        secret: secret?,
    })
}

/// The signing key of a Standard Webhooks secret: `whsec_` and the base64 of 24 to 64 random
/// bytes. The refusal never shows the secret.
pub fn webhook_key(secret: &SecretString) -> Result<Vec<u8>, String> {
    use secrecy::ExposeSecret;
    let text = secret.expose_secret().trim();
    let Some(encoded) = text.strip_prefix("whsec_") else {
        return Err("does not start with `whsec_`; a Standard Webhooks secret is whsec_ and the base64 of 24 to 64 random bytes (e.g. from `openssl rand -base64 32`, with whsec_ in front)".into());
    };
    let key = bitcoin::base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| {
            "the part after `whsec_` is not base64; a Standard Webhooks secret is whsec_ and the base64 of 24 to 64 random bytes".to_string()
        })?;
    if !WEBHOOK_KEY_BYTES.contains(&key.len()) {
        return Err(format!(
            "the key is {} bytes long; accepted: 24 to 64 bytes (whsec_ and their base64)",
            key.len()
        ));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use crate::config::{Alert, ChannelKind, EMAIL_TARGET, NotifyTarget, load};
    use crate::source::Diagnostics;

    fn load_text(text: &str) -> (Option<crate::config::Config>, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("satflow.yaml");
        std::fs::write(dir.path().join("tg.token"), "123456:secret-bot-token\n").unwrap();
        std::fs::write(&path, text).unwrap();
        let mut diags = Diagnostics::default();
        let loaded = load(&path, &[("NTFY", "tk_secret-ntfy")], &mut diags);
        let problems = diags.sorted().iter().map(|d| d.to_string()).collect();
        (loaded.config, problems)
    }

    const TARGETS: &str = "email: { dir: mail, from: a@example.com, to: b@example.com }\n\
        notify:\n  phone: { ntfy: { url: \"https://ntfy.sh/secret-topic\", token: \"${NTFY}\", priority: urgent } }\n  \
        team: { telegram: { bot_token: \"${file:tg.token}\", chat_id: -1001234567890 } }\n  \
        ops: { webhook: { url: \"https://hooks.example.com/in/secret-path\", secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw } }\n\
        healthcheck: { url: \"https://hc-ping.com/5d1c0f7e-aaaa-bbbb\" }\n";

    #[test]
    fn the_map_form_routes_each_alert_and_the_list_form_still_means_email() {
        let (config, problems) = load_text(&format!(
            "{TARGETS}alerts:\n  interrupted: [email, phone]\n  dead_letter: ops\n  refunded: []\n"
        ));
        assert!(problems.is_empty(), "{problems:?}");
        let config = config.unwrap();
        assert_eq!(
            config.alert_routes.get(&Alert::Interrupted).unwrap(),
            &["email", "phone"]
        );
        assert_eq!(
            config.alert_routes.get(&Alert::DeadLetter).unwrap(),
            &["ops"]
        );
        assert!(!config.alerts.contains(&Alert::Refunded));
        assert!(!config.alerts.contains(&Alert::RunFailed), "unlisted: off");
        assert_eq!(config.notify["team"].kind(), ChannelKind::Telegram);
        let NotifyTarget::Ntfy { priority, .. } = &config.notify["phone"] else {
            panic!("ntfy")
        };
        assert_eq!(*priority, Some(5));
        let NotifyTarget::Telegram {
            api_url, chat_id, ..
        } = &config.notify["team"]
        else {
            panic!("telegram")
        };
        assert_eq!(api_url.as_str(), "https://api.telegram.org/");
        assert_eq!(chat_id, "-1001234567890");
        let shown = format!("{config:?}");
        for secret in [
            "secret-topic",
            "tk_secret-ntfy",
            "secret-bot-token",
            "MfKQ9r8",
            "secret-path",
            "aaaa-bbbb",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }

        let (config, problems) = load_text(&format!("{TARGETS}alerts: [interrupted]\n"));
        assert!(problems.is_empty(), "{problems:?}");
        let routes = config.unwrap().alert_routes;
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[&Alert::Interrupted], [EMAIL_TARGET]);
        let (config, _) = load_text(TARGETS);
        assert_eq!(config.unwrap().alert_routes.len(), Alert::ALL.len());
    }

    #[test]
    fn channels_alone_need_no_email_section_but_email_routes_do() {
        let no_email = TARGETS.lines().skip(1).collect::<Vec<_>>().join("\n");
        let (config, problems) = load_text(&format!(
            "{no_email}\nalerts: {{ run_failed: [phone, team] }}\n"
        ));
        assert!(problems.is_empty(), "{problems:?}");
        assert!(config.is_some());
        let (_, problems) = load_text(&format!("{no_email}\nalerts: {{ run_failed: [email] }}\n"));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("there is no `email` section"),
            "{problems:?}"
        );
    }

    #[test]
    fn refusals_name_the_field_the_value_and_what_is_accepted() {
        let (config, problems) = load_text(
            "notify:\n  email: { ntfy: { url: https://ntfy.sh/x } }\n  a: { ntfy: { url: https://ntfy.sh/ } }\n  \
             b: { ntfy: { url: https://ntfy.sh/x }, webhook: { url: https://x.example.com, secret: whsec_AAAA } }\n  \
             c: { pager: {} }\n  d: { webhook: { url: \"ftp://h/secret-path\", secret: whsec_AAAA } }\n\
             healthcheck: { url: not-a-url }\nalerts: { run_failed: [email, sms] }\n",
        );
        assert!(config.is_none());
        let all = problems.join("\n");
        for expected in [
            "notify.email: `email` is the built-in target",
            "notify.a.ntfy.url: the URL (https://ntfy.sh/…) names no topic",
            "notify.b: more than one of ntfy, telegram, webhook is set",
            "notify.c: say what kind of target it is; accepted: ntfy, telegram, webhook",
            "notify.d.webhook.url: not an http(s) URL (the scheme is `ftp`)",
            "notify.d.webhook.secret: the key is 3 bytes long; accepted: 24 to 64 bytes",
            "healthcheck.url: not an http(s) URL",
            "alerts.run_failed: \"sms\" is not a notification target; accepted: email, a, d",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in\n{all}");
        }
        assert!(!all.contains("secret-path"), "{all}");
    }
}
