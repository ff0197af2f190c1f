//! Email templates: built in, or the user's own `NAME.txt` in the `templates:` folder, which
//! replaces a built-in of the same name.
//!
//! A template file is minijinja text whose first line is `Subject: …`; the rest is the body.

use std::borrow::Cow;

use std::collections::BTreeMap;
use std::path::PathBuf;

const BUILT_IN: [(&str, &str); 11] = [
    ("order_created", include_str!("templates/order_created.txt")),
    ("run_failed", include_str!("templates/run_failed.txt")),
    ("interrupted", include_str!("templates/interrupted.txt")),
    ("refunded", include_str!("templates/refunded.txt")),
    (
        "payout_mismatch",
        include_str!("templates/payout_mismatch.txt"),
    ),
    ("dead_letter", include_str!("templates/dead_letter.txt")),
    ("withdrawal", include_str!("templates/withdrawal.txt")),
    (
        "unrecognized_webhook",
        include_str!("templates/unrecognized_webhook.txt"),
    ),
    (
        "withdrawal_update",
        include_str!("templates/withdrawal_update.txt"),
    ),
    (
        "rate_off_market",
        include_str!("templates/rate_off_market.txt"),
    ),
    ("weekly_digest", include_str!("templates/weekly_digest.txt")),
];

pub const BUILT_IN_NAMES: [&str; 11] = [
    BUILT_IN[0].0,
    BUILT_IN[1].0,
    BUILT_IN[2].0,
    BUILT_IN[3].0,
    BUILT_IN[4].0,
    BUILT_IN[5].0,
    BUILT_IN[6].0,
    BUILT_IN[7].0,
    BUILT_IN[8].0,
    BUILT_IN[9].0,
    BUILT_IN[10].0,
];

/// Variables a template sees beyond the workflow's (`event`, `steps`, `run`, `workflow`).
pub fn extra_roots(name: &str) -> &'static [&'static str] {
    match name {
        crate::ledger::DIGEST_TEMPLATE => &["digest"],
        _ => &[],
    }
}

pub struct TemplateSource {
    pub subject: String,
    pub body: String,
    /// "built in" or the user's file, for messages.
    pub origin: Cow<'static, str>,
}

/// The template called `name`: the user's file if there is one, else the built-in; `None`
/// when neither exists, `Some(Err)` when the user's file cannot be used (the reason).
pub fn find(
    name: &str,
    user: &BTreeMap<String, PathBuf>,
) -> Option<Result<TemplateSource, String>> {
    if let Some(path) = user.get(name) {
        return Some(
            crate::source::files::read_text(path)
                .map_err(|err| format!("cannot read {}: {err}", path.display()))
                .and_then(|text| split(&text, Cow::Owned(path.display().to_string()))),
        );
    }
    BUILT_IN
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| split(text, Cow::Borrowed("built in")))
}

fn split(text: &str, origin: Cow<'static, str>) -> Result<TemplateSource, String> {
    let (first, body) = text.split_once('\n').unwrap_or((text, ""));
    match first.strip_prefix("Subject:") {
        Some(subject) => Ok(TemplateSource {
            subject: subject.trim().to_string(),
            body: body.to_string(),
            origin,
        }),
        None => Err(format!(
            "{origin} does not start with a `Subject: …` line; write the subject on the first line, then the body"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::expr::{Scope, check_template_with, environment};

    #[test]
    fn every_built_in_template_compiles_with_the_workflow_roots() {
        let env = environment();
        let scope = Scope {
            earlier: &[],
            all_ids: &[],
        };
        for name in BUILT_IN_NAMES {
            let t = find(name, &BTreeMap::new()).unwrap().unwrap();
            assert!(!t.subject.is_empty(), "{name} has no subject");
            let extra = extra_roots(name);
            check_template_with(&env, &t.subject, &scope, extra)
                .unwrap_or_else(|e| panic!("{name} subject: {e}"));
            check_template_with(&env, &t.body, &scope, extra)
                .unwrap_or_else(|e| panic!("{name} body: {e}"));
        }
    }
}
