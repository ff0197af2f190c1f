//! `email`: an email composed now (inline `subject`/`body`, or a template) and sent through the
//! outbox. The step does not wait: its output is the Message-ID it will carry.
//!
//! The `digest` template gets the ledger and its chart (a PNG attachment).

use lettre::message::Mailbox;

use super::read::ActionReader;
use super::{ActionStep, Param, StepCx, StepOutcome};
use crate::config::Names;
use crate::notify::email::Content;
use crate::notify::templates;
use crate::outbox::Effect;
use crate::outbox::handlers::email::EmailEffect;
use crate::source::MapReader;
use crate::source::reader::{describe, did_you_mean, list_or_one, string};
use crate::expr;

#[derive(Debug, Clone)]
pub struct Email {
    pub content: EmailContent,
    pub to: Vec<Param<Mailbox>>,
}

#[derive(Debug, Clone)]
pub enum EmailContent {
    Inline { subject: String, body: String },
    Template(String),
}

impl ActionStep for Email {
    const NAME: &'static str = "email";
    const OUTPUTS: &'static [&'static str] = &["message_id"];

    fn read(r: &mut ActionReader<'_, '_>, m: &mut MapReader<'_>) -> Option<Self> {
        let subject = m.get("subject");
        let body = m.get("body");
        let template = m.get("template");
        let content = match (template, subject, body) {
            (Some(t), None, None) => {
                let field = r.field("template");
                let name = string(t, &field, r.ctx)?;
                match templates::find(&name, &r.names.templates) {
                    Some(Ok(source)) => {
                        for (part, text) in [
                            ("subject", source.subject.as_str()),
                            ("body", source.body.as_str()),
                        ] {
                            let extra = templates::extra_roots(&name);
                            if let Err(e) =
                                expr::check_template_with(r.env, text, &r.scope, extra)
                            {
                                r.ctx.error(
                                    t.pos,
                                    format!(
                                        "{field}: the {part} of template `{name}` ({}): {e}",
                                        source.origin
                                    ),
                                );
                            }
                        }
                        Some(EmailContent::Template(name))
                    }
                    Some(Err(e)) => {
                        r.ctx
                            .error(t.pos, format!("{field}: template `{name}`: {e}"));
                        None
                    }
                    None => {
                        let mut known: Vec<&str> = templates::BUILT_IN_NAMES.to_vec();
                        known.extend(r.names.templates.keys().map(String::as_str));
                        let hint = did_you_mean(&name, &known);
                        r.ctx.error(
                            t.pos,
                            format!(
                                "{field}: there is no email template {}; {hint}built in: {}{}",
                                describe(&name),
                                templates::BUILT_IN_NAMES.join(", "),
                                user_templates(r.names)
                            ),
                        );
                        None
                    }
                }
            }
            (None, Some(s), Some(b)) => {
                let subject = r.template_text(s, "subject");
                let body = r.template_text(b, "body");
                Some(EmailContent::Inline {
                    subject: subject?,
                    body: body?,
                })
            }
            (Some(t), _, _) => {
                r.ctx.error(
                    t.pos,
                    format!(
                        "{}: `template` and `subject`/`body` are both set; use one",
                        r.prefix
                    ),
                );
                None
            }
            _ => {
                r.ctx.error(
                    m.pos,
                    format!(
                        "{}: write `subject` and `body`, or `template: NAME`",
                        r.prefix
                    ),
                );
                None
            }
        };
        let to = match m.get("to") {
            None => Vec::new(),
            Some(n) => list_or_one(n)
                .into_iter()
                .filter_map(|item| {
                    r.param(item, "to", |s| {
                        s.parse::<Mailbox>().map_err(|_| {
                            format!("{} is not an email address; write me@example.com or \"Name <me@example.com>\"", describe(s))
                        })
                    })
                })
                .collect(),
        };
        Some(Email {
            content: content?,
            to,
        })
    }

    async fn perform(&self, cx: &StepCx<'_>) -> StepOutcome {
        let Some(mailer) = cx.mailer else {
            return StepOutcome::failed("satflow.yaml has no `email` section");
        };
        let to = match self
            .to
            .iter()
            .map(|p| cx.param(p, |s| s.parse::<Mailbox>().map_err(|e| e.to_string())))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(to) => to,
            Err(e) => return StepOutcome::failed(format!("to: {e}")),
        };
        let content = match &self.content {
            EmailContent::Template(name) => Content::Template(name),
            EmailContent::Inline { subject, body } => Content::Inline { subject, body },
        };
        // The digest template gets the ledger and its chart.
        let mut ctx = cx.ctx.clone();
        let mut chart = None;
        if matches!(&self.content, EmailContent::Template(n) if n == crate::ledger::DIGEST_TEMPLATE)
        {
            let entries = match (
                cx.store.exchanges(i64::MAX).await,
                cx.store.withdrawals(i64::MAX).await,
            ) {
                (Ok(x), Ok(w)) => crate::ledger::entries(&x, &w),
                (Err(e), _) | (_, Err(e)) => return StepOutcome::failed(e.to_string()),
            };
            let (digest, png) = crate::ledger::digest(&entries, cx.clock.now());
            if let Some(ctx) = ctx.as_object_mut() {
                ctx.insert("digest".into(), digest);
            }
            chart = png;
        }
        match mailer.compose(cx.env, cx.key(), content, &ctx, Some(to), false, None) {
            Ok(mut item) => {
                if let Some(png) = &chart {
                    crate::notify::email::attach(&mut item, "stacking.png", "image/png", png);
                }
                let message_id = match EmailEffect::decode(&item.payload) {
                    Ok(email) => email.message_id,
                    Err(e) => return StepOutcome::failed(format!("cannot write the email: {e}")),
                };
                StepOutcome::succeeded(output(&message_id), vec![item])
            }
            Err(e) => StepOutcome::failed(e),
        }
    }
}

/// What `steps.<id>` holds after an `email` step.
fn output(message_id: &str) -> serde_json::Value {
    serde_json::json!({ "message_id": message_id })
}

fn user_templates(names: &Names) -> String {
    if names.templates.is_empty() {
        String::new()
    } else {
        let list: Vec<&str> = names.templates.keys().map(String::as_str).collect();
        format!("; yours: {}", list.join(", "))
    }
}
