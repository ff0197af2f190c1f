//! `approval:` on a step: the rule (how many of whom, within how long, when), how it is read and
//! checked, the summary approvers are shown (what the step would do), their single-use links and
//! the emails that carry them.
//!
//! It must never let a step's effect out before its approvals are given: the runner asks
//! [`needs_approval`] before recording an effectful outcome, and the request commits with the
//! step's `waiting` result (see `store::approvals`). A token is shown once, in its email; only
//! its hash is kept.

use chrono::Duration;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::actions::StepOutcome;
use crate::domain::HumanDuration;
use crate::expr::{self, Scope};
use crate::source::reader::{describe, scalar, string, unsigned};
use crate::source::{Ctx, MapReader, Node, Pos};
use crate::store::NewItem;
use crate::store::audit::hex;

/// The longest an approval may wait: a step held longer than this is forgotten, not decided.
pub const MAX_WITHIN: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// `approval: { required, approvers, within, when }`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalRule {
    pub required: u32,
    pub approvers: Vec<String>,
    pub within: Duration,
    /// Asked only when this is true (the step's context); always without it.
    pub when: Option<String>,
    /// Where the rule is written, for `check`'s problems about its approvers.
    pub pos: Pos,
    /// Where each approver is written.
    pub approver_pos: Vec<Pos>,
}

/// Reads a step's `approval:`; every problem is reported with its field.
pub fn read(
    node: &Node,
    prefix: &str,
    jinja: &minijinja::Environment<'static>,
    scope: &Scope<'_>,
    ctx: &mut Ctx<'_>,
) -> Option<ApprovalRule> {
    let field = format!("{prefix}.approval");
    let mut m = MapReader::new(node, &field, ctx)?;
    let required_node = m.required(
        "required",
        "write how many approvers must approve, e.g. required: 2",
        ctx,
    );
    let approvers_node = m.required(
        "approvers",
        "list the users who may approve, e.g. approvers: [alice, bob, carol]",
        ctx,
    );
    let within_node = m.required(
        "within",
        "write how long the approvers have, e.g. within: 48h",
        ctx,
    );
    let when = m.get("when").and_then(|n| {
        let text = string(n, &format!("{field}.when"), ctx)?;
        match expr::check_condition(jinja, &text, scope) {
            Ok(()) => Some(text),
            Err(e) => {
                ctx.error(n.pos, format!("{field}.when: {e}"));
                None
            }
        }
    });
    m.finish(ctx);
    let mut approvers = Vec::new();
    let mut approver_pos = Vec::new();
    let mut approvers_ok = true;
    if let Some(n) = approvers_node {
        match &n.kind {
            crate::source::Kind::Seq(items) if !items.is_empty() => {
                for (i, item) in items.iter().enumerate() {
                    let Some(name) = scalar(item, &format!("{field}.approvers[{i}]"), ctx)
                        .map(|s| s.raw.clone())
                    else {
                        approvers_ok = false;
                        continue;
                    };
                    if name.is_empty()
                        || !name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "_-.@".contains(c))
                    {
                        ctx.error(item.pos, format!("{field}.approvers[{i}]: {} is not a user name; write the name of a dashboard user (letters, digits, `_`, `-`, `.`, `@`)", describe(&name)));
                        approvers_ok = false;
                    } else if approvers.contains(&name) {
                        ctx.error(
                            item.pos,
                            format!("{field}.approvers[{i}]: `{name}` is listed twice"),
                        );
                        approvers_ok = false;
                    } else {
                        approvers.push(name);
                        approver_pos.push(item.pos);
                    }
                }
            }
            _ => {
                ctx.error(
                    n.pos,
                    format!("{field}.approvers: expected a list of user names, e.g. [alice, bob], found {}", n.kind_name()),
                );
                approvers_ok = false;
            }
        }
    }
    let required = required_node.and_then(|n| {
        let v = unsigned(n, &format!("{field}.required"), ctx)?;
        let accepted = format!("1 to the number of approvers ({})", approvers.len().max(1));
        match u32::try_from(v) {
            Ok(v) if v >= 1 && (!approvers_ok || v as usize <= approvers.len()) => Some(v),
            _ => {
                ctx.error(
                    n.pos,
                    format!("{field}.required: {v} cannot be met; accepted: {accepted}"),
                );
                None
            }
        }
    });
    let within = within_node.and_then(|n| {
        let text = string(n, &format!("{field}.within"), ctx)?;
        match text.parse::<HumanDuration>() {
            Ok(d) if d.0 >= std::time::Duration::from_secs(1) && d.0 <= MAX_WITHIN => {
                Duration::from_std(d.0).ok()
            }
            Ok(_) => {
                ctx.error(
                    n.pos,
                    format!(
                        "{field}.within: {} is out of range; accepted: 1s to 30d",
                        describe(&text)
                    ),
                );
                None
            }
            Err(e) => {
                ctx.error(n.pos, format!("{field}.within: {e}"));
                None
            }
        }
    });
    if !approvers_ok {
        return None;
    }
    Some(ApprovalRule {
        required: required?,
        approvers,
        within: within?,
        when,
        pos: node.pos,
        approver_pos,
    })
}

/// Whether the step's decided outcome must wait for approvals: it has an effect that acts on
/// the outside world (an email alone does not) or plans a withdrawal.
pub fn needs_approval(outcome: &StepOutcome) -> bool {
    outcome.withdrawal.is_some()
        || outcome
            .effects
            .iter()
            .any(|e| crate::treasury::audit::effect_kind(&e.kind).is_some())
}

/// What the approvers are shown: each effect the step would cause (an http.post's URL
/// redacted, nothing else of it), the withdrawal it plans, and the rule that asked.
pub fn summary(
    workflow: &str,
    step_id: &str,
    uses: &str,
    rule: &ApprovalRule,
    outcome: &StepOutcome,
) -> Value {
    let effects: Vec<Value> = outcome
        .effects
        .iter()
        .filter_map(|e| {
            crate::treasury::audit::effect_kind(&e.kind).map(|k| {
                json!({ "effect": k, "detail": crate::treasury::audit::effect_detail(&e.kind, &e.payload) })
            })
        })
        .collect();
    json!({
        "workflow": workflow,
        "step": step_id,
        "uses": uses,
        "effects": effects,
        "withdrawal": outcome.withdrawal.as_ref().map(|w| json!({
            "provider": w.provider,
            "to_wallet": w.wallet,
            "address": w.address,
            "address_index": w.address_index,
        })),
        "rule": {
            "required": rule.required,
            "approvers": rule.approvers,
            "within": format!("{}s", rule.within.num_seconds()),
            "when": rule.when,
        },
    })
}

/// A fresh link token (shown once, in the email) and the hash kept of it.
pub fn new_token() -> Result<(String, String), String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| format!("no randomness for a link token: {e}"))?;
    let token = hex(&bytes);
    let hash = token_hash(&token);
    Ok((token, hash))
}

/// The hash under which a token is kept.
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// The text of an approver's email: what would happen, the rule, the deadline, and how to
/// decide (the dashboard link, or the CLI).
pub fn email_body(
    approver: &str,
    approval_hint: &str,
    summary: &Value,
    deadline: &str,
    link: &str,
) -> String {
    let pretty = serde_json::to_string_pretty(summary).unwrap_or_default();
    format!(
        "Hello {approver},\n\n\
         workflow `{w}` wants to run step `{s}` ({u}) and needs your approval.\n\n\
         What would happen (the step decides again once approved; an amount taken from a balance\n\
         is read when the effect runs):\n\n{pretty}\n\n\
         Decide before {deadline}:\n\n  {link}\n\n\
         (the link works once, and only for you; log in first), or on the satflow host:\n\n\
         \x20 satflow approve {approval_hint} --as {approver}\n\
         \x20 satflow reject {approval_hint} --as {approver} --reason \"…\"\n",
        w = summary["workflow"].as_str().unwrap_or(""),
        s = summary["step"].as_str().unwrap_or(""),
        u = summary["uses"].as_str().unwrap_or(""),
    )
}

/// An approver's email as an outbox item: to the configured recipients (users have no address
/// of their own yet), one per approver.
pub fn email_item(
    mailer: &crate::notify::email::Mailer,
    env: &minijinja::Environment<'_>,
    key: String,
    subject: &str,
    body: &str,
) -> Result<NewItem, String> {
    // Inline content is rendered as a template: the body's braces must not be read as one.
    let escape = |t: &str| format!("{{% raw %}}{t}{{% endraw %}}");
    mailer.compose(
        env,
        key,
        crate::notify::email::Content::Inline {
            subject: &escape(subject),
            body: &escape(body),
        },
        &json!({}),
        None,
        false,
        None,
    )
}
