//! Email templates: built in, or the user's own `NAME.txt` in the `templates:` folder, which
//! replaces a built-in of the same name.
//!
//! A template file is minijinja text whose first line is `Subject: …`; the rest is the body.

use std::borrow::Cow;

use std::collections::BTreeMap;
use std::path::PathBuf;

const BUILT_IN: [(&str, &str); 13] = [
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
    (
        "missed_purchase",
        include_str!("templates/missed_purchase.txt"),
    ),
    ("cost_mismatch", include_str!("templates/cost_mismatch.txt")),
];

pub const BUILT_IN_NAMES: [&str; 13] = [
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
    BUILT_IN[11].0,
    BUILT_IN[12].0,
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
    use crate::expr::{Scope, check_template_with, environment};

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

    fn render(name: &str, ctx: serde_json::Value) -> (String, String) {
        let env = environment();
        let t = find(name, &BTreeMap::new()).unwrap().unwrap();
        let r = |text: &str| crate::expr::render(&env, text, &ctx).unwrap();
        (r(&t.subject), r(&t.body))
    }

    #[test]
    fn the_digest_of_a_currency_with_refunds_and_no_buys_prints_no_none() {
        let ctx = serde_json::json!({ "digest": {
            "since": "2026-12-14T18:00:00Z", "until": "2026-12-21T18:00:00Z",
            "week_entries": [],
            "totals": { "btc_bought": "0.001", "withdrawn_btc": "0", "currencies": {
                "chf": { "buys": 1, "spent": "100", "fees": "1.5", "btc": "0.001", "average_price": "100000", "refunds": 0, "refunded": "0" },
                "eur": { "buys": 0, "spent": "0", "fees": "0", "btc": "0", "average_price": null, "refunds": 2, "refunded": "300" },
            }},
            "chart": null,
        }});
        let (_, body) = render("weekly_digest", ctx);
        assert!(!body.to_lowercase().contains("none"), "{body}");
        assert!(
            body.contains("EUR: no buys yet; 2 refunds, 300 EUR returned"),
            "{body}"
        );
        assert!(body.contains("CHF: 1 buy, spent 100 CHF"), "{body}");
    }

    #[test]
    fn every_withdrawal_state_has_its_own_subject_without_internal_keys() {
        let step = |out: serde_json::Value| serde_json::json!({ "steps": { "w": out }, "workflow": { "name": "sunday" }, "run": { "id": 3 } });
        let requested = step(
            serde_json::json!({ "withdrawn": true, "skipped": false, "amount_sat": 250000, "txid": null, "address": "bc1q", "withdrawal_id": "h1", "fee_sat": null }),
        );
        let sent_now = step(
            serde_json::json!({ "withdrawn": true, "skipped": false, "amount_sat": 250000, "txid": "ab", "address": "bc1q", "withdrawal_id": null, "fee_sat": 200 }),
        );
        let skipped = step(
            serde_json::json!({ "withdrawn": false, "skipped": true, "reason": "the balance of 0 sat is less than the minimum of 100000 sat" }),
        );
        let update = |status: &str| {
            serde_json::json!({ "event": {
            "key": "sunday/2026-12-13T17:00:00Z", "status": status, "amount_sat": 250000, "provider": "hub",
            "wallet": "vault", "address": "bc1q", "txid": "ab", "reason": "canceled", "withdrawal_id": "h1", "confirmations": 6 } })
        };
        let mut subjects = vec![
            render("withdrawal", requested).0,
            render("withdrawal", sent_now).0,
            render("withdrawal", skipped).0,
        ];
        for status in ["sent", "confirmed", "failed"] {
            subjects.push(render("withdrawal_update", update(status)).0);
        }
        for s in &subjects {
            assert!(!s.contains("2026-12-13T"), "no internal key: {s}");
        }
        assert!(
            subjects[0].contains("requested") && subjects[2].contains("nothing withdrawn"),
            "{subjects:?}"
        );
        assert!(
            subjects[4].contains("confirmed") && subjects[5].contains("failed"),
            "{subjects:?}"
        );
        let mut unique = subjects.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), subjects.len(), "{subjects:?}");
    }
}
